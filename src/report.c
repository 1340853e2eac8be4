/*-------------------------------------------------------------------------
 *
 * report.c
 *	  Turning a failed request into an ERROR (or, for bulk calls, a
 *	  WARNING) that says which customer, what the service answered, and
 *	  the ids Microsoft support asks for.
 *
 * | what the service did					| SQLSTATE |
 * | 400									| 22023	   |
 * | 401, Azure AD's refusal (400/401 + error)	| 28000	   |
 * | 403									| 42501	   |
 * | 403, code 900329 (App-only refused)	| 28000	   |
 * | 404									| P0002	   |
 * | 409 to a create						| 23505	   |
 * | 3xx, 429, 5xx, other status; no answer	| 58000	   |
 * | (the token endpoint's as the API's)		|		   |
 * | untrusted TLS certificate				| 58000	   |
 * | body too large							| 54000	   |
 * | unparseable or wrongly shaped body		| 22032	   |
 *
 * A failure is first described (PcqFailure), then raised at the caller's
 * level or, for a scheduled sync, recorded as well: both see the same text.
 * Text from the service is made quotable (parse.c) before it is quoted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pcqual.h"

/* Partner Center's code for "this resource does not take App-only tokens". */
#define APP_ONLY_REFUSED_CODE "900329"

static bool
is_post(const PcqRequest *req)
{
	return req->method != NULL && strcmp(req->method, "POST") == 0;
}

static int
sqlstate_for_status(const PcqRequest *req)
{
	switch (req->status)
	{
		case 400:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case 401:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case 403:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case 404:
			return ERRCODE_NO_DATA_FOUND;
		case 409:
			return is_post(req) ? ERRCODE_UNIQUE_VIOLATION : ERRCODE_SYSTEM_ERROR;
		default:
			return ERRCODE_SYSTEM_ERROR;
	}
}

/* What the request was about, as a noun phrase for a message. */
static char *
subject(const PcqRequest *req)
{
	switch (req->subject)
	{
		case PCQ_SUBJECT_CUSTOMER:
			return psprintf(_("customer %s"), req->subject_id);
		case PCQ_SUBJECT_CUSTOMER_VALIDATIONS:
			return psprintf(_("the validations of customer %s"), req->subject_id);
		case PCQ_SUBJECT_VALIDATION_STATUS:
			return psprintf(_("the account validation status of customer %s"), req->subject_id);
		case PCQ_SUBJECT_TOKEN:
			return pstrdup(_("a token request"));
		case PCQ_SUBJECT_CUSTOMER_LIST:
			return pstrdup(_("the customer list"));
		case PCQ_SUBJECT_VALIDATIONS:
			return pstrdup(_("the validation codes"));
	}
	return pstrdup("?");
}

/* Who answered: Azure AD for tokens, Partner Center for the rest. */
static const char *
service(const PcqRequest *req)
{
	return req->subject == PCQ_SUBJECT_TOKEN ? "Azure AD" : "Partner Center";
}

/* The ids support asks for, and the attempts when there were retries. */
static char *
request_ids(const PcqRequest *req)
{
	if (req->attempts > 1)
		return psprintf(_("Tried %d times. MS-CorrelationId: %s, MS-RequestId: %s."),
						req->attempts, req->correlation_id, req->request_id);
	return psprintf(_("MS-CorrelationId: %s, MS-RequestId: %s."),
					req->correlation_id, req->request_id);
}

/* PostgreSQL style: a message does not end with a period. */
static void
strip_final_period(char *text)
{
	size_t		len = strlen(text);

	if (len > 0 && text[len - 1] == '.')
		text[len - 1] = '\0';
}

static char *
hint_for_throttling(const PcqRequest *req)
{
	if (req->retry_refused_ms > 0)
		return psprintf(_("%s asked to wait %ld seconds, longer than pcqual.max_retry_wait (%d ms): try again later."),
						service(req), (req->retry_refused_ms + 999) / 1000, pcq_max_retry_wait_ms);
	if (req->retry_after[0] != '\0')
		return psprintf(_("%s is throttling requests and asked to wait %s seconds."),
						service(req), pcq_quotable_text(req->retry_after, strlen(req->retry_after)));
	return psprintf(_("%s is throttling requests."), service(req));
}

static char *
hint_for_status(const PcqRequest *req, const char *code)
{
	if (req->status >= 300 && req->status < 400)
		return pstrdup(_("pcqual never follows redirects: check pcqual.base_url and pcqual.authority."));
	switch (req->status)
	{
		case 401:
			return pstrdup(_("Check that the token is for pcqual.resource and that the app is consented in Partner Center."));
		case 403:
			if (code != NULL && strcmp(code, APP_ONLY_REFUSED_CODE) == 0)
				return pstrdup(_("This request needs App+User credentials: set pcqual.refresh_token_file to a file holding a refresh token from an MFA sign-in."));
			return pstrdup(_("Check that the partner has a relationship with this customer and the app's role allows the request."));
		case 404:
			return pcq_subject_is_customer(req->subject) ?
				pstrdup(_("Check that the tenant id is one of the partner's customers.")) : NULL;
		case 409:
			return is_post(req) ?
				pstrdup(_("A customer cannot hold the same qualification twice, nor Education together with GovernmentCommunityCloud.")) : NULL;
		case 429:
			return hint_for_throttling(req);
		default:
			return NULL;
	}
}

/* An answer with an HTTP status other than 2xx. */
static void
describe_status(const PcqRequest *req, PcqFailure *f)
{
	char	   *code;
	char	   *text;
	char	   *what = subject(req);

	pcq_parse_error_body(req->body, req->body_len, &code, &text);
	if (text != NULL)
		strip_final_period(text);
	f->sqlstate = sqlstate_for_status(req);
	/* not a missing privilege: the kind of credentials is wrong */
	if (req->status == 403 && code != NULL && strcmp(code, APP_ONLY_REFUSED_CODE) == 0)
		f->sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	if (text != NULL && code != NULL)
		f->message = psprintf(_("%s answered HTTP %ld for %s: %s (code %s)"),
							  service(req), req->status, what, text, code);
	else if (text != NULL)
		f->message = psprintf(_("%s answered HTTP %ld for %s: %s"),
							  service(req), req->status, what, text);
	else if (code != NULL)
		f->message = psprintf(_("%s answered HTTP %ld for %s with code %s"),
							  service(req), req->status, what, code);
	else
		f->message = psprintf(_("%s answered HTTP %ld for %s"),
							  service(req), req->status, what);
	f->detail = request_ids(req);
	if (text == NULL && code == NULL && req->body_len > 0)
		f->detail = psprintf(_("The response body (%s, %zu bytes) is not shown. %s"),
							 req->content_type[0] ?
							 pcq_quotable_text(req->content_type, strlen(req->content_type)) :
							 _("no content type"),
							 req->body_len, f->detail);
	f->hint = hint_for_status(req, code);
}

/* The host of a URL, for a TLS message. */
static char *
url_host(const char *url)
{
	const char *start = strstr(url, "://");
	size_t		len;

	start = start ? start + 3 : url;
	len = strcspn(start, "/:?#");
	return pnstrdup(start, len);
}

/*
 * Describe a request that did not end in a usable answer: no answer at
 * all, an untrusted certificate, an answer too large, or an HTTP status
 * other than 2xx.
 */
void
pcq_describe_failure(const PcqRequest *req, PcqFailure *f)
{
	char	   *what = subject(req);

	memset(f, 0, sizeof(*f));
	switch (req->outcome)
	{
		case PCQ_ANSWERED:
			describe_status(req, f);
			return;
		case PCQ_TIMED_OUT:
			f->sqlstate = ERRCODE_SYSTEM_ERROR;
			f->message = psprintf(_("request to %s for %s timed out"),
								  service(req), what);
			f->hint = psprintf(_("pcqual.timeout is %d ms and pcqual.connect_timeout is %d ms."),
							   pcq_timeout_ms, pcq_connect_timeout_ms);
			break;
		case PCQ_TLS_REFUSED:
			f->sqlstate = ERRCODE_SYSTEM_ERROR;
			f->message = psprintf(_("could not verify the TLS certificate of %s for %s"),
								  url_host(req->url), what);
			f->hint = pstrdup(_("pcqual always verifies the server's certificate and host name; pcqual.ca_file names the CA certificates to trust."));
			break;
		case PCQ_TOO_LARGE:
			f->sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			f->message = psprintf(_("the answer of %s for %s is larger than pcqual.max_response_size (%d bytes)"),
								  service(req), what, pcq_max_response_size);
			f->detail = request_ids(req);
			return;
		default:
			f->sqlstate = ERRCODE_SYSTEM_ERROR;
			f->message = psprintf(_("could not get an answer from %s for %s"),
								  service(req), what);
			break;
	}
	f->detail = psprintf("%s. %s",
						 pcq_quotable_text(req->transport_error, strlen(req->transport_error)),
						 request_ids(req));
}

/* Describe a 2xx answer whose body is not what the request asks for. */
void
pcq_describe_bad_body(const PcqRequest *req, const PcqBodyProblem *problem,
					  PcqFailure *f)
{
	memset(f, 0, sizeof(*f));
	f->sqlstate = problem->sqlstate != 0 ? problem->sqlstate : ERRCODE_INVALID_JSON_TEXT;
	f->message = psprintf(_("invalid answer from %s for %s: %s"),
						  service(req), subject(req), problem->text);
	f->detail = request_ids(req);
}

void
pcq_raise(const PcqFailure *f, int elevel)
{
	ereport(elevel,
			(errcode(f->sqlstate),
			 errmsg_internal("%s", f->message),
			 f->detail ? errdetail_internal("%s", f->detail) : 0,
			 f->hint ? errhint("%s", f->hint) : 0));
}

void
pcq_report_failure(const PcqRequest *req, int elevel)
{
	PcqFailure	f;

	pcq_describe_failure(req, &f);
	pcq_raise(&f, elevel);
}

void
pcq_report_bad_body(const PcqRequest *req, const PcqBodyProblem *problem,
					int elevel)
{
	PcqFailure	f;

	pcq_describe_bad_body(req, problem, &f);
	pcq_raise(&f, elevel);
}

static const char *
hint_for_token_error(const char *error)
{
	if (error != NULL && strcmp(error, "invalid_client") == 0)
		return _("Check pcqual.client_id and the app's credential: the secret in pcqual.client_secret_file, or the certificate registered with the app.");
	if (error != NULL && strcmp(error, "invalid_grant") == 0)
		return _("The refresh token in pcqual.refresh_token_file is invalid or expired: write a new one to the file.");
	return _("Check pcqual.partner_tenant, pcqual.client_id and pcqual.resource.");
}

/*
 * Raise Azure AD's refusal of a token request, or say why its answer
 * cannot be used.  error and description come from the answer once it was
 * redacted of anything the request sent.
 */
void
pcq_report_token_refusal(const PcqRequest *req, const PcqTokenAnswer *answer,
						 const char *error, const char *description)
{
	if (req->status == 200 && answer->access_token_unusable)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("Azure AD's token answer cannot be used: the access token contains characters not allowed in an HTTP header"),
				 errdetail_internal("%s", request_ids(req))));
	if (req->status == 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("Azure AD answered HTTP 200 without an access token"),
				 errdetail_internal("%s", request_ids(req)),
				 errhint("Check pcqual.authority: it should be Azure AD's sign-in host.")));
	/*
	 * Only Azure AD's own refusal, a 400 or 401 naming its error, is about
	 * the credentials.  A 5xx or a 429 is an outage, a redirect or another
	 * status a wrong endpoint: reported as for any other request.
	 */
	if ((req->status != 400 && req->status != 401) || error == NULL)
		pcq_report_failure(req, ERROR);
	if (description != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("Azure AD refused pcqual's token request: HTTP %ld, %s",
						req->status, error),
				 errdetail_internal("%s", description),
				 errhint("%s", hint_for_token_error(error))));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("Azure AD refused pcqual's token request: HTTP %ld, %s",
					req->status, error),
			 errdetail_internal("%s", request_ids(req)),
			 errhint("%s", hint_for_token_error(error))));
}
