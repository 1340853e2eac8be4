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
 * What is real, what is reimplemented, what is only a stand-in:
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
 *				a disagreement aborts.  pg_is_ascii is the real one from
 *				libpgcommon.a.  In a UTF-8 database parse.c converts
 *				nothing, so FindDefaultConversionProc and
 *				pg_do_encoding_conversion_buf (backend only) abort if
 *				called: the conversion to another database encoding and its
 *				22P05 failure are not fuzzed (test/encoding.sql covers them
 *				in a LATIN1 database).  pg_mbcliplen clips on UTF-8
 *				character boundaries with the backend's semantics.
 *	datetime	NOT the backend's.  ParseDateTime, DecodeDateTime and
 *				tm2timestamp live in utils/adt/datetime.c and timestamp.c of
 *				the postgres executable, in no library PostgreSQL installs,
 *				so the fuzzer cannot run them.  The stand-ins here parse
 *				nothing: they check how parse.c calls them, record what it
 *				passed (shim.h), and answer success, a failure at one of the
 *				stages, or a timestamp out of range, as a fixed function of
 *				the text (see "datetime" below).  The fuzzer therefore checks
 *				parse.c's own date code -- its shape check, what it hands
 *				the backend, what it makes of every answer -- and not
 *				PostgreSQL's date rules.  Those, with parse.c and the real
 *				routines together, are checked in a running server by
 *				test/fuzz/dates-in-server.sh.
 *	time_t_to_timestamptz  the backend's three lines, copied (see below).
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

#include "catalog/namespace.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "shim.h"

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

const char *
GetDatabaseEncodingName(void)
{
	return "UTF8";
}

/* Conversions: never needed in a UTF-8 database (see the top). */
Oid
FindDefaultConversionProc(int32 for_encoding, int32 to_encoding)
{
	shim_fail("FindDefaultConversionProc(%d, %d) in a UTF-8 database",
			  (int) for_encoding, (int) to_encoding);
}

int
pg_do_encoding_conversion_buf(Oid proc, int src_encoding, int dest_encoding,
							  unsigned char *src, int srclen,
							  unsigned char *dest, int destlen, bool noError)
{
	shim_fail("pg_do_encoding_conversion_buf(%d -> %d) in a UTF-8 database",
			  src_encoding, dest_encoding);
}

/* ---- time_t_to_timestamptz: the backend's arithmetic, copied ---- */

/*
 * utils/adt/timestamp.c's, line for line (it is in the postgres executable
 * only): seconds since 1970 to microseconds since 2000, unchecked -- so
 * UBSan reports a value that would overflow in the backend too.
 */
TimestampTz
time_t_to_timestamptz(pg_time_t tm)
{
	TimestampTz result;

	result = (TimestampTz) tm -
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
	result *= USECS_PER_SEC;

	return result;
}

/* ---- datetime: stand-ins that record, and parse nothing ---- */

/*
 * The backend's ParseDateTime, DecodeDateTime and tm2timestamp are not
 * here: they are in the postgres executable only.  These stand-ins do not
 * read a date.  They check that parse.c drives them the way the real ones
 * must be driven (the fields ParseDateTime produced go to DecodeDateTime,
 * the pg_tm and fsec DecodeDateTime filled go to tm2timestamp unchanged, a
 * stage is never called after one failed), record what they were given,
 * and answer as a function of the text: an FNV-1a hash of it picks, one
 * time in sixteen each, a ParseDateTime error, a DecodeDateTime error, a
 * DecodeDateTime answer that is not DTK_DATE (as for "epoch"), a
 * tm2timestamp error, or a tm2timestamp "success" outside PostgreSQL's
 * range; otherwise a valid timestamp derived from the hash and the zone
 * offset.  So the fuzzer reaches every branch of pcq_parse_iso8601 after
 * its shape check, and the harness can tell what parse.c should have made
 * of the answers; what the real routines make of a text is checked in a
 * running server by test/fuzz/dates-in-server.sh.
 */
enum
{
	SHIM_DATE_PARSE_FAILS,
	SHIM_DATE_DECODE_FAILS,
	SHIM_DATE_NOT_A_DATE,
	SHIM_DATE_TIMESTAMP_FAILS,
	SHIM_DATE_OUT_OF_RANGE
	/* anything above: success */
};

static ShimDateRecord shim_date;
static uint32 shim_date_hash;
static char *shim_date_workbuf;
static int	shim_date_stage;	/* of the latest text: 1 parsed, 2 decoded */
static struct pg_tm shim_date_tm;
static fsec_t shim_date_fsec;

void
shim_date_forget(void)
{
	memset(&shim_date, 0, sizeof(shim_date));
	shim_date_workbuf = NULL;
}

const ShimDateRecord *
shim_date_record(void)
{
	return &shim_date;
}

static uint32
fnv1a(const char *s)
{
	uint32		h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 16777619u;
	return h;
}

int
ParseDateTime(const char *timestr, char *workbuf, size_t buflen,
			  char **field, int *ftype, int maxfields, int *numfields)
{
	size_t		len = strlen(timestr);	/* ASan: timestr is a C string */

	shim_date.parse_calls++;
	shim_date_workbuf = NULL;
	shim_date_stage = 0;
	if (len < SHIM_DATE_TEXT_MAX)
		memcpy(shim_date.parse_text, timestr, len + 1);
	else
		shim_date.parse_text[0] = '\0';
	shim_date_hash = fnv1a(timestr);
	if (maxfields < 1)
		shim_fail("ParseDateTime: room for %d fields", maxfields);
	/* the real one fails, rather than overrun, when workbuf is too small */
	if (len + 1 > buflen || shim_date_hash % 16 == SHIM_DATE_PARSE_FAILS)
		return shim_date.parse_rc = DTERR_BAD_FORMAT;
	/* one field: the text, in workbuf as the real one copies it there */
	memcpy(workbuf, timestr, len + 1);
	field[0] = workbuf;
	ftype[0] = DTK_DATE;
	*numfields = 1;
	shim_date_workbuf = workbuf;
	shim_date_stage = 1;
	return shim_date.parse_rc = 0;
}

int
DecodeDateTime(char **field, int *ftype, int nf, int *dtype,
			   struct pg_tm *tm, fsec_t *fsec, int *tzp)
{
	uint32		h = shim_date_hash;

	shim_date.decode_calls++;
	if (shim_date_stage != 1)
		shim_fail("DecodeDateTime called without a successful ParseDateTime of its own");
	shim_date_stage = 0;
	if (nf != 1 || field[0] != shim_date_workbuf || ftype[0] != DTK_DATE)
		shim_fail("DecodeDateTime: not the fields ParseDateTime produced");
	if (h % 16 == SHIM_DATE_DECODE_FAILS)
		return shim_date.decode_rc = DTERR_FIELD_OVERFLOW;

	/* an arbitrary date and time, to see that parse.c passes them on */
	memset(tm, 0, sizeof(*tm));
	tm->tm_year = 1 + (int) (h % 9999);
	tm->tm_mon = 1 + (int) ((h >> 8) % 12);
	tm->tm_mday = 1 + (int) ((h >> 12) % 28);
	tm->tm_hour = (int) ((h >> 16) % 24);
	tm->tm_min = (int) ((h >> 20) % 60);
	tm->tm_sec = (int) ((h >> 24) % 60);
	*fsec = (fsec_t) (h % 1000000);
	/* no zone in the text: the real one takes the session TimeZone's */
	if (tzp != NULL)
		*tzp = -19800;
	*dtype = h % 16 == SHIM_DATE_NOT_A_DATE ? DTK_EPOCH : DTK_DATE;
	shim_date.decode_dtype = *dtype;
	shim_date_tm = *tm;
	shim_date_fsec = *fsec;
	if (*dtype == DTK_DATE)
		shim_date_stage = 2;
	return shim_date.decode_rc = 0;
}

int
tm2timestamp(struct pg_tm *tm, fsec_t fsec, int *tzp, Timestamp *result)
{
	uint32		h = shim_date_hash;

	shim_date.timestamp_calls++;
	if (shim_date_stage != 2)
		shim_fail("tm2timestamp called without a DecodeDateTime of its own that gave DTK_DATE");
	shim_date_stage = 0;
	if (memcmp(tm, &shim_date_tm, sizeof(*tm)) != 0 || fsec != shim_date_fsec)
		shim_fail("tm2timestamp: not the fields DecodeDateTime filled");
	shim_date.timestamp_tz_given = tzp != NULL;
	shim_date.timestamp_tz = tzp ? *tzp : 0;
	if (h % 16 == SHIM_DATE_TIMESTAMP_FAILS)
	{
		*result = 0;
		return shim_date.timestamp_rc = -1;
	}
	if (h % 16 == SHIM_DATE_OUT_OF_RANGE)
		*result = END_TIMESTAMP + (int64) (h >> 4);
	else
		/* within range for any offset: +-(about 2^31 s) around 2000 */
		*result = ((int64) (h >> 1) - (int64) 0x40000000) * USECS_PER_SEC +
			(int64) shim_date.timestamp_tz * USECS_PER_SEC + fsec;
	shim_date.timestamp_result = *result;
	return shim_date.timestamp_rc = 0;
}
