/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  What pcqual has done since the last pc_stat_reset() or server start:
 *	  the counters behind the pc_stat view, one row per endpoint.
 *
 * Every HTTP attempt is counted once, when it ends, by the status class it
 * got (or as a transport failure), with its latency in a logarithmic
 * histogram (four buckets per doubling from 0.1 ms, so percentiles are
 * within 10%), the body bytes received, and whether it is sent again.  The
 * last final failure of each endpoint is kept with its SQLSTATE, its
 * message as pcqual reported it (the service's text already sanitised) and
 * its MS-RequestId.  Counters live in shared memory, each endpoint's behind
 * a spinlock held for a few instructions; they are not kept across a
 * restart.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_stat);
PG_FUNCTION_INFO_V1(pc_stat_reset);

/* Latency buckets: 0 below 0.1 ms, then four per doubling. */
#define LATENCY_BUCKETS 100
#define LATENCY_FLOOR_MS 0.1
#define BUCKETS_PER_DOUBLING 4.0

#define MAX_ERROR_MESSAGE 512

/* Status classes, in pc_stat's column order. */
typedef enum StatusClass
{
	CLASS_2XX,
	CLASS_401,
	CLASS_403,
	CLASS_404,
	CLASS_409,
	CLASS_429,
	CLASS_4XX_OTHER,
	CLASS_5XX,
	CLASS_OTHER,				/* 1xx, 3xx */
	CLASS_TRANSPORT,			/* no answer */
	NUM_CLASSES
} StatusClass;

typedef struct EndpointStats
{
	slock_t		mutex;
	int64		requests;
	int64		by_class[NUM_CLASSES];
	int64		retries;
	double		retry_wait_ms;
	int64		bytes_received;
	double		latency_sum_ms;
	double		latency_max_ms;
	int64		latency_hist[LATENCY_BUCKETS];
	int64		token_hits;
	TimestampTz last_error_at;
	int			last_error_sqlstate;
	int			last_error_encoding;
	char		last_error_message[MAX_ERROR_MESSAGE];
	char		last_error_request_id[PCQ_GUID_SIZE];
} EndpointStats;

typedef struct StatsShared
{
	slock_t		mutex;			/* stats_reset */
	TimestampTz stats_reset;
	EndpointStats endpoints[PCQ_NUM_ENDPOINTS];
} StatsShared;

static StatsShared *stats = NULL;

static const char *const endpoint_names[PCQ_NUM_ENDPOINTS] = {
	"token", "qualifications", "create_qualification", "customers",
	"validation_codes", "validation_status", "customer_validations"
};

Size
pcq_stats_shmem_size(void)
{
	return sizeof(StatsShared);
}

static void
clear_endpoint(EndpointStats *ep)
{
	/* everything but the mutex */
	memset((char *) ep + offsetof(EndpointStats, requests), 0,
		   sizeof(EndpointStats) - offsetof(EndpointStats, requests));
}

void
pcq_stats_shmem_init(void)
{
	bool		found;
	int			i;

	stats = ShmemInitStruct("pcqual statistics", sizeof(StatsShared), &found);
	if (found)
		return;
	SpinLockInit(&stats->mutex);
	stats->stats_reset = GetCurrentTimestamp();
	for (i = 0; i < PCQ_NUM_ENDPOINTS; i++)
	{
		SpinLockInit(&stats->endpoints[i].mutex);
		clear_endpoint(&stats->endpoints[i]);
	}
}

/* Which endpoint a request is for. */
PcqEndpoint
pcq_request_endpoint(const PcqRequest *req)
{
	switch (req->subject)
	{
		case PCQ_SUBJECT_TOKEN:
			return PCQ_ENDPOINT_TOKEN;
		case PCQ_SUBJECT_CUSTOMER:
			return req->method != NULL && strcmp(req->method, "POST") == 0 ?
				PCQ_ENDPOINT_CREATE : PCQ_ENDPOINT_QUALIFICATIONS;
		case PCQ_SUBJECT_CUSTOMER_LIST:
			return PCQ_ENDPOINT_CUSTOMERS;
		case PCQ_SUBJECT_VALIDATIONS:
			return PCQ_ENDPOINT_VALIDATION_CODES;
		case PCQ_SUBJECT_VALIDATION_STATUS:
			return PCQ_ENDPOINT_VALIDATION_STATUS;
		case PCQ_SUBJECT_CUSTOMER_VALIDATIONS:
			return PCQ_ENDPOINT_CUSTOMER_VALIDATIONS;
	}
	return PCQ_ENDPOINT_QUALIFICATIONS; /* keep the compiler quiet */
}

static StatusClass
status_class(const PcqRequest *req)
{
	long		s = req->status;

	if (req->outcome != PCQ_ANSWERED && req->outcome != PCQ_TOO_LARGE)
		return CLASS_TRANSPORT;
	if (s == 0)
		return CLASS_TRANSPORT;
	if (s >= 200 && s <= 299)
		return CLASS_2XX;
	switch (s)
	{
		case 401:
			return CLASS_401;
		case 403:
			return CLASS_403;
		case 404:
			return CLASS_404;
		case 409:
			return CLASS_409;
		case 429:
			return CLASS_429;
	}
	if (s >= 400 && s <= 499)
		return CLASS_4XX_OTHER;
	if (s >= 500 && s <= 599)
		return CLASS_5XX;
	return CLASS_OTHER;
}

static int
latency_bucket(double ms)
{
	double		b;

	if (!(ms >= LATENCY_FLOOR_MS))
		return 0;
	b = floor(log2(ms / LATENCY_FLOOR_MS) * BUCKETS_PER_DOUBLING) + 1;
	return (int) Min(b, (double) (LATENCY_BUCKETS - 1));
}

static double
bucket_lower_ms(int b)
{
	if (b == 0)
		return 0.0;
	return LATENCY_FLOOR_MS * pow(2.0, (b - 1) / BUCKETS_PER_DOUBLING);
}

/* One attempt has ended (answered, or not). */
void
pcq_stat_attempt(const PcqRequest *req, double latency_ms)
{
	EndpointStats *ep;
	StatusClass class = status_class(req);
	int			bucket = latency_bucket(latency_ms);

	if (stats == NULL)
		return;
	ep = &stats->endpoints[pcq_request_endpoint(req)];
	SpinLockAcquire(&ep->mutex);
	ep->requests++;
	ep->by_class[class]++;
	ep->bytes_received += (int64) req->body_len;
	ep->latency_sum_ms += latency_ms;
	if (latency_ms > ep->latency_max_ms)
		ep->latency_max_ms = latency_ms;
	ep->latency_hist[bucket]++;
	SpinLockRelease(&ep->mutex);
}

/* The request is sent again after delay_ms. */
void
pcq_stat_retry(const PcqRequest *req, long delay_ms)
{
	EndpointStats *ep;

	if (stats == NULL)
		return;
	ep = &stats->endpoints[pcq_request_endpoint(req)];
	SpinLockAcquire(&ep->mutex);
	ep->retries++;
	ep->retry_wait_ms += (double) Max(delay_ms, 0);
	SpinLockRelease(&ep->mutex);
}

/* A call took a valid token from the cluster's cache. */
void
pcq_stat_token_hit(void)
{
	EndpointStats *ep;

	if (stats == NULL)
		return;
	ep = &stats->endpoints[PCQ_ENDPOINT_TOKEN];
	SpinLockAcquire(&ep->mutex);
	ep->token_hits++;
	SpinLockRelease(&ep->mutex);
}

/* A request failed for good: keep it as its endpoint's last error. */
void
pcq_stat_failure(const PcqRequest *req, const PcqFailure *failure)
{
	EndpointStats *ep;
	char		message[MAX_ERROR_MESSAGE];
	TimestampTz now = GetCurrentTimestamp();
	int			len;

	if (stats == NULL)
		return;
	len = pg_mbcliplen(failure->message, strlen(failure->message),
					   MAX_ERROR_MESSAGE - 1);
	memcpy(message, failure->message, len);
	message[len] = '\0';

	ep = &stats->endpoints[pcq_request_endpoint(req)];
	SpinLockAcquire(&ep->mutex);
	ep->last_error_at = now;
	ep->last_error_sqlstate = failure->sqlstate;
	ep->last_error_encoding = GetDatabaseEncoding();
	memcpy(ep->last_error_message, message, len + 1);
	strlcpy(ep->last_error_request_id, req->request_id, PCQ_GUID_SIZE);
	SpinLockRelease(&ep->mutex);
}

/*
 * A message kept by a backend of a database with another encoding: its
 * non-ASCII bytes cannot be trusted here, so they become '?'.
 */
static char *
message_for_this_database(const char *message, int encoding)
{
	char	   *copy = pstrdup(message);
	char	   *p;

	if (encoding == GetDatabaseEncoding())
		return copy;
	for (p = copy; *p; p++)
		if (IS_HIGHBIT_SET(*p))
			*p = '?';
	return copy;
}

/* The latency below which a fraction p of the attempts fell. */
static double
latency_percentile(const int64 *hist, int64 n, double max_ms, double p)
{
	double		rank = p * (double) n;
	int64		below = 0;
	int			b;

	for (b = 0; b < LATENCY_BUCKETS; b++)
	{
		if (hist[b] > 0 && (double) (below + hist[b]) >= rank)
		{
			double		lo = bucket_lower_ms(b);
			double		hi = b == LATENCY_BUCKETS - 1 ? max_ms : bucket_lower_ms(b + 1);
			double		frac = (rank - (double) below) / (double) hist[b];
			double		value;

			/* geometric within a bucket, as the buckets are */
			value = b == 0 ? hi * frac : lo * pow(hi / lo, frac);
			return Min(value, max_ms);
		}
		below += hist[b];
	}
	return max_ms;
}

#define PC_STAT_COLS 27

static void
put_stat_row(ReturnSetInfo *rsinfo, int i, const EndpointStats *ep,
			 TimestampTz stats_reset)
{
	Datum		values[PC_STAT_COLS];
	bool		nulls[PC_STAT_COLS];
	int			c = 0;
	int			k;

	memset(nulls, false, sizeof(nulls));
	values[c++] = CStringGetTextDatum(endpoint_names[i]);
	values[c++] = Int64GetDatum(ep->requests);
	for (k = 0; k < NUM_CLASSES; k++)
		values[c++] = Int64GetDatum(ep->by_class[k]);
	values[c++] = Int64GetDatum(ep->retries);
	values[c++] = Float8GetDatum(ep->retry_wait_ms);
	values[c++] = Int64GetDatum(ep->bytes_received);
	if (ep->requests > 0)
	{
		values[c++] = Float8GetDatum(ep->latency_sum_ms / (double) ep->requests);
		values[c++] = Float8GetDatum(ep->latency_max_ms);
		values[c++] = Float8GetDatum(latency_percentile(ep->latency_hist, ep->requests,
														ep->latency_max_ms, 0.50));
		values[c++] = Float8GetDatum(latency_percentile(ep->latency_hist, ep->requests,
														ep->latency_max_ms, 0.95));
		values[c++] = Float8GetDatum(latency_percentile(ep->latency_hist, ep->requests,
														ep->latency_max_ms, 0.99));
	}
	else
		for (k = 0; k < 5; k++)
			nulls[c++] = true;
	if (i == PCQ_ENDPOINT_TOKEN)
		values[c++] = Int64GetDatum(ep->token_hits);
	else
		nulls[c++] = true;
	if (ep->last_error_at != 0)
	{
		values[c++] = TimestampTzGetDatum(ep->last_error_at);
		values[c++] = CStringGetTextDatum(unpack_sql_state(ep->last_error_sqlstate));
		values[c++] = CStringGetTextDatum(message_for_this_database(ep->last_error_message,
																	ep->last_error_encoding));
		values[c++] = CStringGetTextDatum(ep->last_error_request_id);
	}
	else
		for (k = 0; k < 4; k++)
			nulls[c++] = true;
	values[c++] = TimestampTzGetDatum(stats_reset);
	Assert(c == PC_STAT_COLS);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* pc_stat(): the counters of every endpoint (the pc_stat view). */
Datum
pc_stat(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz stats_reset;
	int			i;

	pcq_require_shared_memory(stats != NULL);
	InitMaterializedSRF(fcinfo, 0);
	SpinLockAcquire(&stats->mutex);
	stats_reset = stats->stats_reset;
	SpinLockRelease(&stats->mutex);
	for (i = 0; i < PCQ_NUM_ENDPOINTS; i++)
	{
		EndpointStats copy;

		/* copied under the lock, turned into a row outside it */
		SpinLockAcquire(&stats->endpoints[i].mutex);
		memcpy(&copy, &stats->endpoints[i], sizeof(copy));
		SpinLockRelease(&stats->endpoints[i].mutex);
		put_stat_row(rsinfo, i, &copy, stats_reset);
	}
	return (Datum) 0;
}

/* pc_stat_reset(): every counter back to zero. */
Datum
pc_stat_reset(PG_FUNCTION_ARGS)
{
	int			i;

	pcq_require_shared_memory(stats != NULL);
	for (i = 0; i < PCQ_NUM_ENDPOINTS; i++)
	{
		SpinLockAcquire(&stats->endpoints[i].mutex);
		clear_endpoint(&stats->endpoints[i]);
		SpinLockRelease(&stats->endpoints[i].mutex);
	}
	SpinLockAcquire(&stats->mutex);
	stats->stats_reset = GetCurrentTimestamp();
	SpinLockRelease(&stats->mutex);
	PG_RETURN_VOID();
}
