/*-------------------------------------------------------------------------
 *
 * activity.c
 *	  What each backend's pcqual call is doing now: the rows of the
 *	  pc_stat_activity progress view.
 *
 * Each backend owns one slot, indexed by its PGPROC number, and is the only
 * one that writes it; readers copy a slot under its spinlock.  A call fills
 * its slot when it starts (pcq_activity_begin) and empties it when it ends,
 * whether it returns, raises an ERROR (callers end it in PG_FINALLY) or the
 * backend exits.  Updates go to shared memory only when a value changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_stat_activity);

#define FUNCTION_NAME_SIZE 64

typedef struct ActivityValues
{
	int			pid;			/* 0: no call in progress */
	char		function[FUNCTION_NAME_SIZE];
	TimestampTz started_at;
	int64		customers_total;	/* < 0: not known in advance */
	int64		customers_done;
	int64		customers_failed;
	int			in_flight;
	int64		retries;
	int64		throttled;
	TimestampTz waiting_until;
	int			window;
} ActivityValues;

typedef struct ActivitySlot
{
	slock_t		mutex;
	ActivityValues v;
} ActivitySlot;

typedef struct ActivityShared
{
	int			nslots;
	ActivitySlot slots[FLEXIBLE_ARRAY_MEMBER];
} ActivityShared;

static ActivityShared *activity = NULL;

/* This backend's call, as last published, and its slot. */
static ActivityValues mine;
static ActivitySlot *my_slot = NULL;
static bool exit_hook_registered = false;

Size
pcq_activity_shmem_size(void)
{
	return add_size(offsetof(ActivityShared, slots),
					mul_size(MaxBackends, sizeof(ActivitySlot)));
}

void
pcq_activity_shmem_init(void)
{
	bool		found;
	int			i;

	activity = ShmemInitStruct("pcqual activity", pcq_activity_shmem_size(), &found);
	if (found)
		return;
	activity->nslots = MaxBackends;
	for (i = 0; i < MaxBackends; i++)
	{
		SpinLockInit(&activity->slots[i].mutex);
		memset(&activity->slots[i].v, 0, sizeof(ActivityValues));
	}
}

static void
publish(void)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&my_slot->mutex);
	memcpy(&my_slot->v, &mine, sizeof(ActivityValues));
	SpinLockRelease(&my_slot->mutex);
}

static void
activity_exit(int code, Datum arg)
{
	pcq_activity_end();
}

/* A pcqual SQL function starts: total customers, or -1 when not known. */
void
pcq_activity_begin(const char *function, int64 customers_total)
{
	int			index = PCQ_MY_PROC_INDEX;

	if (activity == NULL || index < 0 || index >= activity->nslots)
		return;
	if (!exit_hook_registered)
	{
		before_shmem_exit(activity_exit, (Datum) 0);
		exit_hook_registered = true;
	}
	my_slot = &activity->slots[index];
	memset(&mine, 0, sizeof(mine));
	mine.pid = MyProcPid;
	strlcpy(mine.function, function, sizeof(mine.function));
	mine.started_at = GetCurrentTimestamp();
	mine.customers_total = customers_total;
	publish();
}

/* The call is over, however it ended. */
void
pcq_activity_end(void)
{
	if (my_slot == NULL)
		return;
	memset(&mine, 0, sizeof(mine));
	publish();
	my_slot = NULL;
}

/*
 * Run body(fcinfo) as the pcqual call function, shown in pc_stat_activity
 * while it runs, however it ends.
 */
void
pcq_activity_run(const char *function, int64 customers_total,
				 void (*body) (FunctionCallInfo fcinfo), FunctionCallInfo fcinfo)
{
	pcq_activity_begin(function, customers_total);
	PG_TRY();
	{
		body(fcinfo);
	}
	PG_FINALLY();
	{
		pcq_activity_end();
	}
	PG_END_TRY();
}

/* Customers whose answer is final: done, and how many of them failed. */
void
pcq_activity_customers(int64 done, int64 failed)
{
	if (my_slot == NULL)
		return;
	mine.customers_done += done;
	mine.customers_failed += failed;
	publish();
}

/* Requests in flight and the window they are under. */
void
pcq_activity_in_flight(int in_flight, int window)
{
	if (my_slot == NULL || (mine.in_flight == in_flight && mine.window == window))
		return;
	mine.in_flight = in_flight;
	mine.window = window;
	publish();
}

/* A request will be sent again. */
void
pcq_activity_retry(void)
{
	if (my_slot == NULL)
		return;
	mine.retries++;
	publish();
}

/* A 429 was answered (retried or not). */
void
pcq_activity_throttled(void)
{
	if (my_slot == NULL)
		return;
	mine.throttled++;
	publish();
}

/* The call waits for a pause or a retry until then; 0 when it does not. */
void
pcq_activity_waiting(TimestampTz until)
{
	if (my_slot == NULL || mine.waiting_until == until)
		return;
	mine.waiting_until = until;
	publish();
}

#define ACTIVITY_COLS 11

static void
put_activity_row(ReturnSetInfo *rsinfo, const ActivityValues *v)
{
	Datum		values[ACTIVITY_COLS];
	bool		nulls[ACTIVITY_COLS];

	memset(nulls, false, sizeof(nulls));
	values[0] = Int32GetDatum(v->pid);
	values[1] = CStringGetTextDatum(v->function);
	values[2] = TimestampTzGetDatum(v->started_at);
	values[3] = Int64GetDatum(v->customers_total);
	nulls[3] = v->customers_total < 0;
	values[4] = Int64GetDatum(v->customers_done);
	values[5] = Int64GetDatum(v->customers_failed);
	values[6] = Int32GetDatum(v->in_flight);
	values[7] = Int64GetDatum(v->retries);
	values[8] = Int64GetDatum(v->throttled);
	values[9] = TimestampTzGetDatum(v->waiting_until);
	nulls[9] = v->waiting_until == 0;
	values[10] = Int32GetDatum(v->window);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* pc_stat_activity(): a row per backend inside a pcqual call. */
Datum
pc_stat_activity(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	pcq_require_shared_memory(activity != NULL);
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < activity->nslots; i++)
	{
		ActivityValues v;

		CHECK_FOR_INTERRUPTS();
		SpinLockAcquire(&activity->slots[i].mutex);
		memcpy(&v, &activity->slots[i].v, sizeof(v));
		SpinLockRelease(&activity->slots[i].mutex);
		if (v.pid != 0)
			put_activity_row(rsinfo, &v);
	}
	return (Datum) 0;
}
