/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP transport: libcurl's multi interface, driven by PostgreSQL's
 *	  own wait machinery.
 *
 * Every request pcqual makes, a token request as much as one customer's
 * qualifications or a batch of thousands, goes through pcq_http_run().  One
 * multi handle lives for the whole backend so that its connection cache
 * keeps connections (and HTTP/2 sessions) alive between statements.
 *
 * curl tells us which sockets to watch (on_socket) and when to call it back
 * (on_timer); we wait on those sockets and on the process latch in a
 * WaitEventSet, so that a cancel or statement_timeout interrupts a request
 * at once and surfaces as an ordinary query_canceled ERROR.  Whatever way
 * pcq_http_run() is left, ERROR included, every easy handle, header list
 * and the wait set are released before the error propagates.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "pcqual.h"

/* Sockets curl asked us to watch, and for what (CURL_POLL_*). */
typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;
} WatchedSocket;

/* More than pcqual's largest concurrency allows, with room to reconnect. */
#define MAX_WATCHED_SOCKETS 1024

/* Longest we sleep without looking at curl's state again. */
#define MAX_WAIT_MS 1000

static CURLM *multi = NULL;
static WatchedSocket watched[MAX_WATCHED_SOCKETS];
static int	nwatched = 0;
static bool watched_changed = false;
static bool timer_armed = false;
static TimestampTz timer_deadline = 0;

/* Where response bodies are allocated during pcq_http_run(). */
static MemoryContext body_context = NULL;

static void ensure_transport(void);

/*
 * curl's socket callback: remember what to wait for on each socket.  It runs
 * inside curl, so it must not ereport.
 */
static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nwatched; i++)
		if (watched[i].fd == fd)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < nwatched)
			watched[i] = watched[--nwatched];
	}
	else
	{
		if (i == nwatched)
		{
			if (nwatched == MAX_WATCHED_SOCKETS)
				return -1;
			watched[nwatched++].fd = fd;
		}
		watched[i].what = what;
	}
	watched_changed = true;
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
 * buffer grows without ereport (we are inside curl): a failure makes curl
 * abort the transfer instead.
 */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	PcqRequest *req = (PcqRequest *) userp;
	size_t		n = size * nmemb;

	if (req->body_len + n > (size_t) pcq_max_response_size)
	{
		req->outcome = PCQ_TOO_LARGE;
		return 0;
	}
	if (req->body_len + n + 1 > req->body_cap)
	{
		size_t		cap = Max(req->body_cap * 2, Max(req->body_len + n + 1, 8192));
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
		req->body_cap = cap;
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

	if (pcq_correlation_id_setting != NULL && pcq_correlation_id_setting[0] != '\0')
		return pcq_correlation_id_setting;

	if (generated[0] == '\0' || for_lxid != MyProc->lxid ||
		for_statement != GetCurrentStatementStartTimestamp())
	{
		pcq_new_guid(generated);
		for_lxid = MyProc->lxid;
		for_statement = GetCurrentStatementStartTimestamp();
	}
	return generated;
}

void
pcq_request_init(PcqRequest *req, char *url, const char *tenant)
{
	memset(req, 0, sizeof(*req));
	req->url = url;
	req->tenant = tenant;
	pcq_new_guid(req->request_id);
}

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

static void
append_header(PcqRequest *req, const char *name, const char *value)
{
	char	   *line = psprintf("%s: %s", name, value);
	struct curl_slist *list = curl_slist_append(req->headers, line);

	pfree(line);
	if (list == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building an HTTP request")));
	req->headers = list;
}

static void
build_headers(PcqRequest *req)
{
	if (req->bearer != NULL)
	{
		char	   *auth = psprintf("Bearer %s", req->bearer);

		append_header(req, "Authorization", auth);
		pfree(auth);
	}
	append_header(req, "Accept", "application/json");
	strlcpy(req->correlation_id, pcq_correlation_id(), sizeof(req->correlation_id));
	append_header(req, "MS-CorrelationId", req->correlation_id);
	append_header(req, "MS-RequestId", req->request_id);
	append_header(req, "MS-PartnerCenter-Application", pcq_application_name);
	if (req->form_body != NULL)
		append_header(req, "Expect", "");	/* no 100-continue round trip */
}

/* Create the easy handle of one request and hand it to the multi handle. */
static void
start_request(PcqRequest *req)
{
	CURL	   *easy;
	CURLMcode	mrc;

	req->outcome = PCQ_PENDING;
	req->status = 0;
	req->body = NULL;
	req->body_len = 0;
	req->body_cap = 0;
	req->content_type[0] = '\0';
	req->retry_after[0] = '\0';
	req->transport_error[0] = '\0';

	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create an HTTP request handle")));
	req->easy = easy;
	build_headers(req);

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, pcq_allow_http ? "http,https" : "https");
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, (struct curl_slist *) req->headers);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "pcqual/" PCQUAL_VERSION);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) pcq_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) pcq_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (pcq_ca_file != NULL && pcq_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, pcq_ca_file);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) pcq_max_response_size);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	if (req->form_body != NULL)
		curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, req->form_body);

	mrc = curl_multi_add_handle(multi, easy);
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP request: %s",
						curl_multi_strerror(mrc))));
	req->attempts++;
}

/* Give back curl's resources of one request; safe to call more than once. */
static void
release_request(PcqRequest *req)
{
	if (req->easy != NULL)
	{
		curl_multi_remove_handle(multi, (CURL *) req->easy);
		curl_easy_cleanup((CURL *) req->easy);
		req->easy = NULL;
	}
	if (req->headers != NULL)
	{
		curl_slist_free_all((struct curl_slist *) req->headers);
		req->headers = NULL;
	}
}

/* Record how a transfer ended, then release its handle. */
static void
finish_request(PcqRequest *req, CURLcode rc)
{
	CURL	   *easy = (CURL *) req->easy;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
	if (req->outcome == PCQ_TOO_LARGE || rc == CURLE_FILESIZE_EXCEEDED)
		req->outcome = PCQ_TOO_LARGE;
	else if (rc == CURLE_OK)
		req->outcome = PCQ_ANSWERED;
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		req->outcome = PCQ_TIMED_OUT;
	else
		req->outcome = PCQ_UNREACHABLE;

	if (rc != CURLE_OK)
		strlcpy(req->transport_error, curl_easy_strerror(rc),
				sizeof(req->transport_error));
	if (req->body == NULL)
	{
		req->body = MemoryContextAllocZero(body_context, 1);
		req->body_len = 0;
	}
	release_request(req);
}

static WaitEventSet *
build_wait_set(void)
{
	WaitEventSet *set = CreateWaitEventSet(CurrentMemoryContext, nwatched + 2);
	int			i;

	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	/* a single-user backend has no postmaster to watch */
	if (IsUnderPostmaster)
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nwatched; i++)
	{
		uint32		events = 0;

		if (watched[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (watched[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(set, events, watched[i].fd, NULL, NULL);
	}
	watched_changed = false;
	return set;
}

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

/*
 * Sleep until a socket is ready, curl's timer fires, a retry is due or the
 * latch is set; then let curl do its work.
 */
static void
wait_and_drive(WaitEventSet *set, TimestampTz next_retry)
{
	WaitEvent	events[64];
	int			nevents;
	int			running;
	int			i;

	nevents = WaitEventSetWait(set, wait_budget_ms(next_retry), events,
							   lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags != 0)
			curl_multi_socket_action(multi, events[i].fd, flags, &running);
	}
	if (timer_armed && timer_deadline <= GetCurrentTimestamp())
	{
		timer_armed = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

/* DEBUG1 line per attempt: lets a DBA see throttling without a trace. */
static void
log_attempt(const PcqRequest *req, long retry_in_ms)
{
	char		retry[64] = "final";

	if (retry_in_ms >= 0)
		snprintf(retry, sizeof(retry), "retry in %ld ms", retry_in_ms);
	if (req->outcome == PCQ_ANSWERED)
		elog(DEBUG1, "pcqual: %s attempt %d: HTTP %ld, %s, MS-RequestId %s",
			 req->tenant ? req->tenant : "token request", req->attempts,
			 req->status, retry, req->request_id);
	else
		elog(DEBUG1, "pcqual: %s attempt %d: %s, %s, MS-RequestId %s",
			 req->tenant ? req->tenant : "token request", req->attempts,
			 req->transport_error, retry, req->request_id);
}

/*
 * Start the retries that are due, while there is room.  Returns when the
 * earliest of those still waiting is due, or 0 when none waits.
 */
static TimestampTz
start_due_retries(PcqRequest **waiting, int *nwaiting, int *in_flight,
				  int max_in_flight)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz earliest = 0;
	int			i = 0;

	while (i < *nwaiting)
	{
		PcqRequest *req = waiting[i];

		if (req->not_before <= now && *in_flight < max_in_flight)
		{
			waiting[i] = waiting[--(*nwaiting)];
			start_request(req);
			(*in_flight)++;
			continue;
		}
		if (earliest == 0 || req->not_before < earliest)
			earliest = req->not_before;
		i++;
	}
	return earliest;
}

/*
 * The in-flight limit of a batch.  A 429 halves it, so that a throttled
 * partner stops hammering the service; it then grows back by one for every
 * THROTTLE_RECOVERY_MS without a 429 (additive increase, multiplicative
 * decrease).
 */
#define THROTTLE_RECOVERY_MS 1000

typedef struct InFlightLimit
{
	int			ceiling;		/* what the caller asked for */
	int			current;
	TimestampTz last_change;
} InFlightLimit;

static void
adapt_in_flight_limit(InFlightLimit *limit, const PcqRequest *req)
{
	TimestampTz now = GetCurrentTimestamp();

	if (req->outcome == PCQ_ANSWERED && req->status == 429)
	{
		if (limit->current > 1)
			elog(DEBUG1, "pcqual: throttled, at most %d requests in flight",
				 Max(limit->current / 2, 1));
		limit->current = Max(limit->current / 2, 1);
		limit->last_change = now;
	}
	else if (limit->current < limit->ceiling &&
			 TimestampDifferenceExceeds(limit->last_change, now, THROTTLE_RECOVERY_MS))
	{
		limit->current++;
		limit->last_change = now;
	}
}

/*
 * A transfer ended: record it, and either queue it for a retry or leave it
 * final.  Returns true when it was queued.
 */
static bool
requeue_if_retryable(PcqRequest *req, PcqRequest **waiting, int *nwaiting)
{
	long		delay = pcq_retry_delay_ms(req);

	log_attempt(req, delay);
	if (delay < 0)
		return false;
	req->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
	if (req->body != NULL)
		pfree(req->body);
	req->body = NULL;
	waiting[(*nwaiting)++] = req;
	return true;
}

/*
 * Run a batch of requests to completion, at most max_in_flight at a time
 * (fewer while the service throttles), retrying each as retry.c says.  When
 * a request is final, done(req, done_arg) is called: it may consume and free
 * the body, or raise an ERROR, which abandons the requests still in flight
 * cleanly.  Nothing here judges the final HTTP status.  Bodies are allocated
 * in the caller's context.
 */
void
pcq_http_run(PcqRequest **reqs, int nreqs, int max_in_flight,
			 PcqRequestDone done, void *done_arg)
{
	WaitEventSet *volatile set = NULL;
	MemoryContext volatile saved_body_context = body_context;
	PcqRequest **waiting;
	int			nwaiting = 0;
	int			next = 0;
	int			in_flight = 0;
	InFlightLimit limit;
	int			i;

	for (i = 0; i < nreqs; i++)
		check_url_allowed(reqs[i]->url);
	ensure_transport();
	waiting = palloc(sizeof(PcqRequest *) * Max(nreqs, 1));
	limit.ceiling = limit.current = Max(max_in_flight, 1);
	limit.last_change = 0;
	body_context = CurrentMemoryContext;

	PG_TRY();
	{
		while (next < nreqs || in_flight > 0 || nwaiting > 0)
		{
			TimestampTz next_retry;
			CURLMsg    *msg;
			int			queued;

			CHECK_FOR_INTERRUPTS();
			next_retry = start_due_retries(waiting, &nwaiting, &in_flight,
										   limit.current);
			while (next < nreqs && in_flight < limit.current)
			{
				start_request(reqs[next++]);
				in_flight++;
			}
			if (set == NULL || watched_changed)
			{
				if (set != NULL)
					FreeWaitEventSet(set);
				set = NULL;
				set = build_wait_set();
			}
			wait_and_drive(set, in_flight < limit.current ? next_retry : 0);

			while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
			{
				PcqRequest *req;

				if (msg->msg != CURLMSG_DONE)
					continue;
				curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
				finish_request(req, msg->data.result);
				in_flight--;
				adapt_in_flight_limit(&limit, req);
				if (!requeue_if_retryable(req, waiting, &nwaiting) && done != NULL)
					done(req, done_arg);
			}
		}
	}
	PG_FINALLY();
	{
		for (i = 0; i < nreqs; i++)
			release_request(reqs[i]);
		if (set != NULL)
			FreeWaitEventSet(set);
		body_context = saved_body_context;
	}
	PG_END_TRY();
	pfree(waiting);
}

/*
 * Initialise libcurl in this backend, the first time a request is made.
 * Never in _PG_init: curl must not be initialised in the postmaster and
 * inherited across fork().
 */
static void
ensure_transport(void)
{
	if (multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create an HTTP transfer handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) (MAX_WATCHED_SOCKETS / 2));
}
