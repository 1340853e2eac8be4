-- What a backend waits for: pg_stat_activity.wait_event names each kind of
-- wait of pcqual (PostgreSQL 17 and later; before, every one is the generic
-- Extension), seen from this session while other sessions (dblink) wait.
-- And the wait for the refresh token file's lock ends after pcqual.timeout
-- with lock_not_available (55P03).
\ir helpers.inc
SELECT pg_temp.self_connstr() AS connstr \gset
SELECT current_setting('server_version_num')::int >= 170000 AS named_events \gset
SELECT pg_temp.tap_dir('refresh_token') AS refresh_file \gset
\set QUIET 1
SELECT plan(18);

-- ---- Helpers
CREATE TEMP TABLE peer_connstr AS SELECT :'connstr'::text AS connstr;
CREATE TEMP TABLE named AS SELECT :'named_events'::boolean AS named;

-- Another session (dblink connection name); returns its backend's pid.
CREATE FUNCTION pg_temp.peer(name text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_connect(name, (SELECT connstr FROM peer_connstr));
    RETURN (SELECT pid FROM dblink(name, 'SELECT pg_backend_pid()') AS t(pid int));
END
$$;

-- The wait event a session shows for a wait of pcqual's: its own name from
-- PostgreSQL 17, the generic Extension before.
CREATE FUNCTION pg_temp.event(name text) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN (SELECT named FROM named) THEN name ELSE 'Extension' END
$$;

-- Watches pid's pg_stat_activity row until it waits for event (in class
-- Extension); returns 'type/event' as last seen, so that a miss says what
-- the session waited for instead.
CREATE FUNCTION pg_temp.await_wait(pid int, event text, lim interval DEFAULT '5 s')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    seen text;
BEGIN
    LOOP
        -- pg_stat_activity is read once per transaction unless told
        PERFORM pg_stat_clear_snapshot();
        SELECT format('%s/%s', a.wait_event_type, a.wait_event) INTO seen
        FROM pg_stat_activity a WHERE a.pid = await_wait.pid;
        IF seen = 'Extension/' || event OR clock_timestamp() - t0 > lim THEN
            RETURN seen;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- Waits until the session is idle (false after lim), then returns the one
-- bigint its statement returned, as text, or 'ERROR: <message>'; the
-- connection is ready for reuse afterwards.
CREATE FUNCTION pg_temp.peer_result(name text, lim interval DEFAULT '10 s') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    r text;
BEGIN
    WHILE dblink_is_busy(name) = 1 LOOP
        IF clock_timestamp() - t0 > lim THEN
            RETURN 'still busy';
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
    SELECT n::text INTO r FROM dblink_get_result(name, false) AS t(n bigint);
    IF NOT FOUND THEN
        r := 'ERROR: ' || dblink_error_message(name);
    END IF;
    PERFORM * FROM dblink_get_result(name, false) AS t(n bigint);
    RETURN r;
END
$$;

-- Cancels a session's statement and waits for it to end.
CREATE FUNCTION pg_temp.cancel_peer(name text, pid int) RETURNS text LANGUAGE sql AS $$
    SELECT pg_cancel_backend(pid);
    SELECT pg_temp.peer_result(name);
$$;

-- Whether another process holds the file locked (flock, as pcqual locks it).
CREATE FUNCTION pg_temp.file_locked(path text) RETURNS boolean LANGUAGE sql AS $$
    SELECT pg_temp.run1(format('flock -n %s true && echo free || echo held',
                               pg_temp.sq(path))) = 'held'
$$;

SELECT pg_temp.peer('w') AS w_pid \gset
SELECT pg_temp.peer('w2') AS w2_pid \gset
\set QUIET 0

-- ======================================================================
-- A request in flight waits for its sockets: PcqualHttp.  The emulator's
-- customer 22222222-...0611 answers after 10 s.
SELECT dblink_send_query('w', $$SELECT count(*) FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$);
SELECT is(pg_temp.await_wait(:w_pid, pg_temp.event('PcqualHttp')),
          'Extension/' || pg_temp.event('PcqualHttp'),
          'a request in flight waits as PcqualHttp (Extension before PostgreSQL 17)');
SELECT matches(pg_temp.cancel_peer('w', :w_pid), 'canceling statement due to user request',
               'it is canceled');

-- ======================================================================
-- The pause before a retry: PcqualRetryWait.  The emulator's customer
-- 33333333-...0001 answers 429 with Retry-After: 1, then 200.
SELECT dblink_send_query('w', $$SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000001')$$);
SELECT is(pg_temp.await_wait(:w_pid, pg_temp.event('PcqualRetryWait')),
          'Extension/' || pg_temp.event('PcqualRetryWait'),
          'the wait for a Retry-After waits as PcqualRetryWait (Extension before PostgreSQL 17)');
SELECT is(pg_temp.peer_result('w'), '1', 'and the retry succeeds');

-- ======================================================================
-- A session waiting for a governor slot: PcqualSlot.  With one slot for
-- the cluster, the slow customer holds it while another session waits.
\set QUIET 1
ALTER SYSTEM SET pcqual.max_cluster_concurrency = 1;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT pc_governor_reset();
\set QUIET 0
SELECT dblink_send_query('w', $$SELECT count(*) FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$);
SELECT pg_temp.await_wait(:w_pid, pg_temp.event('PcqualHttp')) AS w_waits \gset
SELECT dblink_send_query('w2', $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT is(pg_temp.await_wait(:w2_pid, pg_temp.event('PcqualSlot')),
          'Extension/' || pg_temp.event('PcqualSlot'),
          'a session waiting for a governor slot waits as PcqualSlot (Extension before PostgreSQL 17)');
SELECT matches(pg_temp.cancel_peer('w', :w_pid), 'canceling statement due to user request',
               'the slow request is canceled');
SELECT is(pg_temp.peer_result('w2'), '1', 'and the waiting session gets the slot');
\set QUIET 1
ALTER SYSTEM RESET pcqual.max_cluster_concurrency;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
\set QUIET 0

-- ======================================================================
-- The refresh token file's lock (App+User).  A process outside PostgreSQL
-- holds it for 3 s, with flock(1): the lock pcqual takes.
\set QUIET 1
SELECT pg_temp.put_file(:'refresh_file', 'pcqual-test-refresh');
SET pcqual.refresh_token_file = :'refresh_file';
SELECT dblink_exec('w', format('SET pcqual.refresh_token_file = %L', :'refresh_file'));
SELECT dblink_exec('w2', format('SET pcqual.refresh_token_file = %L', :'refresh_file'));
SELECT pg_temp.peer('holder') AS holder_pid \gset
SELECT dblink_exec('holder', 'CREATE TEMP TABLE sink (line text)');
-- (re)starts the holder: the lock is held once this returns
CREATE FUNCTION pg_temp.hold_lock(seconds int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    PERFORM dblink_send_query('holder', format('COPY sink FROM PROGRAM %L',
        format('flock -x %s sleep %s', pg_temp.sq(pg_temp.tap_dir('refresh_token')), seconds)));
    WHILE NOT pg_temp.file_locked(pg_temp.tap_dir('refresh_token')) LOOP
        IF clock_timestamp() - t0 > interval '3 s' THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN true;
END
$$;
-- waits until the holder let go
CREATE FUNCTION pg_temp.holder_done() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    WHILE dblink_is_busy('holder') = 1 LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM * FROM dblink_get_result('holder', false) AS t(status text);
    PERFORM * FROM dblink_get_result('holder', false) AS t(status text);
    RETURN NOT pg_temp.file_locked(pg_temp.tap_dir('refresh_token'));
END
$$;
SELECT pc_disconnect();
\set QUIET 0

-- With pcqual.timeout = 500 ms, the wait ends after about that, 55P03.
SELECT ok(pg_temp.hold_lock(3), 'another process holds the refresh token file locked');
SET pcqual.timeout = '500ms';
SELECT pg_temp.tick('lock');
CREATE TEMP TABLE lock_error AS
    SELECT * FROM pg_temp.error_under('{}', $$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT ok(pg_temp.elapsed('lock') BETWEEN interval '0.45 s' AND interval '1.5 s',
          'the wait for the lock ends after about pcqual.timeout (500 ms)');
RESET pcqual.timeout;
SELECT results_eq($$SELECT state, message FROM lock_error$$,
    format($$VALUES ('55P03', 'could not lock credential file "%s" of pcqual.refresh_token_file within 500 ms')$$,
           :'refresh_file'),
    'with lock_not_available (55P03), naming the file and the time waited');
SELECT results_eq($$SELECT detail, hint FROM lock_error$$,
    $$VALUES ('Another session holds the file locked while it refreshes the access token with the refresh token in it.',
              'pcqual.timeout bounds the wait.  If no session is asking Azure AD for a token, look for the process that holds the file locked.')$$,
    'the DETAIL says another session is refreshing, the HINT what bounds the wait');
SELECT ok(pg_temp.holder_done(), 'the other process let go');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'the session is usable, and refreshes once the lock is free');

-- A session waiting for the lock waits as PcqualCredentialLock; one that
-- waits for that session's token, as PcqualTokenRefresh.  Both get the
-- token once the lock is free.
SELECT pc_disconnect();
SELECT ok(pg_temp.hold_lock(2), 'another process holds the refresh token file locked again');
SELECT dblink_send_query('w', $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT is(pg_temp.await_wait(:w_pid, pg_temp.event('PcqualCredentialLock')),
          'Extension/' || pg_temp.event('PcqualCredentialLock'),
          'the wait for the refresh token file''s lock waits as PcqualCredentialLock (Extension before PostgreSQL 17)');
SELECT dblink_send_query('w2', $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002')$$);
SELECT is(pg_temp.await_wait(:w2_pid, pg_temp.event('PcqualTokenRefresh')),
          'Extension/' || pg_temp.event('PcqualTokenRefresh'),
          'the wait for another session''s token request waits as PcqualTokenRefresh (Extension before PostgreSQL 17)');
SELECT results_eq($$SELECT pg_temp.peer_result('w'), pg_temp.peer_result('w2')$$,
                  $$VALUES ('1', '1')$$, 'both get the token once the lock is free');
\set QUIET 1
SELECT pg_temp.holder_done();
RESET pcqual.refresh_token_file;
SELECT pc_disconnect();
\set QUIET 0

-- ======================================================================
-- From PostgreSQL 17, pg_wait_events lists the events a backend has used.
SELECT CASE WHEN :'named_events'::boolean
    THEN set_eq($$SELECT name FROM pg_wait_events WHERE type = 'Extension' AND name LIKE 'Pcqual%'$$,
                ARRAY['PcqualHttp', 'PcqualRetryWait', 'PcqualSlot', 'PcqualCredentialLock', 'PcqualTokenRefresh'],
                'pg_wait_events lists pcqual''s wait events')
    ELSE skip('named wait events need PostgreSQL 17', 1) END;

\set QUIET 1
SELECT dblink_disconnect(n) FROM unnest(ARRAY['w', 'w2', 'holder']) n;
\set QUIET 0
SELECT * FROM finish();
