/*-------------------------------------------------------------------------
 *
 * shim.c
 *	  The parts of the PostgreSQL backend that src/parse.c needs, so that
 *	  parse.c can be compiled unchanged into a standalone libFuzzer binary
 *	  (test/fuzz/fuzz_parse.c) without the postgres executable.
 *
 * Compiled against the real PostgreSQL 15 server headers, so every
 * definition here must match the backend's prototype and every macro
 * (PG_TRY, foreach, IS_VALID_TIMESTAMP ...) is the real one.
 *
 * What is real, what is reimplemented:
 *
 *	memory		palloc and friends allocate from an arena: each chunk is its
 *				own malloc() block (so ASan sees the exact bounds of every
 *				palloc'd object) linked into a list that the harness frees
 *				after each input with shim_arena_reset().  Only memory that
 *				parse.c obtains outside palloc -- cJSON's trees -- can then
 *				leak, which keeps LeakSanitizer meaningful for cJSON_Delete.
 *				Sizes above MaxAllocSize, pfree of a pointer palloc did not
 *				return, and double pfree abort, as the backend would ERROR.
 *	psprintf	libc vsnprintf (ASan checks the %s arguments it reads); the
 *				conversions parse.c uses (%d %s %zu %.15g %02X) format the same
 *				as PostgreSQL's pg_vsnprintf.
 *	List		lappend, list_make1..4 etc. for the PostgreSQL 15 array-based
 *				List of nodes/pg_list.h (header with initial cells, separate
 *				cell array once it grows), so the real inline accessors and
 *				foreach macros work on the result.
 *	elog		PG_exception_stack and error_context_stack are real globals
 *				that PG_TRY saves and restores; pg_re_throw() and any
 *				ereport(ERROR) abort(): parse.c promises never to raise.
 *				Messages below ERROR are discarded.
 *	encoding	the database encoding is UTF-8.  pg_verify_mbstr is a strict
 *				UTF-8 validator written here, cross-checked on every call
 *				against PostgreSQL's own pg_encoding_verifymbstr() from
 *				libpgcommon.a (common/wchar.c, the code the backend runs);
 *				a disagreement aborts.  pg_any_to_server() does what the
 *				backend does when no conversion is needed: it verifies and
 *				returns its argument itself, not a copy -- so if parse.c
 *				ever kept that pointer past cJSON_Delete, ASan would report
 *				a use after free.  pg_mbcliplen clips on UTF-8 character
 *				boundaries with the backend's semantics.
 *	datetime	ParseDateTime, DecodeDateTime and tm2timestamp live in the
 *				backend's utils/adt/datetime.c and timestamp.c, which are in
 *				no static library PostgreSQL installs (there is no
 *				libpgcommon_srv.a in Debian's postgresql-server-dev-15), so
 *				they are reimplemented here, minimally: the ISO 8601 subset
 *				"YYYY-MM-DD[T| ]HH:MM[:SS[.fraction]]" that parse.c hands
 *				them, with PostgreSQL's validation rules (year >= 1, month
 *				1-12, day within the month incl. leap years, hour <= 24,
 *				minute <= 59, second <= 60, time of day <= 24:00:00, the
 *				fraction rounded to microseconds with rint() as
 *				ParseFractionalSecond does) and tm2timestamp's overflow and
 *				range checks.  Anything else (month names, Julian dates,
 *				zones inside the text, "epoch" ...) is DTERR_BAD_FORMAT here
 *				although the backend would accept it; parse.c's own shape
 *				check never passes such text on.  When no zone is given,
 *				the backend's DecodeDateTime takes the offset from the
 *				session TimeZone; here the session TimeZone is UTC.
 *				DecodeDateTime has the PostgreSQL 15 signature (the build
 *				uses the 15 headers; parse.c's PG 16+ shim is not compiled).
 *	StringInfo	the real common/stringinfo.c from libpgcommon.a, on the
 *				arena's palloc/repalloc (its frontend build prints and
 *				exits where the backend would ERROR on a string beyond
 *				MaxAllocSize; libFuzzer reports that exit as a failure).
 *	strings		pg_strcasecmp is the real one from libpgport.a.
 *	pcqual.c	pcq_is_guid, pcq_is_unreserved and
 *				pcq_append_percent_encoded, which parse.c calls, are not here: run.sh cuts those functions out of
 *				src/pcqual.c as they are (the rest of pcqual.c needs the
 *				backend's GUC machinery).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/int.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* libc's printf family, which ASan intercepts, not port.h's pg_ versions */
#undef vsnprintf
#undef vfprintf

/* ---- failing the way the backend would ---- */

static void shim_fail(const char *what, ...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

static void
shim_fail(const char *what, ...)
{
	va_list		ap;

	fputs("pcqual fuzz shim: ", stderr);
	va_start(ap, what);
	vfprintf(stderr, what, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* ---- memory: an arena of individually malloc'd chunks ---- */

#define CHUNK_MAGIC		UINT64CONST(0x70637175616c6d63)	/* "pcqualmc" */
#define CHUNK_FREED		UINT64CONST(0x6465616463686b21)

typedef struct ArenaChunk
{
	struct ArenaChunk *prev;
	struct ArenaChunk *next;
	Size		size;
	uint64		magic;
} ArenaChunk;					/* 32 bytes: keeps the payload MAXALIGNed */

StaticAssertDecl(sizeof(ArenaChunk) % MAXIMUM_ALIGNOF == 0,
				 "arena chunk header must keep palloc results aligned");

static ArenaChunk *arena_head;
static size_t arena_live_chunks;
static size_t arena_live_bytes;
static size_t arena_peak_bytes;

/* The backend has memory contexts; nothing here looks at them. */
MemoryContext CurrentMemoryContext = NULL;
MemoryContext TopMemoryContext = NULL;
MemoryContext ErrorContext = NULL;

static void
arena_link(ArenaChunk *c)
{
	c->prev = NULL;
	c->next = arena_head;
	if (arena_head)
		arena_head->prev = c;
	arena_head = c;
	arena_live_chunks++;
	arena_live_bytes += c->size;
	if (arena_live_bytes > arena_peak_bytes)
		arena_peak_bytes = arena_live_bytes;
}

static void
arena_unlink(ArenaChunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		arena_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	arena_live_chunks--;
	arena_live_bytes -= c->size;
}

static ArenaChunk *
chunk_of(void *pointer, const char *caller)
{
	ArenaChunk *c;

	if (pointer == NULL)
		shim_fail("%s(NULL)", caller);
	c = (ArenaChunk *) ((char *) pointer - sizeof(ArenaChunk));
	if (c->magic == CHUNK_FREED)
		shim_fail("%s of a chunk that was already pfree'd", caller);
	if (c->magic != CHUNK_MAGIC)
		shim_fail("%s of a pointer palloc did not return", caller);
	return c;
}

static void *
arena_alloc(Size size, bool zero)
{
	ArenaChunk *c;

	if (!AllocSizeIsValid(size))
		shim_fail("invalid memory alloc request size %zu", (size_t) size);
	c = zero ? calloc(1, sizeof(ArenaChunk) + size) : malloc(sizeof(ArenaChunk) + size);
	if (c == NULL)
		shim_fail("out of memory (request of %zu bytes)", (size_t) size);
	c->size = size;
	c->magic = CHUNK_MAGIC;
	arena_link(c);
	return (char *) c + sizeof(ArenaChunk);
}

/* Free everything palloc'd since the last reset; returns the chunk count. */
size_t
shim_arena_reset(void)
{
	size_t		n = arena_live_chunks;

	while (arena_head)
	{
		ArenaChunk *c = arena_head;

		arena_head = c->next;
		c->magic = CHUNK_FREED;
		free(c);
	}
	arena_live_chunks = 0;
	arena_live_bytes = 0;
	return n;
}

size_t
shim_arena_peak_bytes(void)
{
	return arena_peak_bytes;
}

void *
palloc(Size size)
{
	return arena_alloc(size, false);
}

void *
palloc0(Size size)
{
	return arena_alloc(size, true);
}

void *
palloc_extended(Size size, int flags)
{
	if ((flags & MCXT_ALLOC_HUGE) == 0 && !AllocSizeIsValid(size))
		shim_fail("invalid memory alloc request size %zu", (size_t) size);
	return arena_alloc(size, (flags & MCXT_ALLOC_ZERO) != 0);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return arena_alloc(size, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return arena_alloc(size, true);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context, Size size)
{
	return arena_alloc(size, true);
}

void
pfree(void *pointer)
{
	ArenaChunk *c = chunk_of(pointer, "pfree");

	arena_unlink(c);
	c->magic = CHUNK_FREED;
	free(c);
}

void *
repalloc(void *pointer, Size size)
{
	ArenaChunk *c = chunk_of(pointer, "repalloc");
	ArenaChunk *moved;

	if (!AllocSizeIsValid(size))
		shim_fail("invalid memory alloc request size %zu", (size_t) size);
	arena_unlink(c);
	moved = realloc(c, sizeof(ArenaChunk) + size);
	if (moved == NULL)
		shim_fail("out of memory (request of %zu bytes)", (size_t) size);
	moved->size = size;
	arena_link(moved);
	return (char *) moved + sizeof(ArenaChunk);
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	return pstrdup(string);
}

/*
 * common/psprintf.c's contract: the length written when it fit, otherwise
 * the buffer size that would be needed (including the terminator).
 */
size_t
pvsnprintf(char *buf, size_t len, const char *fmt, va_list args)
{
	int			n = vsnprintf(buf, len, fmt, args);

	if (n < 0)
		shim_fail("vsnprintf failed with format string \"%s\"", fmt);
	if ((size_t) n < len)
		return (size_t) n;
	if ((size_t) n > MaxAllocSize - 1)
		shim_fail("out of memory (psprintf result over MaxAllocSize)");
	return (size_t) n + 1;
}

char *
psprintf(const char *fmt,...)
{
	size_t		len = 128;

	for (;;)
	{
		char	   *result = palloc(len);
		va_list		args;
		size_t		needed;

		va_start(args, fmt);
		needed = pvsnprintf(result, len, fmt, args);
		va_end(args);
		if (needed < len)
			return result;
		pfree(result);
		len = needed;
	}
}

/* ---- List (PostgreSQL 15 layout) ---- */

#define LIST_INITIAL_CELLS	5	/* cells allocated with a new List's header */

static List *
new_list(NodeTag type, int min_size)
{
	int			cells = Max(min_size, LIST_INITIAL_CELLS);
	List	   *list = palloc(offsetof(List, initial_elements) + cells * sizeof(ListCell));

	list->type = type;
	list->length = min_size;
	list->max_length = cells;
	list->elements = list->initial_elements;
	return list;
}

static void
check_list(const List *list, NodeTag type)
{
	if (list == NIL)
		return;
	if (list->type != type || list->length <= 0 ||
		list->length > list->max_length || list->elements == NULL)
		shim_fail("corrupt List (type %d, length %d, max_length %d)",
				  (int) list->type, list->length, list->max_length);
}

static void
grow_list(List *list, int min_size)
{
	int			cells = Max(list->max_length * 2, min_size);

	if (list->elements == list->initial_elements)
	{
		/* the cells move out of the header into an array of their own */
		ListCell   *array = palloc(cells * sizeof(ListCell));

		memcpy(array, list->elements, list->length * sizeof(ListCell));
		list->elements = array;
	}
	else
		list->elements = repalloc(list->elements, cells * sizeof(ListCell));
	list->max_length = cells;
}

static List *
append_cell(List *list, NodeTag type, ListCell cell)
{
	check_list(list, type);
	if (list == NIL)
		list = new_list(type, 1);
	else
	{
		if (list->length >= list->max_length)
			grow_list(list, list->length + 1);
		list->length++;
	}
	list->elements[list->length - 1] = cell;
	return list;
}

List *
lappend(List *list, void *datum)
{
	ListCell	cell;

	cell.ptr_value = datum;
	return append_cell(list, T_List, cell);
}

List *
lappend_int(List *list, int datum)
{
	ListCell	cell;

	cell.int_value = datum;
	return append_cell(list, T_IntList, cell);
}

List *
lappend_oid(List *list, Oid datum)
{
	ListCell	cell;

	cell.oid_value = datum;
	return append_cell(list, T_OidList, cell);
}

List *
list_make1_impl(NodeTag t, ListCell datum1)
{
	List	   *list = new_list(t, 1);

	list->elements[0] = datum1;
	return list;
}

List *
list_make2_impl(NodeTag t, ListCell datum1, ListCell datum2)
{
	List	   *list = new_list(t, 2);

	list->elements[0] = datum1;
	list->elements[1] = datum2;
	return list;
}

List *
list_make3_impl(NodeTag t, ListCell datum1, ListCell datum2, ListCell datum3)
{
	List	   *list = new_list(t, 3);

	list->elements[0] = datum1;
	list->elements[1] = datum2;
	list->elements[2] = datum3;
	return list;
}

List *
list_make4_impl(NodeTag t, ListCell datum1, ListCell datum2, ListCell datum3,
				ListCell datum4)
{
	List	   *list = new_list(t, 4);

	list->elements[0] = datum1;
	list->elements[1] = datum2;
	list->elements[2] = datum3;
	list->elements[3] = datum4;
	return list;
}

void
list_free(List *list)
{
	if (list == NIL)
		return;
	if (list->elements != list->initial_elements)
		pfree(list->elements);
	pfree(list);
}

void
list_free_deep(List *list)
{
	int			i;

	check_list(list, T_List);
	if (list == NIL)
		return;
	for (i = 0; i < list->length; i++)
		pfree(list->elements[i].ptr_value);
	list_free(list);
}

/* For the harness: a List as the real header's accessors expect it. */
bool
shim_list_is_sane(const List *list)
{
	return list == NIL ||
		(list->type == T_List && list->length > 0 &&
		 list->length <= list->max_length && list->elements != NULL);
}

/* ---- elog ---- */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

void
pg_re_throw(void)
{
	shim_fail("pg_re_throw: an ERROR escaped a PG_TRY block");
}

bool
errstart(int elevel, const char *domain)
{
	if (elevel >= ERROR)
		shim_fail("ereport(elevel %d) would raise an ERROR; the parser must never raise",
				  elevel);
	return false;				/* below ERROR: nothing to report here */
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	shim_fail("errfinish reached at %s:%d (%s)", filename, lineno,
			  funcname ? funcname : "?");
}

int
errcode(int sqlerrcode)
{
	return 0;
}

int
errmsg(const char *fmt,...)
{
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	return 0;
}

int
errdetail(const char *fmt,...)
{
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	return 0;
}

int
errhint(const char *fmt,...)
{
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

/* ---- encoding: the database is UTF-8 ---- */

/*
 * Length of the longest valid UTF-8 prefix of s[0..len): RFC 3629, no
 * overlong forms, no surrogates, nothing above U+10FFFF, and -- as in
 * PostgreSQL -- no NUL byte.
 */
int
shim_utf8_valid_prefix(const unsigned char *s, int len)
{
	int			i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		int			more;
		unsigned char lo = 0x80;
		unsigned char hi = 0xBF;
		int			k;

		if (c == 0)
			break;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			more = 1;
		else if (c == 0xE0)
			more = 2, lo = 0xA0;
		else if (c == 0xED)
			more = 2, hi = 0x9F;
		else if (c >= 0xE1 && c <= 0xEF)
			more = 2;
		else if (c == 0xF0)
			more = 3, lo = 0x90;
		else if (c == 0xF4)
			more = 3, hi = 0x8F;
		else if (c >= 0xF1 && c <= 0xF3)
			more = 3;
		else
			break;				/* 0x80-0xC1 and 0xF5-0xFF never lead */
		if (len - i - 1 < more)
			break;
		if (s[i + 1] < lo || s[i + 1] > hi)
			break;
		for (k = 2; k <= more; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				break;
		if (k <= more)
			break;
		i += more + 1;
	}
	return i;
}

static void
require_utf8(int encoding, const char *caller)
{
	if (encoding != PG_UTF8)
		shim_fail("%s: encoding %d; the shim's database encoding is UTF-8 only",
				  caller, encoding);
}

bool
pg_verify_mbstr(int encoding, const char *mbstr, int len, bool noError)
{
	int			ours;
	int			theirs;

	require_utf8(encoding, "pg_verify_mbstr");
	if (len < 0)
		shim_fail("pg_verify_mbstr: negative length %d", len);
	ours = shim_utf8_valid_prefix((const unsigned char *) mbstr, len);
	/* PostgreSQL's own verifier, from libpgcommon.a */
	theirs = pg_encoding_verifymbstr(PG_UTF8, mbstr, len);
	if (ours != theirs)
		shim_fail("pg_verify_mbstr: the shim's validator accepts %d bytes, PostgreSQL's %d (of %d)",
				  ours, theirs, len);
	if (ours == len)
		return true;
	if (!noError)
		shim_fail("invalid byte sequence for encoding \"UTF8\" would raise an ERROR");
	return false;
}

char *
pg_any_to_server(const char *s, int len, int encoding)
{
	if (len <= 0)
		return unconstify(char *, s);
	if (encoding != PG_UTF8 && encoding != PG_SQL_ASCII)
		shim_fail("pg_any_to_server: conversion from encoding %d is not in the shim",
				  encoding);
	/* no conversion needed: the backend verifies and returns s itself */
	(void) pg_verify_mbstr(PG_UTF8, s, len, false);
	return unconstify(char *, s);
}

static int
utf8_char_len(unsigned char c)
{
	if ((c & 0x80) == 0)
		return 1;
	if ((c & 0xE0) == 0xC0)
		return 2;
	if ((c & 0xF0) == 0xE0)
		return 3;
	if ((c & 0xF8) == 0xF0)
		return 4;
	return 1;
}

/*
 * The byte length of the longest prefix of mbstr[0..len) that is at most
 * limit bytes and ends on a character boundary; stops at a NUL, as the
 * backend's pg_encoding_mbcliplen does.
 */
int
pg_mbcliplen(const char *mbstr, int len, int limit)
{
	int			clen = 0;

	while (len > 0 && *mbstr)
	{
		int			l = utf8_char_len((unsigned char) *mbstr);

		/* the backend's table: cross-check it */
		if (l != pg_utf_mblen((const unsigned char *) mbstr))
			shim_fail("pg_mbcliplen: character length %d, PostgreSQL says %d",
					  l, pg_utf_mblen((const unsigned char *) mbstr));
		if (clen + l > limit)
			break;
		clen += l;
		if (clen == limit)
			break;
		len -= l;
		mbstr += l;
	}
	return clen;
}

int
pg_mblen(const char *mbstr)
{
	return utf8_char_len((unsigned char) *mbstr);
}

int
GetDatabaseEncoding(void)
{
	return PG_UTF8;
}

/* ---- datetime: the ISO 8601 subset parse.c uses ---- */

/*
 * Split timestr into fields, in the manner of the backend's ParseDateTime:
 * a date ("2024-01-31", DTK_DATE), a time ("10:00:00.5", DTK_TIME), a word
 * (lower-cased, DTK_STRING, e.g. the ISO "t"), or plain digits (DTK_NUMBER);
 * whitespace separates.  Other characters are DTERR_BAD_FORMAT here.
 */
int
ParseDateTime(const char *timestr, char *workbuf, size_t buflen,
			  char **field, int *ftype, int maxfields, int *numfields)
{
	const char *cp = timestr;
	char	   *bufp = workbuf;
	const char *bufend = workbuf + buflen;
	int			nf = 0;

#define APPEND(ch) \
	do { \
		if (bufp >= bufend) \
			return DTERR_BAD_FORMAT; \
		*bufp++ = (ch); \
	} while (0)

	while (*cp)
	{
		if (isspace((unsigned char) *cp))
		{
			cp++;
			continue;
		}
		if (nf >= maxfields)
			return DTERR_BAD_FORMAT;
		field[nf] = bufp;
		if (isdigit((unsigned char) *cp))
		{
			while (isdigit((unsigned char) *cp))
				APPEND(*cp++);
			if (*cp == ':')
			{
				ftype[nf] = DTK_TIME;
				while (isdigit((unsigned char) *cp) || *cp == ':' || *cp == '.')
					APPEND(*cp++);
			}
			else if (*cp == '-')
			{
				ftype[nf] = DTK_DATE;
				while (isdigit((unsigned char) *cp) || *cp == '-')
					APPEND(*cp++);
			}
			else if (*cp == '\0' || isspace((unsigned char) *cp) || isalpha((unsigned char) *cp))
				ftype[nf] = DTK_NUMBER;
			else
				return DTERR_BAD_FORMAT;
		}
		else if (isalpha((unsigned char) *cp))
		{
			ftype[nf] = DTK_STRING;
			while (isalpha((unsigned char) *cp))
				APPEND(tolower((unsigned char) *cp++));
		}
		else
			return DTERR_BAD_FORMAT;
		APPEND('\0');
		nf++;
	}
	*numfields = nf;
	return 0;
#undef APPEND
}

/* A run of 1 to 9 digits ending at a terminator in stops (or NUL). */
static bool
number_field(const char **cp, const char *stops, int *value)
{
	const char *p = *cp;
	int			v = 0;
	int			digits = 0;

	while (isdigit((unsigned char) *p) && digits < 9)
	{
		v = v * 10 + (*p - '0');
		p++;
		digits++;
	}
	if (digits == 0 || (*p != '\0' && strchr(stops, *p) == NULL))
		return false;
	*cp = p;
	*value = v;
	return true;
}

static bool
is_leap_year(int year)
{
	return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

static int
days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return month == 2 && is_leap_year(year) ? 29 : days[month - 1];
}

/* "YYYY-MM-DD": a year of 3 or more digits first, as PostgreSQL reads it. */
static int
decode_date(const char *str, struct pg_tm *tm)
{
	const char *cp = str;
	int			year;
	int			month;
	int			day;

	if (strspn(str, "0123456789") < 3)
		return DTERR_BAD_FORMAT;	/* two-digit years etc.: not in the shim */
	if (!number_field(&cp, "-", &year) || *cp++ != '-' ||
		!number_field(&cp, "-", &month) || *cp++ != '-' ||
		!number_field(&cp, "", &day) || *cp != '\0')
		return DTERR_BAD_FORMAT;
	if (year <= 0)
		return DTERR_FIELD_OVERFLOW;	/* there is no year zero */
	if (month < 1 || month > 12 || day < 1 || day > 31)
		return DTERR_MD_FIELD_OVERFLOW;
	tm->tm_year = year;
	tm->tm_mon = month;
	tm->tm_mday = day;
	return 0;
}

/* "HH:MM[:SS[.fraction]]" */
static int
decode_time(const char *str, struct pg_tm *tm, fsec_t *fsec)
{
	const char *cp = str;
	int			hour;
	int			min;
	int			sec = 0;
	fsec_t		frac = 0;
	int64		total;

	if (!number_field(&cp, ":", &hour) || *cp++ != ':' ||
		!number_field(&cp, ":", &min))
		return DTERR_BAD_FORMAT;
	if (*cp == ':')
	{
		cp++;
		if (!number_field(&cp, ".", &sec))
			return DTERR_BAD_FORMAT;
		if (*cp == '.')
		{
			char	   *end;
			double		f;

			errno = 0;
			f = strtod(cp, &end);
			if (*end != '\0' || errno != 0 || end == cp + 1)
				return DTERR_BAD_FORMAT;
			frac = (fsec_t) rint(f * 1000000);
		}
	}
	else if (*cp != '\0')
		return DTERR_BAD_FORMAT;

	/* PostgreSQL's time_overflows(): 24:00:00 and leap second 60 allowed */
	if (hour < 0 || hour > HOURS_PER_DAY || min < 0 || min >= MINS_PER_HOUR ||
		sec < 0 || sec > SECS_PER_MINUTE || frac < 0 || frac > USECS_PER_SEC)
		return DTERR_FIELD_OVERFLOW;
	total = ((((int64) hour * MINS_PER_HOUR + min) * SECS_PER_MINUTE) + sec) *
		USECS_PER_SEC + frac;
	if (total > USECS_PER_DAY)
		return DTERR_FIELD_OVERFLOW;
	tm->tm_hour = hour;
	tm->tm_min = min;
	tm->tm_sec = sec;
	*fsec = frac;
	return 0;
}

int
DecodeDateTime(char **field, int *ftype, int nf, int *dtype,
			   struct pg_tm *tm, fsec_t *fsec, int *tzp)
{
	int			i = 0;
	int			dterr;

	*dtype = DTK_DATE;
	memset(tm, 0, sizeof(*tm));
	*fsec = 0;
	if (tzp != NULL)
		*tzp = 0;

	if (nf < 1 || ftype[0] != DTK_DATE)
		return DTERR_BAD_FORMAT;
	if ((dterr = decode_date(field[0], tm)) != 0)
		return dterr;
	i = 1;
	/* the ISO "T" must be followed by a time */
	if (i < nf && ftype[i] == DTK_STRING)
	{
		if (strcmp(field[i], "t") != 0 || i + 1 >= nf || ftype[i + 1] != DTK_TIME)
			return DTERR_BAD_FORMAT;
		i++;
	}
	if (i < nf && ftype[i] == DTK_TIME)
	{
		if ((dterr = decode_time(field[i], tm, fsec)) != 0)
			return dterr;
		i++;
	}
	if (i != nf)
		return DTERR_BAD_FORMAT;
	if (tm->tm_mday > days_in_month(tm->tm_year, tm->tm_mon))
		return DTERR_FIELD_OVERFLOW;
	/* no zone in the text: the session TimeZone's offset, which is UTC */
	tm->tm_isdst = 0;
	tm->tm_gmtoff = 0;
	tm->tm_zone = "UTC";
	return 0;
}

/* Days from 2000-01-01 (PostgreSQL's epoch) to a proleptic Gregorian date. */
static int64
days_from_pg_epoch(int year, int month, int day)
{
	/* shift the year to start in March, so the leap day comes last */
	int64		y = (int64) year - (month <= 2);
	int64		era = (y >= 0 ? y : y - 399) / 400;
	int64		yoe = y - era * 400;	/* 0..399 */
	int64		mp = (month + 9) % 12;	/* March = 0 */
	int64		doy = (153 * mp + 2) / 5 + day - 1;
	int64		doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64		days_from_0000_03_01 = era * 146097 + doe;

	/* 2000-01-01 is day 730425 counted from 0000-03-01 */
	return days_from_0000_03_01 - 730425;
}

int
tm2timestamp(struct pg_tm *tm, fsec_t fsec, int *tzp, Timestamp *result)
{
	int64		date;
	int64		time;

	if (!IS_VALID_JULIAN(tm->tm_year, tm->tm_mon, tm->tm_mday))
	{
		*result = 0;
		return -1;
	}
	date = days_from_pg_epoch(tm->tm_year, tm->tm_mon, tm->tm_mday);
	time = (((int64) tm->tm_hour * MINS_PER_HOUR + tm->tm_min) * SECS_PER_MINUTE +
			tm->tm_sec) * USECS_PER_SEC + fsec;
	if (pg_mul_s64_overflow(date, USECS_PER_DAY, result) ||
		pg_add_s64_overflow(*result, time, result))
	{
		*result = 0;
		return -1;
	}
	/* a zone offset is in seconds west of Greenwich */
	if (tzp != NULL &&
		pg_add_s64_overflow(*result, (int64) *tzp * USECS_PER_SEC, result))
	{
		*result = 0;
		return -1;
	}
	if (!IS_VALID_TIMESTAMP(*result))
	{
		*result = 0;
		return -1;
	}
	return 0;
}

