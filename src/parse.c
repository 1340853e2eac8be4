/*-------------------------------------------------------------------------
 *
 * parse.c
 *	  Response bodies: a customer's qualifications, Partner Center error
 *	  bodies and Azure AD token answers.
 *
 * Nothing here raises an ERROR for a bad body: the qualification parser
 * returns a description of what was wrong, and the caller reports it with
 * the request's ids.  Every cJSON tree is deleted on every path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>
#include <math.h>

#include "mb/pg_wchar.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "pcqual.h"

/* Longest token lifetime believed. */
#define MAX_TOKEN_LIFETIME_SECS 86400.0

/* Longest service-provided text we put into a message. */
#define MAX_MESSAGE_TEXT 300

/*
 * Parse a whole body as JSON.  The body is NUL-terminated; parsing it with
 * its terminator makes cJSON reject anything after the first value.
 */
static cJSON *
parse_json(const char *body, size_t len, size_t *error_offset)
{
	cJSON	   *root;

	*error_offset = 0;
	if (body == NULL || strlen(body) != len)
		return NULL;
	root = cJSON_ParseWithLengthOpts(body, len + 1, NULL, true);
	if (root == NULL)
	{
		const char *at = cJSON_GetErrorPtr();

		if (at != NULL && at >= body && at <= body + len)
			*error_offset = at - body;
	}
	return root;
}

/*
 * A JSON string as server-encoded text, or NULL when it is not valid UTF-8.
 * Conversion to a non-UTF-8 server encoding can still raise an ERROR for a
 * character that encoding lacks; that message names the character.
 */
static char *
json_text(const cJSON *value)
{
	const char *s = value->valuestring;
	int			len = strlen(s);

	if (!pg_verify_mbstr(PG_UTF8, s, len, true))
		return NULL;
	return pstrdup((const char *) pg_any_to_server(s, len, PG_UTF8));
}

/*
 * ISO 8601 as Partner Center sends it: YYYY-MM-DDTHH:MM:SS, 0 to 7 fraction
 * digits, and Z or +hh:mm / -hh:mm.  The shape is checked here; PostgreSQL's
 * own datetime routines validate and convert the fields, and round the 7th
 * fraction digit to microseconds.
 */
bool
pcq_parse_iso8601(const char *text, TimestampTz *result)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	char		local[64];
	size_t		n = strlen(text);
	size_t		i;
	size_t		zone;
	int			offset_secs = 0;
	char		workbuf[MAXDATELEN + 1];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	if (n < sizeof(shape) || n >= sizeof(local))
		return false;
	for (i = 0; i < sizeof(shape) - 1; i++)
	{
		if (shape[i] == 'd' ? !isdigit((unsigned char) text[i]) : text[i] != shape[i])
			return false;
	}
	if (text[i] == '.')
	{
		size_t		digits = 0;

		for (i++; isdigit((unsigned char) text[i]); i++)
			digits++;
		if (digits < 1 || digits > 7)
			return false;
	}
	zone = i;
	if (strcmp(text + zone, "Z") == 0)
		offset_secs = 0;
	else if ((text[zone] == '+' || text[zone] == '-') && n - zone == 6 &&
			 isdigit((unsigned char) text[zone + 1]) && isdigit((unsigned char) text[zone + 2]) &&
			 text[zone + 3] == ':' &&
			 isdigit((unsigned char) text[zone + 4]) && isdigit((unsigned char) text[zone + 5]))
	{
		int			hh = (text[zone + 1] - '0') * 10 + (text[zone + 2] - '0');
		int			mm = (text[zone + 4] - '0') * 10 + (text[zone + 5] - '0');

		if (hh > 14 || mm > 59)
			return false;
		offset_secs = (hh * 3600 + mm * 60) * (text[zone] == '+' ? 1 : -1);
	}
	else
		return false;

	memcpy(local, text, zone);
	local[zone] = '\0';
	if (ParseDateTime(local, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nf) != 0 ||
		DecodeDateTime(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 ||
		dtype != DTK_DATE)
		return false;

	/* PostgreSQL counts zone offsets in seconds west of Greenwich. */
	tz = -offset_secs;
	return tm2timestamp(&tm, fsec, &tz, result) == 0 && IS_VALID_TIMESTAMP(*result);
}

/* An optional text field: absent or null gives NULL. */
static bool
optional_text(const cJSON *item, const char *key, int index, char **out,
			  char **problem)
{
	const cJSON *value = cJSON_GetObjectItem(item, key);

	*out = NULL;
	if (value == NULL || cJSON_IsNull(value))
		return true;
	if (!cJSON_IsString(value))
	{
		*problem = psprintf("item %d: \"%s\" is neither a string nor null", index, key);
		return false;
	}
	*out = json_text(value);
	if (*out == NULL)
	{
		*problem = psprintf("item %d: \"%s\" is not valid UTF-8", index, key);
		return false;
	}
	return true;
}

static const char *
json_type_name(const cJSON *value)
{
	if (cJSON_IsNumber(value))
		return "a number";
	if (cJSON_IsBool(value))
		return "a boolean";
	if (cJSON_IsArray(value))
		return "an array";
	if (cJSON_IsObject(value))
		return "an object";
	return "a string";
}

/*
 * The vetting date, under either spelling the service has used.  A value
 * that is not an ISO 8601 string is kept as text for the caller's WARNING:
 * a cosmetic field must not fail a scheduled refresh.
 */
static void
vetting_date(const cJSON *item, PcqQualification *q)
{
	const cJSON *value = cJSON_GetObjectItem(item, "vettingCreatedDate");

	if (value == NULL || cJSON_IsNull(value))
		value = cJSON_GetObjectItem(item, "vettingCreateDate");
	if (value == NULL || cJSON_IsNull(value))
		return;
	if (cJSON_IsString(value))
	{
		char	   *text = json_text(value);

		if (text != NULL && pcq_parse_iso8601(text, &q->vetting_created_date))
			q->has_created_date = true;
		else
			q->unparsed_date = text ? text : pstrdup("(not valid UTF-8)");
	}
	else
		q->unparsed_date = psprintf("(%s)", json_type_name(value));
}

static PcqQualification *
qualification_from_item(const cJSON *item, int index, char **problem)
{
	PcqQualification *q = palloc0(sizeof(PcqQualification));
	const cJSON *name;

	if (!cJSON_IsObject(item))
	{
		*problem = psprintf("item %d is %s, not an object", index, json_type_name(item));
		return NULL;
	}
	name = cJSON_GetObjectItem(item, "qualification");
	if (!cJSON_IsString(name))
	{
		*problem = psprintf("item %d has no string \"qualification\"", index);
		return NULL;
	}
	q->qualification = json_text(name);
	if (q->qualification == NULL)
	{
		*problem = psprintf("item %d: \"qualification\" is not valid UTF-8", index);
		return NULL;
	}
	if (!optional_text(item, "vettingStatus", index, &q->vetting_status, problem) ||
		!optional_text(item, "vettingReason", index, &q->vetting_reason, problem))
		return NULL;
	vetting_date(item, q);
	return q;
}

/*
 * The list of items in any of the body shapes the service has used: a bare
 * array, {"qualifications": [...]}, the {"items": [...]} collection
 * envelope, or a single object.
 */
static const cJSON *
find_items(const cJSON *root, bool *single, char **problem)
{
	const cJSON *list;

	*single = false;
	if (cJSON_IsArray(root))
		return root;
	if (!cJSON_IsObject(root))
	{
		*problem = psprintf("the body is %s, not an array or object", json_type_name(root));
		return NULL;
	}
	list = cJSON_GetObjectItem(root, "qualifications");
	if (list == NULL)
		list = cJSON_GetObjectItem(root, "items");
	if (list != NULL)
	{
		if (!cJSON_IsArray(list))
		{
			*problem = pstrdup("the collection in the body is not an array");
			return NULL;
		}
		return list;
	}
	if (cJSON_GetObjectItem(root, "qualification") != NULL)
	{
		*single = true;
		return root;
	}
	*problem = pstrdup("the body has neither \"items\", \"qualifications\" nor \"qualification\"");
	return NULL;
}

static List *
qualifications_from_json(const cJSON *root, char **problem)
{
	const cJSON *items;
	const cJSON *item;
	bool		single;
	List	   *rows = NIL;
	int			index = 0;

	items = find_items(root, &single, problem);
	if (items == NULL)
		return NIL;
	if (single)
	{
		PcqQualification *q = qualification_from_item(items, 1, problem);

		return q ? list_make1(q) : NIL;
	}
	cJSON_ArrayForEach(item, items)
	{
		PcqQualification *q = qualification_from_item(item, ++index, problem);

		if (q == NULL)
			return NIL;
		rows = lappend(rows, q);
	}
	return rows;
}

/*
 * A customer's qualifications, in the order the service sent them.  On a
 * bad body, returns NIL and sets *problem; an empty collection returns NIL
 * and leaves *problem NULL.
 */
List *
pcq_parse_qualifications(const char *body, size_t len, char **problem)
{
	cJSON	   *root;
	size_t		error_offset;
	List	   *rows = NIL;

	*problem = NULL;
	root = parse_json(body, len, &error_offset);
	if (root == NULL)
	{
		if (len == 0)
			*problem = pstrdup("the body is empty");
		else
			*problem = psprintf("the body is not valid JSON (at byte %zu of %zu)",
								error_offset, len);
		return NIL;
	}
	PG_TRY();
	{
		rows = qualifications_from_json(root, problem);
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
	return rows;
}

/* Service text fit for a message: valid, one line, not too long. */
static char *
message_text(const cJSON *value)
{
	char	   *text;
	char	   *p;
	size_t		len;

	if (!cJSON_IsString(value) || (text = json_text(value)) == NULL)
		return NULL;
	for (p = text; *p; p++)
		if ((unsigned char) *p < 0x20)
			*p = ' ';
	len = strlen(text);
	if (len > MAX_MESSAGE_TEXT)
	{
		len = pg_mbcliplen(text, len, MAX_MESSAGE_TEXT);
		text[len] = '\0';
		text = psprintf("%s...", text);
	}
	return len > 0 ? text : NULL;
}

static char *
code_text(const cJSON *value)
{
	if (cJSON_IsNumber(value))
		return psprintf("%.15g", value->valuedouble);
	return message_text(value);
}

static void
error_fields(const cJSON *obj, char **code, char **text)
{
	static const char *const text_keys[] = {"description", "message", "error_description"};
	const cJSON *nested = cJSON_GetObjectItem(obj, "error");
	int			i;

	/* Azure-style {"error": {"code": ..., "message": ...}} */
	if (cJSON_IsObject(nested))
		obj = nested;
	*code = code_text(cJSON_GetObjectItem(obj, "code"));
	if (*code == NULL && cJSON_IsString(nested))
		*code = message_text(nested);
	for (i = 0; i < lengthof(text_keys) && *text == NULL; i++)
		*text = message_text(cJSON_GetObjectItem(obj, text_keys[i]));
}

/*
 * The Partner Center code and description of an error body, when it has
 * them: {"code", "description"}, {"statusCode", "message"}, or a bare JSON
 * string.  HTML and other non-JSON bodies give neither.
 */
void
pcq_parse_error_body(const char *body, size_t len, char **code, char **text)
{
	cJSON	   *root;
	size_t		error_offset;

	*code = NULL;
	*text = NULL;
	root = parse_json(body, len, &error_offset);
	if (root == NULL)
		return;
	PG_TRY();
	{
		if (cJSON_IsString(root))
			*text = message_text(root);
		else if (cJSON_IsObject(root))
			error_fields(root, code, text);
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
}

/*
 * expires_in, a number or a numeric string; -1 when absent or unreadable.
 * A lifetime beyond a day is taken as a day: nothing legitimate asks for
 * more, and it keeps the arithmetic on it far from overflow.
 */
static double
expires_in_seconds(const cJSON *value)
{
	char	   *end;
	double		secs;

	if (cJSON_IsNumber(value))
		secs = value->valuedouble;
	else if (cJSON_IsString(value))
	{
		secs = strtod(value->valuestring, &end);
		if (end == value->valuestring || *end != '\0')
			return -1;
	}
	else
		return -1;
	if (isnan(secs) || secs < 0)
		return -1;
	return Min(secs, MAX_TOKEN_LIFETIME_SECS);
}

/* A token goes into a header: visible ASCII only, so it cannot inject one. */
static bool
is_header_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
			return false;
	return true;
}

/* Azure AD's answer to a token request, success or error. */
void
pcq_parse_token_answer(const char *body, size_t len, PcqTokenAnswer *answer)
{
	cJSON	   *root;
	size_t		error_offset;

	memset(answer, 0, sizeof(*answer));
	answer->expires_in = -1;
	root = parse_json(body, len, &error_offset);
	if (root == NULL)
		return;
	PG_TRY();
	{
		const cJSON *token = cJSON_GetObjectItem(root, "access_token");

		if (cJSON_IsString(token) && is_header_token(token->valuestring))
			answer->access_token = pstrdup(token->valuestring);
		answer->expires_in = expires_in_seconds(cJSON_GetObjectItem(root, "expires_in"));
		answer->error = message_text(cJSON_GetObjectItem(root, "error"));
		answer->error_description =
			message_text(cJSON_GetObjectItem(root, "error_description"));
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
}
