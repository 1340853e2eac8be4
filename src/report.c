/*-------------------------------------------------------------------------
 *
 * report.c
 *	  Turning a failed request into an ERROR (or, for bulk calls, a
 *	  WARNING) that says which customer, what the service answered, and
 *	  the ids Microsoft support asks for.
 *
 * | what the service did					| SQLSTATE |
 * | 400									| 22023	   |
 * | 401, 403, token endpoint refused		| 28000	   |
 * | 404									| P0002	   |
 * | 429, 5xx, other status; no answer		| 58000	   |
 * | body too large							| 54000	   |
 * | unparseable or wrongly shaped body		| 22032	   |
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pcqual.h"

static int
sqlstate_for_status(long status)
{
	switch (status)
	{
		case 400:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case 401:
		case 403:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case 404:
			return ERRCODE_NO_DATA_FOUND;
		default:
			return ERRCODE_SYSTEM_ERROR;
	}
}

static char *
subject(const PcqRequest *req)
{
	if (req->tenant == NULL)
		return pstrdup("the Azure AD token endpoint");
	return psprintf("customer %s", req->tenant);
}

static char *
request_ids(const PcqRequest *req)
{
	return psprintf("MS-CorrelationId: %s, MS-RequestId: %s.",
					req->correlation_id, req->request_id);
}

/* " after 4 attempts" when retries were made, else "". */
static char *
attempts_suffix(const PcqRequest *req)
{
	return req->attempts > 1 ? psprintf(" after %d attempts", req->attempts) : "";
}

/* PostgreSQL style: a message does not end with a period. */
static void
strip_final_period(char *text)
{
	size_t		len = strlen(text);

	if (len > 0 && text[len - 1] == '.')
		text[len - 1] = '\0';
}

static const char *
hint_for_status(const PcqRequest *req)
{
	switch (req->status)
	{
		case 401:
			return "Check that the token is for pcqual.resource and that the app is consented in Partner Center.";
		case 403:
			return "Check that the partner has a relationship with this customer and the app's role allows reading it.";
		case 404:
			return "Check that the tenant id is one of the partner's customers.";
		case 429:
			if (req->retry_refused_ms > 0)
				return psprintf("Partner Center asked to wait %ld seconds, longer than pcqual.max_retry_wait (%d ms): try again later.",
								(req->retry_refused_ms + 999) / 1000, pcq_max_retry_wait_ms);
			return req->retry_after[0] != '\0' ?
				psprintf("Partner Center is throttling requests and asked to wait %s seconds.", req->retry_after) :
				"Partner Center is throttling requests.";
		default:
			return NULL;
	}
}

static void
report_status(const PcqRequest *req, int elevel)
{
	char	   *code;
	char	   *text;
	char	   *detail = request_ids(req);
	const char *hint = hint_for_status(req);

	pcq_parse_error_body(req->body, req->body_len, &code, &text);
	if (text != NULL)
		strip_final_period(text);
	if (text == NULL && code == NULL && req->body_len > 0)
		detail = psprintf("The response body (%s, %zu bytes) is not shown. %s",
						  req->content_type[0] ? req->content_type : "no content type",
						  req->body_len, detail);

	ereport(elevel,
			(errcode(sqlstate_for_status(req->status)),
			 errmsg("Partner Center answered HTTP %ld for %s%s%s%s%s%s%s",
					req->status, subject(req), attempts_suffix(req),
					text || code ? ": " : "",
					text ? text : "",
					code ? (text ? " (code " : "code ") : "",
					code ? code : "",
					code && text ? ")" : ""),
			 errdetail("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * Report a request that did not end in a usable answer: no answer at all,
 * an answer too large, or an HTTP status other than 200.
 */
void
pcq_report_failure(const PcqRequest *req, int elevel)
{
	switch (req->outcome)
	{
		case PCQ_TIMED_OUT:
			ereport(elevel,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("request to Partner Center for %s timed out%s",
							subject(req), attempts_suffix(req)),
					 errdetail("%s. %s", req->transport_error, request_ids(req)),
					 errhint("pcqual.timeout is %d ms and pcqual.connect_timeout is %d ms.",
							 pcq_timeout_ms, pcq_connect_timeout_ms)));
			break;
		case PCQ_TOO_LARGE:
			ereport(elevel,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("Partner Center's answer for %s is larger than pcqual.max_response_size (%d bytes)",
							subject(req), pcq_max_response_size),
					 errdetail("%s", request_ids(req))));
			break;
		case PCQ_ANSWERED:
			report_status(req, elevel);
			break;
		default:
			ereport(elevel,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not get an answer from Partner Center for %s%s: %s",
							subject(req), attempts_suffix(req), req->transport_error),
					 errdetail("%s", request_ids(req))));
			break;
	}
}

/* Report a 200 answer whose body is not a qualifications collection. */
void
pcq_report_bad_body(const PcqRequest *req, const char *problem, int elevel)
{
	ereport(elevel,
			(errcode(ERRCODE_INVALID_JSON_TEXT),
			 errmsg("invalid qualifications answer from Partner Center for %s: %s",
					subject(req), problem),
			 errdetail("%s", request_ids(req))));
}
