/*-------------------------------------------------------------------------
 *
 * token_cache.c
 *	  The cluster's access tokens: one per credential, in shared memory.
 *
 * Azure AD sees one client per credential, not one per backend.  An entry
 * is keyed by a SHA-256 of everything that decides a token (cloud and
 * authority, partner tenant, client id, resource, credential mode, the
 * credential files' paths) and remembers the files' identity (device,
 * inode, size, modification time) when its token was obtained: a file that
 * changed since makes the token stale.
 *
 * A backend that finds no usable token becomes the entry's one refresher;
 * the others keep using the old token while it is not about to expire, or
 * sleep on the entry's condition variable until the refresher stores the
 * new one.  When the refresher fails, those that waited for it fail with
 * its error instead of asking Azure AD again one after another; when it is
 * cancelled or exits, the next one asks.  A 401 invalidates the token it
 * was given once: later 401s of the same generation change nothing.
 *
 * A token leaves shared memory only into the buffer of a call that is about
 * to send it; entries are wiped when replaced, invalidated or recycled
 * (least recently used first, never one being refreshed), and no view
 * shows them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "pcqual.h"

/* A token about to expire is still used by others while one refreshes. */
#define HARD_EXPIRY_MARGIN_SECS 30

/* How often a waiter looks again even if nobody woke it. */
#define WAIT_RECHECK_MS 1000

#define MAX_FAILURE_MESSAGE 512

typedef struct TokenEntry
{
	bool		in_use;
	uint8		hash[PCQ_CREDENTIAL_HASH_LEN];
	PcqFileStamp files[PCQ_CREDENTIAL_FILES];
	int			token_len;		/* 0: none */
	TimestampTz refresh_after;
	TimestampTz expires_at;
	uint64		generation;
	int			refresher_pid;	/* 0: nobody refreshes */
	uint64		failures;
	int			failure_sqlstate;
	int			failure_pid;
	int			failure_encoding;
	char		failure_message[MAX_FAILURE_MESSAGE];
	TimestampTz last_request_at;	/* the last token request's end, or 0 */
	bool		last_request_ok;
	TimestampTz last_used;
	ConditionVariable cv;
	char		token[PCQ_MAX_TOKEN_SIZE];
} TokenEntry;

typedef struct TokenCacheShared
{
	LWLock	   *lock;
	int			nentries;
	TokenEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} TokenCacheShared;

static TokenCacheShared *cache = NULL;

/* The entry this backend refreshes, -1 when none. */
static int	my_claim = -1;
static bool exit_hook_registered = false;

Size
pcq_token_cache_shmem_size(void)
{
	return add_size(offsetof(TokenCacheShared, entries),
					mul_size(pcq_max_shared_tokens, sizeof(TokenEntry)));
}

void
pcq_token_cache_shmem_init(LWLock *lock)
{
	bool		found;
	int			i;

	cache = ShmemInitStruct("pcqual tokens", pcq_token_cache_shmem_size(), &found);
	if (found)
		return;
	cache->lock = lock;
	cache->nentries = pcq_max_shared_tokens;
	for (i = 0; i < cache->nentries; i++)
	{
		memset(&cache->entries[i], 0, offsetof(TokenEntry, token));
		ConditionVariableInit(&cache->entries[i].cv);
	}
}

static void
wipe_token(TokenEntry *e)
{
	explicit_bzero(e->token, sizeof(e->token));
	e->token_len = 0;
	e->refresh_after = e->expires_at = 0;
}

/* Give up a refresh this backend claimed; the caller holds the lock. */
static void
release_claim(void)
{
	TokenEntry *e = &cache->entries[my_claim];

	if (e->refresher_pid == MyProcPid)
		e->refresher_pid = 0;
	my_claim = -1;
}

/* At exit mid-refresh: let the next backend ask. */
static void
token_cache_exit(int code, Datum arg)
{
	int			entry = my_claim;

	if (cache == NULL || entry < 0)
		return;
	LWLockAcquire(cache->lock, LW_EXCLUSIVE);
	release_claim();
	LWLockRelease(cache->lock);
	ConditionVariableBroadcast(&cache->entries[entry].cv);
}

static int
find_entry(const uint8 *hash)
{
	int			i;

	for (i = 0; i < cache->nentries; i++)
		if (cache->entries[i].in_use &&
			memcmp(cache->entries[i].hash, hash, PCQ_CREDENTIAL_HASH_LEN) == 0)
			return i;
	return -1;
}

/* A free entry, or the least recently used one nobody refreshes. */
static int
make_entry(const PcqTokenKey *key)
{
	int			victim = -1;
	int			i;
	TokenEntry *e;

	for (i = 0; i < cache->nentries; i++)
	{
		e = &cache->entries[i];
		if (!e->in_use)
		{
			victim = i;
			break;
		}
		if (e->refresher_pid == 0 &&
			(victim < 0 || e->last_used < cache->entries[victim].last_used))
			victim = i;
	}
	if (victim < 0)
		return -1;
	e = &cache->entries[victim];
	wipe_token(e);
	e->in_use = true;
	memcpy(e->hash, key->hash, PCQ_CREDENTIAL_HASH_LEN);
	memcpy(e->files, key->files, sizeof(e->files));
	e->refresher_pid = 0;
	e->failures = 0;
	e->last_request_at = 0;
	e->last_request_ok = false;
	return victim;
}

static bool
files_changed(const TokenEntry *e, const PcqTokenKey *key)
{
	int			i;

	for (i = 0; i < PCQ_CREDENTIAL_FILES; i++)
		if (!pcq_same_file_stamp(&e->files[i], &key->files[i]))
			return true;
	return false;
}

static void
copy_failure(const TokenEntry *e, PcqTokenFailure *failure)
{
	failure->sqlstate = e->failure_sqlstate;
	failure->pid = e->failure_pid;
	strlcpy(failure->message, e->failure_message, sizeof(failure->message));
	if (e->failure_encoding != GetDatabaseEncoding())
	{
		char	   *p;

		for (p = failure->message; *p; p++)
			if (IS_HIGHBIT_SET(*p))
				*p = '?';
	}
}

/*
 * The token to send for the credential of key: copied into buf (of
 * PCQ_MAX_TOKEN_SIZE bytes) with its generation (PCQ_TOKEN_HIT); or this
 * backend must request one and hand it to pcq_token_cache_put or
 * pcq_token_cache_abandon (PCQ_TOKEN_REFRESH); or the refresh this backend
 * waited for failed as *failure says (PCQ_TOKEN_FAILED).
 */
PcqTokenLookup
pcq_token_cache_get(const PcqTokenKey *key, char *buf, uint64 *generation,
					PcqTokenFailure *failure)
{
	PcqTokenLookup result;
	bool		waited = false;
	uint64		failures_seen = 0;

	pcq_require_shared_memory(cache != NULL);
	if (!exit_hook_registered)
	{
		before_shmem_exit(token_cache_exit, (Datum) 0);
		exit_hook_registered = true;
	}
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		TokenEntry *e;
		int			i;

		CHECK_FOR_INTERRUPTS();
		LWLockAcquire(cache->lock, LW_EXCLUSIVE);
		i = find_entry(key->hash);
		if (i < 0)
			i = make_entry(key);
		if (i < 0)
		{
			LWLockRelease(cache->lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("every shared token entry of pcqual is being refreshed"),
					 errhint("Raise pcqual.max_shared_tokens, then restart the server.")));
		}
		e = &cache->entries[i];
		e->last_used = now;
		if (e->token_len > 0 && e->refresher_pid == 0 && files_changed(e, key))
		{
			wipe_token(e);
			e->generation++;
		}

		if (e->token_len > 0 &&
			(now < e->refresh_after ||
			 (e->refresher_pid != 0 && now < e->expires_at)))
		{
			memcpy(buf, e->token, e->token_len + 1);
			*generation = e->generation;
			result = PCQ_TOKEN_HIT;
		}
		else if (waited && e->failures != failures_seen)
		{
			copy_failure(e, failure);
			result = PCQ_TOKEN_FAILED;
		}
		else if (e->refresher_pid == 0)
		{
			e->refresher_pid = MyProcPid;
			my_claim = i;
			result = PCQ_TOKEN_REFRESH;
		}
		else
		{
			/* another backend is asking: wait for its answer */
			if (!waited)
				failures_seen = e->failures;
			waited = true;
			ConditionVariablePrepareToSleep(&e->cv);
			LWLockRelease(cache->lock);
			(void) ConditionVariableTimedSleep(&e->cv, WAIT_RECHECK_MS,
											   pcq_wait_event(PCQ_WAIT_TOKEN_REFRESH));
			continue;
		}
		LWLockRelease(cache->lock);
		if (waited)
			ConditionVariableCancelSleep();
		return result;
	}
}

/* The refresher's new token, valid for expires_in seconds from now. */
void
pcq_token_cache_put(const PcqTokenKey *key, const char *token,
					double expires_in, uint64 *generation)
{
	size_t		len = strlen(token);
	TimestampTz now = GetCurrentTimestamp();
	TokenEntry *e;
	int			entry = my_claim;

	if (len >= PCQ_MAX_TOKEN_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the access token Azure AD issued is too long to share: %zu bytes, at most %d",
						len, PCQ_MAX_TOKEN_SIZE - 1)));
	if (entry < 0)
		elog(ERROR, "pcqual stores a shared token without having claimed its entry");
	LWLockAcquire(cache->lock, LW_EXCLUSIVE);
	e = &cache->entries[entry];
	wipe_token(e);
	memcpy(e->token, token, len + 1);
	e->token_len = (int) len;
	memcpy(e->files, key->files, sizeof(e->files));
	e->refresh_after = e->expires_at = now;
	if (expires_in > PCQ_TOKEN_EXPIRY_MARGIN_SECS)
		e->refresh_after = TimestampTzPlusMilliseconds(now,
													   (int64) ((expires_in - PCQ_TOKEN_EXPIRY_MARGIN_SECS) * 1000));
	if (expires_in > HARD_EXPIRY_MARGIN_SECS)
		e->expires_at = TimestampTzPlusMilliseconds(now,
													(int64) ((expires_in - HARD_EXPIRY_MARGIN_SECS) * 1000));
	e->generation++;
	*generation = e->generation;
	e->last_request_at = now;
	e->last_request_ok = true;
	release_claim();
	LWLockRelease(cache->lock);
	ConditionVariableBroadcast(&e->cv);
}

/*
 * The refresher got no token.  With a failure (sqlstate != 0), those that
 * waited for it raise the same error; without one (it was cancelled), the
 * next of them asks.
 */
void
pcq_token_cache_abandon(int sqlstate, const char *message)
{
	int			entry = my_claim;
	TokenEntry *e;

	if (cache == NULL || entry < 0)
		return;
	e = &cache->entries[entry];
	LWLockAcquire(cache->lock, LW_EXCLUSIVE);
	if (sqlstate != 0)
	{
		int			len = pg_mbcliplen(message, strlen(message), MAX_FAILURE_MESSAGE - 1);

		e->failures++;
		e->failure_sqlstate = sqlstate;
		e->failure_pid = MyProcPid;
		e->failure_encoding = GetDatabaseEncoding();
		memcpy(e->failure_message, message, len);
		e->failure_message[len] = '\0';
		e->last_request_at = GetCurrentTimestamp();
		e->last_request_ok = false;
	}
	release_claim();
	LWLockRelease(cache->lock);
	ConditionVariableBroadcast(&e->cv);
}

/*
 * Forget the credential's token: only if it is still of generation (a 401
 * on it), or whatever it is when generation is 0 (pc_disconnect).  Returns
 * whether a token was dropped.
 */
bool
pcq_token_cache_invalidate(const uint8 *hash, uint64 generation)
{
	bool		dropped = false;
	int			i;

	if (cache == NULL)
		return false;
	LWLockAcquire(cache->lock, LW_EXCLUSIVE);
	i = find_entry(hash);
	if (i >= 0 && cache->entries[i].token_len > 0 &&
		(generation == 0 || cache->entries[i].generation == generation))
	{
		wipe_token(&cache->entries[i]);
		cache->entries[i].generation++;
		dropped = true;
	}
	LWLockRelease(cache->lock);
	return dropped;
}

/*
 * What the cache knows of the credential of hash, for pc_credential_status:
 * false when it has no entry.  The token itself is copied into token_buf
 * (PCQ_MAX_TOKEN_SIZE bytes, "" when none) only for its claims to be read:
 * the caller wipes it.
 */
bool
pcq_token_cache_describe(const uint8 *hash, PcqTokenCacheState *state,
						 char *token_buf)
{
	TokenEntry *e;
	int			i;

	memset(state, 0, sizeof(*state));
	token_buf[0] = '\0';
	pcq_require_shared_memory(cache != NULL);
	LWLockAcquire(cache->lock, LW_SHARED);
	i = find_entry(hash);
	if (i < 0)
	{
		LWLockRelease(cache->lock);
		return false;
	}
	e = &cache->entries[i];
	if (e->token_len > 0)
	{
		state->has_token = true;
		state->expires_at = e->expires_at;
		memcpy(token_buf, e->token, e->token_len + 1);
	}
	state->last_request_at = e->last_request_at;
	state->last_request_ok = e->last_request_ok;
	if (!e->last_request_ok && e->last_request_at != 0)
		copy_failure(e, &state->last_failure);
	LWLockRelease(cache->lock);
	return true;
}
