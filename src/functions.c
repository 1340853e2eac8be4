/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The SQL-callable functions.
 *
 * pc_qualifications(uuid) and pc_qualifications(uuid[], text) are one code
 * path: a batch of requests run by http.c, each customer's answer parsed
 * and stored as soon as it is final.  The single-tenant function is a batch
 * of one that raises every failure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_qualifications);
PG_FUNCTION_INFO_V1(pc_qualifications_bulk);

/* Most of a bad date we quote in a WARNING. */
#define MAX_QUOTED_DATE 64

/* Columns: [customer_tenant_id,] qualification, status, reason, date. */
#define MAX_COLUMNS 5

/* One customer's request, and its tenant id for the result column. */
typedef struct TenantRequest
{
	PcqRequest	req;			/* first: http.c hands back a PcqRequest * */
	pg_uuid_t	tenant_id;
} TenantRequest;

/* What a batch needs while its answers come in. */
typedef struct FetchState
{
	ReturnSetInfo *rsinfo;
	bool		with_tenant_column;
	int			failure_elevel; /* ERROR, or WARNING for on_error = 'warning' */
	bool		token_from_cache;
	List	   *rejected_tokens;	/* answered 401 on a cached token */
	MemoryContext tenant_cxt;	/* parse one answer in here, then reset */
} FetchState;

static char *
qualifications_url(const char *tenant)
{
	const char *base = pcq_base_url();
	int			len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	return psprintf("%.*s/v1/customers/%s/qualifications", len, base, tenant);
}

/* A date that is not ISO 8601 becomes NULL, with one WARNING saying so. */
static void
warn_unparsed_dates(const char *tenant, List *rows)
{
	ListCell   *lc;

	foreach(lc, rows)
	{
		PcqQualification *q = lfirst(lc);

		if (q->unparsed_date != NULL)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
					 errmsg("vetting date \"%.*s\" of customer %s is not ISO 8601",
							pg_mbcliplen(q->unparsed_date, strlen(q->unparsed_date),
										 MAX_QUOTED_DATE),
							q->unparsed_date, tenant),
					 errdetail("vetting_created_date of its %s qualification is NULL.",
							   q->qualification)));
	}
}

static Datum
nullable_text(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* Store one customer's rows; all were parsed before the first is stored. */
static void
store_rows(FetchState *state, const TenantRequest *tr, List *rows)
{
	ListCell   *lc;

	foreach(lc, rows)
	{
		const PcqQualification *q = lfirst(lc);
		Datum		values[MAX_COLUMNS];
		bool		nulls[MAX_COLUMNS];
		int			c = 0;

		if (state->with_tenant_column)
		{
			values[c] = UUIDPGetDatum(&tr->tenant_id);
			nulls[c++] = false;
		}
		values[c] = CStringGetTextDatum(q->qualification);
		nulls[c++] = false;
		values[c] = nullable_text(q->vetting_status, &nulls[c]);
		c++;
		values[c] = nullable_text(q->vetting_reason, &nulls[c]);
		c++;
		values[c] = TimestampTzGetDatum(q->vetting_created_date);
		nulls[c++] = !q->has_created_date;
		tuplestore_putvalues(state->rsinfo->setResult, state->rsinfo->setDesc,
							 values, nulls);
	}
}

/* Parse a 200 answer and store its rows, or report what was wrong. */
static void
consume_answer(FetchState *state, TenantRequest *tr)
{
	PcqRequest *req = &tr->req;
	char	   *problem;
	List	   *rows;

	rows = pcq_parse_qualifications(req->body, req->body_len, &problem);
	if (problem != NULL)
		pcq_report_bad_body(req, problem, state->failure_elevel);
	else
	{
		warn_unparsed_dates(req->tenant, rows);
		store_rows(state, tr, rows);
	}
}

/*
 * http.c's callback: one customer's request is final.  Its body is freed
 * here, so a batch holds at most the in-flight requests' bodies.
 */
static void
on_request_done(PcqRequest *req, void *arg)
{
	FetchState *state = (FetchState *) arg;
	MemoryContext oldcxt;

	if (req->outcome == PCQ_ANSWERED && req->status == 401 && state->token_from_cache)
	{
		/* the token was revoked or expired early: retried after the batch */
		state->rejected_tokens = lappend(state->rejected_tokens, req);
		return;
	}

	oldcxt = MemoryContextSwitchTo(state->tenant_cxt);
	if (req->outcome != PCQ_ANSWERED || req->status < 200 || req->status > 299)
		pcq_report_failure(req, state->failure_elevel);
	else
		consume_answer(state, (TenantRequest *) req);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(state->tenant_cxt);
	if (req->body != NULL)
		pfree(req->body);
	req->body = NULL;
}

/*
 * Fetch every request's answer with the current access token.  Requests
 * whose cached token was refused (401) are sent once more, after the batch,
 * with a new token and the same MS-RequestId.
 */
static void
fetch_batch(FetchState *state, PcqRequest **reqs, int nreqs)
{
	const char *token = pcq_access_token(&state->token_from_cache);
	int			i;

	for (i = 0; i < nreqs; i++)
		reqs[i]->bearer = token;
	pcq_http_run(reqs, nreqs, nreqs == 1 ? 1 : pcq_concurrency,
				 on_request_done, state);

	if (state->rejected_tokens != NIL)
	{
		int			nretry = list_length(state->rejected_tokens);
		PcqRequest **retry = palloc(sizeof(PcqRequest *) * nretry);
		ListCell   *lc;

		i = 0;
		foreach(lc, state->rejected_tokens)
			retry[i++] = lfirst(lc);
		state->rejected_tokens = NIL;
		pcq_forget_access_token();
		fetch_batch(state, retry, nretry);
	}
}

static void
fetch_tenants(FunctionCallInfo fcinfo, TenantRequest *trs, int ntenants,
			  bool with_tenant_column, int failure_elevel)
{
	FetchState	state;
	PcqRequest **reqs = palloc(sizeof(PcqRequest *) * Max(ntenants, 1));
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	memset(&state, 0, sizeof(state));
	state.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	state.with_tenant_column = with_tenant_column;
	state.failure_elevel = failure_elevel;
	state.tenant_cxt = AllocSetContextCreate(CurrentMemoryContext,
											 "pcqual answer",
											 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < ntenants; i++)
	{
		char	   *tenant = DatumGetCString(DirectFunctionCall1(uuid_out,
																 UUIDPGetDatum(&trs[i].tenant_id)));

		pcq_request_init(&trs[i].req, qualifications_url(tenant), tenant);
		reqs[i] = &trs[i].req;
	}
	if (ntenants > 0)
		fetch_batch(&state, reqs, ntenants);
	MemoryContextDelete(state.tenant_cxt);
}

/*
 * pc_qualifications(tenant uuid) RETURNS TABLE (qualification text,
 *	   vetting_status text, vetting_reason text, vetting_created_date timestamptz)
 */
Datum
pc_qualifications(PG_FUNCTION_ARGS)
{
	TenantRequest *tr = palloc0(sizeof(TenantRequest));

	memcpy(&tr->tenant_id, PG_GETARG_UUID_P(0), sizeof(pg_uuid_t));
	fetch_tenants(fcinfo, tr, 1, false, ERROR);
	return (Datum) 0;
}

static int
compare_uuids(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

static int
on_error_elevel(text *on_error)
{
	char	   *mode = text_to_cstring(on_error);

	if (strcmp(mode, "error") == 0)
		return ERROR;
	if (strcmp(mode, "warning") == 0)
		return WARNING;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid on_error value \"%s\"", mode),
			 errhint("on_error is 'error' (the first customer that fails raises its error) or 'warning' (one WARNING per failed customer).")));
	return ERROR;				/* keep the compiler quiet */
}

/*
 * pc_qualifications(tenants uuid[], on_error text DEFAULT 'error')
 *	   RETURNS TABLE (customer_tenant_id uuid, qualification text, ...)
 *
 * Every distinct non-NULL tenant is fetched once, pcqual.concurrency at a
 * time.  Rows of one customer come together, in the service's order;
 * customers come in the order their answers arrived.
 */
Datum
pc_qualifications_bulk(PG_FUNCTION_ARGS)
{
	ArrayType  *tenants = PG_GETARG_ARRAYTYPE_P(0);
	int			elevel = on_error_elevel(PG_GETARG_TEXT_PP(1));
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	pg_uuid_t  *ids;
	int			nids = 0;
	TenantRequest *trs;
	int			ntenants = 0;
	int			i;

	deconstruct_array(tenants, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
					  &elems, &nulls, &nelems);
	ids = palloc(sizeof(pg_uuid_t) * Max(nelems, 1));
	for (i = 0; i < nelems; i++)
		if (!nulls[i])
			memcpy(&ids[nids++], DatumGetUUIDP(elems[i]), sizeof(pg_uuid_t));
	qsort(ids, nids, sizeof(pg_uuid_t), compare_uuids);

	trs = palloc0(sizeof(TenantRequest) * Max(nids, 1));
	for (i = 0; i < nids; i++)
		if (i == 0 || compare_uuids(&ids[i], &ids[i - 1]) != 0)
			trs[ntenants++].tenant_id = ids[i];
	pfree(ids);

	fetch_tenants(fcinfo, trs, ntenants, true, elevel);
	return (Datum) 0;
}
