/*-------------------------------------------------------------------------
 *
 * write.c
 *	  pc_create_qualification: POST a customer's qualification.
 *
 * Setting a qualification cannot be undone at Microsoft, so everything that
 * can be checked is checked before a request is sent: the qualification and
 * the fields it takes (Education: a segment and maybe a website;
 * GovernmentCommunityCloud: a validation code; StateOwnedEntity: nothing),
 * and App+User credentials, which the service demands for writes.
 *
 * Every attempt of one call carries the same MS-RequestId, the service's
 * idempotency key, so a create retried after a timeout or a 5xx is not made
 * twice; a caller that passes request_id makes that key its own, so that a
 * job run again after it died is not a second create either.  400, 401 (beyond one token refresh), 403, 404 and 409 are never
 * retried.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_create_qualification);

/* What a create asks for, in Partner Center's canonical spelling. */
typedef struct CreateRequest
{
	const char *qualification;
	const char *education_segment;
	const char *website;
	const char *validation_code;
} CreateRequest;

/* The canonical spelling of value among names, matched ignoring case. */
static const char *
canonical(const char *value, const char *const *names)
{
	for (; *names != NULL; names++)
		if (pg_strcasecmp(value, *names) == 0)
			return *names;
	return NULL;
}

static const char *
canonical_qualification(const char *value)
{
	static const char *const settable[] = {"Education", "GovernmentCommunityCloud",
	"StateOwnedEntity", NULL};
	static const char *const readonly[] = {"Nonprofit", "None", NULL};
	const char *name = canonical(value, settable);

	if (name != NULL)
		return name;
	if (canonical(value, readonly) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("qualification \"%s\" cannot be set", canonical(value, readonly)),
				 errhint("pc_create_qualification sets Education, GovernmentCommunityCloud or StateOwnedEntity.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid qualification \"%s\"", value),
			 errhint("pc_create_qualification sets Education, GovernmentCommunityCloud or StateOwnedEntity.")));
	return NULL;				/* keep the compiler quiet */
}

static const char *
canonical_segment(const char *value)
{
	static const char *const segments[] = {"K12", "HigherEducation", NULL};
	const char *name;

	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an Education qualification needs an education_segment"),
				 errhint("education_segment is K12 or HigherEducation.")));
	name = canonical(value, segments);
	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid education_segment \"%s\"", value),
				 errhint("education_segment is K12 or HigherEducation.")));
	return name;
}

/* A field the qualification does not take must be NULL. */
static void
refuse_field(const char *value, const char *field, const char *qualification,
			 const char *takes)
{
	if (value != NULL && strcmp(qualification, "Education") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an Education qualification takes no %s", field),
				 errhint("%s", takes)));
	if (value != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a %s qualification takes no %s", qualification, field),
				 errhint("%s", takes)));
}

static char *
optional_arg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* Check the arguments, before anything is sent. */
static void
check_create_request(FunctionCallInfo fcinfo, CreateRequest *create)
{
	const char *q;
	char	   *segment = optional_arg(fcinfo, 2);
	char	   *website = optional_arg(fcinfo, 3);
	char	   *code = optional_arg(fcinfo, 4);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", PG_ARGISNULL(0) ? "tenant" : "qualification"),
				 errhint("pc_create_qualification never skips a customer silently: pass a tenant id and a qualification.")));
	q = canonical_qualification(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	memset(create, 0, sizeof(*create));
	create->qualification = q;
	if (strcmp(q, "Education") == 0)
	{
		create->education_segment = canonical_segment(segment);
		create->website = website;
		refuse_field(code, "validation_code", q,
					 "Education takes education_segment (K12 or HigherEducation) and optionally website.");
	}
	else if (strcmp(q, "GovernmentCommunityCloud") == 0)
	{
		if (code == NULL || code[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a GovernmentCommunityCloud qualification needs a validation_code"),
					 errhint("pc_validation_codes() lists the partner's validation codes.")));
		refuse_field(segment, "education_segment", q,
					 "GovernmentCommunityCloud takes only validation_code.");
		refuse_field(website, "website", q,
					 "GovernmentCommunityCloud takes only validation_code.");
		create->validation_code = code;
	}
	else
	{
		refuse_field(segment, "education_segment", q, "StateOwnedEntity takes no other argument.");
		refuse_field(website, "website", q, "StateOwnedEntity takes no other argument.");
		refuse_field(code, "validation_code", q, "StateOwnedEntity takes no other argument.");
	}
}

static void
require_app_user_credentials(void)
{
	if (pcq_auth_mode() != PCQ_AUTH_APP_USER)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("creating a qualification needs App+User credentials"),
				 errdetail("Partner Center refuses application-only and externally managed tokens for this request."),
				 errhint("A superuser sets pcqual.refresh_token_file to a file holding a refresh token from an MFA sign-in (and unsets pcqual.access_token_file).")));
}

/* The JSON body: only the fields that are set, never null. */
static char *
create_body(const CreateRequest *create)
{
	cJSON	   *body = cJSON_CreateObject();
	char	   *printed = NULL;
	char	   *result;
	bool		ok;

	ok = body != NULL &&
		cJSON_AddStringToObject(body, "qualification", create->qualification) != NULL &&
		(create->education_segment == NULL ||
		 cJSON_AddStringToObject(body, "educationSegment", create->education_segment) != NULL) &&
		(create->website == NULL ||
		 cJSON_AddStringToObject(body, "website", create->website) != NULL) &&
		(create->validation_code == NULL ||
		 cJSON_AddStringToObject(body, "validationCode", create->validation_code) != NULL);
	if (ok)
		printed = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	if (printed == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a request body")));
	result = pstrdup(printed);
	cJSON_free(printed);
	return result;
}

/*
 * The caller's idempotency key, when given, instead of a new one: the
 * MS-RequestId of the POST and of every retry, so that running the same
 * create again with the same key gets Partner Center's answer to the first
 * instead of a second create.  (Before ALTER EXTENSION UPDATE the function
 * is declared with five arguments.)
 */
static void
use_callers_request_id(FunctionCallInfo fcinfo, PcqRequest *req)
{
	char	   *id;

	if (PG_NARGS() < 6 || PG_ARGISNULL(5))
		return;
	id = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(5)));
	strlcpy(req->request_id, id, sizeof(req->request_id));
	pfree(id);
}

static void
create_qualification(FunctionCallInfo fcinfo)
{
	CreateRequest create;
	PcqRequest	req;
	char	   *tenant;
	char	   *path;
	PcqBodyProblem problem;
	List	   *rows;

	check_create_request(fcinfo, &create);
	require_app_user_credentials();
	InitMaterializedSRF(fcinfo, 0);

	tenant = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	path = psprintf("/v1/customers/%s/qualifications", tenant);
	pcq_request_init(&req, pcq_api_url(path), PCQ_SUBJECT_CUSTOMER, tenant);
	use_callers_request_id(fcinfo, &req);
	req.method = "POST";
	req.post_content_type = "application/json";
	req.post_body = create_body(&create);
	pcq_http_run_authorized(&req);

	if (req.outcome != PCQ_ANSWERED || (req.status != 200 && req.status != 201))
		pcq_report_failure(&req, ERROR);
	rows = pcq_parse_qualifications(req.body, req.body_len, &problem);
	if (problem.text != NULL)
		pcq_report_bad_body(&req, &problem, ERROR);
	pcq_store_qualifications((ReturnSetInfo *) fcinfo->resultinfo, tenant, rows);
	pcq_activity_customers(1, 0);
}

/*
 * pc_create_qualification(tenant uuid, qualification text,
 *	   education_segment text, website text, validation_code text)
 *	   RETURNS TABLE (qualification text, vetting_status text,
 *	   vetting_reason text, vetting_created_date timestamptz)
 */
Datum
pc_create_qualification(PG_FUNCTION_ARGS)
{
	pcq_activity_run("pc_create_qualification", 1, create_qualification, fcinfo);
	return (Datum) 0;
}
