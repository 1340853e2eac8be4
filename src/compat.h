/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Differences between the PostgreSQL majors pcqual builds for (15 to
 *	  18), in one place.  Every name here starts with pcq_ or PCQ_, so that
 *	  none can pass for one of core's.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PCQUAL_COMPAT_H
#define PCQUAL_COMPAT_H

#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/datetime.h"

/* This backend's local transaction id: a field of vxid from 17. */
#if PG_VERSION_NUM >= 170000
#define PCQ_MY_LOCAL_XID (MyProc->vxid.lxid)
#else
#define PCQ_MY_LOCAL_XID (MyProc->lxid)
#endif

/* This backend's index among the PGPROCs: MyProcNumber from 17. */
#if PG_VERSION_NUM >= 170000
#define PCQ_MY_PROC_INDEX MyProcNumber
#else
#define PCQ_MY_PROC_INDEX (MyProc->pgprocno)
#endif

/*
 * A WaitEventSet that lives as long as the backend: from 17 it belongs to
 * a resource owner, NULL meaning none; before, to a memory context.
 */
#if PG_VERSION_NUM >= 170000
#define pcq_create_session_wait_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define pcq_create_session_wait_set(nevents) \
	CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/* DecodeDateTime reports its errors' details through an extra argument from 16. */
static inline int
pcq_decode_date_time(char **field, int *ftype, int nf, int *dtype,
					 struct pg_tm *tm, fsec_t *fsec, int *tzp)
{
#if PG_VERSION_NUM >= 160000
	DateTimeErrorExtra extra;

	return DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp, &extra);
#else
	return DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp);
#endif
}

#endif							/* PCQUAL_COMPAT_H */
