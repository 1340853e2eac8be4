/*-------------------------------------------------------------------------
 *
 * fuzz_parse.c
 *	  libFuzzer harness over src/parse.c, the response body parser, built
 *	  with ASan and UBSan by test/fuzz/run.sh against test/fuzz/shim.c.
 *
 * Each input is one response body.  It goes, NUL-terminated as the transport
 * delivers it, through all three parsers -- qualifications, error body,
 * token answer -- and through pcq_parse_iso8601 as a date string; then
 * everything palloc'd is freed, so that any leak LeakSanitizer reports is a
 * cJSON tree parse.c did not delete.
 *
 * Beyond "no crash, no leak, no undefined behaviour" it checks the parsers'
 * contracts (pcqual.h, parse.c) against an independent reading of the same
 * body with cJSON:
 *
 *	qualifications	rows and a problem are never both set; a problem is a
 *					non-empty string; an unparseable body is a problem; an
 *					empty collection is NIL with no problem; otherwise the
 *					rows are exactly the items, in order, with their texts,
 *					or -- if any item is bad -- NIL and a problem.  Every row
 *					has a non-NULL, valid UTF-8 qualification; a row has a
 *					created date (a valid PostgreSQL timestamp) or keeps the
 *					unparsed date text, never both.
 *	error body		code and text are NULL or non-empty, valid UTF-8, free of
 *					control characters, at most 300 bytes plus "...".
 *	token answer	the access token is NULL or visible ASCII; error texts as
 *					above; and expires_in can be used the way token.c uses it
 *					(a millisecond int64 added to a timestamp) without
 *					undefined behaviour.
 *	ISO 8601		pcq_parse_iso8601 accepts exactly the strings an
 *					independent reading accepts and gives the same timestamp.
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

#include <cjson/cJSON.h>

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "pcqual.h"

#undef vsnprintf
#undef snprintf
#undef vfprintf
#undef fprintf

/* from shim.c */
extern size_t shim_arena_reset(void);
extern bool shim_list_is_sane(const List *list);
extern int	shim_utf8_valid_prefix(const unsigned char *s, int len);

/* parse.c's limit on service text in a message */
#define MAX_MESSAGE_TEXT 300

/* token.c's safety margin before a token's expiry */
#define TOKEN_EXPIRY_MARGIN_SECS 300

static const char *current_input;

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
	if (current_input && strlen(current_input) < 2000)
		fprintf(stderr, "input: %s\n", current_input);
	abort();
}

static bool
valid_utf8(const char *s)
{
	size_t		n = strlen(s);

	return shim_utf8_valid_prefix((const unsigned char *) s, (int) n) == (int) n;
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

static bool
item_ok(const cJSON *item)
{
	const cJSON *name = cJSON_GetObjectItem(item, "qualification");
	const char *ignored;

	return cJSON_IsObject(item) &&
		cJSON_IsString(name) && valid_utf8(name->valuestring) &&
		optional_text_ok(item, "vettingStatus", &ignored) &&
		optional_text_ok(item, "vettingReason", &ignored);
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

/* The row for an item must carry the item's texts and date. */
static void
check_row_against_item(const PcqQualification *q, const cJSON *item, int index)
{
	const char *status;
	const char *reason;
	const cJSON *date;

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
		if (q->has_created_date || !same_text(q->unparsed_date, "(not valid UTF-8)"))
			fail("row %d: an invalid UTF-8 date was not reported as such", index);
	}
	else if (q->has_created_date || !same_text(q->unparsed_date, type_name(date)))
		fail("row %d: a non-string date was not reported by its type", index);
}

static void
check_qualifications(const char *buf, size_t size, List *rows, const char *problem)
{
	ListCell   *lc;
	cJSON	   *root;
	const cJSON *items = NULL;
	bool		single = false;
	bool		all_ok = true;
	const cJSON *item;
	int			n = 0;

	/* the result's own shape */
	if (rows != NIL && problem != NULL)
		fail("rows and a problem (\"%s\") both set", problem);
	if (problem != NULL && (problem[0] == '\0' || !valid_utf8(problem)))
		fail("empty or invalid problem text");
	if (!shim_list_is_sane(rows))
		fail("the row List is corrupt");
	foreach(lc, rows)
	{
		PcqQualification *q = lfirst(lc);

		if (q == NULL || q->qualification == NULL)
			fail("a row without a qualification");
		if (!valid_utf8(q->qualification) ||
			(q->vetting_status && !valid_utf8(q->vetting_status)) ||
			(q->vetting_reason && !valid_utf8(q->vetting_reason)) ||
			(q->unparsed_date && !valid_utf8(q->unparsed_date)))
			fail("a row with text that is not valid UTF-8");
		if (q->has_created_date && !IS_VALID_TIMESTAMP(q->vetting_created_date))
			fail("created date " INT64_FORMAT " is outside PostgreSQL's range",
				 q->vetting_created_date);
		if (q->has_created_date && q->unparsed_date != NULL)
			fail("a row with both a created date and an unparsed date");
	}

	/* against the body */
	root = reparse(buf, size);
	if (root == NULL)
	{
		if (rows != NIL || problem == NULL)
			fail("a body that is not one JSON value gave no problem");
		return;
	}
	if (cJSON_IsArray(root))
		items = root;
	else if (cJSON_IsObject(root))
	{
		const cJSON *list = cJSON_GetObjectItem(root, "qualifications");

		if (list == NULL)
			list = cJSON_GetObjectItem(root, "items");
		if (list != NULL)
			items = cJSON_IsArray(list) ? list : NULL;
		else if (cJSON_GetObjectItem(root, "qualification") != NULL)
		{
			items = root;
			single = true;
		}
	}

	if (items == NULL)
		all_ok = false;
	else if (single)
	{
		n = 1;
		all_ok = item_ok(items);
	}
	else
		cJSON_ArrayForEach(item, items)
	{
		n++;
		if (!item_ok(item))
			all_ok = false;
	}

	if (!all_ok)
	{
		if (rows != NIL || problem == NULL)
			fail("a bad body or item gave no problem");
	}
	else if (problem != NULL)
		fail("good items gave the problem \"%s\"", problem);
	else if (list_length(rows) != n)
		fail("%d items gave %d rows", n, list_length(rows));
	else if (single)
		check_row_against_item(linitial(rows), items, 1);
	else
	{
		int			i = 0;

		lc = list_head(rows);
		cJSON_ArrayForEach(item, items)
		{
			check_row_against_item(lfirst(lc), item, ++i);
			lc = lnext(rows, lc);
		}
	}
	cJSON_Delete(root);
}

/* ---- error bodies and token answers ---- */

static void
check_message(const char *what, const char *s)
{
	const unsigned char *p;

	if (s == NULL)
		return;
	if (*s == '\0')
		fail("%s is an empty string rather than NULL", what);
	if (!valid_utf8(s))
		fail("%s is not valid UTF-8", what);
	for (p = (const unsigned char *) s; *p; p++)
		if (*p < 0x20)
			fail("%s contains control character 0x%02x", what, *p);
	if (strlen(s) > MAX_MESSAGE_TEXT + 3)
		fail("%s is %zu bytes long", what, strlen(s));
}

static void
check_error_body(const char *buf, size_t size)
{
	char	   *code = (char *) 1;
	char	   *text = (char *) 1;
	cJSON	   *root;

	pcq_parse_error_body(buf, size, &code, &text);
	check_message("error code", code);
	check_message("error text", text);
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
 *		TimestampTzPlusMilliseconds(now, (int64) ((expires_in - 300) * 1000))
 * when expires_in > 300.  Do the same here, so UBSan sees whether the value
 * the parser hands over can be used that way.
 */
static void
consume_expires_in(double expires_in)
{
#ifndef PCQ_FUZZ_NO_TOKEN_CONSUMER
	/* 2030-01-01 00:00:00 UTC */
	volatile TimestampTz now = INT64CONST(946771200000000000);
	volatile TimestampTz until = now;

	if (expires_in > TOKEN_EXPIRY_MARGIN_SECS)
		until = TimestampTzPlusMilliseconds(now,
											(int64) ((expires_in - TOKEN_EXPIRY_MARGIN_SECS) * 1000));
	(void) until;
#endif
}

static void
check_token_answer(const char *buf, size_t size)
{
	PcqTokenAnswer answer;
	cJSON	   *root;

	memset(&answer, 0x7f, sizeof(answer));
	pcq_parse_token_answer(buf, size, &answer);
	if (answer.access_token)
	{
		const unsigned char *p = (const unsigned char *) answer.access_token;

		if (*p == '\0')
			fail("an empty access token");
		for (; *p; p++)
			if (*p <= 0x20 || *p >= 0x7f)
				fail("access token byte 0x%02x could break a header", *p);
	}
	check_message("token error", answer.error);
	check_message("token error_description", answer.error_description);
	root = reparse(buf, size);
	if (root == NULL &&
		(answer.access_token || answer.error || answer.error_description ||
		 answer.expires_in != -1))
		fail("a token answer from a body that is not JSON");
	cJSON_Delete(root);
	consume_expires_in(answer.expires_in);
}

/* ---- ISO 8601, read independently ---- */

static int
digits_at(const char *s, int at, int count)
{
	int			v = 0;

	while (count-- > 0)
		v = v * 10 + (s[at++] - '0');
	return v;
}

/* Days since 0001-01-01, counted by whole years, then months. */
static int64
ordinal_days(int y, int m, int d)
{
	static const int before_month[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	int64		prior = y - 1;
	bool		leap = (y % 400 == 0) || (y % 4 == 0 && y % 100 != 0);

	return prior * 365 + prior / 4 - prior / 100 + prior / 400 +
		before_month[m - 1] + (m > 2 && leap ? 1 : 0) + d - 1;
}

static bool
expected_iso8601(const char *s, TimestampTz *result)
{
	static const char pattern[] = "9999-99-99T99:99:99";
	static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	size_t		n = strlen(s);
	size_t		i;
	int			y, mo, d, h, mi, sec;
	int64		usec = 0;
	int			offset = 0;
	bool		leap;

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
		/* rounded to microseconds as PostgreSQL does: rint(fraction * 1e6) */
		{
			char		fraction[10];

			memcpy(fraction, s + start, i - start);
			fraction[i - start] = '\0';
			usec = (int64) rint(strtod(fraction, NULL) * 1000000);
		}
	}
	if (strcmp(s + i, "Z") == 0)
		offset = 0;
	else if ((s[i] == '+' || s[i] == '-') && n - i == 6 &&
			 s[i + 1] >= '0' && s[i + 1] <= '9' && s[i + 2] >= '0' && s[i + 2] <= '9' &&
			 s[i + 3] == ':' &&
			 s[i + 4] >= '0' && s[i + 4] <= '9' && s[i + 5] >= '0' && s[i + 5] <= '9')
	{
		int			oh = digits_at(s, i + 1, 2);
		int			om = digits_at(s, i + 4, 2);

		if (oh > 14 || om > 59)
			return false;
		offset = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
	}
	else
		return false;

	y = digits_at(s, 0, 4);
	mo = digits_at(s, 5, 2);
	d = digits_at(s, 8, 2);
	h = digits_at(s, 11, 2);
	mi = digits_at(s, 14, 2);
	sec = digits_at(s, 17, 2);
	leap = (y % 400 == 0) || (y % 4 == 0 && y % 100 != 0);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] ||
		(mo == 2 && d == 29 && !leap))
		return false;
	/* hour 24 and leap second 60 are allowed, up to 24:00:00 in all */
	if (h > 24 || mi > 59 || sec > 60 ||
		((int64) h * 3600 + mi * 60 + sec) * 1000000 + usec > INT64CONST(86400000000))
		return false;
	/* 2000-01-01 is day 730119 */
	*result = (ordinal_days(y, mo, d) - 730119) * INT64CONST(86400000000) +
		((int64) h * 3600 + mi * 60 + sec - offset) * 1000000 + usec;
	return IS_VALID_TIMESTAMP(*result);
}

static void
check_iso8601(const char *buf, size_t size)
{
	TimestampTz got = 0;
	TimestampTz want = 0;
	bool		ok;
	bool		want_ok;

	if (strlen(buf) != size || size > 80)
		return;
	ok = pcq_parse_iso8601(buf, &got);
	want_ok = expected_iso8601(buf, &want);
	if (ok != want_ok)
		fail("pcq_parse_iso8601(\"%s\") %s it, an independent reading %s it",
			 buf, ok ? "accepts" : "rejects", want_ok ? "accepts" : "rejects");
	if (ok && got != want)
		fail("pcq_parse_iso8601(\"%s\") = " INT64_FORMAT ", expected " INT64_FORMAT,
			 buf, got, want);
}

/* ---- the entry point ---- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf = malloc(size + 1);
	char	   *problem = (char *) 1;
	List	   *rows;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	current_input = buf;

	rows = pcq_parse_qualifications(buf, size, &problem);
	check_qualifications(buf, size, rows, problem);
	check_error_body(buf, size);
	check_token_answer(buf, size);
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
