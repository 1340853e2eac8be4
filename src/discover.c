/*-------------------------------------------------------------------------
 *
 * discover.c
 *	  What the partner has: pc_customers() and pc_validation_codes().
 *
 * pc_customers() follows GET /v1/customers page by page: each answer's
 * links.next carries an MS-ContinuationToken that the next request sends
 * with seekOperation=Next, until a page has no next link.  Each page's rows
 * are stored before the next is asked for and its memory is then freed, so
 * memory is bounded by one page, not by the number of customers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_customers);
PG_FUNCTION_INFO_V1(pc_validation_codes);

/* Customers asked for per page. */
#define CUSTOMER_PAGE_SIZE 100

#define CUSTOMER_COLUMNS 4
#define VALIDATION_COLUMNS 5

static Datum
uuid_datum(const char *text)
{
	return DirectFunctionCall1(uuid_in, CStringGetDatum(text));
}

/* Run a request and insist on a 200 answer. */
static void
run_or_raise(PcqRequest *req)
{
	pcq_http_run_authorized(req);
	if (req->outcome != PCQ_ANSWERED || req->status != 200)
		pcq_report_failure(req, ERROR);
}

/* filter={"Field": field, "Value": prefix, "Operator": "starts_with"} */
static void
append_filter(StringInfo url, const char *field, const char *prefix)
{
	cJSON	   *filter = cJSON_CreateObject();
	char	   *printed = NULL;

	if (filter != NULL &&
		cJSON_AddStringToObject(filter, "Field", field) != NULL &&
		cJSON_AddStringToObject(filter, "Value", prefix) != NULL &&
		cJSON_AddStringToObject(filter, "Operator", "starts_with") != NULL)
		printed = cJSON_PrintUnformatted(filter);
	cJSON_Delete(filter);
	if (printed == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a customer filter")));
	appendStringInfoString(url, "&filter=");
	pcq_append_percent_encoded(url, printed);
	cJSON_free(printed);
}

/* The list URL: first page, or the next one with seekOperation=Next. */
static char *
customers_url(const char *field, const char *prefix, bool next_page)
{
	StringInfoData url;
	char	   *path = psprintf("/v1/customers?size=%d%s", CUSTOMER_PAGE_SIZE,
								next_page ? "&seekOperation=Next" : "");

	initStringInfo(&url);
	appendStringInfoString(&url, pcq_api_url(path));
	if (field != NULL)
		append_filter(&url, field, prefix);
	return url.data;
}

static void
store_customers(ReturnSetInfo *rsinfo, List *customers)
{
	ListCell   *lc;

	foreach(lc, customers)
	{
		PcqCustomer *c = lfirst(lc);
		Datum		values[CUSTOMER_COLUMNS];
		bool		nulls[CUSTOMER_COLUMNS] = {false};

		values[0] = uuid_datum(c->tenant_id);
		values[1] = pcq_nullable_text(c->company_name, &nulls[1]);
		values[2] = pcq_nullable_text(c->domain, &nulls[2]);
		values[3] = pcq_nullable_text(c->relationship, &nulls[3]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pcq_activity_customers(list_length(customers), 0);
}

/*
 * Fetch one page and store its rows; returns the next page's continuation
 * token (in the caller's context), or NULL after the last page.
 */
static char *
fetch_customer_page(ReturnSetInfo *rsinfo, const char *field, const char *prefix,
					const char *continuation, MemoryContext keep_cxt)
{
	PcqRequest	req;
	PcqCustomerPage page;
	PcqBodyProblem problem;

	pcq_request_init(&req, customers_url(field, prefix, continuation != NULL),
					 PCQ_SUBJECT_CUSTOMER_LIST, NULL);
	req.continuation_token = continuation;
	run_or_raise(&req);
	if (!pcq_parse_customer_page(req.body, req.body_len, &page, &problem))
		pcq_report_bad_body(&req, &problem, ERROR);
	store_customers(rsinfo, page.customers);
	return page.continuation_token ?
		MemoryContextStrdup(keep_cxt, page.continuation_token) : NULL;
}

/* The one server-side filter a call may use, or none. */
static const char *
customer_filter(FunctionCallInfo fcinfo, char **prefix)
{
	bool		by_name = !PG_ARGISNULL(0);
	bool		by_domain = !PG_ARGISNULL(1);

	*prefix = NULL;
	if (by_name && by_domain)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pc_customers takes company_name_prefix or domain_prefix, not both"),
				 errhint("Partner Center filters on one field per request: filter on one and refine the other in SQL.")));
	if (!by_name && !by_domain)
		return NULL;
	*prefix = text_to_cstring(PG_GETARG_TEXT_PP(by_name ? 0 : 1));
	if ((*prefix)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", by_name ? "company_name_prefix" : "domain_prefix"),
				 errhint("Pass NULL to list every customer.")));
	return by_name ? "CompanyName" : "Domain";
}

static void
list_customers(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *prefix;
	const char *field = customer_filter(fcinfo, &prefix);
	MemoryContext page_cxt;
	MemoryContext oldcxt;
	char	   *continuation = NULL;

	InitMaterializedSRF(fcinfo, 0);
	page_cxt = AllocSetContextCreate(CurrentMemoryContext, "pcqual customer page",
									 ALLOCSET_DEFAULT_SIZES);
	do
	{
		char	   *next;

		CHECK_FOR_INTERRUPTS();
		oldcxt = MemoryContextSwitchTo(page_cxt);
		next = fetch_customer_page(rsinfo, field, prefix, continuation, oldcxt);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(page_cxt);
		if (continuation != NULL)
			pfree(continuation);
		continuation = next;
	} while (continuation != NULL);
	MemoryContextDelete(page_cxt);
}

/*
 * pc_customers(company_name_prefix text, domain_prefix text)
 *	   RETURNS TABLE (tenant_id uuid, company_name text, domain text,
 *	   relationship text)
 */
Datum
pc_customers(PG_FUNCTION_ARGS)
{
	pcq_activity_run("pc_customers", -1, list_customers, fcinfo);
	return (Datum) 0;
}

static void
list_validation_codes(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo;
	PcqRequest	req;
	PcqBodyProblem problem;
	List	   *codes;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pcq_request_init(&req, pcq_api_url("/v1/customers/all/validations"),
					 PCQ_SUBJECT_VALIDATIONS, NULL);
	run_or_raise(&req);
	codes = pcq_parse_validation_codes(req.body, req.body_len, &problem);
	if (problem.text != NULL)
		pcq_report_bad_body(&req, &problem, ERROR);
	foreach(lc, codes)
	{
		PcqValidationCode *v = lfirst(lc);
		Datum		values[VALIDATION_COLUMNS];
		bool		nulls[VALIDATION_COLUMNS] = {false};

		values[0] = CStringGetTextDatum(v->validation_id);
		values[1] = pcq_nullable_text(v->organization_name, &nulls[1]);
		nulls[2] = (v->partner_id == NULL);
		values[2] = nulls[2] ? (Datum) 0 : uuid_datum(v->partner_id);
		values[3] = Int32GetDatum(v->max_creates);
		nulls[3] = !v->has_max_creates;
		values[4] = Int32GetDatum(v->remaining_creates);
		nulls[4] = !v->has_remaining_creates;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * pc_validation_codes() RETURNS TABLE (validation_id text, organization_name
 *	   text, partner_id uuid, max_creates integer, remaining_creates integer)
 */
Datum
pc_validation_codes(PG_FUNCTION_ARGS)
{
	pcq_activity_run("pc_validation_codes", -1, list_validation_codes, fcinfo);
	return (Datum) 0;
}
