/*-------------------------------------------------------------------------
 *
 * governor.c
 *	  The cluster-wide governor: how many requests the whole cluster has in
 *	  flight to one partner, and when it may send the next.
 *
 * Partner Center throttles per partner tenant, whichever process the
 * requests come from, so every backend of the cluster acts as one client.
 * Each partner (an API base URL with a partner tenant; token requests are a
 * separate entry, keyed by the token URL) has an entry in shared memory:
 *
 *	 in_flight		requests of every backend now in flight;
 *	 window			how many may be: at most pcqual.max_cluster_concurrency;
 *	 not_before		no backend starts a request before it: a 429's
 *					Retry-After, seen by any backend, pauses everyone;
 *	 learned_limit	the in-flight count the last 429 revealed.
 *
 * The window is a congestion window.  While nothing is learned it grows by
 * one for every success that found it full (doubling each round trip: slow
 * start).  A 429 halves it once per round trip (later 429s of requests
 * that were sent before the cut do not cut again) and teaches a limit, one
 * less than the lowest in-flight count that was throttled.  It
 * then grows by one per round trip of successes (1/window each) up to the
 * learned limit, which itself rises by one every PROBE_INTERVAL_MS without
 * a 429, in case the service allows more again.  What was learned stays
 * after the call, so the next call of any backend starts from it.
 *
 * Slots are taken without blocking: a backend that may not start one now
 * sleeps on its latch (the transport's wait also watches its sockets) and
 * the entry's condition variable wakes it when a slot frees.  Backends that
 * wait share the window: while others wait, none holds more than its share.
 * Slots a backend holds come back when its requests end, when it raises an
 * ERROR (http.c leaves in PG_FINALLY) and when it exits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "pcqual.h"

PG_FUNCTION_INFO_V1(pc_stat_governor);
PG_FUNCTION_INFO_V1(pc_governor_reset);

/* Where a partner nobody has learned anything about starts. */
#define INITIAL_WINDOW 4.0

/* A learned limit rises by one after this long without a 429. */
#define PROBE_INTERVAL_MS 60000

/* Longest key: a base URL with a partner tenant, or a token URL. */
#define KEY_SIZE 512

/* Partner entries: API and token requests of each shared credential. */
#define ENTRIES_PER_CREDENTIAL 2

/* Batches of one backend that may be joined at once. */
#define MAX_SEATS 4

typedef struct GovernorEntry
{
	bool		in_use;
	bool		token_endpoint;
	char		key[KEY_SIZE];
	int			in_flight;
	double		window;
	int			learned_limit;	/* 0: nothing learned yet */
	TimestampTz not_before;
	TimestampTz cut_at;			/* when the window was last halved */
	TimestampTz limit_since;	/* the last 429 or probe */
	int			active;			/* backends joined */
	int			waiting;		/* backends refused a slot, not yet served */
	int64		throttled;
	TimestampTz last_used;
	ConditionVariable cv;
} GovernorEntry;

typedef struct GovernorShared
{
	LWLock	   *lock;
	int			nentries;
	GovernorEntry entries[FLEXIBLE_ARRAY_MEMBER];
} GovernorShared;

/* A backend's place at one entry, for one batch; backend-local. */
struct PcqGovernorSeat
{
	bool		joined;
	int			entry;
	int			held;
	bool		waiting;
};

static GovernorShared *governor = NULL;
static PcqGovernorSeat seats[MAX_SEATS];
static bool exit_hook_registered = false;

static int
entry_count(void)
{
	return pcq_max_shared_tokens * ENTRIES_PER_CREDENTIAL;
}

Size
pcq_governor_shmem_size(void)
{
	return add_size(offsetof(GovernorShared, entries),
					mul_size(entry_count(), sizeof(GovernorEntry)));
}

void
pcq_governor_shmem_init(LWLock *lock)
{
	bool		found;
	int			i;

	governor = ShmemInitStruct("pcqual governor", pcq_governor_shmem_size(), &found);
	if (found)
		return;
	governor->lock = lock;
	governor->nentries = entry_count();
	for (i = 0; i < governor->nentries; i++)
	{
		memset(&governor->entries[i], 0, sizeof(GovernorEntry));
		ConditionVariableInit(&governor->entries[i].cv);
	}
}

/* The key of the partner the settings in force point at. */
static char *
partner_key(bool token_endpoint)
{
	char	   *key;

	if (token_endpoint)
		key = pcq_token_url();
	else
	{
		char	   *base = pcq_api_url("");

		key = psprintf("%s (partner %s)", base,
					   pcq_is_set(pcq_partner_tenant) ? pcq_partner_tenant : "not set");
		pfree(base);
	}
	if (strlen(key) >= KEY_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("the Partner Center URL is too long for pcqual's governor: %zu bytes, at most %d",
						strlen(key), KEY_SIZE - 1),
				 errhint("Shorten pcqual.base_url or pcqual.authority.")));
	return key;
}

static void
reset_learning(GovernorEntry *e)
{
	e->window = Min(INITIAL_WINDOW, (double) pcq_max_cluster_concurrency);
	e->learned_limit = 0;
	e->not_before = 0;
	e->cut_at = 0;
	e->limit_since = 0;
}

/* The entry of key, made (or an idle one recycled) if there is none. */
static int
find_or_make_entry(const char *key, bool token_endpoint)
{
	int			free_one = -1;
	int			idle_lru = -1;
	int			i;
	GovernorEntry *e;

	for (i = 0; i < governor->nentries; i++)
	{
		e = &governor->entries[i];
		if (!e->in_use)
		{
			if (free_one < 0)
				free_one = i;
			continue;
		}
		if (e->token_endpoint == token_endpoint && strcmp(e->key, key) == 0)
			return i;
		if (e->active == 0 && e->in_flight == 0 &&
			(idle_lru < 0 || e->last_used < governor->entries[idle_lru].last_used))
			idle_lru = i;
	}
	i = free_one >= 0 ? free_one : idle_lru;
	if (i < 0)
		return -1;
	e = &governor->entries[i];
	e->in_use = true;
	e->token_endpoint = token_endpoint;
	strlcpy(e->key, key, KEY_SIZE);
	e->in_flight = 0;
	e->active = e->waiting = 0;
	e->throttled = 0;
	reset_learning(e);
	return i;
}

static void
set_waiting(GovernorEntry *e, PcqGovernorSeat *seat, bool waiting)
{
	if (seat->waiting == waiting)
		return;
	seat->waiting = waiting;
	e->waiting += waiting ? 1 : -1;
}

/* Give back everything a seat holds; the caller holds the lock. */
static void
vacate(PcqGovernorSeat *seat)
{
	GovernorEntry *e = &governor->entries[seat->entry];

	set_waiting(e, seat, false);
	e->in_flight -= seat->held;
	seat->held = 0;
	e->active--;
	seat->joined = false;
}

/* At exit (pg_terminate_backend, FATAL): slots of unfinished batches. */
static void
governor_exit(int code, Datum arg)
{
	int			i;

	if (governor == NULL)
		return;
	for (i = 0; i < MAX_SEATS; i++)
	{
		if (!seats[i].joined)
			continue;
		LWLockAcquire(governor->lock, LW_EXCLUSIVE);
		vacate(&seats[i]);
		LWLockRelease(governor->lock);
		ConditionVariableBroadcast(&governor->entries[seats[i].entry].cv);
	}
}

static PcqGovernorSeat *
free_seat(void)
{
	int			i;

	for (i = 0; i < MAX_SEATS; i++)
		if (!seats[i].joined)
			return &seats[i];
	elog(ERROR, "pcqual: more than %d batches at once in one backend", MAX_SEATS);
	return NULL;				/* keep the compiler quiet */
}

/*
 * Join the partner the settings in force point at, for one batch of API
 * requests or of token requests.  NULL when pcqual.cluster_governor is off.
 */
PcqGovernorSeat *
pcq_governor_join(bool token_endpoint)
{
	PcqGovernorSeat *seat;
	char	   *key;
	int			entry;

	if (!pcq_cluster_governor)
		return NULL;
	pcq_require_shared_memory(governor != NULL);
	seat = free_seat();
	key = partner_key(token_endpoint);
	if (!exit_hook_registered)
	{
		before_shmem_exit(governor_exit, (Datum) 0);
		exit_hook_registered = true;
	}

	LWLockAcquire(governor->lock, LW_EXCLUSIVE);
	entry = find_or_make_entry(key, token_endpoint);
	if (entry >= 0)
	{
		governor->entries[entry].active++;
		governor->entries[entry].last_used = GetCurrentTimestamp();
		seat->joined = true;
		seat->entry = entry;
		seat->held = 0;
		seat->waiting = false;
	}
	LWLockRelease(governor->lock);
	pfree(key);

	if (entry < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pcqual's governor has no free entry for another partner"),
				 errdetail("All %d entries have requests in flight.", governor->nentries),
				 errhint("Raise pcqual.max_shared_tokens (it sizes the governor too), then restart the server.")));
	return seat;
}

/* How many requests the entry may have in flight now. */
static int
entry_limit(const GovernorEntry *e)
{
	return Max(Min((int) e->window, pcq_max_cluster_concurrency), 1);
}

/*
 * Take a slot for one request, if the partner may have one more in flight
 * now and this backend is within its share.  If not, the backend is left
 * prepared to sleep on the entry's condition variable, so that a slot that
 * frees sets its latch, and *paused_until says when a Retry-After pause
 * ends (0 when none).
 */
bool
pcq_governor_acquire(PcqGovernorSeat *seat, PcqSlot *slot, TimestampTz *paused_until)
{
	GovernorEntry *e = &governor->entries[seat->entry];
	TimestampTz now = GetCurrentTimestamp();
	bool		granted = false;
	int			limit;

	*paused_until = 0;
	LWLockAcquire(governor->lock, LW_EXCLUSIVE);
	limit = entry_limit(e);
	if (now < e->not_before)
		*paused_until = e->not_before;
	else if (e->in_flight < limit)
	{
		int			others_waiting = e->waiting - (seat->waiting ? 1 : 0);
		int			share = (limit + e->active - 1) / Max(e->active, 1);

		granted = others_waiting == 0 || seat->held < share;
	}
	if (granted)
	{
		e->in_flight++;
		seat->held++;
		slot->depth = e->in_flight;
		slot->window = limit;
		slot->started = now;
		e->last_used = now;
		set_waiting(e, seat, false);
	}
	else
	{
		set_waiting(e, seat, true);
		/* under the lock, so that no release can slip between */
		ConditionVariablePrepareToSleep(&e->cv);
	}
	LWLockRelease(governor->lock);
	if (granted)
		ConditionVariableCancelSleep();
	return granted;
}

/* A 429: pause the partner, halve the window once per round trip, learn. */
static void
learn_from_throttle(GovernorEntry *e, const PcqSlot *slot, long pause_ms,
					TimestampTz now)
{
	TimestampTz until = TimestampTzPlusMilliseconds(now, Max(pause_ms, 0));

	e->throttled++;
	if (until > e->not_before)
		e->not_before = until;
	if (slot->started < e->cut_at)
	{
		/*
		 * Sent before the last cut: the same congestion event.  It does not
		 * cut again, but the lowest in-flight count refused is the limit
		 * (slow start sends several past it before the first 429 is back).
		 */
		if (e->learned_limit > 0)
			e->learned_limit = Max(Min(e->learned_limit, slot->depth - 1), 1);
		return;
	}
	e->window = Max(Min(e->window, (double) slot->depth) / 2.0, 1.0);
	e->learned_limit = Max(slot->depth - 1, 1);
	e->cut_at = now;
	e->limit_since = now;
}

/*
 * A success: grow the window if it was what held the partner back, that is
 * if the request filled it when it was sent.
 */
static void
learn_from_success(GovernorEntry *e, const PcqSlot *slot, TimestampTz now)
{
	double		cap = (double) pcq_max_cluster_concurrency;

	if (e->learned_limit > 0 &&
		TimestampDifferenceExceeds(e->limit_since, now, PROBE_INTERVAL_MS))
	{
		e->learned_limit++;
		e->limit_since = now;
	}
	if (slot->started < e->cut_at || slot->depth < slot->window)
		return;
	if (e->learned_limit == 0)
		e->window += 1.0;
	else
	{
		e->window += 1.0 / e->window;
		cap = Min(cap, (double) e->learned_limit);
	}
	e->window = Max(Min(e->window, cap), 1.0);
}

/*
 * Give a slot back, and learn from how its request ended.  pause_ms is how
 * long a 429 asked everyone to wait.
 */
void
pcq_governor_release(PcqGovernorSeat *seat, const PcqSlot *slot,
					 PcqSlotOutcome outcome, long pause_ms)
{
	GovernorEntry *e = &governor->entries[seat->entry];
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(governor->lock, LW_EXCLUSIVE);
	e->in_flight--;
	seat->held--;
	if (outcome == PCQ_SLOT_THROTTLED)
		learn_from_throttle(e, slot, pause_ms, now);
	else if (outcome == PCQ_SLOT_ANSWERED)
		learn_from_success(e, slot, now);
	LWLockRelease(governor->lock);
	ConditionVariableBroadcast(&e->cv);
}

/* The batch is over (or abandoned by an ERROR): give back what it holds. */
void
pcq_governor_leave(PcqGovernorSeat *seat)
{
	GovernorEntry *e;

	if (seat == NULL || !seat->joined)
		return;
	e = &governor->entries[seat->entry];
	LWLockAcquire(governor->lock, LW_EXCLUSIVE);
	vacate(seat);
	LWLockRelease(governor->lock);
	ConditionVariableCancelSleep();
	ConditionVariableBroadcast(&e->cv);
}

/* The partner's window now, for pc_stat_activity. */
int
pcq_governor_window(PcqGovernorSeat *seat)
{
	int			limit;

	LWLockAcquire(governor->lock, LW_SHARED);
	limit = entry_limit(&governor->entries[seat->entry]);
	LWLockRelease(governor->lock);
	return limit;
}

/* pc_governor_reset(): forget every partner's window, limit and pause. */
Datum
pc_governor_reset(PG_FUNCTION_ARGS)
{
	int			i;

	pcq_require_shared_memory(governor != NULL);
	LWLockAcquire(governor->lock, LW_EXCLUSIVE);
	for (i = 0; i < governor->nentries; i++)
		if (governor->entries[i].in_use)
			reset_learning(&governor->entries[i]);
	LWLockRelease(governor->lock);
	for (i = 0; i < governor->nentries; i++)
		ConditionVariableBroadcast(&governor->entries[i].cv);
	PG_RETURN_VOID();
}

#define GOVERNOR_COLS 9

static void
put_governor_row(ReturnSetInfo *rsinfo, const GovernorEntry *e, TimestampTz now)
{
	Datum		values[GOVERNOR_COLS];
	bool		nulls[GOVERNOR_COLS];

	memset(nulls, false, sizeof(nulls));
	values[0] = CStringGetTextDatum(e->token_endpoint ? "token" : "api");
	values[1] = CStringGetTextDatum(e->key);
	values[2] = Int32GetDatum(e->in_flight);
	values[3] = Int32GetDatum(entry_limit(e));
	values[4] = Int32GetDatum(e->learned_limit);
	nulls[4] = e->learned_limit == 0;
	values[5] = TimestampTzGetDatum(e->not_before);
	nulls[5] = e->not_before <= now;
	values[6] = Int32GetDatum(e->active);
	values[7] = Int32GetDatum(e->waiting);
	values[8] = Int64GetDatum(e->throttled);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* pc_stat_governor(): a row per partner entry (the pc_stat_governor view). */
Datum
pc_stat_governor(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	pcq_require_shared_memory(governor != NULL);
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < governor->nentries; i++)
	{
		GovernorEntry copy;

		/* copied under the lock, turned into a row outside it */
		LWLockAcquire(governor->lock, LW_SHARED);
		memcpy(&copy, &governor->entries[i], sizeof(copy));
		LWLockRelease(governor->lock);
		if (copy.in_use)
			put_governor_row(rsinfo, &copy, now);
	}
	return (Datum) 0;
}
