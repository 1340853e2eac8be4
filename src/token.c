/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Azure AD access tokens for Partner Center, one cached per backend.
 *
 * Three modes, chosen by which settings are present:
 *	 pcqual.access_token	an externally managed token, sent as is;
 *	 pcqual.refresh_token	App+User: grant_type=refresh_token;
 *	 otherwise				App-only: grant_type=client_credentials.
 *
 * A token is reused until five minutes before it expires, and only while
 * the settings it was obtained with are unchanged.  Secrets are never put
 * in a message, and the copies we keep are wiped before they are freed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pcqual.h"

/* Stop using a token this long before the service says it expires. */
#define TOKEN_EXPIRY_MARGIN_SECS 300

static char *cached_token = NULL;
static TimestampTz cached_until = 0;
static char *cached_for = NULL;	/* the settings it was obtained with */

static bool
is_set(const char *setting)
{
	return setting != NULL && setting[0] != '\0';
}

static void
wipe_and_free(char **p)
{
	if (*p != NULL)
	{
		explicit_bzero(*p, strlen(*p));
		pfree(*p);
		*p = NULL;
	}
}

void
pcq_forget_access_token(void)
{
	wipe_and_free(&cached_token);
	wipe_and_free(&cached_for);
	cached_until = 0;
}

/* Everything a token depends on, in one string to compare. */
static char *
settings_fingerprint(void)
{
	return psprintf("%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s",
					pcq_authority(), pcq_partner_tenant, pcq_client_id,
					pcq_client_secret, pcq_refresh_token, pcq_resource);
}

static void
require_credentials(void)
{
	bool		app_user = is_set(pcq_refresh_token);

	if (is_set(pcq_partner_tenant) &&
		(app_user || (is_set(pcq_client_id) && is_set(pcq_client_secret))))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("pcqual has no credentials for Partner Center"),
			 errdetail(app_user ? "App+User authentication needs pcqual.partner_tenant."
					   : "App-only authentication needs pcqual.partner_tenant, pcqual.client_id and pcqual.client_secret."),
			 errhint("Set pcqual.partner_tenant, pcqual.client_id and pcqual.client_secret (App-only), "
					 "or also pcqual.refresh_token (App+User), or set pcqual.access_token to a token you manage.")));
}

/* Percent-encoding of everything but RFC 3986's unreserved characters. */
static void
append_escaped(StringInfo buf, const char *value)
{
	const unsigned char *p;

	for (p = (const unsigned char *) value; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
			appendStringInfoChar(buf, (char) *p);
		else
			appendStringInfo(buf, "%%%02X", *p);
	}
}

/* One name=value pair of an application/x-www-form-urlencoded body. */
static void
append_form_value(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	appendStringInfo(buf, "%s=", name);
	append_escaped(buf, value);
}

static char *
token_request_form(void)
{
	StringInfoData form;

	initStringInfo(&form);
	if (is_set(pcq_refresh_token))
	{
		append_form_value(&form, "grant_type", "refresh_token");
		append_form_value(&form, "refresh_token", pcq_refresh_token);
		if (is_set(pcq_client_id))
			append_form_value(&form, "client_id", pcq_client_id);
		if (is_set(pcq_client_secret))
			append_form_value(&form, "client_secret", pcq_client_secret);
		append_form_value(&form, "resource", pcq_resource);
		append_form_value(&form, "scope", "openid");
	}
	else
	{
		append_form_value(&form, "grant_type", "client_credentials");
		append_form_value(&form, "client_id", pcq_client_id);
		append_form_value(&form, "client_secret", pcq_client_secret);
		append_form_value(&form, "resource", pcq_resource);
	}
	return form.data;
}

static char *
token_endpoint_url(void)
{
	StringInfoData url;
	const char *authority = pcq_authority();
	size_t		len = strlen(authority);

	while (len > 0 && authority[len - 1] == '/')
		len--;
	initStringInfo(&url);
	appendBinaryStringInfo(&url, authority, len);
	appendStringInfoChar(&url, '/');
	append_escaped(&url, pcq_partner_tenant);
	appendStringInfoString(&url, "/oauth2/token");
	return url.data;
}

static void
report_token_refusal(const PcqRequest *req, const PcqTokenAnswer *answer)
{
	const char *hint;

	if (answer->error != NULL && strcmp(answer->error, "invalid_client") == 0)
		hint = "Check pcqual.client_id and pcqual.client_secret.";
	else if (answer->error != NULL && strcmp(answer->error, "invalid_grant") == 0)
		hint = "pcqual.refresh_token is invalid or expired: obtain a new one.";
	else
		hint = "Check pcqual.partner_tenant, pcqual.client_id and pcqual.resource.";

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("Azure AD refused pcqual's token request: HTTP %ld%s%s",
					req->status,
					answer->error ? ", " : "",
					answer->error ? answer->error : ""),
			 answer->error_description ?
			 errdetail("%s", answer->error_description) : 0,
			 errhint("%s", hint)));
}

/* Ask the token endpoint for a new token and cache it. */
static void
fetch_token(void)
{
	PcqRequest	req;
	PcqRequest *batch[1] = {&req};
	PcqTokenAnswer answer;
	TimestampTz now;
	char	   *fingerprint;

	pcq_request_init(&req, token_endpoint_url(), NULL);
	req.form_body = token_request_form();
	PG_TRY();
	{
		pcq_http_run(batch, 1, 1, NULL, NULL);
	}
	PG_FINALLY();
	{
		explicit_bzero(req.form_body, strlen(req.form_body));
	}
	PG_END_TRY();

	if (req.outcome != PCQ_ANSWERED)
		pcq_report_failure(&req, ERROR);
	pcq_parse_token_answer(req.body, req.body_len, &answer);
	if (req.status != 200 || answer.access_token == NULL)
		report_token_refusal(&req, &answer);

	now = GetCurrentTimestamp();
	fingerprint = settings_fingerprint();
	cached_token = MemoryContextStrdup(TopMemoryContext, answer.access_token);
	cached_for = MemoryContextStrdup(TopMemoryContext, fingerprint);
	wipe_and_free(&fingerprint);
	cached_until = now;
	if (answer.expires_in > TOKEN_EXPIRY_MARGIN_SECS)
		cached_until = TimestampTzPlusMilliseconds(now,
												   (int64) ((answer.expires_in - TOKEN_EXPIRY_MARGIN_SECS) * 1000));
	explicit_bzero(answer.access_token, strlen(answer.access_token));
	explicit_bzero(req.body, req.body_len);
}

/*
 * The access token to send.  *from_cache tells the caller whether a 401 may
 * be cured by forgetting the token and asking again.
 */
const char *
pcq_access_token(bool *from_cache)
{
	char	   *fingerprint;
	bool		usable;

	*from_cache = false;
	if (is_set(pcq_static_access_token))
		return pcq_static_access_token;

	require_credentials();
	fingerprint = settings_fingerprint();
	usable = cached_token != NULL && strcmp(cached_for, fingerprint) == 0 &&
		GetCurrentTimestamp() < cached_until;
	wipe_and_free(&fingerprint);

	if (usable)
	{
		*from_cache = true;
		return cached_token;
	}
	pcq_forget_access_token();
	fetch_token();
	return cached_token;
}
