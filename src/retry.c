/*-------------------------------------------------------------------------
 *
 * retry.c
 *	  When a request is sent again, and after how long.
 *
 * Partner Center throttles per partner and per customer without publishing
 * numbers, and its gateways fail now and then.  The rules follow Microsoft's
 * SDK:
 *	 429					wait what Retry-After says (seconds or an HTTP
 *							date), or back off when it says nothing;
 *	 500, 502, 503, 504,	back off exponentially with full jitter,
 *	 no answer, timeout		base 500 ms (about 0.5 s, 1.5 s, 3.5 s in all);
 *	 anything else			never retried (400, 401, 403, 404, 409, a bad
 *							body, a body too large).
 * A Retry-After longer than pcqual.max_retry_wait is not waited for.
 *
 * Every attempt of one logical request keeps its MS-RequestId: it is the
 * service's idempotency key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "common/pg_prng.h"

#include "pcqual.h"

#define BACKOFF_BASE_MS 500

static bool
status_is_transient(long status)
{
	return status == 500 || status == 502 || status == 503 || status == 504;
}

/* Exponential backoff with full jitter: uniform in [0, base * 2^(n-1)]. */
static long
backoff_ms(int attempts)
{
	double		ceiling = BACKOFF_BASE_MS * (double) (1L << Min(attempts - 1, 20));

	ceiling = Min(ceiling, (double) pcq_max_retry_wait_ms);
	return (long) (pg_prng_double(&pg_global_prng_state) * ceiling);
}

/*
 * Retry-After in milliseconds: delta-seconds or an HTTP date.  -1 when the
 * header is absent or unreadable.
 */
static long
retry_after_ms(const char *value)
{
	const char *p;
	time_t		when;

	if (value[0] == '\0')
		return -1;
	for (p = value; *p >= '0' && *p <= '9'; p++)
		;
	if (*p == '\0' && p - value <= 9)
		return atol(value) * 1000;
	when = curl_getdate(value, NULL);
	if (when == (time_t) -1)
		return -1;
	return Max((long) (when - time(NULL)) * 1000, 0);
}

/*
 * After a request ended: the delay before sending it again, or -1 when it is
 * final.  Sets req->retry_refused_ms when the service asked for a wait
 * longer than pcqual.max_retry_wait, so the ERROR can say how long.
 */
long
pcq_retry_delay_ms(PcqRequest *req)
{
	long		delay;

	req->retry_refused_ms = 0;
	if (req->outcome == PCQ_ANSWERED && req->status == 429)
	{
		delay = retry_after_ms(req->retry_after);
		if (delay > pcq_max_retry_wait_ms)
		{
			req->retry_refused_ms = delay;
			return -1;
		}
		if (delay < 0)
			delay = backoff_ms(req->attempts);
	}
	else if ((req->outcome == PCQ_ANSWERED && status_is_transient(req->status)) ||
			 req->outcome == PCQ_UNREACHABLE || req->outcome == PCQ_TIMED_OUT)
		delay = backoff_ms(req->attempts);
	else
		return -1;

	if (req->attempts > pcq_max_retries)
		return -1;
	return delay;
}

/*
 * How long a 429 asks every backend of the partner to wait: Retry-After,
 * or a back-off when it says nothing, at most pcqual.max_retry_wait (a
 * longer wait fails the request at once instead).
 */
long
pcq_throttle_pause_ms(const PcqRequest *req)
{
	long		pause = retry_after_ms(req->retry_after);

	if (pause < 0)
		pause = backoff_ms(req->attempts);
	return Min(pause, (long) pcq_max_retry_wait_ms);
}
