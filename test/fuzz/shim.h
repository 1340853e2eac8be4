/*-------------------------------------------------------------------------
 *
 * shim.h
 *	  What test/fuzz/shim.c offers the harness (test/fuzz/fuzz_parse.c)
 *	  beyond the backend functions it stands in for.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PCQ_FUZZ_SHIM_H
#define PCQ_FUZZ_SHIM_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

/* Free everything palloc'd since the last reset; returns the chunk count. */
extern size_t shim_arena_reset(void);
extern bool shim_list_is_sane(const List *list);

/*
 * What the date stand-ins (ParseDateTime, DecodeDateTime, tm2timestamp)
 * were called with and answered since shim_date_forget().  They parse
 * nothing: each answer is a function of the text ParseDateTime was given
 * (see shim.c).  A stage not reached has calls == 0.
 */
#define SHIM_DATE_TEXT_MAX 64

typedef struct ShimDateRecord
{
	int			parse_calls;
	char		parse_text[SHIM_DATE_TEXT_MAX]; /* the text, when it fit */
	int			parse_rc;		/* 0 or a DTERR_ code */

	int			decode_calls;
	int			decode_rc;
	int			decode_dtype;

	int			timestamp_calls;
	bool		timestamp_tz_given; /* tzp was not NULL */
	int			timestamp_tz;	/* *tzp: seconds west of Greenwich */
	int			timestamp_rc;
	TimestampTz timestamp_result;
} ShimDateRecord;

extern void shim_date_forget(void);
extern const ShimDateRecord *shim_date_record(void);

#endif							/* PCQ_FUZZ_SHIM_H */
