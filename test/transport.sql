-- The transport (1.2): pc_disconnect() closes the session's connections and
-- says how many; the connections a bulk call opens are bounded by
-- pcqual.concurrency and closed again, idle ones kept only up to
-- pcqual.max_idle_connections; bulk argument checks.
\ir helpers.inc
SELECT plan(18);

CREATE FUNCTION pg_temp.tenants(n int) RETURNS uuid[] LANGUAGE sql AS $$
    -- random, but in the emulator's bulk range (44444444-...): a random id
    -- could start fa11 or 2222..., the emulator's 404 and fault tenants
    SELECT array_agg(('44444444' || substr(gen_random_uuid()::text, 9))::uuid)
    FROM generate_series(1, n)
$$;
-- The backend's open file descriptors (sockets included).
CREATE FUNCTION pg_temp.open_fds() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_ls_dir('/proc/' || pg_backend_pid() || '/fd')
$$;

------------------------------------------------------------------------
-- pc_disconnect()
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT is(pc_disconnect(), 1, 'after a call, pc_disconnect() closes the one connection the session kept');
SELECT is(pc_disconnect(), 0, 'right after, there is nothing left to close');

-- The next call connects anew (and fetches a new token: pc_disconnect()
-- forgot it).  The emulator counts the connections it accepted; each read
-- of a counter costs one (curl's own).
SELECT pg_temp.emulator('reset');
CREATE TEMP TABLE before AS SELECT pg_temp.emulator_stat('connections') AS connections;
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT is(pg_temp.emulator_stat('connections') - (SELECT connections FROM before), 2::bigint,
          'the call after pc_disconnect() opened one new connection');
SELECT results_eq($$SELECT kind FROM pg_temp.emulator_log()$$, $$VALUES ('token'), ('api')$$,
                  'and fetched a new token over it');
TRUNCATE before;
INSERT INTO before SELECT pg_temp.emulator_stat('connections');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
SELECT is(pg_temp.emulator_stat('connections') - (SELECT connections FROM before), 1::bigint,
          'while without pc_disconnect() the next call reuses it');

------------------------------------------------------------------------
-- A bulk call at concurrency 64 over 200 slow customers: many connections
-- at once, at most 64, all of them closed by pc_disconnect().  (Each socket
-- curl opens is counted by PostgreSQL's AcquireExternalFD(); this checks
-- that the descriptors come back.)  Besides its connections, a curl multi
-- handle holds a socket pair of its own (curl_multi_wakeup), until
-- pc_disconnect().
CREATE FUNCTION pg_temp.open_sockets() RETURNS bigint LANGUAGE sql AS $$
    SELECT pg_temp.run1(format('ls -l /proc/%s/fd | grep -c socket:; true', pg_backend_pid()))::bigint
$$;
-- (The tables are made first: their files count among the descriptors.)
CREATE TEMP TABLE baseline (fds bigint, sockets bigint);
CREATE TEMP TABLE after_bulk (fds bigint, sockets bigint);
CREATE TEMP TABLE closed (n int);
SELECT pc_disconnect();
INSERT INTO baseline SELECT pg_temp.open_fds(), pg_temp.open_sockets();
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?latency_ms=50');
SET pcqual.concurrency = 64;
SELECT is((SELECT count(*) FROM pc_qualifications(pg_temp.tenants(200))), 200::bigint,
          '200 customers at concurrency 64: 200 rows');
SELECT cmp_ok(pg_temp.emulator_stat('max_in_flight'), '>', 16::bigint,
              'the emulator saw many requests in flight at once');
SELECT cmp_ok(pg_temp.emulator_stat('max_in_flight'), '<=', 64::bigint,
              'and never more than pcqual.concurrency');
INSERT INTO after_bulk SELECT pg_temp.open_fds(), pg_temp.open_sockets();
SELECT cmp_ok((SELECT a.sockets - b.sockets FROM after_bulk a, baseline b), '<=', 64 + 2::bigint,
              'the backend keeps at most 64 connections open after the call');
INSERT INTO closed SELECT pc_disconnect();
SELECT cmp_ok((SELECT n FROM closed), '>', 16,
              'pc_disconnect() closes the many connections the bulk call kept for reuse');
SELECT cmp_ok((SELECT n FROM closed), '<=', 64, '... at most pcqual.concurrency of them');
SELECT results_eq($$SELECT pg_temp.open_sockets() - sockets, pg_temp.open_fds() <= fds + 3 FROM baseline$$,
                  $$VALUES (0::bigint, true)$$,
                  'and the backend''s sockets and descriptors are back to where they were');

-- pcqual.max_idle_connections = 2: the batch still runs 64 at a time, but
-- only two connections stay open after it.
SET pcqual.max_idle_connections = 2;
SELECT is((SELECT count(*) FROM pc_qualifications(pg_temp.tenants(200))), 200::bigint,
          'the same batch with pcqual.max_idle_connections = 2');
SELECT cmp_ok(pg_temp.open_sockets(), '<=', (SELECT sockets + 2 + 2 FROM baseline),
              'afterwards the backend keeps at most two connections open');
SELECT cmp_ok(pc_disconnect(), '<=', 2, 'pc_disconnect() closes at most two');
RESET pcqual.max_idle_connections;
RESET pcqual.concurrency;
SELECT pg_temp.emulator('config?latency_ms=0');

------------------------------------------------------------------------
-- Bulk arguments.
SELECT pg_temp.emulator('reset');
SELECT results_eq($$SELECT state, message FROM pg_temp.error_of($q$SELECT * FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[], NULL)$q$)$$,
    $$VALUES ('22004', 'on_error must not be NULL')$$, 'on_error => NULL is 22004');
SELECT is((SELECT count(*) FROM pc_qualifications(NULL::uuid[])), 0::bigint, 'a NULL array gives no rows');
SELECT is(pg_temp.emulator_stat('api_requests'), 0::bigint, 'and neither sends a request');

SELECT * FROM finish();
