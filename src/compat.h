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
#include "commands/explain.h"
#include "nodes/pathnodes.h"
#include "storage/proc.h"
#include "utils/datetime.h"
#include "utils/wait_event.h"

/*
 * The module's magic block: from 18 it also carries the name and version
 * that pg_get_loaded_modules() shows.  Used once, in pcqual.c.
 */
#if PG_VERSION_NUM >= 180000
#define PCQ_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "pcqual", .version = PCQUAL_VERSION)
#else
#define PCQ_MODULE_MAGIC PG_MODULE_MAGIC
#endif

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

/*
 * What a backend waits for, as pg_stat_activity.wait_event shows it.  From
 * 17 each kind is a wait event of its own, in class Extension; before, all
 * are the one event Extension.
 */
typedef enum PcqWaitKind
{
	PCQ_WAIT_HTTP,				/* Partner Center's or Azure AD's sockets */
	PCQ_WAIT_RETRY,				/* the backoff before a retry */
	PCQ_WAIT_SLOT,				/* a governor slot, or a partner's pause */
	PCQ_WAIT_TOKEN_REFRESH,		/* another session's token request */
	PCQ_WAIT_CREDENTIAL_LOCK,	/* the refresh token file's lock */
	PCQ_WAIT_KINDS
} PcqWaitKind;

/*
 * The wait event of a kind of wait.  WaitEventExtensionNew() registers a
 * name in shared memory, so it runs in a backend, on the first wait of that
 * kind; the ID is the same for every backend and is kept per process.
 */
static inline uint32
pcq_wait_event(PcqWaitKind kind)
{
#if PG_VERSION_NUM >= 170000
	static const char *const names[PCQ_WAIT_KINDS] = {
		[PCQ_WAIT_HTTP] = "PcqualHttp",
		[PCQ_WAIT_RETRY] = "PcqualRetryWait",
		[PCQ_WAIT_SLOT] = "PcqualSlot",
		[PCQ_WAIT_TOKEN_REFRESH] = "PcqualTokenRefresh",
		[PCQ_WAIT_CREDENTIAL_LOCK] = "PcqualCredentialLock",
	};
	static uint32 events[PCQ_WAIT_KINDS];

	Assert(kind >= 0 && kind < PCQ_WAIT_KINDS);
	if (events[kind] == 0)
		events[kind] = WaitEventExtensionNew(names[kind]);
	return events[kind];
#else
	return PG_WAIT_EXTENSION;
#endif
}

/* EXPLAIN's property functions and state have headers of their own from 18. */
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#endif

/*
 * A path's count of disabled nodes (enable_* = off below it), compared
 * before its cost from 18; before, disabling was a cost.
 */
#if PG_VERSION_NUM >= 180000
#define pcq_path_copy_disabled_nodes(path, from) \
	((path)->disabled_nodes = (from)->disabled_nodes)
#else
#define pcq_path_copy_disabled_nodes(path, from) ((void) 0)
#endif

/*
 * The outer joins that can null a Var (varnullingrels, from 16): setrefs
 * requires every reference to one column of a scan tuple to carry the same.
 */
#if PG_VERSION_NUM >= 160000
#define pcq_var_copy_nullingrels(var, from) \
	((var)->varnullingrels = bms_copy((from)->varnullingrels))
#else
#define pcq_var_copy_nullingrels(var, from) ((void) 0)
#endif

#endif							/* PCQUAL_COMPAT_H */
