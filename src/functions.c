/*-------------------------------------------------------------------------
 *
 * functions.c
 *	  The SQL-callable functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_qualifications);

/* Most of a bad date we quote in a WARNING. */
#define MAX_QUOTED_DATE 64

/* Columns of pc_qualifications(uuid). */
#define QUALIFICATION_COLUMNS 4

static char *
qualifications_url(const char *tenant)
{
	const char *base = pcq_base_url();
	int			len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	return psprintf("%.*s/v1/customers/%s/qualifications", len, base, tenant);
}

/*
 * Send one request with the current access token.  A 401 on a cached token
 * means the token was revoked or expired early: forget it, get a new one
 * and send the same logical request (same MS-RequestId) once more.
 */
static void
send_with_token(PcqRequest *req)
{
	PcqRequest *batch[1] = {req};
	bool		from_cache;

	req->bearer = pcq_access_token(&from_cache);
	pcq_http_run(batch, 1, 1);
	if (req->outcome == PCQ_ANSWERED && req->status == 401 && from_cache)
	{
		pcq_forget_access_token();
		req->bearer = pcq_access_token(&from_cache);
		pcq_http_run(batch, 1, 1);
	}
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

/* Fetch and parse one customer's qualifications; ERROR on any failure. */
static List *
fetch_qualifications(const char *tenant)
{
	PcqRequest	req;
	List	   *rows;
	char	   *problem;

	pcq_request_init(&req, qualifications_url(tenant), tenant);
	send_with_token(&req);
	if (req.outcome != PCQ_ANSWERED || req.status < 200 || req.status > 299)
		pcq_report_failure(&req, ERROR);
	rows = pcq_parse_qualifications(req.body, req.body_len, &problem);
	if (problem != NULL)
		pcq_report_bad_body(&req, problem, ERROR);
	warn_unparsed_dates(tenant, rows);
	return rows;
}

static Datum
nullable_text(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* Fill values/nulls with one qualification, from position "first" on. */
static void
qualification_values(const PcqQualification *q, Datum *values, bool *nulls)
{
	values[0] = CStringGetTextDatum(q->qualification);
	nulls[0] = false;
	values[1] = nullable_text(q->vetting_status, &nulls[1]);
	values[2] = nullable_text(q->vetting_reason, &nulls[2]);
	values[3] = TimestampTzGetDatum(q->vetting_created_date);
	nulls[3] = !q->has_created_date;
}

/*
 * pc_qualifications(tenant uuid) RETURNS TABLE (qualification text,
 *	   vetting_status text, vetting_reason text, vetting_created_date timestamptz)
 *
 * All rows are parsed before the first is stored, so a bad body never
 * yields part of an answer.
 */
Datum
pc_qualifications(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *tenant;
	List	   *rows;
	ListCell   *lc;

	tenant = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	InitMaterializedSRF(fcinfo, 0);
	rows = fetch_qualifications(tenant);

	foreach(lc, rows)
	{
		Datum		values[QUALIFICATION_COLUMNS];
		bool		nulls[QUALIFICATION_COLUMNS];

		qualification_values(lfirst(lc), values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
