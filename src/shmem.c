/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  pcqual's shared memory: asked for when the server starts, laid out by
 *	  the files that own each part.
 *
 *	 governor.c		partners' in-flight slots, windows and pauses;
 *	 token_cache.c	access tokens, one per credential;
 *	 stats.c		pc_stat's counters;
 *	 activity.c		pc_stat_activity's rows, one per backend.
 *
 * The sizes depend on pcqual.max_shared_tokens and max_connections, both
 * fixed at start.  Two LWLocks of the tranche "pcqual" guard the governor
 * and the tokens; the counters and the activity rows have spinlocks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "pcqual.h"

#define TRANCHE_NAME "pcqual"
#define LOCK_GOVERNOR 0
#define LOCK_TOKENS 1
#define LOCK_COUNT 2

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
total_size(void)
{
	Size		size = pcq_governor_shmem_size();

	size = add_size(size, pcq_token_cache_shmem_size());
	size = add_size(size, pcq_stats_shmem_size());
	size = add_size(size, pcq_activity_shmem_size());
	return size;
}

static void
request_shared_memory(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(total_size());
	RequestNamedLWLockTranche(TRANCHE_NAME, LOCK_COUNT);
}

static void
start_shared_memory(void)
{
	LWLockPadded *locks;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche(TRANCHE_NAME);
	pcq_governor_shmem_init(&locks[LOCK_GOVERNOR].lock);
	pcq_token_cache_shmem_init(&locks[LOCK_TOKENS].lock);
	pcq_stats_shmem_init();
	pcq_activity_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, while shared_preload_libraries is processed. */
void
pcq_shmem_install(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shared_memory;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = start_shared_memory;
}

/* The SQL functions that read shared state say clearly when there is none. */
void
pcq_require_shared_memory(bool present)
{
	if (!present)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pcqual's shared memory is not set up"),
				 errhint("Add pcqual to shared_preload_libraries, then restart the server.")));
}
