/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Azure AD access tokens for Partner Center, one per credential for the
 *	  whole cluster.
 *
 * The mode is chosen by which credential files are set, first match wins:
 *	 pcqual.access_token_file		an externally managed token, sent as is,
 *									re-read when the file changes (each
 *									session reads the file: nothing is asked
 *									of Azure AD, so nothing is shared);
 *	 pcqual.refresh_token_file		App+User: grant_type=refresh_token, the
 *									rotated refresh token written back;
 *	 pcqual.client_certificate_file	App-only with a signed client assertion;
 *	 pcqual.client_secret_file		App-only with a client secret.
 *
 * Tokens of the last three live in shared memory (token_cache.c), keyed by
 * the settings that decide them: one backend asks Azure AD, every backend
 * uses the answer until five minutes before it expires.  A call gets a
 * copy in memory that is wiped when the call's memory goes, so no backend
 * keeps a token between statements.  Secrets are read from their files for
 * one token request and wiped right after; they never appear in a message,
 * even when Azure AD's answer quotes them back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pcqual.h"

#define JWT_BEARER_ASSERTION "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

/* pcqual.access_token_file's token, as this backend last read it. */
static char *static_token_value = NULL;
static PcqFileStamp static_token_stamp;

/* The shared token handed out last, for a 401 to invalidate. */
static uint8 last_hash[PCQ_CREDENTIAL_HASH_LEN];
static uint64 last_generation = 0;

/* A call's copy of a shared token, wiped when its memory context goes. */
typedef struct TokenCopy
{
	char		value[PCQ_MAX_TOKEN_SIZE];	/* first: the chunk's address */
	MemoryContextCallback wipe;
} TokenCopy;

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

static void
forget_static_token(void)
{
	pcq_wipe_and_free(&static_token_value);
	memset(&static_token_stamp, 0, sizeof(static_token_stamp));
}

/*
 * The token sent last was refused (401): drop it, cluster-wide, unless
 * another backend already replaced it.
 */
void
pcq_forget_access_token(void)
{
	forget_static_token();
	if (last_generation != 0)
		(void) pcq_token_cache_invalidate(last_hash, last_generation);
	last_generation = 0;
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

/*
 * Send one token request with the secrets in *sent; *answer gets the access
 * token and its lifetime.  Returns the new refresh token Azure AD answered
 * with, if it differs from the one sent.
 */
static char *
request_token(SentSecrets *sent, PcqTokenAnswer *answer)
{
	char	   *url = pcq_token_url();
	/* set within PG_TRY, read in PG_FINALLY: in memory, not a register */
	PcqRequest *req = palloc0(sizeof(PcqRequest));
	char	   *volatile rotated = NULL;

	pcq_request_init(req, url, PCQ_SUBJECT_TOKEN, NULL);
	req->method = "POST";
	req->post_content_type = "application/x-www-form-urlencoded";
	PG_TRY();
	{
		req->post_body = token_request_form(url, sent);
		pcq_http_run_one(req);
		if (req->outcome != PCQ_ANSWERED)
			pcq_report_failure(req, ERROR);

		/*
		 * The tokens come from the body as it was (a rotated refresh token
		 * may well contain the old one); what may reach a message comes from
		 * the body with every secret sent overwritten.
		 */
		pcq_parse_token_answer(req->body, req->body_len, answer);
		redact_answer(req, sent);
		if (req->status != 200 || answer->access_token == NULL)
		{
			char	   *error;
			char	   *description;

			pcq_parse_error_body(req->body, req->body_len, &error, &description);
			pcq_report_token_refusal(req, answer, error, description);
		}
		if (answer->refresh_token != NULL && sent->refresh_token != NULL &&
			strcmp(answer->refresh_token, sent->refresh_token) == 0)
			pcq_wipe_and_free(&answer->refresh_token);	/* not rotated */
		rotated = answer->refresh_token;
		answer->refresh_token = NULL;
	}
	PG_FINALLY();
	{
		pcq_wipe_and_free(&req->post_body);
		if (req->body != NULL)
			explicit_bzero(req->body, req->body_len);
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
refresh_app_user_token(PcqTokenAnswer *answer)
{
	PcqLockedFile *file = pcq_lock_private_file(pcq_refresh_token_file,
												"pcqual.refresh_token_file");
	/* set within PG_TRY, read in PG_FINALLY: in memory, not a register */
	SentSecrets *sent = palloc0(sizeof(SentSecrets));
	char	   *volatile rotated = NULL;

	PG_TRY();
	{
		sent->refresh_token = pcq_locked_file_contents(file);
		rotated = request_token(sent, answer);
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
		char	   *to_wipe = rotated;

		pcq_unlock_private_file(file);
		pcq_wipe_and_free(&to_wipe);
		wipe_sent_secrets(sent);
		pfree(sent);
	}
	PG_END_TRY();
}

/* A token from pcqual.access_token_file, re-read when the file changed. */
static const char *
static_token(bool *renewable)
{
	bool		changed = pcq_file_changed_since(pcq_access_token_file,
												 &static_token_stamp);
	PcqFileStamp stamp = static_token_stamp;
	char	   *token;

	*renewable = static_token_value != NULL;
	if (static_token_value != NULL && !changed)
		return static_token_value;

	forget_static_token();
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
	static_token_value = MemoryContextStrdup(TopMemoryContext, token);
	pcq_wipe_and_free(&token);
	*renewable = false;
	return static_token_value;
}

/*
 * The shared entry's key: a hash of the settings the token depends on, and
 * the identity of the credential files now.
 */
static void
credential_key(PcqTokenKey *key)
{
	char	   *fingerprint = settings_fingerprint();
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) fingerprint, strlen(fingerprint)) < 0 ||
		pg_cryptohash_final(ctx, key->hash, sizeof(key->hash)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the key of pcqual's shared token")));
	pg_cryptohash_free(ctx);
	pcq_wipe_and_free(&fingerprint);

	pcq_file_stamp(pcq_client_secret_file, &key->files[0]);
	pcq_file_stamp(pcq_client_certificate_file, &key->files[1]);
	pcq_file_stamp(pcq_client_key_file, &key->files[2]);
	pcq_file_stamp(pcq_refresh_token_file, &key->files[3]);
}

static void
wipe_token_copy(void *arg)
{
	explicit_bzero(((TokenCopy *) arg)->value, PCQ_MAX_TOKEN_SIZE);
}

/*
 * A buffer for a call's copy of the token, in a context of its own below
 * the current one: deleting either wipes it.
 */
static char *
new_token_copy(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "pcqual access token",
											  ALLOCSET_SMALL_SIZES);
	TokenCopy  *copy = MemoryContextAllocZero(cxt, sizeof(TokenCopy));

	copy->wipe.func = wipe_token_copy;
	copy->wipe.arg = copy;
	MemoryContextRegisterResetCallback(cxt, &copy->wipe);
	return copy->value;
}

/* The call is done with a token pcq_access_token returned. */
void
pcq_release_access_token(const char *token)
{
	if (token != NULL)
		MemoryContextDelete(GetMemoryChunkContext((void *) token));
}

/*
 * Operator intervention (a cancel, a shutdown) ends the refresh of one
 * session, not the token request itself: the next session asks again.
 */
static int
failure_to_share(const ErrorData *edata)
{
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
		return 0;
	return edata->sqlerrcode;
}

/*
 * This backend is the credential's refresher: ask Azure AD, store the
 * answer for everyone, copy it into buf.  On ERROR, those waiting for it
 * are told.
 */
static void
refresh_shared_token(PcqTokenKey *key, char *buf, uint64 *generation)
{
	MemoryContext cxt = CurrentMemoryContext;

	/* filled within PG_TRY, wiped in PG_CATCH: in memory, not a register */
	PcqTokenAnswer *answer = palloc0(sizeof(PcqTokenAnswer));

	PG_TRY();
	{
		if (pcq_auth_mode() == PCQ_AUTH_APP_USER)
			refresh_app_user_token(answer);
		else
		{
			SentSecrets sent = {0};
			char	   *rotated = request_token(&sent, answer);

			pcq_wipe_and_free(&rotated);	/* none without a refresh token */
		}
		/* a rotated refresh token was written back: its file is new */
		credential_key(key);
		pcq_token_cache_put(key, answer->access_token, answer->expires_in, generation);
		strlcpy(buf, answer->access_token, PCQ_MAX_TOKEN_SIZE);
		pcq_wipe_and_free(&answer->access_token);
		pfree(answer);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		pcq_wipe_and_free(&answer->access_token);
		pfree(answer);
		edata = CopyErrorData();
		pcq_token_cache_abandon(failure_to_share(edata), edata->message);
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* The token request another session made for us failed: say so. */
static void
raise_shared_failure(const PcqTokenFailure *failure)
{
	ereport(ERROR,
			(errcode(failure->sqlstate),
			 errmsg_internal("%s", failure->message),
			 errdetail("This session waited for the token request of the session with PID %d, which failed: pcqual asks Azure AD once for all sessions that need a credential's token.",
					   failure->pid),
			 errhint("The server log has that session's error in full.")));
}

/*
 * Since April 2026 Partner Center refuses App+User tokens whose sign-in did
 * not use MFA: say so once a day per backend, before a sync fails on it.
 * Each token is looked at once; one that is not a JWT, or that has no amr
 * claim, is not judged.
 */
static void
warn_if_no_mfa(const char *token, uint64 generation)
{
	static uint64 checked_generation = 0;
	static pg_time_t last_warned = 0;
	pg_time_t	now = (pg_time_t) time(NULL);
	PcqTokenClaims claims;

	if (generation == checked_generation)
		return;
	checked_generation = generation;
	if (last_warned != 0 && now - last_warned < SECS_PER_DAY)
		return;
	pcq_parse_token_claims(token, &claims);
	if (!claims.has_amr || claims.mfa)
		return;
	last_warned = now;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("the App+User access token of pcqual.refresh_token_file was issued without MFA"),
			 errdetail("Its amr claim does not list \"mfa\"; Partner Center refuses such tokens for App+User calls (code 900421)."),
			 errhint("Sign in again with multi-factor authentication and write the new refresh token to pcqual.refresh_token_file.")));
}

/*
 * What is known of the credential in effect without asking Azure AD, for
 * pc_credential_status: the shared entry's state and the claims of its
 * token (for pcqual.access_token_file, of the file's token; reading it may
 * raise).  false when no token was ever requested for it.
 */
bool
pcq_token_state(PcqTokenCacheState *state, PcqTokenClaims *claims)
{
	PcqTokenKey key;
	char	   *buf = new_token_copy();
	bool		found;

	memset(claims, 0, sizeof(*claims));
	if (pcq_auth_mode() == PCQ_AUTH_STATIC_TOKEN)
	{
		bool		renewable;

		memset(state, 0, sizeof(*state));
		strlcpy(buf, static_token(&renewable), PCQ_MAX_TOKEN_SIZE);
		pcq_parse_token_claims(buf, claims);
		state->has_token = true;
		state->expires_at = claims->has_exp ? claims->exp : 0;
		pcq_release_access_token(buf);
		return true;
	}
	credential_key(&key);
	found = pcq_token_cache_describe(key.hash, state, buf);
	if (buf[0] != '\0')
		pcq_parse_token_claims(buf, claims);
	pcq_release_access_token(buf);
	return found;
}

/*
 * The access token to send, copied for this call (pcq_release_access_token
 * wipes it, as does the end of the current memory context).  *renewable
 * tells the caller whether a 401 may be cured by forgetting the token and
 * asking again.
 */
const char *
pcq_access_token(bool *renewable)
{
	PcqAuthMode mode = pcq_auth_mode();
	PcqTokenKey key;
	PcqTokenFailure failure;
	uint64		generation = 0;
	char	   *buf;

	*renewable = false;
	buf = new_token_copy();
	if (mode == PCQ_AUTH_STATIC_TOKEN)
	{
		strlcpy(buf, static_token(renewable), PCQ_MAX_TOKEN_SIZE);
		return buf;
	}

	require_credentials(mode);
	credential_key(&key);
	switch (pcq_token_cache_get(&key, buf, &generation, &failure))
	{
		case PCQ_TOKEN_HIT:
			pcq_stat_token_hit();
			/* it may have been revoked since: a 401 may be cured */
			*renewable = true;
			break;
		case PCQ_TOKEN_REFRESH:
			/* Azure AD just issued it: a 401 is not the token's age */
			refresh_shared_token(&key, buf, &generation);
			break;
		case PCQ_TOKEN_FAILED:
			raise_shared_failure(&failure);
			break;
	}
	memcpy(last_hash, key.hash, sizeof(last_hash));
	last_generation = generation;
	if (mode == PCQ_AUTH_APP_USER)
		warn_if_no_mfa(buf, generation);
	return buf;
}

/*
 * pc_disconnect(): drop the token of the credential in effect, for every
 * session; the next call asks Azure AD for a new one.
 */
void
pcq_drop_access_token(void)
{
	PcqTokenKey key;

	forget_static_token();
	last_generation = 0;
	if (pcq_auth_mode() == PCQ_AUTH_STATIC_TOKEN ||
		!pcq_is_set(pcq_partner_tenant) || !pcq_is_set(pcq_client_id))
		return;
	credential_key(&key);
	(void) pcq_token_cache_invalidate(key.hash, 0);
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
		pcq_release_access_token(req->bearer);
		req->bearer = pcq_access_token(&renewable);
		pcq_stat_retry(req, 0);
		pcq_activity_retry();
		pcq_http_run_one(req);
	}
	pcq_release_access_token(req->bearer);
	req->bearer = NULL;
}
