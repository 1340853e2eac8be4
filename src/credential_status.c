/*-------------------------------------------------------------------------
 *
 * credential_status.c
 *	  pc_credential_status(): will the credential work tomorrow morning?
 *
 * One row about the credential in effect, for a DBA's morning check or a
 * monitoring role: the mode and the file settings behind it, whether each
 * file passes the private-file rule (never its contents), the
 * certificate's subject, thumbprint and validity, the refresh token's age
 * against Azure AD's 90 days of disuse, the cached access token's expiry
 * (never the token) and whether its sign-in used MFA, and how the last
 * token request went.  With request_token => true it asks Azure AD for a
 * token now and reports the outcome in the row rather than as an ERROR.
 *
 * Each probe runs in a subtransaction, so that one failing (a file that is
 * missing, a certificate that does not parse) is shown, not raised; only a
 * cancel is raised.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_credential_status);

/* Azure AD expires a refresh token unused for this long (AADSTS700082). */
#define REFRESH_TOKEN_MAX_IDLE_DAYS 90

#define MAX_FILES 3

enum
{
	COL_MODE,
	COL_SETTINGS,
	COL_FILES,
	COL_FILE_CHECKS,
	COL_CERT_SUBJECT,
	COL_CERT_THUMBPRINT,
	COL_CERT_NOT_BEFORE,
	COL_CERT_NOT_AFTER,
	COL_CERT_DAYS_LEFT,
	COL_REFRESH_SAVED_AT,
	COL_REFRESH_DAYS_LEFT,
	COL_TOKEN_EXPIRES_AT,
	COL_TOKEN_MFA,
	COL_LAST_REQUEST_AT,
	COL_LAST_OUTCOME,
	COL_LAST_SQLSTATE,
	COL_LAST_MESSAGE,
	COL_LAST_DETAIL,
	STATUS_COLUMNS
};

/* The credential's files: the setting, its path, and how it is checked. */
typedef struct CredentialFiles
{
	int			n;
	const char *setting[MAX_FILES];
	const char *path[MAX_FILES];
	bool		secret[MAX_FILES];	/* the private-file rule applies */
} CredentialFiles;

typedef struct StatusRow
{
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS];
} StatusRow;

typedef void (*Probe) (void *arg);

/*
 * Run probe in a subtransaction: NULL when it worked, else its error (a
 * cancel or shutdown is raised, not shown).  What it allocates in the
 * caller's memory context stays.
 */
static ErrorData *
run_probe(Probe probe, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile failure = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		probe(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		failure = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (ERRCODE_TO_CATEGORY(failure->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
			ReThrowError(failure);
	}
	PG_END_TRY();
	return failure;
}

static void
add_file(CredentialFiles *files, const char *setting, const char *path,
		 bool secret)
{
	if (!pcq_is_set(path) || files->n == MAX_FILES)
		return;
	files->setting[files->n] = setting;
	files->path[files->n] = path;
	files->secret[files->n] = secret;
	files->n++;
}

/* The app's own proof, as the token request sends it. */
static void
add_app_files(CredentialFiles *files)
{
	if (pcq_is_set(pcq_client_certificate_file) || pcq_is_set(pcq_client_key_file))
	{
		add_file(files, "pcqual.client_certificate_file", pcq_client_certificate_file, false);
		add_file(files, "pcqual.client_key_file", pcq_client_key_file, true);
	}
	else
		add_file(files, "pcqual.client_secret_file", pcq_client_secret_file, true);
}

static const char *
mode_files(PcqAuthMode mode, CredentialFiles *files)
{
	memset(files, 0, sizeof(*files));
	switch (mode)
	{
		case PCQ_AUTH_STATIC_TOKEN:
			add_file(files, "pcqual.access_token_file", pcq_access_token_file, true);
			return "access_token_file";
		case PCQ_AUTH_APP_USER:
			add_file(files, "pcqual.refresh_token_file", pcq_refresh_token_file, true);
			add_app_files(files);
			return "app_user";
		case PCQ_AUTH_APP_CERTIFICATE:
			add_app_files(files);
			return "app_certificate";
		case PCQ_AUTH_APP_SECRET:
			add_app_files(files);
			return "app_secret";
		case PCQ_AUTH_NONE:
			break;
	}
	return "none";
}

typedef struct FileProbe
{
	const char *path;
	const char *setting;
} FileProbe;

/* The private-file rule, by reading the file as a token request would. */
static void
probe_private_file(void *arg)
{
	FileProbe  *f = arg;
	char	   *contents = pcq_read_private_file(f->path, f->setting);

	pcq_wipe_and_free(&contents);
}

static void
probe_certificate(void *arg)
{
	pcq_certificate_info((PcqCertificateInfo *) arg);
}

static Datum
text_array(const char *const *items, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Whole days from a to b, rounded down (negative when b is before a). */
static int
days_between(TimestampTz a, TimestampTz b)
{
	int64		diff = b - a;

	return (int) (diff >= 0 ? diff / USECS_PER_DAY : -((-diff + USECS_PER_DAY - 1) / USECS_PER_DAY));
}

static void
describe_certificate(StatusRow *row, const PcqCertificateInfo *cert)
{
	row->values[COL_CERT_SUBJECT] = CStringGetTextDatum(cert->subject);
	row->values[COL_CERT_THUMBPRINT] = CStringGetTextDatum(cert->thumbprint);
	row->values[COL_CERT_NOT_BEFORE] = TimestampTzGetDatum(cert->not_before);
	row->values[COL_CERT_NOT_AFTER] = TimestampTzGetDatum(cert->not_after);
	row->values[COL_CERT_DAYS_LEFT] =
		Int32GetDatum(days_between(GetCurrentTimestamp(), cert->not_after));
	row->nulls[COL_CERT_SUBJECT] = row->nulls[COL_CERT_THUMBPRINT] =
		row->nulls[COL_CERT_NOT_BEFORE] = row->nulls[COL_CERT_NOT_AFTER] =
		row->nulls[COL_CERT_DAYS_LEFT] = false;
}

/*
 * A refresh token file is rewritten at each refresh (the rotated token),
 * so its modification time is its last use.
 */
static void
describe_refresh_token(StatusRow *row)
{
	struct stat st;
	TimestampTz saved;
	int			idle;

	if (stat(pcq_refresh_token_file, &st) != 0)
		return;
	saved = time_t_to_timestamptz(st.st_mtime);
	idle = days_between(saved, GetCurrentTimestamp());
	row->values[COL_REFRESH_SAVED_AT] = TimestampTzGetDatum(saved);
	row->values[COL_REFRESH_DAYS_LEFT] = Int32GetDatum(REFRESH_TOKEN_MAX_IDLE_DAYS - idle);
	row->nulls[COL_REFRESH_SAVED_AT] = row->nulls[COL_REFRESH_DAYS_LEFT] = false;
}

/* Each file: "ok", or what is wrong with it; the certificate described. */
static void
check_files(StatusRow *row, const CredentialFiles *files)
{
	const char *checks[MAX_FILES] = {0};
	int			i;

	for (i = 0; i < files->n; i++)
	{
		ErrorData  *failure;

		if (files->secret[i])
		{
			FileProbe	f = {files->path[i], files->setting[i]};

			failure = run_probe(probe_private_file, &f);
		}
		else
		{
			PcqCertificateInfo cert;

			failure = run_probe(probe_certificate, &cert);
			if (failure == NULL)
				describe_certificate(row, &cert);
		}
		checks[i] = failure ? failure->message : "ok";
	}
	row->values[COL_SETTINGS] = text_array(files->setting, files->n);
	row->values[COL_FILES] = text_array(files->path, files->n);
	row->values[COL_FILE_CHECKS] = text_array(checks, files->n);
	row->nulls[COL_SETTINGS] = row->nulls[COL_FILES] = row->nulls[COL_FILE_CHECKS] = false;
}

typedef struct TokenProbe
{
	PcqTokenCacheState state;
	PcqTokenClaims claims;
	bool		found;
} TokenProbe;

static void
probe_token_state(void *arg)
{
	TokenProbe *t = arg;

	t->found = pcq_token_state(&t->state, &t->claims);
}

/* A token now, even with one cached: it replaces the cached one. */
static void
probe_token_request(void *arg)
{
	bool		renewable;

	pcq_drop_access_token();
	pcq_release_access_token(pcq_access_token(&renewable));
}

static void
set_last_request(StatusRow *row, TimestampTz at, const char *outcome,
				 int sqlstate, const char *message, const char *detail)
{
	row->values[COL_LAST_REQUEST_AT] = TimestampTzGetDatum(at);
	row->values[COL_LAST_OUTCOME] = CStringGetTextDatum(outcome);
	row->nulls[COL_LAST_REQUEST_AT] = row->nulls[COL_LAST_OUTCOME] = false;
	if (sqlstate != 0)
	{
		row->values[COL_LAST_SQLSTATE] = CStringGetTextDatum(unpack_sql_state(sqlstate));
		row->values[COL_LAST_MESSAGE] = CStringGetTextDatum(message);
		row->nulls[COL_LAST_SQLSTATE] = row->nulls[COL_LAST_MESSAGE] = false;
	}
	if (detail != NULL)
	{
		row->values[COL_LAST_DETAIL] = CStringGetTextDatum(detail);
		row->nulls[COL_LAST_DETAIL] = false;
	}
}

/*
 * The cached token's expiry and MFA, and the last token request; with
 * request_token, the request made now (requested: NULL when it worked) is
 * that last request.
 */
static void
describe_token(StatusRow *row, PcqAuthMode mode, bool request_token,
			   ErrorData *requested)
{
	TokenProbe	t;

	memset(&t, 0, sizeof(t));
	if (mode != PCQ_AUTH_NONE && run_probe(probe_token_state, &t) == NULL && t.found)
	{
		if (t.state.has_token && t.state.expires_at != 0)
		{
			row->values[COL_TOKEN_EXPIRES_AT] = TimestampTzGetDatum(t.state.expires_at);
			row->nulls[COL_TOKEN_EXPIRES_AT] = false;
		}
		if (t.state.has_token && t.claims.has_amr)
		{
			row->values[COL_TOKEN_MFA] = BoolGetDatum(t.claims.mfa);
			row->nulls[COL_TOKEN_MFA] = false;
		}
		if (!request_token && t.state.last_request_at != 0)
			set_last_request(row, t.state.last_request_at,
							 t.state.last_request_ok ? "success" : "failure",
							 t.state.last_request_ok ? 0 : t.state.last_failure.sqlstate,
							 t.state.last_failure.message, NULL);
	}
	if (request_token)
		set_last_request(row, GetCurrentTimestamp(),
						 requested ? "failure" : "success",
						 requested ? requested->sqlerrcode : 0,
						 requested ? requested->message : NULL,
						 requested ? requested->detail : NULL);
}

/*
 * pc_credential_status(request_token boolean DEFAULT false) RETURNS TABLE
 *	   (mode text, settings text[], files text[], file_checks text[],
 *	   certificate_subject text, certificate_thumbprint text,
 *	   certificate_not_before timestamptz, certificate_not_after timestamptz,
 *	   certificate_days_left integer, refresh_token_saved_at timestamptz,
 *	   refresh_token_days_left integer, token_expires_at timestamptz,
 *	   token_mfa boolean, last_token_request_at timestamptz,
 *	   last_token_outcome text, last_token_sqlstate text,
 *	   last_token_message text, last_token_detail text)
 */
Datum
pc_credential_status(PG_FUNCTION_ARGS)
{
	bool		request_token = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	ReturnSetInfo *rsinfo;
	PcqAuthMode mode = pcq_auth_mode();
	CredentialFiles files;
	StatusRow	row;
	ErrorData  *requested = NULL;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	/* first, so that the row shows the files as the request left them */
	if (request_token)
		requested = run_probe(probe_token_request, NULL);
	for (i = 0; i < STATUS_COLUMNS; i++)
		row.nulls[i] = true;
	row.values[COL_MODE] = CStringGetTextDatum(mode_files(mode, &files));
	row.nulls[COL_MODE] = false;
	check_files(&row, &files);
	if (mode == PCQ_AUTH_APP_USER)
		describe_refresh_token(&row);
	describe_token(&row, mode, request_token, requested);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row.values, row.nulls);
	return (Datum) 0;
}
