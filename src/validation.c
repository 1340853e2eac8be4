/*-------------------------------------------------------------------------
 *
 * validation.c
 *	  A customer's validations: pc_validation_status() (its account
 *	  validation, GET /v1/customers/{id}/validationStatus?type=account) and
 *	  pc_customer_validations() (the GovernmentCommunityCloud validation
 *	  code linked to it, GET /v1/customers/{id}/validations).
 *
 * Partner Center answers the account validation status to App+User tokens
 * only, so, as for a create, other credentials are refused before any
 * request is sent.  Both go through the same transport, token, retries,
 * governor and statistics as every other request.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_validation_status);
PG_FUNCTION_INFO_V1(pc_customer_validations);

#define STATUS_COLUMNS 3
#define CUSTOMER_VALIDATION_COLUMNS 3

/* The tenant argument as text; NULL is refused, not skipped. */
static char *
tenant_arg(FunctionCallInfo fcinfo, const char *function)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant must not be NULL"),
				 errhint("%s asks Partner Center about one customer: pass its tenant id.", function)));
	return DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
}

/* GET path for the customer, raising the request's failure as an ERROR. */
static void
get_for_customer(PcqRequest *req, const char *path, PcqSubject subject,
				 const char *tenant)
{
	pcq_request_init(req, pcq_api_url(path), subject, tenant);
	pcq_http_run_authorized(req);
	if (req->outcome != PCQ_ANSWERED || req->status != 200)
		pcq_report_failure(req, ERROR);
}

static void
require_app_user_credentials(void)
{
	if (pcq_auth_mode() != PCQ_AUTH_APP_USER)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the account validation status needs App+User credentials"),
				 errdetail("Partner Center refuses application-only and externally managed tokens for this request."),
				 errhint("A superuser sets pcqual.refresh_token_file to a file holding a refresh token from an MFA sign-in (and unsets pcqual.access_token_file).")));
}

static void
fetch_validation_status(FunctionCallInfo fcinfo)
{
	char	   *tenant = tenant_arg(fcinfo, "pc_validation_status");
	ReturnSetInfo *rsinfo;
	PcqRequest	req;
	PcqValidationStatus status;
	PcqBodyProblem problem;
	Datum		values[STATUS_COLUMNS];
	bool		nulls[STATUS_COLUMNS] = {false};

	require_app_user_credentials();
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	get_for_customer(&req,
					 psprintf("/v1/customers/%s/validationStatus?type=account", tenant),
					 PCQ_SUBJECT_VALIDATION_STATUS, tenant);
	if (!pcq_parse_validation_status(req.body, req.body_len, &status, &problem))
		pcq_report_bad_body(&req, &problem, ERROR);
	values[0] = pcq_nullable_text(status.type, &nulls[0]);
	values[1] = CStringGetTextDatum(status.status);
	values[2] = TimestampTzGetDatum(status.last_updated);
	nulls[2] = !status.has_last_updated;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	pcq_activity_customers(1, 0);
}

/*
 * pc_validation_status(tenant uuid)
 *	   RETURNS TABLE (type text, status text, last_updated timestamptz)
 */
Datum
pc_validation_status(PG_FUNCTION_ARGS)
{
	pcq_activity_run("pc_validation_status", 1, fetch_validation_status, fcinfo);
	return (Datum) 0;
}

static void
fetch_customer_validations(FunctionCallInfo fcinfo)
{
	char	   *tenant = tenant_arg(fcinfo, "pc_customer_validations");
	ReturnSetInfo *rsinfo;
	PcqRequest	req;
	PcqBodyProblem problem;
	List	   *links;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	get_for_customer(&req, psprintf("/v1/customers/%s/validations", tenant),
					 PCQ_SUBJECT_CUSTOMER_VALIDATIONS, tenant);
	/* the items are validation codes' (without the counts) */
	links = pcq_parse_validation_codes(req.body, req.body_len, &problem);
	if (problem.text != NULL)
		pcq_report_bad_body(&req, &problem, ERROR);
	foreach(lc, links)
	{
		PcqValidationCode *v = lfirst(lc);
		Datum		values[CUSTOMER_VALIDATION_COLUMNS];
		bool		nulls[CUSTOMER_VALIDATION_COLUMNS] = {false};

		values[0] = CStringGetTextDatum(v->validation_id);
		values[1] = pcq_nullable_text(v->organization_name, &nulls[1]);
		nulls[2] = (v->partner_id == NULL);
		values[2] = nulls[2] ? (Datum) 0 :
			DirectFunctionCall1(uuid_in, CStringGetDatum(v->partner_id));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pcq_activity_customers(1, 0);
}

/*
 * pc_customer_validations(tenant uuid)
 *	   RETURNS TABLE (validation_id text, organization_name text,
 *	   partner_id uuid)
 */
Datum
pc_customer_validations(PG_FUNCTION_ARGS)
{
	pcq_activity_run("pc_customer_validations", 1, fetch_customer_validations, fcinfo);
	return (Datum) 0;
}
