/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Azure AD access tokens for Partner Center, one cached per backend.
 *
 * The mode is chosen by which credential files are set, first match wins:
 *	 pcqual.access_token_file		an externally managed token, sent as is,
 *									re-read when the file changes;
 *	 pcqual.refresh_token_file		App+User: grant_type=refresh_token, the
 *									rotated refresh token written back;
 *	 pcqual.client_certificate_file	App-only with a signed client assertion;
 *	 pcqual.client_secret_file		App-only with a client secret.
 *
 * A token is reused until five minutes before it expires, and only while
 * the settings it was obtained with are unchanged.  Secrets are read from
 * their files for one token request and wiped right after; they never
 * appear in a message, even when Azure AD's answer quotes them back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pcqual.h"

#define JWT_BEARER_ASSERTION "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

static char *cached_token = NULL;
static TimestampTz cached_until = 0;
static char *cached_for = NULL;	/* the settings it was obtained with */
static int64 static_token_stamp = 0;	/* pcqual.access_token_file's */

/* The secrets one token request sends, to wipe and to keep out of messages. */
typedef struct SentSecrets
{
	char	   *client_secret;
	char	   *client_assertion;
	char	   *refresh_token;
} SentSecrets;

PcqAuthMode
pcq_auth_mode(void)
{
	if (pcq_is_set(pcq_access_token_file))
		return PCQ_AUTH_STATIC_TOKEN;
	if (pcq_is_set(pcq_refresh_token_file))
		return PCQ_AUTH_APP_USER;
	if (pcq_is_set(pcq_client_certificate_file) || pcq_is_set(pcq_client_key_file))
		return PCQ_AUTH_APP_CERTIFICATE;
	if (pcq_is_set(pcq_client_secret_file))
		return PCQ_AUTH_APP_SECRET;
	return PCQ_AUTH_NONE;
}

void
pcq_forget_access_token(void)
{
	pcq_wipe_and_free(&cached_token);
	pcq_wipe_and_free(&cached_for);
	cached_until = 0;
	static_token_stamp = 0;
}

/* Everything a token depends on but the files' contents, to compare. */
static char *
settings_fingerprint(void)
{
	char	   *url = pcq_token_url();
	char	   *fingerprint;

	fingerprint = psprintf("%d\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s",
						   (int) pcq_auth_mode(), url, pcq_client_id, pcq_resource,
						   pcq_access_token_file, pcq_refresh_token_file,
						   pcq_client_certificate_file, pcq_client_key_file,
						   pcq_client_secret_file);
	pfree(url);
	return fingerprint;
}

static void
no_credentials(const char *missing)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("pcqual has no credentials for Partner Center"),
			 missing ? errdetail("%s is not set.", missing) :
			 errdetail("No credential file is set."),
			 errhint("A superuser sets pcqual.partner_tenant, pcqual.client_id and one of pcqual.client_secret_file, pcqual.client_certificate_file with pcqual.client_key_file (App-only), pcqual.refresh_token_file (App+User) or pcqual.access_token_file (a token you manage).")));
}

static void
require_credentials(PcqAuthMode mode)
{
	if (mode == PCQ_AUTH_NONE)
		no_credentials(NULL);
	if (!pcq_is_set(pcq_partner_tenant))
		no_credentials("pcqual.partner_tenant");
	if (!pcq_is_set(pcq_client_id))
		no_credentials("pcqual.client_id");
	if (mode == PCQ_AUTH_APP_CERTIFICATE && !pcq_is_set(pcq_client_key_file))
		no_credentials("pcqual.client_key_file");
	if (mode == PCQ_AUTH_APP_CERTIFICATE && !pcq_is_set(pcq_client_certificate_file))
		no_credentials("pcqual.client_certificate_file");
}

/* One name=value pair of an application/x-www-form-urlencoded body. */
static void
append_form_value(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	appendStringInfo(buf, "%s=", name);
	pcq_append_percent_encoded(buf, value);
}

/*
 * The app's own proof: a client assertion when a certificate is set, else
 * the client secret when one is set (App+User may have neither: a public
 * client).
 */
static void
append_client_credential(StringInfo form, const char *token_url,
						 SentSecrets *sent)
{
	append_form_value(form, "client_id", pcq_client_id);
	if (pcq_is_set(pcq_client_certificate_file))
	{
		sent->client_assertion = pcq_client_assertion(token_url);
		append_form_value(form, "client_assertion_type", JWT_BEARER_ASSERTION);
		append_form_value(form, "client_assertion", sent->client_assertion);
	}
	else if (pcq_is_set(pcq_client_secret_file))
	{
		sent->client_secret = pcq_read_private_file(pcq_client_secret_file,
													"pcqual.client_secret_file");
		append_form_value(form, "client_secret", sent->client_secret);
	}
}

static char *
token_request_form(const char *token_url, SentSecrets *sent)
{
	StringInfoData form;

	initStringInfo(&form);
	if (sent->refresh_token != NULL)
	{
		append_form_value(&form, "grant_type", "refresh_token");
		append_form_value(&form, "refresh_token", sent->refresh_token);
		append_client_credential(&form, token_url, sent);
		append_form_value(&form, "resource", pcq_resource);
		append_form_value(&form, "scope", "openid");
	}
	else
	{
		append_form_value(&form, "grant_type", "client_credentials");
		append_client_credential(&form, token_url, sent);
		append_form_value(&form, "resource", pcq_resource);
	}
	return form.data;
}

/* Azure AD may quote a request back: never let a secret reach a message. */
static void
redact_answer(PcqRequest *req, const SentSecrets *sent)
{
	pcq_redact(req->body, req->body_len, sent->client_secret);
	pcq_redact(req->body, req->body_len, sent->client_assertion);
	pcq_redact(req->body, req->body_len, sent->refresh_token);
}

static void
wipe_sent_secrets(SentSecrets *sent)
{
	pcq_wipe_and_free(&sent->client_secret);
	pcq_wipe_and_free(&sent->client_assertion);
	pcq_wipe_and_free(&sent->refresh_token);
}

static void
cache_token(const PcqTokenAnswer *answer)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *fingerprint = settings_fingerprint();

	cached_token = MemoryContextStrdup(TopMemoryContext, answer->access_token);
	cached_for = MemoryContextStrdup(TopMemoryContext, fingerprint);
	pcq_wipe_and_free(&fingerprint);
	cached_until = now;
	if (answer->expires_in > PCQ_TOKEN_EXPIRY_MARGIN_SECS)
		cached_until = TimestampTzPlusMilliseconds(now,
												   (int64) ((answer->expires_in - PCQ_TOKEN_EXPIRY_MARGIN_SECS) * 1000));
}

/*
 * Send one token request with the secrets in *sent and cache the token.
 * Returns the new refresh token Azure AD answered with, if it differs from
 * the one sent.
 */
static char *
request_token(SentSecrets *sent)
{
	char	   *url = pcq_token_url();
	PcqRequest	req;
	PcqTokenAnswer answer;
	char	   *rotated = NULL;

	pcq_request_init(&req, url, PCQ_SUBJECT_TOKEN, NULL);
	req.method = "POST";
	req.post_content_type = "application/x-www-form-urlencoded";
	PG_TRY();
	{
		req.post_body = token_request_form(url, sent);
		pcq_http_run_one(&req);
		if (req.outcome != PCQ_ANSWERED)
			pcq_report_failure(&req, ERROR);

		/*
		 * The tokens come from the body as it was (a rotated refresh token
		 * may well contain the old one); what may reach a message comes from
		 * the body with every secret sent overwritten.
		 */
		pcq_parse_token_answer(req.body, req.body_len, &answer);
		redact_answer(&req, sent);
		if (req.status != 200 || answer.access_token == NULL)
		{
			char	   *error;
			char	   *description;

			pcq_parse_error_body(req.body, req.body_len, &error, &description);
			pcq_report_token_refusal(&req, &answer, error, description);
		}
		cache_token(&answer);
		if (answer.refresh_token != NULL && sent->refresh_token != NULL &&
			strcmp(answer.refresh_token, sent->refresh_token) == 0)
			pcq_wipe_and_free(&answer.refresh_token);	/* not rotated */
		rotated = answer.refresh_token;
		pcq_wipe_and_free(&answer.access_token);
	}
	PG_FINALLY();
	{
		pcq_wipe_and_free(&req.post_body);
		if (req.body != NULL)
			explicit_bzero(req.body, req.body_len);
		wipe_sent_secrets(sent);
	}
	PG_END_TRY();
	return rotated;
}

/*
 * App+User: refresh with the token in pcqual.refresh_token_file, holding
 * the file locked so that no other backend refreshes with the same token,
 * and write the rotated one back before the lock is released.
 */
static void
refresh_app_user_token(void)
{
	PcqLockedFile *file = pcq_lock_private_file(pcq_refresh_token_file,
												"pcqual.refresh_token_file");
	SentSecrets sent = {0};
	char	   *rotated = NULL;

	PG_TRY();
	{
		sent.refresh_token = pcq_locked_file_contents(file);
		rotated = request_token(&sent);
		if (rotated != NULL &&
			!pcq_replace_locked_file(file, rotated))
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("the refresh token Azure AD rotated could not be saved to pcqual.refresh_token_file"),
					 errdetail("The next refresh uses the previous token, which Azure AD may refuse."),
					 errhint("The server's operating system user needs write access to the file's directory.")));
	}
	PG_FINALLY();
	{
		pcq_unlock_private_file(file);
		pcq_wipe_and_free(&rotated);
		wipe_sent_secrets(&sent);
	}
	PG_END_TRY();
}

/* A token from pcqual.access_token_file, re-read when the file changed. */
static const char *
static_token(bool *renewable)
{
	bool		changed = pcq_file_changed_since(pcq_access_token_file,
												 &static_token_stamp);
	int64		stamp = static_token_stamp;
	char	   *token;

	*renewable = cached_token != NULL;
	if (cached_token != NULL && !changed)
		return cached_token;

	pcq_forget_access_token();
	static_token_stamp = stamp;	/* of the file about to be read */
	token = pcq_read_private_file(pcq_access_token_file, "pcqual.access_token_file");
	if (!pcq_is_header_token(token))
	{
		pcq_wipe_and_free(&token);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the token in pcqual.access_token_file \"%s\" is not usable",
						pcq_access_token_file),
				 errdetail("It contains white space or a character outside visible ASCII.")));
	}
	cached_token = MemoryContextStrdup(TopMemoryContext, token);
	pcq_wipe_and_free(&token);
	*renewable = false;
	return cached_token;
}

/*
 * The access token to send.  *renewable tells the caller whether a 401 may
 * be cured by forgetting the token and asking again.
 */
const char *
pcq_access_token(bool *renewable)
{
	PcqAuthMode mode = pcq_auth_mode();
	char	   *fingerprint;
	bool		usable;

	*renewable = false;
	if (mode == PCQ_AUTH_STATIC_TOKEN)
		return static_token(renewable);

	require_credentials(mode);
	fingerprint = settings_fingerprint();
	usable = cached_token != NULL && cached_for != NULL &&
		strcmp(cached_for, fingerprint) == 0 &&
		GetCurrentTimestamp() < cached_until;
	pcq_wipe_and_free(&fingerprint);

	if (usable)
	{
		*renewable = true;
		return cached_token;
	}
	pcq_forget_access_token();
	if (mode == PCQ_AUTH_APP_USER)
		refresh_app_user_token();
	else
	{
		SentSecrets sent = {0};

		request_token(&sent);
	}
	return cached_token;
}

/*
 * Run one request with the current access token.  A 401 on a token that
 * may have been revoked or expired early gets one more try with a new
 * token and the same MS-RequestId.
 */
void
pcq_http_run_authorized(PcqRequest *req)
{
	bool		renewable;

	req->bearer = pcq_access_token(&renewable);
	pcq_http_run_one(req);
	if (req->outcome == PCQ_ANSWERED && req->status == 401 && renewable)
	{
		if (req->body != NULL)
			pfree(req->body);
		req->body = NULL;
		pcq_forget_access_token();
		req->bearer = pcq_access_token(&renewable);
		pcq_http_run_one(req);
	}
}
