/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP transport: libcurl's multi interface, driven by PostgreSQL's
 *	  own wait machinery.
 *
 * Every request pcqual makes, a token request as much as one customer's
 * qualifications or a batch of thousands, goes through pcq_http_run().  One
 * multi handle lives for the whole backend so that its connection cache
 * keeps connections (and HTTP/2 sessions) alive between statements; it is
 * bounded by pcqual.max_idle_connections, dropped by pc_disconnect(), and
 * cleaned up at backend exit.
 *
 * curl's sockets live in one epoll set that curl's socket callback changes
 * incrementally (as PostgreSQL 18's libpq OAuth code does); a WaitEventSet
 * made once per backend waits on that epoll descriptor, the process latch
 * and postmaster death, with curl's timer as the timeout.  A cancel or
 * statement_timeout therefore interrupts a request at once and surfaces as
 * an ordinary query_canceled ERROR.  Every socket curl opens is counted by
 * PostgreSQL's file-descriptor accounting (AcquireExternalFD).
 *
 * Requests are taken from the caller one at a time, when a slot frees, so
 * memory is bounded by what is in flight.  A slot is the call's (at most
 * pcqual.concurrency) and, with pcqual.cluster_governor, the cluster's
 * (governor.c): a call whose partner is paused or full sleeps on its latch
 * until a slot frees or the pause ends, while its own transfers go on.
 * Every attempt is counted in pc_stat (stats.c), and the call's progress
 * shown in pc_stat_activity (activity.c).  Whatever way pcq_http_run() is
 * left, ERROR included, every easy handle and header list is released
 * before the error propagates.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifndef __linux__
#error "pcqual's transport waits on epoll: it builds on Linux only"
#endif

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "pcqual.h"

/* ---- differences between libcurl versions ---- */
#if LIBCURL_VERSION_NUM < 0x072b00
#error "pcqual needs libcurl 7.43.0 or later (CURLPIPE_MULTIPLEX, CURLOPT_PIPEWAIT)"
#endif

/* CURLOPT_PROTOCOLS_STR is 7.85.0's; CURLOPT_PROTOCOLS is deprecated there. */
#if LIBCURL_VERSION_NUM >= 0x075500
#define SET_PROTOCOLS(easy, http_too) \
	REQUIRE((easy), CURLOPT_PROTOCOLS_STR, (http_too) ? "http,https" : "https")
#else
#define SET_PROTOCOLS(easy, http_too) \
	REQUIRE((easy), CURLOPT_PROTOCOLS, \
			(long) (CURLPROTO_HTTPS | ((http_too) ? CURLPROTO_HTTP : 0)))
#endif

/* Longest we sleep without looking at curl's state again. */
#define MAX_WAIT_MS 1000

/* Socket events handled per wake-up; more are picked up on the next. */
#define MAX_SOCKET_EVENTS 64

/* One request's curl state. */
struct PcqTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;
	size_t		body_cap;
	int			slot;			/* index in the batch's in-flight array */
	bool		fd_refused;		/* AcquireExternalFD said no */
	bool		governed;		/* holds governor_slot */
	PcqSlot		governor_slot;
	PcqSlotOutcome slot_outcome;	/* what the governor learns at release */
	long		pause_ms;		/* with PCQ_SLOT_THROTTLED */
	char		errbuf[CURL_ERROR_SIZE];
};

/* The backend's transport, made on first use. */
static CURLM *multi = NULL;
static int	epoll_fd = -1;
static WaitEventSet *wait_set = NULL;
static int	open_sockets = 0;
static int	socket_callback_errno = 0;
static bool timer_armed = false;
static TimestampTz timer_deadline = 0;

/* Where response bodies are allocated during pcq_http_run(). */
static MemoryContext body_context = NULL;

static void ensure_transport(void);
static void release_wakeup_fds(void);

/* ---- curl's callbacks: they run inside curl and must not ereport ---- */

/*
 * Open a socket for curl, counted against max_files_per_process like every
 * other file PostgreSQL opens.
 */
static curl_socket_t
open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	PcqTransfer *transfer = (PcqTransfer *) clientp;
	curl_socket_t fd;

	if (!AcquireExternalFD())
	{
		transfer->fd_refused = true;
		return CURL_SOCKET_BAD;
	}
	fd = socket(address->family, address->socktype, address->protocol);
	if (fd < 0)
		ReleaseExternalFD();
	else
		open_sockets++;
	return fd;
}

static int
close_socket(void *clientp, curl_socket_t fd)
{
	int			rc = close(fd);

	ReleaseExternalFD();
	open_sockets--;
	return rc;
}

/* curl's socket callback: keep the epoll set in step, one change at a time. */
static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct epoll_event ev = {0};
	int			op;

	if (what == CURL_POLL_REMOVE)
	{
		/* curl forgets its own association of the socket with our marker */
		if (socketp != NULL &&
			epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL) != 0 && errno != EBADF &&
			errno != ENOENT)
			socket_callback_errno = errno;
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	ev.data.fd = fd;
	op = socketp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(epoll_fd, op, fd, &ev) != 0 &&
		!(op == EPOLL_CTL_MOD && errno == ENOENT &&		/* a reused fd number */
		  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0))
	{
		socket_callback_errno = errno;
		return -1;
	}
	if (socketp == NULL)
		curl_multi_assign(multi, fd, &epoll_fd);	/* any non-NULL marker */
	return 0;
}

/* curl's timer callback: when curl wants to be called back. */
static int
on_timer(CURLM *m, long timeout_ms, void *userp)
{
	timer_armed = (timeout_ms >= 0);
	if (timer_armed)
		timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 timeout_ms);
	return 0;
}

/*
 * curl's write callback.  The body is capped while it downloads, and the
 * buffer grows without ereport: a failure makes curl abort the transfer.
 */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	PcqRequest *req = (PcqRequest *) userp;
	PcqTransfer *transfer = req->transfer;
	size_t		n = size * nmemb;

	if (req->body_len + n > (size_t) pcq_max_response_size)
	{
		req->outcome = PCQ_TOO_LARGE;
		return 0;
	}
	if (req->body_len + n + 1 > transfer->body_cap)
	{
		size_t		cap = Max(transfer->body_cap * 2, Max(req->body_len + n + 1, 8192));
		char	   *grown;

		cap = Min(cap, (size_t) pcq_max_response_size + 1);
		grown = MemoryContextAllocExtended(body_context, cap, MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
			return 0;
		if (req->body != NULL)
		{
			memcpy(grown, req->body, req->body_len);
			pfree(req->body);
		}
		req->body = grown;
		transfer->body_cap = cap;
	}
	memcpy(req->body + req->body_len, data, n);
	req->body_len += n;
	req->body[req->body_len] = '\0';
	return n;
}

/* Copy the value of header "name" from a raw header line, if that is it. */
static void
copy_header_value(const char *line, size_t len, const char *name,
				  char *dest, size_t destsize)
{
	size_t		namelen = strlen(name);
	size_t		start;
	size_t		end;

	if (len <= namelen || line[namelen] != ':' ||
		pg_strncasecmp(line, name, namelen) != 0)
		return;
	start = namelen + 1;
	while (start < len && (line[start] == ' ' || line[start] == '\t'))
		start++;
	end = len;
	while (end > start && (line[end - 1] == '\r' || line[end - 1] == '\n' ||
						   line[end - 1] == ' '))
		end--;
	end = Min(end, start + destsize - 1);
	memcpy(dest, line + start, end - start);
	dest[end - start] = '\0';
}

/* curl's header callback: keep the few headers pcqual acts on. */
static size_t
on_header(char *line, size_t size, size_t nitems, void *userp)
{
	PcqRequest *req = (PcqRequest *) userp;
	size_t		n = size * nitems;

	/* A new status line starts a new response (after 100 Continue, say). */
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		req->retry_after[0] = '\0';
		req->content_type[0] = '\0';
	}
	copy_header_value(line, n, "retry-after", req->retry_after,
					  sizeof(req->retry_after));
	copy_header_value(line, n, "content-type", req->content_type,
					  sizeof(req->content_type));
	return n;
}

/* ---- request ids ---- */

/* A random (version 4) GUID in its text form. */
void
pcq_new_guid(char *dest)
{
	uint8		b[16];

	if (!pg_strong_random(b, sizeof(b)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random request id")));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(dest, PCQ_GUID_SIZE,
			 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
			 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/*
 * The MS-CorrelationId in force: pcqual.correlation_id when set, otherwise a
 * GUID that stays the same for all requests of one statement, so that the
 * service's logs of one refresh can be found together.
 */
const char *
pcq_correlation_id(void)
{
	static char generated[PCQ_GUID_SIZE];
	static LocalTransactionId for_lxid = InvalidLocalTransactionId;
	static TimestampTz for_statement = 0;

	if (pcq_is_set(pcq_correlation_id_setting))
		return pcq_correlation_id_setting;

	if (generated[0] == '\0' || for_lxid != PCQ_MY_LOCAL_XID ||
		for_statement != GetCurrentStatementStartTimestamp())
	{
		pcq_new_guid(generated);
		for_lxid = PCQ_MY_LOCAL_XID;
		for_statement = GetCurrentStatementStartTimestamp();
	}
	return generated;
}

void
pcq_request_init(PcqRequest *req, char *url, PcqSubject subject,
				 const char *subject_id)
{
	memset(req, 0, sizeof(*req));
	req->url = url;
	req->subject = subject;
	if (subject_id != NULL)
		strlcpy(req->subject_id, subject_id, sizeof(req->subject_id));
	pcq_new_guid(req->request_id);
}

/* ---- building a transfer ---- */

/* Refuse to send anything, secrets least of all, over plain HTTP. */
static void
check_url_allowed(const char *url)
{
	if (strncmp(url, "https://", 8) == 0)
		return;
	if (pcq_allow_http && strncmp(url, "http://", 7) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("pcqual refuses to send a request to \"%s\"", url),
			 errdetail("Only https:// URLs are used."),
			 errhint("Set pcqual.base_url and pcqual.authority to https:// URLs, or set pcqual.allow_http = on for a local emulator.")));
}

/* An option pcqual's safety depends on: refused means no request at all. */
static void
require_option_result(CURLcode rc, const char *name)
{
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("libcurl refused the option %s: %s", name, curl_easy_strerror(rc)),
				 errdetail("pcqual does not send a request without it."),
				 errhint("pcqual needs libcurl %s or later, built with TLS support.",
						 "7.43.0")));
}

/* An option that only makes things faster: go on without it. */
static void
optional_option_result(CURLcode rc, const char *name)
{
	if (rc != CURLE_OK)
		elog(DEBUG1, "pcqual: libcurl refused the option %s (%s); going on without it",
			 name, curl_easy_strerror(rc));
}

#define REQUIRE(easy, opt, value) \
	require_option_result(curl_easy_setopt((easy), (opt), (value)), #opt)
#define OPTIONAL(easy, opt, value) \
	optional_option_result(curl_easy_setopt((easy), (opt), (value)), #opt)

static void
append_header(PcqTransfer *transfer, const char *name, const char *value)
{
	char	   *line = psprintf("%s: %s", name, value);
	struct curl_slist *list = curl_slist_append(transfer->headers, line);

	explicit_bzero(line, strlen(line));
	pfree(line);
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building an HTTP request")));
	transfer->headers = list;
}

static void
build_headers(PcqRequest *req)
{
	PcqTransfer *transfer = req->transfer;

	if (req->bearer != NULL)
	{
		char	   *auth = psprintf("Bearer %s", req->bearer);

		PG_TRY();
		{
			append_header(transfer, "Authorization", auth);
		}
		PG_FINALLY();
		{
			explicit_bzero(auth, strlen(auth));
			pfree(auth);
		}
		PG_END_TRY();
	}
	append_header(transfer, "Accept", "application/json");
	strlcpy(req->correlation_id, pcq_correlation_id(), sizeof(req->correlation_id));
	append_header(transfer, "MS-CorrelationId", req->correlation_id);
	append_header(transfer, "MS-RequestId", req->request_id);
	append_header(transfer, "MS-PartnerCenter-Application", pcq_application_name);
	/* Partner Center's headers page marks it required; Azure AD has no use for it */
	if (req->subject != PCQ_SUBJECT_TOKEN)
		append_header(transfer, "MS-Contract-Version", "v1");
	if (req->continuation_token != NULL)
		append_header(transfer, "MS-ContinuationToken", req->continuation_token);
	if (req->post_body != NULL)
	{
		append_header(transfer, "Content-Type", req->post_content_type);
		append_header(transfer, "Expect", "");	/* no 100-continue round trip */
	}
}

/* Everything about a transfer that is the same for every request. */
static void
set_transfer_options(CURL *easy, PcqRequest *req)
{
	/* what pcqual's safety depends on */
	SET_PROTOCOLS(easy, pcq_allow_http);
	REQUIRE(easy, CURLOPT_FOLLOWLOCATION, 0L);
	REQUIRE(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	REQUIRE(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (pcq_is_set(pcq_ca_file))
		REQUIRE(easy, CURLOPT_CAINFO, pcq_ca_file);
	/* never https_proxy, http_proxy or ALL_PROXY from the environment */
	REQUIRE(easy, CURLOPT_PROXY, pcq_is_set(pcq_proxy) ? pcq_proxy : "");
	REQUIRE(easy, CURLOPT_NOPROXY, pcq_is_set(pcq_no_proxy) ? pcq_no_proxy : "");
	REQUIRE(easy, CURLOPT_URL, req->url);
	REQUIRE(easy, CURLOPT_HTTPHEADER, req->transfer->headers);
	REQUIRE(easy, CURLOPT_NOSIGNAL, 1L);
	REQUIRE(easy, CURLOPT_TIMEOUT_MS, (long) pcq_timeout_ms);
	REQUIRE(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) pcq_connect_timeout_ms);
	REQUIRE(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) pcq_max_response_size);
	REQUIRE(easy, CURLOPT_ERRORBUFFER, req->transfer->errbuf);
	REQUIRE(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	REQUIRE(easy, CURLOPT_OPENSOCKETDATA, req->transfer);
	REQUIRE(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	REQUIRE(easy, CURLOPT_WRITEFUNCTION, on_body);
	REQUIRE(easy, CURLOPT_WRITEDATA, req);
	REQUIRE(easy, CURLOPT_HEADERFUNCTION, on_header);
	REQUIRE(easy, CURLOPT_HEADERDATA, req);
	REQUIRE(easy, CURLOPT_PRIVATE, req);
	if (req->post_body != NULL)
	{
		/* not COPYPOSTFIELDS: curl would keep a copy of secrets we wipe */
		REQUIRE(easy, CURLOPT_POST, 1L);
		REQUIRE(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(req->post_body));
		REQUIRE(easy, CURLOPT_POSTFIELDS, req->post_body);
	}

	/* what only makes it faster or friendlier */
	OPTIONAL(easy, CURLOPT_USERAGENT, "pcqual/" PCQUAL_VERSION);
	OPTIONAL(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	OPTIONAL(easy, CURLOPT_PIPEWAIT, 1L);
	OPTIONAL(easy, CURLOPT_ACCEPT_ENCODING, "");
}

/* ---- the in-flight batch ---- */

typedef struct Batch
{
	PcqRequest **in_flight;		/* slots; NULL where free */
	int			nslots;
	int			nin_flight;
	List	   *waiting;		/* requests waiting to be retried */
	int			ceiling;		/* what the caller asked for */
	int			limit;			/* fewer while throttled or short of fds */
	TimestampTz limit_changed;
	PcqGovernorSeat *seat;		/* the cluster's governor, or NULL */
	TimestampTz paused_until;	/* the governor refused: a pause until then */
	bool		slot_refused;	/* the governor refused a slot this round */
} Batch;

static int
free_slot(Batch *batch)
{
	int			i;

	for (i = 0; i < batch->nslots; i++)
		if (batch->in_flight[i] == NULL)
			return i;
	elog(ERROR, "pcqual: no free transfer slot");
	return -1;					/* keep the compiler quiet */
}

/* Give back curl's resources of one request; safe to call more than once. */
static void
release_transfer(Batch *batch, PcqRequest *req)
{
	PcqTransfer *transfer = req->transfer;

	if (transfer == NULL)
		return;
	if (transfer->easy != NULL)
	{
		curl_multi_remove_handle(multi, transfer->easy);
		curl_easy_cleanup(transfer->easy);
	}
	if (transfer->headers != NULL)
		curl_slist_free_all(transfer->headers);
	if (transfer->governed)
	{
		transfer->governed = false;
		pcq_governor_release(batch->seat, &transfer->governor_slot,
							 transfer->slot_outcome, transfer->pause_ms);
	}
	if (batch->in_flight[transfer->slot] == req)
	{
		batch->in_flight[transfer->slot] = NULL;
		batch->nin_flight--;
	}
	pfree(transfer);
	req->transfer = NULL;
}

/*
 * The partner is paused longer than this session waits for a Retry-After
 * (pcqual.max_retry_wait): fail now, as a request told to wait that long
 * would, rather than sleep.
 */
static void
refuse_long_pause(TimestampTz paused_until)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(now, paused_until, pcq_max_retry_wait_ms))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("Partner Center is throttling this partner until %s",
					timestamptz_to_str(paused_until)),
			 errdetail("A 429 answer's Retry-After paused every session's requests to the partner; the pause lasts longer than pcqual.max_retry_wait (%d ms).",
					   pcq_max_retry_wait_ms),
			 errhint("Try again after the pause, or see pc_stat_governor; a superuser can end it with pc_governor_reset().")));
}

/*
 * A cluster slot for one more request, when the governor is on.  Refused,
 * the batch knows until when a pause lasts, if that is the reason.
 */
static bool
take_slot(Batch *batch, PcqSlot *slot)
{
	TimestampTz paused_until;

	if (batch->seat == NULL)
		return true;
	if (pcq_governor_acquire(batch->seat, slot, &paused_until))
		return true;
	batch->slot_refused = true;
	if (paused_until != 0)
	{
		refuse_long_pause(paused_until);
		batch->paused_until = paused_until;
	}
	return false;
}

static void
give_back_slot(Batch *batch, PcqSlot *slot)
{
	if (batch->seat != NULL)
		pcq_governor_release(batch->seat, slot, PCQ_SLOT_UNUSED, 0);
}

/*
 * Create a request's easy handle and hand it to the multi handle; it holds
 * the cluster slot taken for it.
 */
static void
start_request(Batch *batch, PcqRequest *req, const PcqSlot *slot)
{
	PcqTransfer *transfer;
	CURLMcode	mrc;

	check_url_allowed(req->url);
	req->outcome = PCQ_PENDING;
	req->status = 0;
	req->body = NULL;
	req->body_len = 0;
	req->content_type[0] = '\0';
	req->retry_after[0] = '\0';
	req->transport_error[0] = '\0';

	transfer = MemoryContextAllocZero(body_context, sizeof(PcqTransfer));
	if (batch->seat != NULL)
	{
		/* from here on, release_transfer gives the slot back */
		transfer->governed = true;
		transfer->governor_slot = *slot;
	}
	transfer->slot = free_slot(batch);
	req->transfer = transfer;
	batch->in_flight[transfer->slot] = req;
	batch->nin_flight++;

	transfer->easy = curl_easy_init();
	if (transfer->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create an HTTP request handle")));
	build_headers(req);
	set_transfer_options(transfer->easy, req);
	mrc = curl_multi_add_handle(multi, transfer->easy);
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request: %s",
						curl_multi_strerror(mrc))));
	req->attempts++;
}

static bool
is_certificate_failure(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION ||
		rc == CURLE_SSL_CERTPROBLEM ||
		rc == CURLE_SSL_CACERT_BADFILE ||
		rc == CURLE_SSL_ISSUER_ERROR ||
		rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

/* curl's own words for a failed transfer: its error buffer, else the code's. */
static void
record_transport_error(PcqRequest *req, CURLcode rc)
{
	PcqTransfer *transfer = req->transfer;
	size_t		len;

	if (transfer->fd_refused)
		strlcpy(req->transport_error,
				"no file descriptor to spare for a new connection (max_files_per_process)",
				sizeof(req->transport_error));
	else if (transfer->errbuf[0] != '\0')
		strlcpy(req->transport_error, transfer->errbuf, sizeof(req->transport_error));
	else
		strlcpy(req->transport_error, curl_easy_strerror(rc),
				sizeof(req->transport_error));
	len = strlen(req->transport_error);
	while (len > 0 && (req->transport_error[len - 1] == '\n' ||
					   req->transport_error[len - 1] == '.'))
		req->transport_error[--len] = '\0';
}

/* How long the attempt took, in milliseconds, by curl's clock. */
static double
attempt_latency_ms(CURL *easy)
{
#if LIBCURL_VERSION_NUM >= 0x073d00
	curl_off_t	us = 0;

	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);
	return (double) us / 1000.0;
#else
	double		secs = 0;

	curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &secs);
	return secs * 1000.0;
#endif
}

/* pc_stat and pc_stat_activity learn of one attempt that was sent. */
static void
count_attempt(const PcqRequest *req)
{
	pcq_stat_attempt(req, attempt_latency_ms(req->transfer->easy));
	if (req->outcome == PCQ_ANSWERED && req->status == 429)
		pcq_activity_throttled();
}

/*
 * Record how a transfer ended, then release its handle.  Returns true when
 * it failed only because no file descriptor was to be had: nothing was sent.
 */
static bool
finish_request(Batch *batch, PcqRequest *req, CURLcode rc)
{
	PcqTransfer *transfer = req->transfer;
	bool		fd_refused = transfer->fd_refused && rc != CURLE_OK;

	curl_easy_getinfo(transfer->easy, CURLINFO_RESPONSE_CODE, &req->status);
	if (req->outcome == PCQ_TOO_LARGE || rc == CURLE_FILESIZE_EXCEEDED)
		req->outcome = PCQ_TOO_LARGE;
	else if (rc == CURLE_OK)
		req->outcome = PCQ_ANSWERED;
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		req->outcome = PCQ_TIMED_OUT;
	else if (is_certificate_failure(rc))
		req->outcome = PCQ_TLS_REFUSED;
	else
		req->outcome = PCQ_UNREACHABLE;

	if (rc != CURLE_OK)
		record_transport_error(req, rc);
	if (req->body == NULL)
	{
		req->body = MemoryContextAllocZero(body_context, 1);
		req->body_len = 0;
	}
	else if (req->bearer != NULL)
		pcq_redact(req->body, req->body_len, req->bearer);	/* an echo */

	if (!fd_refused)
		count_attempt(req);
	if (req->outcome == PCQ_ANSWERED && req->status == 429)
	{
		transfer->slot_outcome = PCQ_SLOT_THROTTLED;
		transfer->pause_ms = pcq_throttle_pause_ms(req);
	}
	else if (req->outcome == PCQ_ANSWERED)
		transfer->slot_outcome = PCQ_SLOT_ANSWERED;
	else
		transfer->slot_outcome = fd_refused ? PCQ_SLOT_UNUSED : PCQ_SLOT_FAILED;
	release_transfer(batch, req);
	return fd_refused;
}

/* ---- waiting ---- */

/* How long we may sleep: until curl's timer or the next retry is due. */
static long
wait_budget_ms(TimestampTz next_retry)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = TimestampTzPlusMilliseconds(now, MAX_WAIT_MS);
	long		secs;
	int			usecs;

	if (timer_armed && timer_deadline < until)
		until = timer_deadline;
	if (next_retry != 0 && next_retry < until)
		until = next_retry;
	if (until <= now)
		return 0;
	TimestampDifference(now, until, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}

static void
check_socket_callback(void)
{
	if (socket_callback_errno != 0)
	{
		errno = socket_callback_errno;
		socket_callback_errno = 0;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not watch a connection's socket: %m")));
	}
}

/* Let curl act on the sockets epoll reports ready. */
static void
drive_ready_sockets(void)
{
	struct epoll_event events[MAX_SOCKET_EVENTS];
	int			n;
	int			i;
	int			running;

	n = epoll_wait(epoll_fd, events, lengthof(events), 0);
	if (n < 0 && errno != EINTR)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not wait for connections: %m")));
	for (i = 0; i < n; i++)
	{
		int			flags = 0;

		if (events[i].events & (EPOLLIN | EPOLLHUP))
			flags |= CURL_CSELECT_IN;
		if (events[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (events[i].events & EPOLLERR)
			flags |= CURL_CSELECT_ERR;
		curl_multi_socket_action(multi, events[i].data.fd, flags, &running);
	}
}

/*
 * What the batch waits for, for pg_stat_activity: its requests' answers
 * while any is in flight, else a governor slot or the partner's pause, else
 * the backoff before a retry.
 */
static PcqWaitKind
wait_kind(const Batch *batch)
{
	if (batch->nin_flight > 0)
		return PCQ_WAIT_HTTP;
	if (batch->slot_refused)
		return PCQ_WAIT_SLOT;
	if (batch->waiting != NIL)
		return PCQ_WAIT_RETRY;
	return PCQ_WAIT_HTTP;
}

/*
 * Sleep until a socket is ready, curl's timer fires, a retry is due or the
 * latch is set; then let curl do its work.
 */
static void
wait_and_drive(TimestampTz next_retry, PcqWaitKind kind)
{
	WaitEvent	events[3];
	int			nevents;
	int			i;
	int			running;

	nevents = WaitEventSetWait(wait_set, wait_budget_ms(next_retry), events,
							   lengthof(events), pcq_wait_event(kind));
	for (i = 0; i < nevents; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		else if (events[i].events & WL_SOCKET_READABLE)
			drive_ready_sockets();
	}
	if (timer_armed && timer_deadline <= GetCurrentTimestamp())
	{
		timer_armed = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	check_socket_callback();
}

/* ---- retries and throttling ---- */

/* DEBUG1 line per attempt: lets a DBA see throttling without a trace. */
static void
log_attempt(const PcqRequest *req, long retry_in_ms)
{
	const char *what = pcq_subject_is_customer(req->subject) ? req->subject_id :
		req->subject == PCQ_SUBJECT_TOKEN ? "token request" : "list request";

	if (req->outcome == PCQ_ANSWERED)
		elog(DEBUG1, "pcqual: %s attempt %d: HTTP %ld, %s%ld ms, MS-RequestId %s",
			 what, req->attempts, req->status,
			 retry_in_ms >= 0 ? "retry in " : "final, ", Max(retry_in_ms, 0),
			 req->request_id);
	else
		elog(DEBUG1, "pcqual: %s attempt %d: %s, %s%ld ms, MS-RequestId %s",
			 what, req->attempts, req->transport_error,
			 retry_in_ms >= 0 ? "retry in " : "final, ", Max(retry_in_ms, 0),
			 req->request_id);
}

/*
 * Start the retries that are due, while there is room.  Returns when the
 * earliest of those still waiting is due, or 0 when none waits.
 */
static TimestampTz
start_due_retries(Batch *batch)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz earliest = 0;
	bool		refused = false;
	ListCell   *lc;

	foreach(lc, batch->waiting)
	{
		PcqRequest *req = lfirst(lc);
		PcqSlot		slot;

		if (!refused && req->not_before <= now &&
			batch->nin_flight < batch->limit)
		{
			if (take_slot(batch, &slot))
			{
				batch->waiting = foreach_delete_current(batch->waiting, lc);
				start_request(batch, req, &slot);
				continue;
			}
			refused = true;		/* until a slot frees or the pause ends */
		}
		if (earliest == 0 || req->not_before < earliest)
			earliest = req->not_before;
	}
	return earliest;
}

/*
 * Without the governor, a 429 halves the call's own in-flight limit, so
 * that a throttled partner stops hammering the service; it then grows back
 * by one for every THROTTLE_RECOVERY_MS without a 429 (additive increase,
 * multiplicative decrease), as after a shortage of file descriptors.  With
 * the governor, the cluster's window does this for every backend at once.
 */
#define THROTTLE_RECOVERY_MS 1000

static void
adapt_in_flight_limit(Batch *batch, const PcqRequest *req)
{
	TimestampTz now = GetCurrentTimestamp();

	if (req->outcome == PCQ_ANSWERED && req->status == 429 && batch->seat == NULL)
	{
		if (batch->limit > 1)
			elog(DEBUG1, "pcqual: throttled, at most %d requests in flight",
				 Max(batch->limit / 2, 1));
		batch->limit = Max(batch->limit / 2, 1);
		batch->limit_changed = now;
	}
	else if (batch->limit < batch->ceiling &&
			 TimestampDifferenceExceeds(batch->limit_changed, now, THROTTLE_RECOVERY_MS))
	{
		batch->limit++;
		batch->limit_changed = now;
	}
}

/* Queue a finished request for a retry when retry.c says so. */
static bool
requeue_if_retryable(Batch *batch, PcqRequest *req)
{
	long		delay = pcq_retry_delay_ms(req);

	log_attempt(req, delay);
	if (delay < 0)
		return false;
	pcq_stat_retry(req, delay);
	pcq_activity_retry();
	req->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
	if (req->body != NULL)
		pfree(req->body);
	req->body = NULL;
	batch->waiting = lappend(batch->waiting, req);
	return true;
}

/*
 * No file descriptor was to be had for a new connection: a local limit
 * (max_files_per_process, shared with postgres_fdw and dblink), not a
 * failure of the service.  Keep no more in flight than now, and send the
 * request again, without counting an attempt, when one of them is done.
 * With nothing in flight, waiting would not help: then it fails.
 */
static void
wait_for_a_descriptor(Batch *batch, PcqRequest *req)
{
	req->attempts--;
	batch->limit = Max(batch->nin_flight, 1);
	batch->limit_changed = GetCurrentTimestamp();
	req->not_before = batch->limit_changed;
	if (req->body != NULL)
		pfree(req->body);
	req->body = NULL;
	batch->waiting = lappend(batch->waiting, req);
	elog(DEBUG1, "pcqual: no file descriptor for another connection, at most %d requests in flight",
		 batch->limit);
}

static bool
request_succeeded(const PcqRequest *req)
{
	return req->outcome == PCQ_ANSWERED && req->status >= 200 && req->status <= 299;
}

/*
 * A request failed for good: pc_stat keeps it as its endpoint's last
 * error, described as the caller will report it.
 */
static void
count_final_failure(const PcqRequest *req)
{
	static MemoryContext failure_context = NULL;
	MemoryContext oldcxt;
	PcqFailure	failure;

	if (failure_context == NULL)
		failure_context = AllocSetContextCreate(TopMemoryContext,
												"pcqual failure",
												ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(failure_context);
	pcq_describe_failure(req, &failure);
	pcq_stat_failure(req, &failure);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(failure_context);
}

/* Hand every finished transfer to its retry or to the caller. */
static void
collect_finished(Batch *batch, PcqRequestDone done, void *arg)
{
	CURLMsg    *msg;
	int			queued;

	while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
	{
		PcqRequest *req;
		CURLcode	rc = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		if (finish_request(batch, req, rc) && batch->nin_flight > 0)
		{
			wait_for_a_descriptor(batch, req);
			continue;
		}
		adapt_in_flight_limit(batch, req);
		if (requeue_if_retryable(batch, req))
			continue;
		if (!request_succeeded(req))
			count_final_failure(req);
		if (done != NULL)
			done(req, arg);
	}
}

/* Start new requests while there is room, and while few wait for retries. */
static bool
start_new_requests(Batch *batch, PcqNextRequest next, void *arg)
{
	while (batch->nin_flight < batch->limit &&
		   list_length(batch->waiting) < batch->ceiling)
	{
		PcqRequest *req;
		PcqSlot		slot;

		CHECK_FOR_INTERRUPTS();
		if (!take_slot(batch, &slot))
			return true;		/* the request is built once there is one */
		req = next(arg);
		if (req == NULL)
		{
			give_back_slot(batch, &slot);
			return false;
		}
		start_request(batch, req, &slot);
	}
	return true;
}

/*
 * pc_stat_activity: what is in flight, under which window, and what the
 * call waits for when nothing is.
 */
static void
show_progress(Batch *batch, TimestampTz next_retry)
{
	int			window = batch->limit;
	TimestampTz waiting_until = batch->paused_until;

	if (batch->seat != NULL)
		window = Min(window, pcq_governor_window(batch->seat));
	if (waiting_until == 0 && batch->nin_flight == 0)
		waiting_until = next_retry;
	pcq_activity_in_flight(batch->nin_flight, window);
	pcq_activity_waiting(waiting_until);
}

/* When to wake up at the latest if nothing happens: a retry, a pause's end. */
static TimestampTz
next_wake_up(Batch *batch, TimestampTz next_retry)
{
	TimestampTz wake = batch->nin_flight < batch->limit ? next_retry : 0;

	if (batch->paused_until != 0 && (wake == 0 || batch->paused_until < wake))
		wake = batch->paused_until;
	return wake;
}

/*
 * Run a batch of requests of one subject to completion: requests come from
 * next(arg) as slots free, at most max_in_flight at a time (fewer while the
 * service throttles, or the cluster's governor has no slot), each retried
 * as retry.c says.  When a request is final, done(req, arg) is
 * called: it may consume and free the request and its body, or raise an
 * ERROR, which abandons the requests still in flight cleanly.  Nothing here
 * judges the final HTTP status.  Bodies are allocated in the caller's
 * memory context.
 */
void
pcq_http_run(PcqSubject subject, PcqNextRequest next, PcqRequestDone done,
			 void *arg, int max_in_flight)
{
	MemoryContext volatile saved_body_context = body_context;
	Batch		batch = {0};
	volatile bool more = true;

	ensure_transport();
	batch.seat = pcq_governor_join(subject == PCQ_SUBJECT_TOKEN);
	batch.ceiling = batch.limit = Max(max_in_flight, 1);
	batch.nslots = batch.ceiling;
	batch.in_flight = palloc0(sizeof(PcqRequest *) * batch.nslots);
	body_context = CurrentMemoryContext;
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) pcq_max_idle_connections);

	PG_TRY();
	{
		for (;;)
		{
			TimestampTz next_retry;

			CHECK_FOR_INTERRUPTS();
			batch.paused_until = 0;
			batch.slot_refused = false;
			next_retry = start_due_retries(&batch);
			if (more)
				more = start_new_requests(&batch, next, arg);
			if (!more && batch.nin_flight == 0 && batch.waiting == NIL)
				break;
			show_progress(&batch, next_retry);
			wait_and_drive(next_wake_up(&batch, next_retry), wait_kind(&batch));
			collect_finished(&batch, done, arg);
		}
	}
	PG_FINALLY();
	{
		int			i;

		for (i = 0; i < batch.nslots; i++)
			if (batch.in_flight[i] != NULL)
				release_transfer(&batch, batch.in_flight[i]);
		pcq_governor_leave(batch.seat);
		pcq_activity_in_flight(0, 0);
		pcq_activity_waiting(0);
		body_context = saved_body_context;
	}
	PG_END_TRY();
	pfree(batch.in_flight);
	list_free(batch.waiting);
}

static PcqRequest *
next_of_one(void *arg)
{
	PcqRequest **req = (PcqRequest **) arg;
	PcqRequest *result = *req;

	*req = NULL;
	return result;
}

/* Run one request, with its retries; its final answer stays in req. */
void
pcq_http_run_one(PcqRequest *req)
{
	PcqRequest *pending = req;

	pcq_http_run(req->subject, next_of_one, NULL, &pending, 1);
}

/* ---- the backend's transport ---- */

/*
 * Drop every cached connection; returns how many were open.  The next
 * request builds a new multi handle.
 */
int
pcq_http_disconnect(void)
{
	int			closed = open_sockets;

	if (multi != NULL)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
		release_wakeup_fds();
	}
	timer_armed = false;
	return closed - open_sockets;
}

static void
transport_exit(int code, Datum arg)
{
	(void) pcq_http_disconnect();
	if (epoll_fd >= 0)
	{
		close(epoll_fd);
		ReleaseExternalFD();
		epoll_fd = -1;
	}
}

/*
 * Say once per backend when names are resolved synchronously: a slow DNS
 * server then delays cancellation until the lookup ends.
 */
static void
note_resolver(void)
{
	curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);

	if (!(info->features & CURL_VERSION_ASYNCHDNS))
		ereport(LOG,
				(errmsg("pcqual: libcurl %s has no asynchronous resolver", info->version),
				 errdetail("A cancel or statement_timeout waits for a name lookup in progress to end (at most pcqual.connect_timeout).")));
}

static void
create_wait_set(void)
{
	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not reserve a file descriptor for pcqual's connections"),
				 errhint("Raise max_files_per_process.")));
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
	{
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create an epoll set: %m")));
	}
	wait_set = pcq_create_session_wait_set(3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	/* a single-user backend has no postmaster to watch */
	if (IsUnderPostmaster)
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, epoll_fd, NULL, NULL);
}

/*
 * From 7.68.0 a multi handle owns a socket pair for curl_multi_wakeup(),
 * opened without our open-socket callback: count it too.
 */
#if LIBCURL_VERSION_NUM >= 0x074400
#define MULTI_WAKEUP_FDS 2
#else
#define MULTI_WAKEUP_FDS 0
#endif

static void
reserve_wakeup_fds(void)
{
	int			i;

	for (i = 0; i < MULTI_WAKEUP_FDS; i++)
		ReserveExternalFD();
}

static void
release_wakeup_fds(void)
{
	int			i;

	for (i = 0; i < MULTI_WAKEUP_FDS; i++)
		ReleaseExternalFD();
}

static void
create_multi(void)
{
	CURLM	   *m = curl_multi_init();

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create an HTTP transfer handle")));
	if (curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
		curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK)
	{
		curl_multi_cleanup(m);
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("libcurl refused pcqual's socket or timer callback")));
	}
	if (curl_multi_setopt(m, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX) != CURLM_OK)
		elog(DEBUG1, "pcqual: libcurl refused CURLMOPT_PIPELINING; no HTTP/2 multiplexing");
	multi = m;
	reserve_wakeup_fds();
}

/*
 * Initialise libcurl in this backend, the first time a request is made.
 * Never in _PG_init: curl must not be initialised in the postmaster and
 * inherited across fork().
 */
static void
ensure_transport(void)
{
	static bool initialised = false;

	if (!initialised)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize libcurl")));
		note_resolver();
		create_wait_set();
		on_proc_exit(transport_exit, (Datum) 0);
		initialised = true;
	}
	if (multi == NULL)
		create_multi();
}
