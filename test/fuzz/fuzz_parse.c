/*-------------------------------------------------------------------------
 *
 * fuzz_parse.c
 *	  libFuzzer harness over src/parse.c, the response body parser, built
 *	  with ASan and UBSan by test/fuzz/run.sh against test/fuzz/shim.c.
 *
 * Each input is one response body.  It goes, NUL-terminated as the transport
 * delivers it, through every parser -- qualifications, validation codes, a
 * customer page, error body, token answer -- through pcq_parse_iso8601 as a
 * date string and through pcq_quotable_text as raw bytes; then everything
 * palloc'd is freed, so that any leak LeakSanitizer reports is a cJSON tree
 * parse.c did not delete.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks the parsers'
 * contracts (pcqual.h, parse.c) against an independent reading of the same
 * body with cJSON:
 *
 *	qualifications	rows and a problem are never both set; a problem is a
 *					non-empty string; an unparseable body is a problem; an
 *					empty collection is NIL with no problem; otherwise the
 *					rows are exactly the items, in order, with their texts,
 *					or -- if any item is bad -- NIL and a problem.  The
 *					collection is a bare array, {"qualifications": [...]},
 *					{"items": [...]} or one object with "qualification".
 *					Every row has a non-NULL, valid UTF-8 qualification; a
 *					row has a created date (a valid PostgreSQL timestamp) or
 *					keeps the unparsed date text (a text that is not valid
 *					UTF-8 as its ASCII, with a '?' for each other
 *					character), never both; a problem's SQLSTATE is 0 (the
 *					database is UTF-8: no character is untranslatable).
 *	validation		the same shapes and rules ({"validations": [...]}, one
 *	codes			object with "validationId"); an item is good when it has
 *					a string "validationId", "organizationName" and
 *					"partnerId" are absent, null or strings, "partnerId" is a
 *					GUID, and "maxCreates" / "remainingCreates" are absent,
 *					null or integers within int's range.
 *	customer page	true exactly when no problem is set.  Bad: not JSON, not
 *					an object, no "items" array, an item that is not an
 *					object or has no GUID tenant id, a non-string text field,
 *					or a links.next without a usable MS-ContinuationToken.
 *					Good: the rows are exactly the items, in order; the
 *					tenant id is companyProfile.tenantId, else id; company
 *					name and domain from companyProfile; the relationship
 *					from relationshipToPartner.  The continuation token is
 *					NULL exactly when there is no links.next (absent or
 *					null), else the first MS-ContinuationToken header value
 *					(key in any case) that is visible ASCII.
 *	quoted text		pcq_quotable_text(any bytes) is exactly an independent
 *					rendering: at most PCQ_MAX_QUOTED_TEXT bytes of input
 *					(cut on a character boundary when the input is valid
 *					UTF-8), then "..." if cut; C0 controls, DEL, C1 controls,
 *					U+2028..U+202E and U+2066..U+2069 -- and every non-ASCII
 *					byte of an input that is not valid UTF-8 -- as \xNN per
 *					byte, everything else as is.
 *	error body		code and text are NULL or quoted text: non-empty, valid
 *					UTF-8, none of the characters above raw, at most
 *					4 * PCQ_MAX_QUOTED_TEXT + 3 bytes.
 *	token answer	access_token and refresh_token are the body's when they
 *					are visible ASCII, else NULL; access_token_unusable is
 *					set exactly when the body's access_token is a string that
 *					is not (its error texts are an error body's, checked
 *					above); expires_in is -1 or a
 *					finite non-negative number, and can be used the way
 *					token.c uses it (a millisecond int64 added to a
 *					timestamp) without undefined behaviour.
 *	ISO 8601		pcq_parse_iso8601 hands the backend's date routines
 *					exactly the text before the zone of the strings of
 *					Partner Center's shape (an independent reading of it)
 *					and nothing of any other string; gives tm2timestamp the
 *					text's zone offset; accepts exactly when every routine
 *					succeeded with DTK_DATE and a valid timestamp, and gives
 *					that timestamp.  The routines are shim.c's stand-ins,
 *					which parse nothing: what PostgreSQL's own routines make
 *					of the text is checked in a running server by
 *					test/fuzz/dates-in-server.sh.
 *
 * Define PCQ_FUZZ_NO_TOKEN_CONSUMER to leave out the expires_in usage check.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "nodes/pg_list.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "pcqual.h"

#undef vsnprintf
#undef snprintf
#undef vfprintf
#undef fprintf
#undef sprintf

#include "shim.h"

/* Quoted text: each input byte becomes at most 4 ("\xNN"), plus "...". */
#define MAX_QUOTED_OUTPUT (4 * PCQ_MAX_QUOTED_TEXT + 3)

static const char *current_input;
static size_t current_size;

static void fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

static void
fail(const char *fmt,...)
{
	va_list		ap;

	fputs("pcqual fuzz: contract violated: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (current_input != NULL && current_size <= 2000)
	{
		size_t		i;

		/* printable ASCII as is, other bytes as \xNN: the log stays text */
		fputs("input: ", stderr);
		for (i = 0; i < current_size; i++)
		{
			unsigned char c = (unsigned char) current_input[i];

			if (c >= 0x20 && c < 0x7F && c != '\\')
				fputc(c, stderr);
			else
				fprintf(stderr, "\\x%02X", c);
		}
		fputc('\n', stderr);
	}
	abort();
}

/* ---- UTF-8 and header values, read independently of the shim ---- */

/*
 * The length of the UTF-8 character at s[0..left) and its code point, or 0
 * when there is none: RFC 3629 (no overlong forms, no surrogates, nothing
 * above U+10FFFF), and -- as in PostgreSQL -- no NUL.
 */
static int
utf8_char(const unsigned char *s, size_t left, uint32 *code)
{
	static const uint32 least[5] = {0, 0, 0x80, 0x800, 0x10000};
	int			n;
	int			i;
	uint32		c;

	if (left == 0 || s[0] == 0)
		return 0;
	if (s[0] < 0x80)
	{
		*code = s[0];
		return 1;
	}
	if ((s[0] & 0xE0) == 0xC0)
		n = 2, c = s[0] & 0x1F;
	else if ((s[0] & 0xF0) == 0xE0)
		n = 3, c = s[0] & 0x0F;
	else if ((s[0] & 0xF8) == 0xF0)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	if (left < (size_t) n)
		return 0;
	for (i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < least[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*code = c;
	return n;
}

static bool
valid_utf8_bytes(const char *s, size_t len)
{
	size_t		i = 0;
	uint32		code;

	while (i < len)
	{
		int			n = utf8_char((const unsigned char *) s + i, len - i, &code);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

static bool
valid_utf8(const char *s)
{
	return valid_utf8_bytes(s, strlen(s));
}

/* What quoted text must never carry raw: it could forge or hide text. */
static bool
unsafe_code_point(uint32 c)
{
	return c < 0x20 || c == 0x7F ||
		(c >= 0x80 && c <= 0x9F) ||			/* C1 controls */
		(c >= 0x2028 && c <= 0x202E) ||		/* line/paragraph separators,
											 * bidi embeddings/overrides */
		(c >= 0x2066 && c <= 0x2069);		/* bidi isolates */
}

/* A header value: non-empty, bytes 0x21..0x7E only. */
static bool
visible_ascii(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	if (*p == '\0')
		return false;
	for (; *p; p++)
		if (*p < 0x21 || *p > 0x7E)
			return false;
	return true;
}

/* A GUID in its 36-character form, any case. */
static bool
guid_text(const char *s)
{
	static const char form[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	size_t		i;

	if (strlen(s) != sizeof(form) - 1)
		return false;
	for (i = 0; i < sizeof(form) - 1; i++)
	{
		if (form[i] == '-' ? s[i] != '-' :
			strchr("0123456789abcdefABCDEF", s[i]) == NULL)
			return false;
	}
	return true;
}

static bool
same_text(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* ---- an independent reading of the body ---- */

static cJSON *
reparse(const char *buf, size_t size)
{
	if (strlen(buf) != size)
		return NULL;
	return cJSON_ParseWithLengthOpts(buf, size + 1, NULL, true);
}

/* An optional text: absent, null, or a valid UTF-8 string. */
static bool
optional_text_ok(const cJSON *item, const char *key, const char **out)
{
	const cJSON *v = cJSON_GetObjectItem(item, key);

	*out = NULL;
	if (v == NULL || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsString(v) || !valid_utf8(v->valuestring))
		return false;
	*out = v->valuestring;
	return true;
}

/* An optional integer: absent, null, or a whole number within int's range. */
static bool
optional_int_ok(const cJSON *item, const char *key, bool *has, int *out)
{
	const cJSON *v = cJSON_GetObjectItem(item, key);

	*has = false;
	*out = 0;
	if (v == NULL || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsNumber(v) ||
		!(v->valuedouble >= -2147483648.0 && v->valuedouble <= 2147483647.0) ||
		v->valuedouble != trunc(v->valuedouble))
		return false;
	*has = true;
	*out = (int) v->valuedouble;
	return true;
}

static const char *
type_name(const cJSON *v)
{
	if (cJSON_IsNumber(v))
		return "(a number)";
	if (cJSON_IsBool(v))
		return "(a boolean)";
	if (cJSON_IsArray(v))
		return "(an array)";
	if (cJSON_IsObject(v))
		return "(an object)";
	return "(a string)";
}

static void
check_problem(const char *what, const char *problem)
{
	if (problem != NULL && (problem[0] == '\0' || !valid_utf8(problem)))
		fail("%s: empty or invalid problem text", what);
}

/*
 * A PcqBodyProblem's SQLSTATE is 0 (22032, invalid JSON text) but for a
 * character the database encoding lacks, which a UTF-8 database has not.
 */
static void
check_problem_sqlstate(const char *what, const PcqBodyProblem *problem)
{
	if (problem->sqlstate != 0)
		fail("%s: SQLSTATE %d set in a UTF-8 database", what, problem->sqlstate);
}

/*
 * The items of a collection body: a bare array, {wrapper: [...]}, {"items":
 * [...]} (wrapper first), or one object that has key.  NULL when the body
 * has none of these shapes.
 */
static const cJSON *
collection_items(const cJSON *root, const char *wrapper, const char *key,
				 bool *single)
{
	const cJSON *list;

	*single = false;
	if (cJSON_IsArray(root))
		return root;
	if (!cJSON_IsObject(root))
		return NULL;
	list = cJSON_GetObjectItem(root, wrapper);
	if (list == NULL)
		list = cJSON_GetObjectItem(root, "items");
	if (list != NULL)
		return cJSON_IsArray(list) ? list : NULL;
	if (cJSON_GetObjectItem(root, key) == NULL)
		return NULL;
	*single = true;
	return root;
}

typedef bool (*ItemIsGood) (const cJSON *item);
typedef void (*RowMatchesItem) (const void *row, const cJSON *item, int index);

/*
 * A collection parser's result against the body: all rows or a problem,
 * never both; the rows exactly the items when every item is good.
 */
static void
check_collection(const char *what, const char *buf, size_t size,
				 List *rows, const char *problem,
				 const char *wrapper, const char *key,
				 ItemIsGood item_is_good, RowMatchesItem row_matches_item)
{
	cJSON	   *root;
	const cJSON *items;
	const cJSON *item;
	bool		single;
	bool		all_good = true;
	int			n = 0;

	/* the result's own shape */
	if (rows != NIL && problem != NULL)
		fail("%s: rows and a problem (\"%s\") both set", what, problem);
	check_problem(what, problem);
	if (!shim_list_is_sane(rows))
		fail("%s: the row List is corrupt", what);

	/* against the body */
	root = reparse(buf, size);
	if (root == NULL)
	{
		if (rows != NIL || problem == NULL)
			fail("%s: a body that is not one JSON value gave no problem", what);
		return;
	}
	items = collection_items(root, wrapper, key, &single);
	if (items == NULL)
		all_good = false;
	else if (single)
	{
		n = 1;
		all_good = item_is_good(items);
	}
	else
		cJSON_ArrayForEach(item, items)
	{
		n++;
		if (!item_is_good(item))
			all_good = false;
	}

	if (!all_good)
	{
		if (rows != NIL || problem == NULL)
			fail("%s: a bad body or item gave no problem", what);
	}
	else if (problem != NULL)
		fail("%s: good items gave the problem \"%s\"", what, problem);
	else if (list_length(rows) != n)
		fail("%s: %d items gave %d rows", what, n, list_length(rows));
	else if (single)
		row_matches_item(linitial(rows), items, 1);
	else
	{
		ListCell   *lc = list_head(rows);
		int			i = 0;

		cJSON_ArrayForEach(item, items)
		{
			row_matches_item(lfirst(lc), item, ++i);
			lc = lnext(rows, lc);
		}
	}
	cJSON_Delete(root);
}

/* ---- qualifications ---- */

static bool
qualification_is_good(const cJSON *item)
{
	const cJSON *name = cJSON_GetObjectItem(item, "qualification");
	const char *ignored;

	return cJSON_IsObject(item) &&
		cJSON_IsString(name) && valid_utf8(name->valuestring) &&
		optional_text_ok(item, "vettingStatus", &ignored) &&
		optional_text_ok(item, "vettingReason", &ignored);
}

/* The row for an item must carry the item's texts and date. */
static void
qualification_matches_item(const void *row, const cJSON *item, int index)
{
	const PcqQualification *q = row;
	const char *status;
	const char *reason;
	const cJSON *date;

	if (q == NULL || q->qualification == NULL)
		fail("row %d: no qualification", index);
	if (q->has_created_date && !IS_VALID_TIMESTAMP(q->vetting_created_date))
		fail("row %d: created date " INT64_FORMAT " is outside PostgreSQL's range",
			 index, q->vetting_created_date);
	if (q->has_created_date && q->unparsed_date != NULL)
		fail("row %d: both a created date and an unparsed date", index);
	if (q->unparsed_date && !valid_utf8(q->unparsed_date))
		fail("row %d: an unparsed date that is not valid UTF-8", index);

	if (!same_text(q->qualification, cJSON_GetObjectItem(item, "qualification")->valuestring))
		fail("row %d: qualification \"%s\" is not the item's", index, q->qualification);
	(void) optional_text_ok(item, "vettingStatus", &status);
	(void) optional_text_ok(item, "vettingReason", &reason);
	if (!same_text(q->vetting_status, status))
		fail("row %d: vetting_status differs from the item's", index);
	if (!same_text(q->vetting_reason, reason))
		fail("row %d: vetting_reason differs from the item's", index);

	date = cJSON_GetObjectItem(item, "vettingCreatedDate");
	if (date == NULL || cJSON_IsNull(date))
		date = cJSON_GetObjectItem(item, "vettingCreateDate");
	if (date == NULL || cJSON_IsNull(date))
	{
		if (q->has_created_date || q->unparsed_date)
			fail("row %d: a date from an item without one", index);
	}
	else if (cJSON_IsString(date) && valid_utf8(date->valuestring))
	{
		TimestampTz ts;

		if (pcq_parse_iso8601(date->valuestring, &ts))
		{
			if (!q->has_created_date || q->vetting_created_date != ts)
				fail("row %d: the ISO 8601 date was not taken", index);
		}
		else if (q->has_created_date || !same_text(q->unparsed_date, date->valuestring))
			fail("row %d: a non-ISO date was not kept as text", index);
	}
	else if (cJSON_IsString(date))
	{
		/* its ASCII, and a '?' for each byte that does not continue one */
		const unsigned char *b = (const unsigned char *) date->valuestring;
		char	   *lossy = malloc(strlen(date->valuestring) + 1);
		char	   *o = lossy;
		bool		same;

		for (; *b; b++)
		{
			if (*b < 0x80)
				*o++ = (char) *b;
			else if ((*b & 0xC0) != 0x80)
				*o++ = '?';
		}
		*o = '\0';
		same = same_text(q->unparsed_date, lossy);
		free(lossy);
		if (q->has_created_date || !same)
			fail("row %d: an invalid UTF-8 date was not kept as its ASCII with '?'", index);
	}
	else if (q->has_created_date || !same_text(q->unparsed_date, type_name(date)))
		fail("row %d: a non-string date was not reported by its type", index);
}

static void
check_qualifications(const char *buf, size_t size)
{
	PcqBodyProblem problem = {(char *) 1, -1};
	List	   *rows = pcq_parse_qualifications(buf, size, &problem);

	check_problem_sqlstate("qualifications", &problem);
	check_collection("qualifications", buf, size, rows, problem.text,
					 "qualifications", "qualification",
					 qualification_is_good, qualification_matches_item);
}

/* ---- validation codes ---- */

static bool
validation_code_is_good(const cJSON *item)
{
	const cJSON *id = cJSON_GetObjectItem(item, "validationId");
	const char *organization;
	const char *partner;
	bool		has;
	int			value;

	return cJSON_IsObject(item) &&
		cJSON_IsString(id) && valid_utf8(id->valuestring) &&
		optional_text_ok(item, "organizationName", &organization) &&
		optional_text_ok(item, "partnerId", &partner) &&
		(partner == NULL || guid_text(partner)) &&
		optional_int_ok(item, "maxCreates", &has, &value) &&
		optional_int_ok(item, "remainingCreates", &has, &value);
}

static void
validation_code_matches_item(const void *row, const cJSON *item, int index)
{
	const PcqValidationCode *v = row;
	const char *organization;
	const char *partner;
	bool		has;
	int			value;

	if (v == NULL || v->validation_id == NULL)
		fail("validation code %d: no validation id", index);
	if (!same_text(v->validation_id, cJSON_GetObjectItem(item, "validationId")->valuestring))
		fail("validation code %d: validation id \"%s\" is not the item's", index,
			 v->validation_id);
	(void) optional_text_ok(item, "organizationName", &organization);
	(void) optional_text_ok(item, "partnerId", &partner);
	if (!same_text(v->organization_name, organization))
		fail("validation code %d: organization name differs from the item's", index);
	if (!same_text(v->partner_id, partner))
		fail("validation code %d: partner id differs from the item's", index);
	(void) optional_int_ok(item, "maxCreates", &has, &value);
	if (v->has_max_creates != has || (has && v->max_creates != value))
		fail("validation code %d: maxCreates differs from the item's", index);
	(void) optional_int_ok(item, "remainingCreates", &has, &value);
	if (v->has_remaining_creates != has || (has && v->remaining_creates != value))
		fail("validation code %d: remainingCreates differs from the item's", index);
}

static void
check_validation_codes(const char *buf, size_t size)
{
	PcqBodyProblem problem = {(char *) 1, -1};
	List	   *rows = pcq_parse_validation_codes(buf, size, &problem);

	check_problem_sqlstate("validation codes", &problem);
	check_collection("validation codes", buf, size, rows, problem.text,
					 "validations", "validationId",
					 validation_code_is_good, validation_code_matches_item);
}

/* ---- a page of customers ---- */

typedef struct ExpectedCustomer
{
	const char *tenant_id;
	const char *company_name;
	const char *domain;
	const char *relationship;
} ExpectedCustomer;

/* What an item should give, or false when it is bad. */
static bool
expected_customer(const cJSON *item, ExpectedCustomer *c)
{
	const cJSON *profile;

	memset(c, 0, sizeof(*c));
	if (!cJSON_IsObject(item))
		return false;
	profile = cJSON_GetObjectItem(item, "companyProfile");
	if (cJSON_IsNull(profile))
		profile = NULL;
	if (profile != NULL &&
		(!cJSON_IsObject(profile) ||
		 !optional_text_ok(profile, "tenantId", &c->tenant_id) ||
		 !optional_text_ok(profile, "companyName", &c->company_name) ||
		 !optional_text_ok(profile, "domain", &c->domain)))
		return false;
	if (c->tenant_id == NULL && !optional_text_ok(item, "id", &c->tenant_id))
		return false;
	return c->tenant_id != NULL && guid_text(c->tenant_id) &&
		optional_text_ok(item, "relationshipToPartner", &c->relationship);
}

/*
 * Whether the page has a links.next (present and not null); if so, *token
 * is its first usable MS-ContinuationToken header value, or NULL.
 */
static bool
expected_next_link(const cJSON *root, const char **token)
{
	const cJSON *links = cJSON_GetObjectItem(root, "links");
	const cJSON *next;
	const cJSON *headers;
	const cJSON *header;

	*token = NULL;
	if (!cJSON_IsObject(links))
		return false;
	next = cJSON_GetObjectItem(links, "next");
	if (next == NULL || cJSON_IsNull(next))
		return false;
	headers = cJSON_IsObject(next) ? cJSON_GetObjectItem(next, "headers") : NULL;
	if (!cJSON_IsArray(headers))
		return true;
	cJSON_ArrayForEach(header, headers)
	{
		const cJSON *key = cJSON_GetObjectItem(header, "key");
		const cJSON *value = cJSON_GetObjectItem(header, "value");

		if (cJSON_IsString(key) && strcasecmp(key->valuestring, "MS-ContinuationToken") == 0 &&
			cJSON_IsString(value) && visible_ascii(value->valuestring))
		{
			*token = value->valuestring;
			break;
		}
	}
	return true;
}

static void
check_customer_page(const char *buf, size_t size)
{
	PcqCustomerPage page;
	PcqBodyProblem body_problem = {(char *) 1, -1};
	const char *problem;
	bool		ok;
	cJSON	   *root;
	const cJSON *items = NULL;
	const cJSON *item;
	const char *token = NULL;
	bool		good;
	ListCell   *lc;
	int			i = 0;

	memset(&page, 0x7f, sizeof(page));
	ok = pcq_parse_customer_page(buf, size, &page, &body_problem);
	problem = body_problem.text;
	check_problem_sqlstate("customer page", &body_problem);

	/* the result's own shape */
	if (ok != (problem == NULL))
		fail("customer page: returned %s with %s problem", ok ? "true" : "false",
			 problem ? "a" : "no");
	check_problem("customer page", problem);
	if (ok)
	{
		if (!shim_list_is_sane(page.customers))
			fail("customer page: the row List is corrupt");
		if (page.continuation_token != NULL && !visible_ascii(page.continuation_token))
			fail("customer page: a continuation token that is not visible ASCII");
	}

	/* against the body */
	root = reparse(buf, size);
	good = cJSON_IsObject(root);
	if (good)
	{
		items = cJSON_GetObjectItem(root, "items");
		good = cJSON_IsArray(items);
	}
	if (good)
	{
		ExpectedCustomer c;

		cJSON_ArrayForEach(item, items)
			good = good && expected_customer(item, &c);
		if (expected_next_link(root, &token) && token == NULL)
			good = false;
	}

	if (!good)
	{
		if (ok)
			fail("customer page: a bad page was accepted");
	}
	else if (!ok)
		fail("customer page: a good page gave the problem \"%s\"", problem);
	else if (list_length(page.customers) != cJSON_GetArraySize(items))
		fail("customer page: %d items gave %d rows", cJSON_GetArraySize(items),
			 list_length(page.customers));
	else
	{
		if (!same_text(page.continuation_token, token))
			fail("customer page: continuation token \"%s\", expected \"%s\"",
				 page.continuation_token ? page.continuation_token : "(none)",
				 token ? token : "(none)");
		lc = list_head(page.customers);
		cJSON_ArrayForEach(item, items)
		{
			const PcqCustomer *row = lfirst(lc);
			ExpectedCustomer c;

			i++;
			(void) expected_customer(item, &c);
			if (row == NULL || row->tenant_id == NULL || !guid_text(row->tenant_id))
				fail("customer %d: no GUID tenant id", i);
			if (!same_text(row->tenant_id, c.tenant_id))
				fail("customer %d: tenant id %s, expected %s", i, row->tenant_id, c.tenant_id);
			if (!same_text(row->company_name, c.company_name))
				fail("customer %d: company name differs from the item's", i);
			if (!same_text(row->domain, c.domain))
				fail("customer %d: domain differs from the item's", i);
			if (!same_text(row->relationship, c.relationship))
				fail("customer %d: relationship differs from the item's", i);
			lc = lnext(page.customers, lc);
		}
	}
	cJSON_Delete(root);
}

/* ---- quoted text, error bodies and token answers ---- */

/* pcq_quotable_text's contract, written independently. */
static char *
expected_quotable(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *) text;
	bool		valid = valid_utf8_bytes(text, len);
	size_t		keep = len;
	size_t		i = 0;
	char	   *out;
	char	   *o;
	uint32		code;

	if (len > PCQ_MAX_QUOTED_TEXT)
	{
		if (!valid)
			keep = PCQ_MAX_QUOTED_TEXT;
		else
		{
			int			n;

			keep = 0;
			while ((n = utf8_char(s + keep, len - keep, &code)) > 0 &&
				   keep + n <= PCQ_MAX_QUOTED_TEXT)
				keep += n;
		}
	}
	o = out = malloc(4 * keep + 4);
	while (i < keep)
	{
		int			n = 1;
		bool		escape;

		if (valid)
		{
			n = utf8_char(s + i, keep - i, &code);
			escape = unsafe_code_point(code);
		}
		else
			escape = s[i] < 0x20 || s[i] >= 0x7F;
		if (escape)
		{
			int			k;

			for (k = 0; k < n; k++)
				o += sprintf(o, "\\x%02X", s[i + k]);
		}
		else
		{
			memcpy(o, s + i, n);
			o += n;
		}
		i += n;
	}
	if (keep < len)
		o += sprintf(o, "...");
	*o = '\0';
	return out;
}

static void
check_quotable_text(const char *buf, size_t size)
{
	char	   *got = pcq_quotable_text(buf, size);
	char	   *want = expected_quotable(buf, size);

	if (got == NULL || strcmp(got, want) != 0)
		fail("pcq_quotable_text gave \"%.1300s\", expected \"%.1300s\"",
			 got ? got : "(NULL)", want);
	free(want);
}

/* Service text as a message may quote it. */
static void
check_quoted(const char *what, const char *s)
{
	size_t		n;
	size_t		i;

	if (s == NULL)
		return;
	n = strlen(s);
	if (n == 0)
		fail("%s is an empty string rather than NULL", what);
	if (n > MAX_QUOTED_OUTPUT)
		fail("%s is %zu bytes long", what, n);
	for (i = 0; i < n;)
	{
		uint32		code;
		int			k = utf8_char((const unsigned char *) s + i, n - i, &code);

		if (k == 0)
			fail("%s is not valid UTF-8 (at byte %zu)", what, i);
		if (unsafe_code_point(code))
			fail("%s contains U+%04X raw (at byte %zu)", what, code, i);
		i += k;
	}
}

static void
check_error_body(const char *buf, size_t size)
{
	char	   *code = (char *) 1;
	char	   *text = (char *) 1;
	cJSON	   *root;

	pcq_parse_error_body(buf, size, &code, &text);
	check_quoted("error code", code);
	check_quoted("error text", text);
	root = reparse(buf, size);
	if (root == NULL || !(cJSON_IsObject(root) || cJSON_IsString(root)))
	{
		if (code || text)
			fail("an error code or text from a body that is not a JSON object or string");
	}
	else if (cJSON_IsString(root) && code)
		fail("an error code from a bare string");
	cJSON_Delete(root);
}

/*
 * token.c caches a token until
 *		TimestampTzPlusMilliseconds(now, (int64) ((expires_in - margin) * 1000))
 * when expires_in > margin.  Do the same here, so UBSan sees whether the
 * value the parser hands over can be used that way.
 */
static void
consume_expires_in(double expires_in)
{
#ifndef PCQ_FUZZ_NO_TOKEN_CONSUMER
	/* 2030-01-01 00:00:00 UTC */
	volatile TimestampTz now = INT64CONST(946771200000000000);
	volatile TimestampTz until = now;

	if (expires_in > PCQ_TOKEN_EXPIRY_MARGIN_SECS)
		until = TimestampTzPlusMilliseconds(now,
											(int64) ((expires_in - PCQ_TOKEN_EXPIRY_MARGIN_SECS) * 1000));
	(void) until;
#endif
}

/* A token from the answer: the body's string when it is a header value. */
static void
check_token(const char *what, const char *got, const cJSON *value)
{
	const char *want = NULL;

	if (cJSON_IsString(value) && visible_ascii(value->valuestring))
		want = value->valuestring;
	if (got != NULL && !visible_ascii(got))
		fail("%s: a byte of it could break a header", what);
	if (!same_text(got, want))
		fail("%s is %s, the body's usable one %s", what,
			 got ? "set" : "NULL", want ? "is set" : "is absent");
}

static void
check_token_answer(const char *buf, size_t size)
{
	PcqTokenAnswer answer;
	cJSON	   *root;
	const cJSON *access;

	memset(&answer, 0x7f, sizeof(answer));
	pcq_parse_token_answer(buf, size, &answer);
	if (isnan(answer.expires_in) || isinf(answer.expires_in) ||
		(answer.expires_in < 0 && answer.expires_in != -1))
		fail("expires_in is %g", answer.expires_in);

	root = reparse(buf, size);
	if (root == NULL &&
		(answer.access_token || answer.access_token_unusable || answer.refresh_token ||
		 answer.expires_in != -1))
		fail("a token answer from a body that is not JSON");
	access = cJSON_GetObjectItem(root, "access_token");
	check_token("the access token", answer.access_token, access);
	if (answer.access_token_unusable !=
		(cJSON_IsString(access) && !visible_ascii(access->valuestring)))
		fail("access_token_unusable is %s for this body",
			 answer.access_token_unusable ? "set" : "not set");
	check_token("the refresh token", answer.refresh_token,
				cJSON_GetObjectItem(root, "refresh_token"));
	cJSON_Delete(root);
	consume_expires_in(answer.expires_in);
}

/* ---- ISO 8601: what parse.c makes of the date routines' answers ---- */

/*
 * Partner Center's shape, read independently of parse.c: the length of the
 * text before the zone and the zone's offset in seconds east, or false.
 * YYYY-MM-DDTHH:MM:SS (ASCII digits), 1 to 7 fraction digits after a ".",
 * then "Z" or +hh:mm / -hh:mm with hh <= 14 and mm <= 59; under 64 bytes.
 */
static bool
iso8601_shape(const char *s, size_t *local_len, int *offset_secs)
{
	static const char pattern[] = "9999-99-99T99:99:99";
	size_t		n = strlen(s);
	size_t		i;

	if (n < 20 || n > 63)
		return false;
	for (i = 0; i < 19; i++)
		if (pattern[i] == '9' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
			return false;
	if (s[i] == '.')
	{
		size_t		start = i;

		while (s[i + 1] >= '0' && s[i + 1] <= '9')
			i++;
		i++;
		if (i - start < 2 || i - start > 8)
			return false;
	}
	*local_len = i;
	if (strcmp(s + i, "Z") == 0)
	{
		*offset_secs = 0;
		return true;
	}
	if ((s[i] == '+' || s[i] == '-') && n - i == 6 &&
		s[i + 1] >= '0' && s[i + 1] <= '9' && s[i + 2] >= '0' && s[i + 2] <= '9' &&
		s[i + 3] == ':' &&
		s[i + 4] >= '0' && s[i + 4] <= '9' && s[i + 5] >= '0' && s[i + 5] <= '9')
	{
		int			oh = (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
		int			om = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');

		if (oh > 14 || om > 59)
			return false;
		*offset_secs = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
		return true;
	}
	return false;
}

static void
check_iso8601(const char *buf, size_t size)
{
	TimestampTz got = 0;
	bool		ok;
	bool		shaped;
	size_t		local_len = 0;
	int			offset = 0;
	const ShimDateRecord *r;
	bool		want_ok;

	if (strlen(buf) != size || size > 80)
		return;
	shim_date_forget();
	ok = pcq_parse_iso8601(buf, &got);
	r = shim_date_record();
	shaped = iso8601_shape(buf, &local_len, &offset);

	if (!shaped)
	{
		if (ok)
			fail("pcq_parse_iso8601(\"%s\") accepts a text not of the ISO 8601 shape", buf);
		if (r->parse_calls != 0)
			fail("pcq_parse_iso8601(\"%s\") handed a text not of the shape to ParseDateTime",
				 buf);
		return;
	}
	if (r->parse_calls != 1)
		fail("pcq_parse_iso8601(\"%s\"): ParseDateTime called %d times, not once",
			 buf, r->parse_calls);
	if (strlen(r->parse_text) != local_len || strncmp(r->parse_text, buf, local_len) != 0)
		fail("pcq_parse_iso8601(\"%s\") gave ParseDateTime \"%s\", not the text before the zone",
			 buf, r->parse_text);
	/* a stage after a failed one is never reached (the shim aborts then) */
	if (r->decode_calls != (r->parse_rc == 0 ? 1 : 0))
		fail("pcq_parse_iso8601(\"%s\"): DecodeDateTime called %d times after ParseDateTime gave %d",
			 buf, r->decode_calls, r->parse_rc);
	if (r->timestamp_calls !=
		(r->decode_calls == 1 && r->decode_rc == 0 && r->decode_dtype == DTK_DATE ? 1 : 0))
		fail("pcq_parse_iso8601(\"%s\"): tm2timestamp called %d times after DecodeDateTime gave %d, dtype %d",
			 buf, r->timestamp_calls, r->decode_rc, r->decode_dtype);
	if (r->timestamp_calls == 1 &&
		(!r->timestamp_tz_given || r->timestamp_tz != -offset))
		fail("pcq_parse_iso8601(\"%s\"): tm2timestamp given zone %d, not the text's %d (seconds west)",
			 buf, r->timestamp_tz_given ? r->timestamp_tz : 0, -offset);
	want_ok = r->timestamp_calls == 1 && r->timestamp_rc == 0 &&
		IS_VALID_TIMESTAMP(r->timestamp_result);
	if (ok != want_ok)
		fail("pcq_parse_iso8601(\"%s\") %s it, although the date routines' answers say %s",
			 buf, ok ? "accepts" : "rejects", want_ok ? "accept" : "reject");
	if (ok && got != r->timestamp_result)
		fail("pcq_parse_iso8601(\"%s\") = " INT64_FORMAT ", tm2timestamp gave " INT64_FORMAT,
			 buf, got, r->timestamp_result);
}

/* ---- the entry point ---- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf = malloc(size + 1);

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	current_input = buf;
	current_size = size;

	check_qualifications(buf, size);
	check_validation_codes(buf, size);
	check_customer_page(buf, size);
	check_error_body(buf, size);
	check_token_answer(buf, size);
	check_quotable_text(buf, size);
	check_iso8601(buf, size);

	if (PG_exception_stack != NULL || error_context_stack != NULL)
		fail("PG_TRY left the exception or error context stack changed");
	if (memcmp(buf, data, size) != 0 || buf[size] != '\0')
		fail("the parser wrote into the body");

	current_input = NULL;
	shim_arena_reset();
	free(buf);
	return 0;
}
