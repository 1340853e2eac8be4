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
#include <limits.h>
#include <math.h>

#include "catalog/namespace.h"
#include "common/base64.h"
#include "common/string.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pcqual.h"

/* cJSON_ParseWithLengthOpts is 1.7.13's. */
#if CJSON_VERSION_MAJOR < 1 || (CJSON_VERSION_MAJOR == 1 && \
	(CJSON_VERSION_MINOR < 7 || (CJSON_VERSION_MINOR == 7 && CJSON_VERSION_PATCH < 13)))
#error "pcqual needs cJSON 1.7.13 or later"
#endif

static void describe_invalid_json(size_t len, size_t error_offset, PcqBodyProblem *problem);

/* Longest token lifetime believed. */
#define MAX_TOKEN_LIFETIME_SECS 86400.0

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

/* How a JSON string became server-encoded text. */
typedef enum TextOutcome
{
	TEXT_CONVERTED,
	TEXT_NOT_UTF8,
	TEXT_UNTRANSLATABLE			/* a character the database encoding lacks */
} TextOutcome;

/*
 * A JSON string as server-encoded text in *out.  Unlike pg_any_to_server(),
 * this never raises: in a LATIN1 database a customer's text with a
 * character LATIN1 lacks must be that customer's failure, not the
 * statement's (a sync goes on with the other customers).
 */
static TextOutcome
server_text(const cJSON *value, char **out)
{
	const char *s = value->valuestring;
	int			len = strlen(s);
	int			encoding = GetDatabaseEncoding();
	Oid			proc;
	int			destlen;
	unsigned char *dest;

	*out = NULL;
	if (!pg_verify_mbstr(PG_UTF8, s, len, true))
		return TEXT_NOT_UTF8;
	if (encoding == PG_UTF8 || encoding == PG_SQL_ASCII || pg_is_ascii(s))
	{
		*out = pnstrdup(s, len);
		return TEXT_CONVERTED;
	}
	proc = FindDefaultConversionProc(PG_UTF8, encoding);
	if (!OidIsValid(proc))
		return TEXT_UNTRANSLATABLE;
	/* pg_do_encoding_conversion_buf() wants room for the worst case */
	destlen = len * MAX_CONVERSION_GROWTH + MAX_CONVERSION_GROWTH + 1;
	dest = palloc(destlen);
	if (pg_do_encoding_conversion_buf(proc, PG_UTF8, encoding,
									  (unsigned char *) s, len,
									  dest, destlen, true) < len)
	{
		pfree(dest);
		return TEXT_UNTRANSLATABLE;
	}
	*out = (char *) dest;
	return TEXT_CONVERTED;
}

/*
 * Text for a message or a WARNING, whatever the database encoding: when
 * the string cannot be converted (a character the encoding lacks, bytes
 * that are not UTF-8), its ASCII with one '?' for each other character.
 */
static char *
lossy_text(const cJSON *value)
{
	char	   *text;
	const unsigned char *s;
	StringInfoData ascii;

	if (server_text(value, &text) == TEXT_CONVERTED)
		return text;
	initStringInfo(&ascii);
	for (s = (const unsigned char *) value->valuestring; *s != '\0'; s++)
	{
		if (*s < 0x80)
			appendStringInfoChar(&ascii, (char) *s);
		else if ((*s & 0xC0) != 0x80)
			appendStringInfoChar(&ascii, '?');	/* one per character */
	}
	return ascii.data;
}

/*
 * A string field of item index (0: of the body itself) as server-encoded
 * text; false with *problem set (22P05 for an untranslatable character)
 * when it cannot be stored.
 */
static bool
field_text(const cJSON *value, int index, const char *key, char **out,
		   PcqBodyProblem *problem)
{
	char	   *field = index > 0 ? psprintf("item %d: \"%s\"", index, key) :
		psprintf("\"%s\"", key);

	switch (server_text(value, out))
	{
		case TEXT_CONVERTED:
			pfree(field);
			return true;
		case TEXT_NOT_UTF8:
			problem->text = psprintf("%s is not valid UTF-8", field);
			return false;
		case TEXT_UNTRANSLATABLE:
			problem->text = psprintf("%s has a character with no equivalent in encoding \"%s\"",
									 field, GetDatabaseEncodingName());
			problem->sqlstate = ERRCODE_UNTRANSLATABLE_CHARACTER;
			return false;
	}
	pg_unreachable();
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
		pcq_decode_date_time(field, ftype, nf, &dtype, &tm, &fsec, &tz) != 0 ||
		dtype != DTK_DATE)
		return false;

	/* PostgreSQL counts zone offsets in seconds west of Greenwich. */
	tz = -offset_secs;
	return tm2timestamp(&tm, fsec, &tz, result) == 0 && IS_VALID_TIMESTAMP(*result);
}

/* An optional text field: absent or null gives NULL. */
static bool
optional_text(const cJSON *item, const char *key, int index, char **out,
			  PcqBodyProblem *problem)
{
	const cJSON *value = cJSON_GetObjectItem(item, key);

	*out = NULL;
	if (value == NULL || cJSON_IsNull(value))
		return true;
	if (!cJSON_IsString(value))
	{
		problem->text = index > 0 ?
			psprintf("item %d: \"%s\" is neither a string nor null", index, key) :
			psprintf("\"%s\" is neither a string nor null", key);
		return false;
	}
	return field_text(value, index, key, out, problem);
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
		char	   *text;

		if (server_text(value, &text) == TEXT_CONVERTED &&
			pcq_parse_iso8601(text, &q->vetting_created_date))
			q->has_created_date = true;
		else
			q->unparsed_date = text ? text : lossy_text(value);
	}
	else
		q->unparsed_date = psprintf("(%s)", json_type_name(value));
}

static PcqQualification *
qualification_from_item(const cJSON *item, int index, PcqBodyProblem *problem)
{
	PcqQualification *q = palloc0(sizeof(PcqQualification));
	const cJSON *name;

	if (!cJSON_IsObject(item))
	{
		problem->text = psprintf("item %d is %s, not an object", index, json_type_name(item));
		return NULL;
	}
	name = cJSON_GetObjectItem(item, "qualification");
	if (!cJSON_IsString(name))
	{
		problem->text = psprintf("item %d has no string \"qualification\"", index);
		return NULL;
	}
	if (!field_text(name, index, "qualification", &q->qualification, problem))
		return NULL;
	if (!optional_text(item, "vettingStatus", index, &q->vetting_status, problem) ||
		!optional_text(item, "vettingReason", index, &q->vetting_reason, problem))
		return NULL;
	vetting_date(item, q);
	return q;
}

/*
 * The list of items in any of the body shapes the service has used: a bare
 * array, {wrapper: [...]}, the {"items": [...]} collection envelope, or a
 * single object recognised by its key.
 */
static const cJSON *
find_items(const cJSON *root, const char *wrapper, const char *key,
		   bool *single, PcqBodyProblem *problem)
{
	const cJSON *list;

	*single = false;
	if (cJSON_IsArray(root))
		return root;
	if (!cJSON_IsObject(root))
	{
		problem->text = psprintf("the body is %s, not an array or object", json_type_name(root));
		return NULL;
	}
	list = cJSON_GetObjectItem(root, wrapper);
	if (list == NULL)
		list = cJSON_GetObjectItem(root, "items");
	if (list != NULL)
	{
		if (!cJSON_IsArray(list))
		{
			problem->text = pstrdup("the collection in the body is not an array");
			return NULL;
		}
		return list;
	}
	if (cJSON_GetObjectItem(root, key) != NULL)
	{
		*single = true;
		return root;
	}
	problem->text = psprintf("the body has neither \"items\", \"%s\" nor \"%s\"", wrapper, key);
	return NULL;
}

/* Parses one item of a collection; NULL with *problem set when it is bad. */
typedef void *(*ItemParser) (const cJSON *item, int index, PcqBodyProblem *problem);

static List *
items_from_json(const cJSON *root, const char *wrapper, const char *key,
				ItemParser parse_item, PcqBodyProblem *problem)
{
	const cJSON *items;
	const cJSON *item;
	bool		single;
	List	   *result = NIL;
	int			index = 0;

	items = find_items(root, wrapper, key, &single, problem);
	if (items == NULL)
		return NIL;
	if (single)
	{
		void	   *one = parse_item(items, 1, problem);

		return one ? list_make1(one) : NIL;
	}
	cJSON_ArrayForEach(item, items)
	{
		void	   *one = parse_item(item, ++index, problem);

		if (one == NULL)
			return NIL;
		result = lappend(result, one);
	}
	return result;
}

/*
 * The items of a collection body in any shape find_items() knows, in the
 * order the service sent them.  On a bad body, returns NIL and sets
 * *problem; an empty collection returns NIL and leaves *problem NULL.
 */
static List *
parse_item_list(const char *body, size_t len, const char *wrapper,
				const char *key, ItemParser parse_item, PcqBodyProblem *problem)
{
	cJSON	   *root;
	size_t		error_offset;
	List	   *volatile result = NIL;

	problem->text = NULL;
	problem->sqlstate = 0;
	root = parse_json(body, len, &error_offset);
	if (root == NULL)
	{
		describe_invalid_json(len, error_offset, problem);
		return NIL;
	}
	PG_TRY();
	{
		result = items_from_json(root, wrapper, key, parse_item, problem);
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
	return result;
}

static void *
qualification_item(const cJSON *item, int index, PcqBodyProblem *problem)
{
	return qualification_from_item(item, index, problem);
}

/* A customer's qualifications, in the order the service sent them. */
List *
pcq_parse_qualifications(const char *body, size_t len, PcqBodyProblem *problem)
{
	return parse_item_list(body, len, "qualifications", "qualification",
						   qualification_item, problem);
}

/*
 * The escaped form of a character that must not reach a message as is: C0
 * and C1 controls (CR, LF, ESC among them), DEL, Unicode line separators
 * and bidirectional overrides.  Returns the bytes it covers, 0 for none.
 */
static int
unsafe_char_length(const unsigned char *p, size_t left, bool valid)
{
	if (*p < 0x20 || *p == 0x7f)
		return 1;
	if (*p < 0x80)
		return 0;
	if (!valid)
		return 1;				/* not text in the server encoding */
	if (GetDatabaseEncoding() != PG_UTF8)
		return 0;
	if (left >= 2 && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
		return 2;				/* U+0080..U+009F */
	if (left >= 3 && p[0] == 0xe2 &&
		((p[1] == 0x80 && p[2] >= 0xa8 && p[2] <= 0xae) ||	/* U+2028..U+202E */
		 (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)))	/* U+2066..U+2069 */
		return 3;
	return 0;
}

/*
 * Text from the service, fit to quote in a message: one line, no control
 * or direction-changing characters (each shown as \xNN escapes), and at
 * most PCQ_MAX_QUOTED_TEXT bytes of it.
 */
char *
pcq_quotable_text(const char *text, size_t len)
{
	StringInfoData buf;
	bool		valid = pg_verify_mbstr(GetDatabaseEncoding(), text, len, true);
	size_t		keep = len;
	size_t		i = 0;

	if (len > PCQ_MAX_QUOTED_TEXT)
		keep = valid ? pg_mbcliplen(text, len, PCQ_MAX_QUOTED_TEXT) : PCQ_MAX_QUOTED_TEXT;
	initStringInfo(&buf);
	while (i < keep)
	{
		const unsigned char *p = (const unsigned char *) text + i;
		int			unsafe = unsafe_char_length(p, keep - i, valid);
		int			k;

		if (unsafe == 0)
		{
			appendStringInfoChar(&buf, (char) *p);
			i++;
			continue;
		}
		for (k = 0; k < unsafe; k++)
			appendStringInfo(&buf, "\\x%02X", p[k]);
		i += unsafe;
	}
	if (keep < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/* Overwrite every occurrence of needle (len bytes) in buf with asterisks. */
static void
redact_occurrences(char *buf, size_t buflen, const char *needle, size_t len)
{
	char	   *at = buf;

	if (len == 0)
		return;
	while ((at = memmem(at, buflen - (at - buf), needle, len)) != NULL)
	{
		memset(at, '*', len);
		at += len;
	}
}

/* Whether percent-encoding leaves text as it is. */
static bool
all_unreserved(const char *text)
{
	for (; *text; text++)
		if (!pcq_is_unreserved((unsigned char) *text))
			return false;
	return true;
}

/*
 * Overwrite a secret wherever a body quotes it back, before anything of the
 * body is parsed or quoted: as sent, percent-encoded as in a form, and with
 * JSON's escaped solidus.  Shorter secrets than four bytes are not looked
 * for (they would blank ordinary words).  A variant that reads the same as
 * the secret is not built: an access token, redacted from every answer,
 * usually has none.
 */
void
pcq_redact(char *body, size_t len, const char *secret)
{
	StringInfoData variant;
	size_t		secret_len;
	const char *p;

	if (body == NULL || secret == NULL || (secret_len = strlen(secret)) < 4)
		return;
	redact_occurrences(body, len, secret, secret_len);
	if (all_unreserved(secret))
		return;					/* no '/' either */
	initStringInfo(&variant);
	pcq_append_percent_encoded(&variant, secret);
	redact_occurrences(body, len, variant.data, variant.len);
	resetStringInfo(&variant);
	for (p = secret; *p; p++)
	{
		if (*p == '/')
			appendStringInfoChar(&variant, '\\');
		appendStringInfoChar(&variant, *p);
	}
	redact_occurrences(body, len, variant.data, variant.len);
	explicit_bzero(variant.data, variant.maxlen);
	pfree(variant.data);
}

/* Service text fit for a message, or NULL when it is not a non-empty string. */
static char *
message_text(const cJSON *value)
{
	char	   *text;

	if (!cJSON_IsString(value) || (text = lossy_text(value))[0] == '\0')
		return NULL;
	return pcq_quotable_text(text, strlen(text));
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
	for (i = 0; i < (int) lengthof(text_keys) && *text == NULL; i++)
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
bool
pcq_is_header_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
			return false;
	return true;
}

/*
 * Overwrite every string of a parsed answer before it is freed: tokens live
 * there.  (cJSON's allocator hooks are global to the backend, another
 * extension's too: pcqual leaves them alone.)
 */
static void
wipe_json_strings(cJSON *node)
{
	for (; node != NULL; node = node->next)
	{
		if (node->valuestring != NULL)
			explicit_bzero(node->valuestring, strlen(node->valuestring));
		if (node->string != NULL)
			explicit_bzero(node->string, strlen(node->string));
		wipe_json_strings(node->child);
	}
}

static void
token_answer_from_json(const cJSON *root, PcqTokenAnswer *answer)
{
	const cJSON *token = cJSON_GetObjectItem(root, "access_token");
	const cJSON *refresh = cJSON_GetObjectItem(root, "refresh_token");

	if (cJSON_IsString(token) && pcq_is_header_token(token->valuestring))
		answer->access_token = pstrdup(token->valuestring);
	else if (cJSON_IsString(token))
		answer->access_token_unusable = true;
	if (cJSON_IsString(refresh) && pcq_is_header_token(refresh->valuestring))
		answer->refresh_token = pstrdup(refresh->valuestring);
	answer->expires_in = expires_in_seconds(cJSON_GetObjectItem(root, "expires_in"));
}

/*
 * The tokens of Azure AD's answer to a token request.  Its error, if any, is
 * an error body (pcq_parse_error_body), read once secrets are redacted.
 */
void
pcq_parse_token_answer(const char *body, size_t len, PcqTokenAnswer *answer)
{
	cJSON	   *volatile root = NULL;
	size_t		error_offset;

	memset(answer, 0, sizeof(*answer));
	answer->expires_in = -1;

	PG_TRY();
	{
		root = parse_json(body, len, &error_offset);
		if (root != NULL)
			token_answer_from_json(root, answer);
	}
	PG_FINALLY();
	{
		wipe_json_strings(root);
		cJSON_Delete(root);
	}
	PG_END_TRY();
}

/* ---- customers and validation codes ---- */

/* An optional integer field: absent or null leaves *has false. */
static bool
optional_int(const cJSON *item, const char *key, int index, bool *has,
			 int *out, PcqBodyProblem *problem)
{
	const cJSON *value = cJSON_GetObjectItem(item, key);

	*has = false;
	if (value == NULL || cJSON_IsNull(value))
		return true;
	if (!cJSON_IsNumber(value) || value->valuedouble != floor(value->valuedouble) ||
		value->valuedouble < INT_MIN || value->valuedouble > INT_MAX)
	{
		problem->text = psprintf("item %d: \"%s\" is not an integer", index, key);
		return false;
	}
	*out = (int) value->valuedouble;
	*has = true;
	return true;
}

static PcqCustomer *
customer_from_item(const cJSON *item, int index, PcqBodyProblem *problem)
{
	PcqCustomer *c = palloc0(sizeof(PcqCustomer));
	const cJSON *profile = cJSON_GetObjectItem(item, "companyProfile");

	if (!cJSON_IsObject(item))
	{
		problem->text = psprintf("item %d is %s, not an object", index, json_type_name(item));
		return NULL;
	}
	if (profile != NULL && !cJSON_IsNull(profile) && !cJSON_IsObject(profile))
	{
		problem->text = psprintf("item %d: \"companyProfile\" is not an object", index);
		return NULL;
	}
	if (!cJSON_IsObject(profile))
		profile = NULL;
	if ((profile != NULL &&
		 !optional_text(profile, "tenantId", index, &c->tenant_id, problem)) ||
		(c->tenant_id == NULL &&
		 !optional_text(item, "id", index, &c->tenant_id, problem)))
		return NULL;
	if (c->tenant_id == NULL || !pcq_is_guid(c->tenant_id))
	{
		problem->text = psprintf("item %d has no GUID in \"companyProfile.tenantId\" or \"id\"", index);
		return NULL;
	}
	if ((profile != NULL &&
		 (!optional_text(profile, "companyName", index, &c->company_name, problem) ||
		  !optional_text(profile, "domain", index, &c->domain, problem))) ||
		!optional_text(item, "relationshipToPartner", index, &c->relationship, problem))
		return NULL;
	return c;
}

/*
 * The MS-ContinuationToken of links.next, or NULL when there is no next
 * page.  A next link without a usable token is a problem: following it
 * would restart the list.
 */
static bool
continuation_token(const cJSON *root, char **token, PcqBodyProblem *problem)
{
	const cJSON *links = cJSON_GetObjectItem(root, "links");
	const cJSON *next = cJSON_IsObject(links) ? cJSON_GetObjectItem(links, "next") : NULL;
	const cJSON *headers;
	const cJSON *header;

	*token = NULL;
	if (next == NULL || cJSON_IsNull(next))
		return true;
	headers = cJSON_GetObjectItem(next, "headers");
	if (!cJSON_IsArray(headers))
		headers = NULL;
	cJSON_ArrayForEach(header, headers)
	{
		const cJSON *key = cJSON_GetObjectItem(header, "key");
		const cJSON *value = cJSON_GetObjectItem(header, "value");

		if (cJSON_IsString(key) && pg_strcasecmp(key->valuestring, "MS-ContinuationToken") == 0 &&
			cJSON_IsString(value) && pcq_is_header_token(value->valuestring))
		{
			*token = pstrdup(value->valuestring);
			return true;
		}
	}
	problem->text = pstrdup("\"links.next\" has no usable MS-ContinuationToken header");
	return false;
}

static bool
customer_page_from_json(const cJSON *root, PcqCustomerPage *page, PcqBodyProblem *problem)
{
	const cJSON *items;
	const cJSON *item;
	int			index = 0;

	if (!cJSON_IsObject(root))
	{
		problem->text = psprintf("the body is %s, not an object", json_type_name(root));
		return false;
	}
	items = cJSON_GetObjectItem(root, "items");
	if (!cJSON_IsArray(items))
	{
		problem->text = pstrdup("the body has no \"items\" array");
		return false;
	}
	cJSON_ArrayForEach(item, items)
	{
		PcqCustomer *c = customer_from_item(item, ++index, problem);

		if (c == NULL)
			return false;
		page->customers = lappend(page->customers, c);
	}
	return continuation_token(root, &page->continuation_token, problem);
}

static void
describe_invalid_json(size_t len, size_t error_offset, PcqBodyProblem *problem)
{
	if (len == 0)
		problem->text = pstrdup("the body is empty");
	else
		problem->text = psprintf("the body is not valid JSON (at byte %zu of %zu)",
							error_offset, len);
}

/* Builds a result from a parsed body; false with *problem when it is bad. */
typedef bool (*BodyReader) (const cJSON *root, void *result, PcqBodyProblem *problem);

/*
 * Parse a body that is one JSON value and read it with reader, deleting
 * the cJSON tree on every path; false with *problem on a bad body.
 */
static bool
read_body(const char *body, size_t len, BodyReader reader, void *result,
		  PcqBodyProblem *problem)
{
	cJSON	   *root;
	size_t		error_offset;
	volatile bool ok = false;

	problem->text = NULL;
	problem->sqlstate = 0;
	root = parse_json(body, len, &error_offset);
	if (root == NULL)
	{
		describe_invalid_json(len, error_offset, problem);
		return false;
	}
	PG_TRY();
	{
		ok = reader(root, result, problem);
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
	return ok;
}

static bool
customer_page_reader(const cJSON *root, void *page, PcqBodyProblem *problem)
{
	return customer_page_from_json(root, (PcqCustomerPage *) page, problem);
}

/* One page of GET /v1/customers; false with *problem on a bad body. */
bool
pcq_parse_customer_page(const char *body, size_t len, PcqCustomerPage *page,
						PcqBodyProblem *problem)
{
	memset(page, 0, sizeof(*page));
	return read_body(body, len, customer_page_reader, page, problem);
}

static PcqValidationCode *
validation_code_from_item(const cJSON *item, int index, PcqBodyProblem *problem)
{
	PcqValidationCode *v = palloc0(sizeof(PcqValidationCode));
	const cJSON *id;

	if (!cJSON_IsObject(item))
	{
		problem->text = psprintf("item %d is %s, not an object", index, json_type_name(item));
		return NULL;
	}
	id = cJSON_GetObjectItem(item, "validationId");
	if (!cJSON_IsString(id))
	{
		problem->text = psprintf("item %d has no string \"validationId\"", index);
		return NULL;
	}
	if (!field_text(id, index, "validationId", &v->validation_id, problem))
		return NULL;
	if (!optional_text(item, "organizationName", index, &v->organization_name, problem) ||
		!optional_text(item, "partnerId", index, &v->partner_id, problem) ||
		!optional_int(item, "maxCreates", index, &v->has_max_creates,
					  &v->max_creates, problem) ||
		!optional_int(item, "remainingCreates", index, &v->has_remaining_creates,
					  &v->remaining_creates, problem))
		return NULL;
	if (v->partner_id != NULL && !pcq_is_guid(v->partner_id))
	{
		problem->text = psprintf("item %d: \"partnerId\" is not a GUID", index);
		return NULL;
	}
	return v;
}

static void *
validation_code_item(const cJSON *item, int index, PcqBodyProblem *problem)
{
	return validation_code_from_item(item, index, problem);
}

/* GET /v1/customers/all/validations, in the shapes qualifications use. */
List *
pcq_parse_validation_codes(const char *body, size_t len, PcqBodyProblem *problem)
{
	return parse_item_list(body, len, "validations", "validationId",
						   validation_code_item, problem);
}

/* ---- a customer's account validation status ---- */

static bool
validation_status_from_json(const cJSON *root, PcqValidationStatus *v,
							PcqBodyProblem *problem)
{
	const cJSON *status;
	char	   *text;

	if (!cJSON_IsObject(root))
	{
		problem->text = psprintf("the body is %s, not an object", json_type_name(root));
		return false;
	}
	status = cJSON_GetObjectItem(root, "status");
	if (!cJSON_IsString(status))
	{
		problem->text = pstrdup("the body has no string \"status\"");
		return false;
	}
	if (!field_text(status, 0, "status", &v->status, problem) ||
		!optional_text(root, "type", 0, &v->type, problem) ||
		!optional_text(root, "lastUpdateDateTime", 0, &text, problem))
		return false;
	if (text != NULL)
	{
		if (!pcq_parse_iso8601(text, &v->last_updated))
		{
			problem->text = psprintf("\"lastUpdateDateTime\" is not an ISO 8601 time: \"%s\"",
									 pcq_quotable_text(text, strlen(text)));
			return false;
		}
		v->has_last_updated = true;
	}
	return true;
}

static bool
validation_status_reader(const cJSON *root, void *status, PcqBodyProblem *problem)
{
	return validation_status_from_json(root, (PcqValidationStatus *) status, problem);
}

/* One customer's account validation status; false with *problem on a bad body. */
bool
pcq_parse_validation_status(const char *body, size_t len,
							PcqValidationStatus *status, PcqBodyProblem *problem)
{
	memset(status, 0, sizeof(*status));
	return read_body(body, len, validation_status_reader, status, problem);
}

/* ---- access token claims ---- */

/*
 * The payload of a JWT (header.payload.signature, base64url) as JSON, or
 * NULL when the token is not one.  The signature is not checked: the
 * claims only describe the token to the DBA, they authorise nothing.
 */
static cJSON *
jwt_payload(const char *token)
{
	const char *start = strchr(token, '.');
	const char *end = start ? strchr(start + 1, '.') : NULL;
	int			len;
	char	   *b64;
	char	   *json;
	int			decoded;
	int			i;
	cJSON	   *root;

	if (end == NULL || end == start + 1 || end - start > PCQ_MAX_TOKEN_SIZE)
		return NULL;
	len = end - (start + 1);
	/* base64url to base64, padded */
	b64 = palloc(len + 4);
	for (i = 0; i < len; i++)
	{
		char		c = start[1 + i];

		b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	while (i % 4 != 0)
		b64[i++] = '=';
	json = palloc(pg_b64_dec_len(i) + 1);
	decoded = pg_b64_decode(b64, i, json, pg_b64_dec_len(i));
	pfree(b64);
	if (decoded < 0)
	{
		pfree(json);
		return NULL;
	}
	json[decoded] = '\0';
	root = cJSON_ParseWithLength(json, decoded);
	explicit_bzero(json, decoded);
	pfree(json);
	if (root != NULL && !cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

static void
claims_from_payload(const cJSON *payload, PcqTokenClaims *claims)
{
	const cJSON *exp = cJSON_GetObjectItem(payload, "exp");
	const cJSON *amr = cJSON_GetObjectItem(payload, "amr");
	const cJSON *method;

	claims->is_jwt = true;
	if (cJSON_IsNumber(exp) && exp->valuedouble > 0 && exp->valuedouble < 1e11)
	{
		claims->has_exp = true;
		claims->exp = time_t_to_timestamptz((pg_time_t) exp->valuedouble);
	}
	if (cJSON_IsArray(amr))
	{
		claims->has_amr = true;
		cJSON_ArrayForEach(method, amr)
		{
			if (cJSON_IsString(method) && strcmp(method->valuestring, "mfa") == 0)
				claims->mfa = true;
		}
	}
}

/*
 * The claims of an access token that are worth showing: its expiry and
 * whether its sign-in used MFA.  A token that is not a JWT leaves
 * claims->is_jwt false; nothing is raised either way.
 */
void
pcq_parse_token_claims(const char *token, PcqTokenClaims *claims)
{
	cJSON	   *payload;

	memset(claims, 0, sizeof(*claims));
	payload = jwt_payload(token);
	if (payload == NULL)
		return;
	PG_TRY();
	{
		claims_from_payload(payload, claims);
	}
	PG_FINALLY();
	{
		cJSON_Delete(payload);
	}
	PG_END_TRY();
}
