/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The read functions: pc_qualifications for one customer and for many,
 *	  pc_fetch_qualifications for a scheduled sync, and pc_disconnect.
 *
 * All reads are one code path: a batch run by http.c, whose requests are
 * built one at a time from the de-duplicated tenant ids as slots free, each
 * answer parsed and stored as soon as it is final, and freed with its
 * request.  Memory is therefore bounded by the 16 bytes of each tenant id
 * plus what is in flight.  The single-tenant function is a batch of one
 * that raises every failure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_qualifications);
PG_FUNCTION_INFO_V1(pc_qualifications_bulk);
PG_FUNCTION_INFO_V1(pc_fetch_qualifications);
PG_FUNCTION_INFO_V1(pc_disconnect);

/* The most tenants one call takes: 160 MB of ids, well below 1 GB. */
#define MAX_TENANTS 10000000

/* Columns: [customer_tenant_id, succeeded,] qualification, status, reason,
 * date [, error_sqlstate, error_message]. */
#define MAX_COLUMNS 8

/* What a failed customer becomes. */
typedef enum FailureMode
{
	RAISE_ERROR,				/* the first failure raises its ERROR */
	RAISE_WARNING,				/* one WARNING per failed customer */
	RECORD_OUTCOME,				/* a WARNING, and a row saying why */
	DELIVER_EACH				/* each customer's rows or failure to a
								 * callback, which decides (lateral.c) */
} FailureMode;

/* One customer's request, and its tenant id for the result column. */
typedef struct TenantRequest
{
	PcqRequest	req;			/* first: http.c hands back a PcqRequest * */
	pg_uuid_t	tenant_id;
} TenantRequest;

/* A tenant whose request must be sent again with a new token. */
typedef struct RejectedTenant
{
	pg_uuid_t	id;
	char		request_id[PCQ_GUID_SIZE];
	int			attempts;
} RejectedTenant;

/* What a batch needs while its answers come in. */
typedef struct FetchState
{
	ReturnSetInfo *rsinfo;
	bool		with_tenant_column;
	FailureMode mode;

	/* the requests to make */
	const pg_uuid_t *ids;		/* sorted, distinct */
	const RejectedTenant *retry; /* or these, for the second pass */
	int			ntenants;
	int			next;
	const char *bearer;
	bool		token_renewable;

	/* answers that were 401 on a cached token */
	RejectedTenant *rejected;
	int			nrejected;
	int			rejected_cap;

	MemoryContext request_cxt;	/* requests and their bodies */
	MemoryContext answer_cxt;	/* parse one answer in here, then reset */
	MemoryContext keep_cxt;		/* what outlives the batch's passes */

	/* DELIVER_EACH */
	PcqCustomerResult deliver;
	void	   *deliver_arg;
	int			attempts;		/* of the request being consumed */
} FetchState;

static char *
tenant_text(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

static char *
qualifications_url(const char *tenant)
{
	char	   *path = psprintf("/v1/customers/%s/qualifications", tenant);
	char	   *url = pcq_api_url(path);

	pfree(path);
	return url;
}

/* http.c asks for the next request: build it now, not before. */
static PcqRequest *
next_tenant_request(void *arg)
{
	FetchState *state = (FetchState *) arg;
	const pg_uuid_t *id;
	TenantRequest *tr;
	char	   *tenant;
	MemoryContext oldcxt;

	if (state->next >= state->ntenants)
		return NULL;
	id = state->retry ? &state->retry[state->next].id : &state->ids[state->next];
	oldcxt = MemoryContextSwitchTo(state->request_cxt);
	tenant = tenant_text(id);
	tr = palloc(sizeof(TenantRequest));
	pcq_request_init(&tr->req, qualifications_url(tenant), PCQ_SUBJECT_CUSTOMER, tenant);
	tr->tenant_id = *id;
	pfree(tenant);
	if (state->retry)
	{
		/* the same request, sent once more: same id, attempts go on */
		strlcpy(tr->req.request_id, state->retry[state->next].request_id,
				sizeof(tr->req.request_id));
		tr->req.attempts = state->retry[state->next].attempts;
		pcq_stat_retry(&tr->req, 0);
		pcq_activity_retry();
	}
	tr->req.bearer = state->bearer;
	MemoryContextSwitchTo(oldcxt);
	state->next++;
	return &tr->req;
}

static void
free_request(PcqRequest *req)
{
	if (req->body != NULL)
		pfree(req->body);
	pfree(req->url);
	pfree(req);
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
					 errmsg("vetting date \"%s\" of customer %s is not ISO 8601",
							pcq_quotable_text(q->unparsed_date, strlen(q->unparsed_date)),
							tenant),
					 errdetail("vetting_created_date of its %s qualification is NULL.",
							   pcq_quotable_text(q->qualification, strlen(q->qualification)))));
	}
}

/* A text column's value, NULL for a NULL string. */
Datum
pcq_nullable_text(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * One result row.  q is NULL for an outcome row without a qualification
 * (a customer with none, or one that failed: then failure is set).
 */
static void
store_row(FetchState *state, const pg_uuid_t *tenant, const PcqQualification *q,
		  const PcqFailure *failure)
{
	Datum		values[MAX_COLUMNS];
	bool		nulls[MAX_COLUMNS];
	int			c = 0;

	memset(nulls, true, sizeof(nulls));
	if (state->with_tenant_column)
	{
		values[c] = UUIDPGetDatum(tenant);
		nulls[c++] = false;
	}
	if (state->mode == RECORD_OUTCOME)
	{
		values[c] = BoolGetDatum(failure == NULL);
		nulls[c++] = false;
	}
	if (q != NULL)
	{
		values[c] = CStringGetTextDatum(q->qualification);
		nulls[c] = false;
		values[c + 1] = pcq_nullable_text(q->vetting_status, &nulls[c + 1]);
		values[c + 2] = pcq_nullable_text(q->vetting_reason, &nulls[c + 2]);
		values[c + 3] = TimestampTzGetDatum(q->vetting_created_date);
		nulls[c + 3] = !q->has_created_date;
	}
	c += 4;
	if (state->mode == RECORD_OUTCOME && failure != NULL)
	{
		values[c] = CStringGetTextDatum(unpack_sql_state(failure->sqlstate));
		nulls[c] = false;
		values[c + 1] = CStringGetTextDatum(failure->message);
		nulls[c + 1] = false;
	}
	tuplestore_putvalues(state->rsinfo->setResult, state->rsinfo->setDesc,
						 values, nulls);
}

static void
store_customer(FetchState *state, const pg_uuid_t *tenant, List *rows)
{
	ListCell   *lc;

	if (state->mode == DELIVER_EACH)
	{
		state->deliver(state->deliver_arg, tenant, rows, NULL, state->attempts);
		return;
	}
	foreach(lc, rows)
		store_row(state, tenant, lfirst(lc), NULL);
	if (rows == NIL && state->mode == RECORD_OUTCOME)
		store_row(state, tenant, NULL, NULL);	/* a success with no rows */
}

/*
 * The rows of one customer's qualifications, as pc_qualifications(uuid)
 * returns them (for the answer of a create, say).
 */
void
pcq_store_qualifications(ReturnSetInfo *rsinfo, const char *tenant, List *rows)
{
	FetchState	state;

	memset(&state, 0, sizeof(state));
	state.rsinfo = rsinfo;
	state.mode = RAISE_ERROR;
	warn_unparsed_dates(tenant, rows);
	store_customer(&state, NULL, rows);
}

static void
handle_failure(FetchState *state, const pg_uuid_t *tenant, PcqFailure *failure)
{
	if (state->mode == DELIVER_EACH)
	{
		state->deliver(state->deliver_arg, tenant, NIL, failure, state->attempts);
		return;
	}
	if (state->mode == RAISE_ERROR)
		pcq_raise(failure, ERROR);
	pcq_raise(failure, WARNING);
	if (state->mode == RECORD_OUTCOME)
		store_row(state, tenant, NULL, failure);
}

/*
 * Parse a 2xx answer and store its rows, or handle what was wrong.
 * Returns whether the customer succeeded.
 */
static bool
consume_answer(FetchState *state, PcqRequest *req, const pg_uuid_t *tenant)
{
	PcqFailure	failure;
	PcqBodyProblem problem;
	List	   *rows;

	if (req->outcome != PCQ_ANSWERED || req->status < 200 || req->status > 299)
	{
		pcq_describe_failure(req, &failure);
		handle_failure(state, tenant, &failure);
		return false;
	}
	rows = pcq_parse_qualifications(req->body, req->body_len, &problem);
	if (problem.text != NULL)
	{
		pcq_describe_bad_body(req, &problem, &failure);
		pcq_stat_failure(req, &failure);
		handle_failure(state, tenant, &failure);
		return false;
	}
	warn_unparsed_dates(req->subject_id, rows);
	store_customer(state, tenant, rows);
	return true;
}

static void
remember_rejected(FetchState *state, const pg_uuid_t *tenant, const PcqRequest *req)
{
	if (state->nrejected == state->rejected_cap)
	{
		state->rejected_cap = Max(16, state->rejected_cap * 2);
		state->rejected = state->rejected ?
			repalloc_huge(state->rejected, sizeof(RejectedTenant) * state->rejected_cap) :
			MemoryContextAllocHuge(CurrentMemoryContext,
								   sizeof(RejectedTenant) * state->rejected_cap);
	}
	state->rejected[state->nrejected].id = *tenant;
	strlcpy(state->rejected[state->nrejected].request_id, req->request_id, PCQ_GUID_SIZE);
	state->rejected[state->nrejected].attempts = req->attempts;
	state->nrejected++;
}

/*
 * http.c's callback: one customer's request is final.  It is freed here
 * with its body, so a batch holds only what is in flight.
 */
static void
on_request_done(PcqRequest *req, void *arg)
{
	FetchState *state = (FetchState *) arg;
	pg_uuid_t	tenant = ((TenantRequest *) req)->tenant_id;
	MemoryContext oldcxt;
	bool		succeeded;

	if (req->outcome == PCQ_ANSWERED && req->status == 401 && state->token_renewable)
	{
		/* the token was revoked or expired early: retried after the batch */
		oldcxt = MemoryContextSwitchTo(state->keep_cxt);
		remember_rejected(state, &tenant, req);
		MemoryContextSwitchTo(oldcxt);
		free_request(req);
		return;
	}

	oldcxt = MemoryContextSwitchTo(state->answer_cxt);
	state->attempts = req->attempts;
	succeeded = consume_answer(state, req, &tenant);
	MemoryContextSwitchTo(oldcxt);
	pcq_activity_customers(1, succeeded ? 0 : 1);
	MemoryContextReset(state->answer_cxt);
	free_request(req);
}

/*
 * Whether an ERROR on the way to an access token is the failure of the
 * customers waiting for it, in the modes that go on past a failure.  A
 * cancel, a shutdown, memory running out or an internal error stays the
 * statement's.
 */
static bool
is_customer_failure(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_INTERNAL_ERROR:
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INVALID_TRANSACTION_STATE:
			return false;
		default:
			return true;
	}
}

/*
 * The batch's access token, in state->bearer.  In the modes that go on past
 * a failure, an ERROR getting it is caught in a subtransaction (as a
 * PL/pgSQL exception block does) and described in *failure instead: what
 * the batch fetched so far is kept.  Returns whether there is a token.
 */
static bool
take_batch_token(FetchState *state, PcqFailure *failure)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if (state->mode == RAISE_ERROR || state->mode == DELIVER_EACH)
	{
		/* as pc_qualifications(uuid) would, at its first customer */
		MemoryContextSwitchTo(state->request_cxt);
		state->bearer = pcq_access_token(&state->token_renewable);
		MemoryContextSwitchTo(cxt);
		return true;
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(state->request_cxt);
	PG_TRY();
	{
		state->bearer = pcq_access_token(&state->token_renewable);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!is_customer_failure(edata->sqlerrcode))
			ReThrowError(edata);
		memset(failure, 0, sizeof(*failure));
		failure->sqlstate = edata->sqlerrcode;
		failure->message = edata->message;
		failure->detail = edata->detail;
		failure->hint = edata->hint;
		state->bearer = NULL;
		return false;
	}
	PG_END_TRY();
	return true;
}

/*
 * No token for the customers the batch has still to send: each of them
 * fails with the token's error.  One WARNING says so for all of them (not
 * one per customer: they would all say the same); pc_fetch_qualifications
 * gives each its outcome row.
 */
static void
fail_unsent(FetchState *state, const PcqFailure *failure)
{
	int			unsent = state->ntenants - state->next;

	ereport(WARNING,
			(errcode(failure->sqlstate),
			 errmsg("no access token for %d customers: %s", unsent, failure->message),
			 failure->detail ? errdetail_internal("%s", failure->detail) : 0,
			 failure->hint ? errhint("%s", failure->hint) : 0));
	for (; state->next < state->ntenants; state->next++)
	{
		const pg_uuid_t *id = state->retry ?
			&state->retry[state->next].id : &state->ids[state->next];

		CHECK_FOR_INTERRUPTS();
		if (state->mode == RECORD_OUTCOME)
			store_row(state, id, NULL, failure);
	}
	pcq_activity_customers(0, unsent);
}

/*
 * Send the pass's requests, or fail them all when there is no token.  A
 * 401 is put aside for a second pass only on the first: the second sends
 * with a token just obtained.
 */
static void
run_batch_pass(FetchState *state, bool first_pass)
{
	PcqFailure	failure;

	if (!take_batch_token(state, &failure))
	{
		fail_unsent(state, &failure);
		return;
	}
	if (!first_pass)
		state->token_renewable = false;
	pcq_http_run(PCQ_SUBJECT_CUSTOMER, next_tenant_request, on_request_done,
				 state, state->ntenants == 1 ? 1 : pcq_concurrency);
	pcq_release_access_token(state->bearer);
	state->bearer = NULL;
}

/*
 * Fetch every tenant's answer with the current access token.  Tenants whose
 * cached token was refused (401) are sent once more, after the batch, with
 * a new token and the same MS-RequestId.
 */
static void
fetch_batch(FetchState *state)
{
	run_batch_pass(state, true);
	if (state->nrejected > 0)
	{
		RejectedTenant *retry = state->rejected;

		state->retry = retry;
		state->ntenants = state->nrejected;
		state->next = 0;
		state->rejected = NULL;
		state->nrejected = state->rejected_cap = 0;
		pcq_forget_access_token();
		run_batch_pass(state, false);
		pfree(retry);
	}
}

/* One batch of distinct tenants, as state says; state's contexts made here. */
static void
run_fetch(FetchState *state, const char *function)
{
	state->keep_cxt = CurrentMemoryContext;
	state->request_cxt = AllocSetContextCreate(CurrentMemoryContext,
											   "pcqual requests",
											   ALLOCSET_DEFAULT_SIZES);
	state->answer_cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "pcqual answer",
											  ALLOCSET_DEFAULT_SIZES);
	if (state->ntenants > 0)
	{
		pcq_activity_begin(function, state->ntenants);
		PG_TRY();
		{
			fetch_batch(state);
		}
		PG_FINALLY();
		{
			pcq_activity_end();
		}
		PG_END_TRY();
	}
	MemoryContextDelete(state->answer_cxt);
	MemoryContextDelete(state->request_cxt);
}

static void
fetch_tenants(FunctionCallInfo fcinfo, const char *function,
			  const pg_uuid_t *ids, int ntenants, bool with_tenant_column,
			  FailureMode mode)
{
	FetchState	state;

	InitMaterializedSRF(fcinfo, 0);
	memset(&state, 0, sizeof(state));
	state.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	state.with_tenant_column = with_tenant_column;
	state.mode = mode;
	state.ids = ids;
	state.ntenants = ntenants;
	run_fetch(&state, function);
}

/*
 * The qualifications of distinct tenants (sorted), fetched as the bulk
 * functions do, each customer's outcome handed to deliver as soon as it is
 * final: its rows (in answer_cxt's memory, reset after the call: copy what
 * is kept) or its failure, described as pc_qualifications(uuid) would raise
 * it, and not raised.  A failure to get an access token is raised, as
 * pc_qualifications(uuid) raises it.  For lateral.c's batched join.
 */
void
pcq_fetch_customers(const pg_uuid_t *ids, int ntenants,
					PcqCustomerResult deliver, void *arg)
{
	FetchState	state;

	memset(&state, 0, sizeof(state));
	state.mode = DELIVER_EACH;
	state.ids = ids;
	state.ntenants = ntenants;
	state.deliver = deliver;
	state.deliver_arg = arg;
	run_fetch(&state, "pc_qualifications");
}

/*
 * pc_qualifications(tenant uuid) RETURNS TABLE (qualification text,
 *	   vetting_status text, vetting_reason text, vetting_created_date timestamptz)
 */
Datum
pc_qualifications(PG_FUNCTION_ARGS)
{
	pg_uuid_t	tenant = *PG_GETARG_UUID_P(0);

	fetch_tenants(fcinfo, "pc_qualifications", &tenant, 1, false, RAISE_ERROR);
	return (Datum) 0;
}

static int
compare_uuids(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

static int
compare_uuids_arg(const void *a, const void *b, void *arg)
{
	return compare_uuids(a, b);
}

/*
 * The distinct non-NULL tenant ids of an array, sorted: 16 bytes each,
 * nothing else is made up front.
 */
static pg_uuid_t *
distinct_tenants(ArrayType *tenants, int *ntenants)
{
	int			nitems = ArrayGetNItems(ARR_NDIM(tenants), ARR_DIMS(tenants));
	ArrayIterator it;
	pg_uuid_t  *ids;
	Datum		value;
	bool		isnull;
	int			n = 0;
	int			i;

	if (nitems > MAX_TENANTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many tenants: %d, pcqual takes at most %d in one call",
						nitems, MAX_TENANTS),
				 errhint("Split the array and call pcqual once per part.")));
	ids = MemoryContextAllocHuge(CurrentMemoryContext,
								 sizeof(pg_uuid_t) * Max(nitems, 1));
	it = array_create_iterator(tenants, 0, NULL);
	while (array_iterate(it, &value, &isnull))
	{
		CHECK_FOR_INTERRUPTS();
		if (!isnull)
			ids[n++] = *DatumGetUUIDP(value);
	}
	array_free_iterator(it);

	/* millions of ids take seconds to sort: a cancel must not wait for it */
	qsort_interruptible(ids, n, sizeof(pg_uuid_t), compare_uuids_arg, NULL);
	*ntenants = 0;
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (i == 0 || compare_uuids(&ids[i], &ids[*ntenants - 1]) != 0)
			ids[(*ntenants)++] = ids[i];
	}
	return ids;
}

static FailureMode
failure_mode(FunctionCallInfo fcinfo, int argno)
{
	char	   *mode;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("on_error must not be NULL"),
				 errhint("on_error is 'error' (the first customer that fails raises its error) or 'warning' (one WARNING per failed customer).")));
	mode = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(mode, "error") == 0)
		return RAISE_ERROR;
	if (strcmp(mode, "warning") == 0)
		return RAISE_WARNING;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid on_error value \"%s\"", mode),
			 errhint("on_error is 'error' (the first customer that fails raises its error) or 'warning' (one WARNING per failed customer).")));
	return RAISE_ERROR;			/* keep the compiler quiet */
}

/*
 * pc_qualifications(tenants uuid[], on_error text DEFAULT 'error')
 *	   RETURNS TABLE (customer_tenant_id uuid, qualification text, ...)
 *
 * Every distinct non-NULL tenant is fetched once, pcqual.concurrency at a
 * time.  Rows of one customer come together, in the service's order;
 * customers come in the order their answers arrived.  A NULL array gives
 * no rows; a NULL on_error is an error.
 */
Datum
pc_qualifications_bulk(PG_FUNCTION_ARGS)
{
	FailureMode mode = failure_mode(fcinfo, 1);
	pg_uuid_t  *ids = NULL;
	int			ntenants = 0;

	if (!PG_ARGISNULL(0))
		ids = distinct_tenants(PG_GETARG_ARRAYTYPE_P(0), &ntenants);
	fetch_tenants(fcinfo, "pc_qualifications", ids, ntenants, true, mode);
	return (Datum) 0;
}

/*
 * pc_fetch_qualifications(tenants uuid[]) RETURNS TABLE (customer_tenant_id
 *	   uuid, succeeded boolean, qualification text, ..., error_sqlstate text,
 *	   error_message text)
 *
 * The bulk fetch with each customer's outcome: its qualifications, one row
 * with a NULL qualification for a customer that has none, or one row with
 * succeeded = false, the SQLSTATE and the message of the error it would
 * have raised (also given as a WARNING).  pc_sync_qualifications is built
 * on it.
 */
Datum
pc_fetch_qualifications(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *ids = NULL;
	int			ntenants = 0;

	if (!PG_ARGISNULL(0))
		ids = distinct_tenants(PG_GETARG_ARRAYTYPE_P(0), &ntenants);
	fetch_tenants(fcinfo, "pc_fetch_qualifications", ids, ntenants, true,
				  RECORD_OUTCOME);
	return (Datum) 0;
}

/*
 * pc_disconnect() RETURNS integer: closes this session's cached
 * connections and drops the cluster's access token of the credential in
 * effect (the next call of any session asks Azure AD for a new one);
 * returns how many connections it closed.
 */
Datum
pc_disconnect(PG_FUNCTION_ARGS)
{
	int			closed = pcq_http_disconnect();

	pcq_drop_access_token();
	PG_RETURN_INT32(closed);
}
