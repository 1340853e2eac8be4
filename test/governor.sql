-- One client per partner (pcqual 1.3): one shared access token for the
-- whole cluster, the cluster-wide governor (slots, the Retry-After pause,
-- fairness) and the views pc_stat, pc_stat_activity and pc_stat_governor,
-- exercised from several sessions (dblink) against the emulator.
\ir helpers.inc
SELECT pg_temp.self_connstr() AS connstr \gset
\set QUIET 1
SELECT plan(81);

-- ---- Helpers
CREATE TEMP TABLE peer_connstr AS SELECT :'connstr'::text AS connstr;

-- n new generic customers (the emulator answers any GUID with one row)
CREATE FUNCTION pg_temp.tenants(n int) RETURNS uuid[] LANGUAGE sql AS $$
    -- random, but in the emulator's bulk range (44444444-...): a random id
    -- could start fa11 or 2222..., the emulator's 404 and fault tenants
    SELECT array_agg(('44444444' || substr(gen_random_uuid()::text, 9))::uuid)
    FROM generate_series(1, n)
$$;

-- Another session (dblink connection name); returns its backend's pid.
CREATE FUNCTION pg_temp.peer(name text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_connect(name, (SELECT connstr FROM peer_connstr));
    RETURN (SELECT pid FROM dblink(name, 'SELECT pg_backend_pid()') AS t(pid int));
END
$$;

-- Waits until none of the sessions is busy; false after lim.
CREATE FUNCTION pg_temp.wait_peers(names text[], lim interval DEFAULT '10 s') RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        IF NOT EXISTS (SELECT FROM unnest(names) n WHERE dblink_is_busy(n) = 1) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() - t0 > lim THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- The one bigint a session's statement returned, as text, or
-- 'ERROR: <message>'; the connection is ready for reuse afterwards.
CREATE FUNCTION pg_temp.peer_result(name text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    SELECT n::text INTO r FROM dblink_get_result(name, false) AS t(n bigint);
    IF NOT FOUND THEN
        r := 'ERROR: ' || dblink_error_message(name);
    END IF;
    PERFORM * FROM dblink_get_result(name, false) AS t(n bigint);
    RETURN r;
END
$$;

-- The emulator's reset (which revokes every token) and pc_disconnect()
-- (which drops the cluster's shared token): the next call asks for a new
-- token instead of meeting a 401.
CREATE FUNCTION pg_temp.fresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_temp.emulator('reset');
    PERFORM pc_disconnect();
END
$$;

-- A JSON answer of the emulator's control API (GET).
CREATE FUNCTION pg_temp.emulator_json(command text) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    doc json;
BEGIN
    TRUNCATE emulator_sink;
    EXECUTE format('COPY emulator_sink FROM PROGRAM %L WITH (FORMAT csv, QUOTE e''\x01'', DELIMITER e''\x02'')',
                   format('curl -sf --noproxy ''*'' %s', pg_temp.sq(current_setting('pcqual.base_url') || '/_emulator/' || command)));
    SELECT string_agg(line, '')::json INTO doc FROM emulator_sink;
    RETURN doc;
END
$$;

-- The emulator's API requests with their arrival times.
CREATE FUNCTION pg_temp.api_times() RETURNS TABLE (seq int, at timestamptz, tenant text, status int)
LANGUAGE sql AS $$
    SELECT (e ->> 'seq')::int, (e ->> 'time')::timestamptz, lower(e ->> 'tenant'), (e ->> 'status')::int
    FROM json_array_elements(pg_temp.emulator_json('requests?format=json&kind=api')) e
$$;

-- The governor's entries for this database's partner (API, not token).
CREATE FUNCTION pg_temp.api_governor() RETURNS SETOF pc_stat_governor LANGUAGE sql AS $$
    SELECT * FROM pc_stat_governor
    WHERE kind = 'api' AND strpos(target, current_setting('pcqual.base_url')) > 0
$$;
-- Their requests in flight, NULL when there is no such entry.
CREATE FUNCTION pg_temp.api_in_flight() RETURNS int LANGUAGE sql AS $$
    SELECT sum(in_flight)::int FROM pg_temp.api_governor()
$$;
-- Waits (up to 3 s) until they have nothing in flight; the count then.
CREATE FUNCTION pg_temp.settled_in_flight() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    WHILE coalesce(pg_temp.api_in_flight(), -1) <> 0 AND clock_timestamp() - t0 < interval '3 s' LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN pg_temp.api_in_flight();
END
$$;

-- The most requests the emulator saw at once during a bulk call of 16
-- customers at this session's pcqual.concurrency, 150 ms each (-1 when the
-- call did not return 16 rows).  Waits first for the emulator to see
-- nothing in flight, so that earlier abandoned requests do not count.
CREATE FUNCTION pg_temp.full_window() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    WHILE pg_temp.emulator_stat('in_flight') <> 0 AND clock_timestamp() - t0 < interval '3 s' LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
    PERFORM pg_temp.fresh();
    PERFORM pg_temp.emulator('config?latency_ms=150');
    IF (SELECT count(*) FROM pc_qualifications(pg_temp.tenants(16))) <> 16 THEN
        RETURN -1;
    END IF;
    RETURN pg_temp.emulator_stat('max_in_flight');
END
$$;

-- Waits (up to 5 s) until a backend has exited.
CREATE FUNCTION pg_temp.wait_exit(p int) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    WHILE EXISTS (SELECT FROM pg_stat_activity WHERE pid = p) AND clock_timestamp() - t0 < interval '5 s' LOOP
        PERFORM pg_sleep(0.02);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    PERFORM pg_stat_clear_snapshot();
    RETURN NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = p);
END
$$;

-- Start from a governor with nothing learned and no pause.
SELECT pc_governor_reset();
\set QUIET 0

-- ======================================================================
-- a. One token for the cluster.  Eight sessions start at once on a fresh
-- credential state; the token endpoint takes 300 ms, so that they overlap.
\set QUIET 1
CREATE TEMP TABLE peers AS SELECT 'p' || i AS name, pg_temp.peer('p' || i) AS pid FROM generate_series(1, 8) i;
SELECT pg_temp.fresh();
SELECT pg_temp.emulator('config?token_latency_ms=300');
SELECT dblink_send_query(name, $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$)
FROM peers;
SELECT ok(pg_temp.wait_peers(ARRAY(SELECT name FROM peers)), 'eight sessions calling at once all finish');
CREATE TEMP TABLE round1 AS SELECT name, pg_temp.peer_result(name) AS result FROM peers;
SELECT is((SELECT array_agg(result ORDER BY name) FROM round1), array_fill('1'::text, ARRAY[8]),
          'each session gets its row');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token'), 1::bigint,
          'eight sessions on a fresh credential make ONE token request');
SELECT results_eq($$SELECT count(*), count(DISTINCT auth) FROM pg_temp.emulator_log() WHERE kind = 'api' AND status = 200$$,
                  $$VALUES (8::bigint, 1::bigint)$$,
                  'all eight API requests carry that one token');
SELECT cmp_ok((SELECT max(at) - min(at) FROM pg_temp.api_times()), '<', interval '250 ms',
              'the sessions overlapped: their requests went out together once the token came');

-- A session that has not called yet takes the valid shared token.
CREATE TEMP TABLE hits_before AS SELECT shared_token_hits FROM pc_stat WHERE endpoint = 'token';
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token'), 1::bigint,
          'another session uses the shared token: no token request');
SELECT cmp_ok((SELECT shared_token_hits FROM pc_stat WHERE endpoint = 'token')
              - (SELECT shared_token_hits FROM hits_before), '>=', 1::bigint,
              'pc_stat counts it as a shared_token_hit');

-- The service revokes the token: the sessions' 401s make ONE new token
-- request, not one each.
SELECT max(seq) AS seq_revoke FROM pg_temp.emulator_log() \gset
SELECT pg_temp.emulator('revoke');
SELECT dblink_send_query(name, $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$)
FROM peers;
SELECT ok(pg_temp.wait_peers(ARRAY(SELECT name FROM peers)), 'after a revocation the eight sessions finish');
CREATE TEMP TABLE round2 AS SELECT name, pg_temp.peer_result(name) AS result FROM peers;
SELECT is((SELECT array_agg(result ORDER BY name) FROM round2), array_fill('1'::text, ARRAY[8]),
          'each session gets its row despite the revoked token');
SELECT results_eq($$SELECT count(*) FILTER (WHERE kind = 'token'),
                           count(*) FILTER (WHERE kind = 'api' AND status = 200),
                           count(*) FILTER (WHERE kind = 'api' AND status = 401) BETWEEN 1 AND 8
                    FROM pg_temp.emulator_log() WHERE seq > $$ || :seq_revoke,
                  $$VALUES (1::bigint, 8::bigint, true)$$,
                  'the 401s invalidate the shared token once: one refresh for all sessions');
SELECT pg_temp.emulator('config?token_latency_ms=0');
SELECT dblink_disconnect(name) FROM peers;
\set QUIET 0

-- ======================================================================
-- b. A 429 in one session pauses the partner for another.  The emulator's
-- override {"fail": 429} answers Retry-After: 1.
\set QUIET 1
SELECT pc_governor_reset();
SELECT pg_temp.fresh();
SELECT pg_temp.peer('b') AS b_pid \gset
-- both sessions hold a connection and the shared token
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT * FROM dblink('b', $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$) AS t(n bigint);
SELECT pg_temp.emulator_customer('b0000000-0000-4000-8000-000000000429', '{"fail": 429}');
SET pcqual.max_retries = 0;
SET pcqual.max_retry_wait = '10s';
CREATE TEMP TABLE throttled_call AS
    SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('b0000000-0000-4000-8000-000000000429')$$);
CREATE TEMP TABLE paused AS
    SELECT clock_timestamp() AS at, max(paused_until) AS until, sum(throttled) AS throttled,
           bool_or(learned_limit IS NOT NULL) AS learned
    FROM pg_temp.api_governor();
SELECT dblink_send_query('b', $$SELECT count(*) FROM pc_qualifications('b0000000-0000-4000-8000-000000000002')$$);
SELECT pg_sleep(0.3);
CREATE TEMP TABLE b_waiting AS SELECT clock_timestamp() AS at, * FROM pc_stat_activity WHERE pid = :b_pid;
SELECT ok(pg_temp.wait_peers(ARRAY['b'], '5 s'), 'the other session finishes');
SELECT is(pg_temp.peer_result('b'), '1', 'and gets its row');
SELECT isnt((SELECT state FROM throttled_call), NULL, 'the 429 fails the first session''s call (max_retries 0)');
SELECT ok((SELECT until > at AND until <= at + interval '1.1 s' FROM paused),
          'right after it pc_stat_governor shows paused_until in the future, by the Retry-After (1 s)');
SELECT ok((SELECT throttled >= 1 AND learned FROM paused),
          'and the 429 counted as throttled, with a learned_limit');
SELECT results_eq($$SELECT "function", waiting_until > at FROM b_waiting$$,
                  $$VALUES ('pc_qualifications', true)$$,
                  'pc_stat_activity shows the other session waiting for the pause (waiting_until)');
SELECT cmp_ok((SELECT min(at) FROM pg_temp.api_times() WHERE tenant = 'b0000000-0000-4000-8000-000000000002')
              - (SELECT max(at) FROM pg_temp.api_times() WHERE tenant = 'b0000000-0000-4000-8000-000000000429'),
              '>=', interval '0.9 s',
              'the other session''s request reached the service only after the Retry-After');

-- The pause is at most the throttled session's pcqual.max_retry_wait:
-- 22222222-...0429 says Retry-After: 7.
SET pcqual.max_retry_wait = '300ms';
SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000429')$$);
SELECT ok((SELECT max(paused_until) BETWEEN clock_timestamp() AND clock_timestamp() + interval '0.4 s' FROM pg_temp.api_governor()),
          'a Retry-After of 7 s pauses for pcqual.max_retry_wait (300 ms) only');
SELECT pg_sleep(0.4);
SET pcqual.max_retry_wait = '10s';
SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000429')$$);
SELECT ok((SELECT max(paused_until) > clock_timestamp() + interval '5 s' FROM pg_temp.api_governor()),
          'with max_retry_wait 10 s the partner is paused for the 7 s');
RESET pcqual.max_retries;
RESET pcqual.max_retry_wait;
SELECT pc_governor_reset();
SELECT is((SELECT count(*) FROM pg_temp.api_governor()
           WHERE paused_until > clock_timestamp() OR learned_limit IS NOT NULL), 0::bigint,
          'pc_governor_reset() forgets the pause and the learned limit');
SELECT pg_temp.tick('after_reset');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT cmp_ok(pg_temp.elapsed('after_reset'), '<', interval '1 s', 'a call right after it is not held back');
SELECT dblink_disconnect('b');
\set QUIET 0

-- ======================================================================
-- c. Slots come back on ERROR, cancel and backend exit, and
-- pcqual.max_cluster_concurrency caps sessions together.
\set QUIET 1
ALTER SYSTEM SET pcqual.max_cluster_concurrency = 4;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT is(current_setting('pcqual.max_cluster_concurrency'), '4', 'max_cluster_concurrency = 4 (ALTER SYSTEM)');
SELECT pc_governor_reset();
SET pcqual.concurrency = 4;
SELECT is(pg_temp.full_window(), 4::bigint, 'to start with, a bulk call has 4 requests in flight');

SELECT pg_temp.peer('w') AS w_pid \gset
SELECT dblink_exec('w', 'SET pcqual.concurrency = 4');

-- 1. on_error => 'error': the 404 raises while the 10 s customer is in flight
SELECT pg_temp.fresh();
SELECT dblink_send_query('w', format('SELECT count(*) FROM pc_qualifications(%L::uuid[])',
    ARRAY['22222222-0000-0000-0000-000000000611', '22222222-0000-0000-0000-000000000404']::uuid[] || pg_temp.tenants(10)));
SELECT ok(pg_temp.wait_peers(ARRAY['w'], '5 s'), 'a call that raises mid-call ends');
SELECT matches(pg_temp.peer_result('w'), '^ERROR: .*404', 'with the 404''s ERROR');
SELECT is(pg_temp.settled_in_flight(), 0, 'after an ERROR the governor has nothing in flight');
SELECT is(pg_temp.full_window(), 4::bigint, 'and a bulk call still gets all 4 slots');

-- 2. statement_timeout mid-call
SELECT pg_temp.fresh();
SELECT pg_temp.emulator('config?latency_ms=300');
SELECT dblink_exec('w', 'SET statement_timeout = ''1s''');
SELECT dblink_send_query('w', format('SELECT count(*) FROM pc_qualifications(%L::uuid[])', pg_temp.tenants(40)));
SELECT pg_sleep(0.5);
SELECT ok(pg_temp.api_in_flight() BETWEEN 1 AND 4, 'mid-call the governor counts the requests in flight');
SELECT ok(pg_temp.wait_peers(ARRAY['w'], '5 s'), 'statement_timeout ends the call');
SELECT matches(pg_temp.peer_result('w'), '^ERROR: .*canceling statement due to statement timeout', 'as 57014');
SELECT dblink_exec('w', 'RESET statement_timeout');
SELECT is(pg_temp.settled_in_flight(), 0, 'after statement_timeout the governor has nothing in flight');
SELECT is(pg_temp.full_window(), 4::bigint, 'and a bulk call still gets all 4 slots');

-- 3. pg_cancel_backend() mid-call
SELECT pg_temp.fresh();
SELECT pg_temp.emulator('config?latency_ms=300');
SELECT dblink_send_query('w', format('SELECT count(*) FROM pc_qualifications(%L::uuid[])', pg_temp.tenants(40)));
SELECT pg_sleep(0.5);
SELECT ok(pg_temp.api_in_flight() BETWEEN 1 AND 4, 'mid-call the governor counts the requests in flight');
SELECT pg_cancel_backend(:w_pid);
SELECT ok(pg_temp.wait_peers(ARRAY['w'], '3 s'), 'pg_cancel_backend() ends the call');
SELECT matches(pg_temp.peer_result('w'), '^ERROR: .*canceling statement due to user request', 'as query_canceled');
SELECT is(pg_temp.settled_in_flight(), 0, 'after a cancel the governor has nothing in flight');
SELECT is(pg_temp.full_window(), 4::bigint, 'and a bulk call still gets all 4 slots');

-- 4. pg_terminate_backend() mid-call
SELECT pg_temp.fresh();
SELECT pg_temp.emulator('config?latency_ms=300');
SELECT dblink_send_query('w', format('SELECT count(*) FROM pc_qualifications(%L::uuid[])', pg_temp.tenants(40)));
SELECT pg_sleep(0.5);
SELECT ok(pg_temp.api_in_flight() BETWEEN 1 AND 4, 'mid-call the governor counts the requests in flight');
SELECT pg_terminate_backend(:w_pid);
SELECT ok(pg_temp.wait_exit(:w_pid), 'pg_terminate_backend() ends the backend');
SELECT is(pg_temp.settled_in_flight(), 0, 'after the backend''s exit the governor has nothing in flight');
SELECT is(pg_temp.full_window(), 4::bigint, 'and a bulk call still gets all 4 slots');
SELECT pg_temp.error_of($$SELECT dblink_disconnect('w')$$);

-- Two sessions at concurrency 4 each share the cluster's 4 slots, fairly.
SELECT pg_temp.peer('f1'), pg_temp.peer('f2');
SELECT dblink_exec(n, 'SET pcqual.concurrency = 4') FROM unnest(ARRAY['f1', 'f2']) n;
SELECT pg_temp.fresh();
SELECT pg_temp.emulator('config?latency_ms=100');
CREATE TEMP TABLE fair AS SELECT n AS name, pg_temp.tenants(20) AS tenants FROM unnest(ARRAY['f1', 'f2']) n;
SELECT dblink_send_query(name, format('SELECT count(*) FROM pc_qualifications(%L::uuid[])', tenants)) FROM fair;
SELECT ok(pg_temp.wait_peers(ARRAY['f1', 'f2'], '15 s'), 'two sessions sharing 4 slots both finish');
SELECT is((SELECT array_agg(pg_temp.peer_result(name) ORDER BY name) FROM fair), ARRAY['20', '20'],
          'each with its 20 rows');
SELECT cmp_ok(pg_temp.emulator_stat('max_in_flight'), '<=', 4::bigint,
              'together they never had more than max_cluster_concurrency (4) in flight');
CREATE TEMP TABLE fair_log AS
    SELECT f.name, r.seq, row_number() OVER (ORDER BY r.seq) AS nth
    FROM pg_temp.emulator_log() r JOIN fair f ON lower(r.tenant)::uuid = ANY (f.tenants)
    WHERE r.kind = 'api';
SELECT is((SELECT count(*) FROM fair_log), 40::bigint, 'the emulator saw their 40 requests');
SELECT results_eq($$SELECT f.name, count(l.nth) >= 5 FROM fair f LEFT JOIN fair_log l ON l.name = f.name AND l.nth <= 20
                    GROUP BY f.name ORDER BY f.name$$,
                  $$VALUES ('f1', true), ('f2', true)$$,
                  'fair: each session had at least 5 of the first 20 requests (interleaved, neither starved)');
SELECT dblink_disconnect(n) FROM unnest(ARRAY['f1', 'f2']) n;

RESET pcqual.concurrency;
ALTER SYSTEM RESET pcqual.max_cluster_concurrency;
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SELECT is(current_setting('pcqual.max_cluster_concurrency'), '64', 'max_cluster_concurrency restored');
\set QUIET 0

-- ======================================================================
-- d. pc_stat_activity shows a running bulk call's progress to another
-- session: 200 customers at concurrency 8, 100 ms each (at least 2.5 s).
\set QUIET 1
SELECT pc_governor_reset();
SELECT pg_temp.fresh();
SELECT pg_temp.peer('prog') AS prog_pid \gset
SELECT dblink_exec('prog', 'SET pcqual.concurrency = 8');
SELECT pg_temp.emulator('config?latency_ms=100');
CREATE TEMP TABLE progress AS SELECT clock_timestamp() AS at, * FROM pc_stat_activity WITH NO DATA;
SELECT pg_temp.tick('progress');
SELECT dblink_send_query('prog', format('SELECT count(*) FROM pc_qualifications(%L::uuid[])', pg_temp.tenants(200)));
SELECT pg_sleep(0.3);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT pg_sleep(0.25);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT pg_sleep(0.25);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT pg_sleep(0.25);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT pg_sleep(0.25);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT pg_sleep(0.25);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT pg_sleep(0.25);
INSERT INTO progress SELECT clock_timestamp(), * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT ok(pg_temp.wait_peers(ARRAY['prog'], '15 s'), 'the bulk call of 200 customers finishes');
SELECT is(pg_temp.peer_result('prog'), '200', 'with 200 rows');
SELECT pg_sleep(0.05);
SELECT is((SELECT count(*) FROM pc_stat_activity WHERE pid = :prog_pid), 0::bigint,
          'once it has returned, pc_stat_activity has no row for it');
SELECT cmp_ok((SELECT count(*) FROM progress), '>=', 5::bigint,
              'while it ran, pc_stat_activity had a row for its pid');
SELECT results_eq($$SELECT DISTINCT "function", customers_total, customers_failed FROM progress$$,
                  $$VALUES ('pc_qualifications', 200::bigint, 0::bigint)$$,
                  'function pc_qualifications, customers_total 200, none failed');
SELECT ok((SELECT bool_and(customers_done BETWEEN 0 AND 200) FROM progress),
          'customers_done between 0 and 200');
SELECT ok((SELECT bool_and(customers_done >= prev) AND max(customers_done) > min(customers_done)
           FROM (SELECT customers_done, lag(customers_done, 1, 0::bigint) OVER (ORDER BY at) AS prev FROM progress) p),
          'customers_done increases from sample to sample');
SELECT ok((SELECT bool_and(requests_in_flight BETWEEN 1 AND 8) FROM progress WHERE customers_done < 200)
          AND (SELECT count(*) FROM progress WHERE customers_done < 200) >= 3,
          'requests_in_flight > 0 (and at most pcqual.concurrency) while it runs');
SELECT ok((SELECT bool_and(window_size >= 1 AND started_at >= c.at AND started_at <= progress.at)
           FROM progress, clock c WHERE c.label = 'progress'),
          'started_at is when the call began; window_size is set');

-- pc_fetch_qualifications() shows as such, with its failed customers.
SELECT dblink_exec('prog', 'SET pcqual.concurrency = 4');
SELECT dblink_send_query('prog', format(
    'SELECT count(*) FILTER (WHERE NOT succeeded) FROM pc_fetch_qualifications(%L::uuid[])',
    ARRAY['22222222-0000-0000-0000-000000000404']::uuid[] || pg_temp.tenants(40)));
SELECT pg_sleep(0.6);
CREATE TEMP TABLE fetching AS SELECT * FROM pc_stat_activity WHERE pid = :prog_pid;
SELECT ok(pg_temp.wait_peers(ARRAY['prog'], '10 s'), 'the fetch of 41 customers finishes');
SELECT is(pg_temp.peer_result('prog'), '1', 'with one failed customer');
SELECT results_eq($$SELECT "function", customers_total, customers_failed FROM fetching$$,
                  $$VALUES ('pc_fetch_qualifications', 41::bigint, 1::bigint)$$,
                  'pc_stat_activity shows pc_fetch_qualifications with its failed customer');
SELECT dblink_disconnect('prog');
\set QUIET 0

-- ======================================================================
-- e. pc_stat agrees with the emulator's log after a mixed workload.
\set QUIET 1
SELECT pc_governor_reset();
SELECT pg_temp.fresh();
SELECT pg_temp.tick('stat_reset');
SELECT pc_stat_reset();
SELECT pg_temp.put_file(pg_temp.tap_dir('refresh_token'), 'pcqual-test-refresh');
SELECT pg_temp.put_file(pg_temp.tap_dir('wrong_secret'), 'not-the-app-secret');
CREATE TEMP TABLE workload (n serial, label text, state text, message text, at timestamptz);
CREATE FUNCTION pg_temp.step(label text, settings text[], query text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO workload (label, state, message, at)
    SELECT label, e.state, e.message, clock_timestamp() FROM pg_temp.error_under(settings, query) e
$$;
SET pcqual.max_retries = 1;
SET pcqual.max_retry_wait = '2s';
SELECT pg_temp.step('ok', '{}', $$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT pg_temp.step('429 then 200', '{}', $$SELECT * FROM pc_qualifications('33333333-0000-0000-0000-000000000001')$$);
SELECT pg_temp.step('500 then 200', '{}', $$SELECT * FROM pc_qualifications('33333333-0000-0000-0000-000000000002')$$);
SELECT pg_temp.step('404', '{}', $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000404')$$);
SELECT pg_temp.step('401', '{}', $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000401')$$);
-- libcurl sends a request once more by itself when a reused connection
-- closes before any answer: the service then sees one request more than
-- pcqual made.  The emulator's TLS listener (P+1), on connections of its
-- own, keeps the two counts equal.
SELECT format('https://127.0.0.1:%s', split_part(current_setting('pcqual.base_url'), ':', 3)::int + 1) AS tls_base \gset
SELECT pg_temp.step('dropped', ARRAY['pcqual.base_url', :'tls_base'], $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000609')$$);
SELECT pg_temp.step('429 too long', ARRAY['pcqual.max_retry_wait', '300ms'],
                    $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000429')$$);
SELECT pg_sleep(0.35);
SELECT pg_temp.step('bulk', '{}', format('SELECT * FROM pc_qualifications(%L::uuid[])', pg_temp.tenants(12)));
SELECT pg_temp.step('customers', '{}', $$SELECT * FROM pc_customers()$$);
SELECT pg_temp.step('validation codes', '{}', $$SELECT * FROM pc_validation_codes()$$);
SELECT pg_temp.step('validation status', ARRAY['pcqual.refresh_token_file', pg_temp.tap_dir('refresh_token')],
                    $$SELECT * FROM pc_validation_status('11111111-0000-0000-0000-000000000010')$$);
SELECT pg_temp.step('customer validations', '{}', $$SELECT * FROM pc_customer_validations('c0dec0de-0000-4000-8000-000000000001')$$);
SELECT pg_temp.step('create', ARRAY['pcqual.refresh_token_file', pg_temp.tap_dir('refresh_token')],
                    $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-0000000000e1', 'Education', 'K12')$$);
SELECT pg_temp.step('create again', ARRAY['pcqual.refresh_token_file', pg_temp.tap_dir('refresh_token')],
                    $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-0000000000e1', 'Education', 'K12')$$);
SELECT pg_temp.step('wrong secret', ARRAY['pcqual.client_secret_file', pg_temp.tap_dir('wrong_secret')],
                    $$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT pg_temp.step('503', '{}', $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000503')$$);
RESET pcqual.max_retries;
RESET pcqual.max_retry_wait;
SELECT pc_governor_reset();

-- the emulator's log, by pc_stat's endpoints
CREATE TEMP TABLE seen AS
    SELECT CASE WHEN kind = 'token' THEN 'token'
                WHEN kind = 'api' AND path ~ '^/v1/customers/all/validations' THEN 'validation_codes'
                WHEN kind = 'api' AND path ~ '^/v1/customers/[^/?]+/validationStatus' THEN 'validation_status'
                WHEN kind = 'api' AND path ~ '^/v1/customers/[^/?]+/validations' THEN 'customer_validations'
                WHEN kind = 'api' AND path ~ '^/v1/customers/[^/?]+/qualifications' AND method = 'POST' THEN 'create_qualification'
                WHEN kind = 'api' AND path ~ '^/v1/customers/[^/?]+/qualifications' THEN 'qualifications'
                WHEN kind = 'api' AND path ~ '^/v1/customers/?(\?|$)' THEN 'customers'
           END AS endpoint, *
    FROM pg_temp.emulator_log();
CREATE TEMP TABLE stat AS SELECT * FROM pc_stat;

SELECT results_eq($$SELECT label, state FROM workload ORDER BY n$$,
                  $$VALUES ('ok', NULL), ('429 then 200', NULL), ('500 then 200', NULL), ('404', 'P0002'),
                           ('401', '28000'), ('dropped', '58000'), ('429 too long', '58000'), ('bulk', NULL),
                           ('customers', NULL), ('validation codes', NULL), ('validation status', NULL),
                           ('customer validations', NULL), ('create', NULL),
                           ('create again', '23505'), ('wrong secret', '28000'), ('503', '58000')$$,
                  'the workload: successes, retried and final failures, a token refused');
SELECT is((SELECT count(*) FROM seen WHERE endpoint IS NULL), 0::bigint, 'every request the emulator saw is one of pc_stat''s endpoints');
SELECT ok((SELECT count(*) FILTER (WHERE status IS NULL) > 0 AND count(*) FILTER (WHERE status = 429) > 0
                  AND count(*) FILTER (WHERE status = 401) > 0 AND count(*) FILTER (WHERE status = 409) > 0
                  AND count(*) FILTER (WHERE status >= 500) > 0 AND count(DISTINCT endpoint) = 7 FROM seen),
          'the emulator saw dropped connections, 429, 401, 409, 5xx, and all seven endpoints');
SELECT set_eq($$SELECT endpoint FROM stat$$,
              $$VALUES ('token'), ('qualifications'), ('create_qualification'), ('customers'), ('validation_codes'),
                       ('validation_status'), ('customer_validations')$$,
              'pc_stat has the seven endpoints');
SELECT results_eq(
    $$SELECT endpoint, requests, status_2xx, status_401, status_403, status_404, status_409, status_429,
             status_4xx_other, status_5xx, status_other, transport_failures
      FROM stat ORDER BY endpoint$$,
    $$SELECT e.endpoint, count(s.endpoint),
             count(*) FILTER (WHERE s.status BETWEEN 200 AND 299),
             count(*) FILTER (WHERE s.status = 401), count(*) FILTER (WHERE s.status = 403),
             count(*) FILTER (WHERE s.status = 404), count(*) FILTER (WHERE s.status = 409),
             count(*) FILTER (WHERE s.status = 429),
             count(*) FILTER (WHERE s.status BETWEEN 400 AND 499 AND s.status NOT IN (401, 403, 404, 409, 429)),
             count(*) FILTER (WHERE s.status BETWEEN 500 AND 599),
             count(*) FILTER (WHERE s.status BETWEEN 100 AND 199 OR s.status BETWEEN 300 AND 399),
             count(*) FILTER (WHERE s.endpoint IS NOT NULL AND s.status IS NULL)
      FROM (SELECT endpoint FROM stat) e LEFT JOIN seen s ON s.endpoint = e.endpoint
      GROUP BY e.endpoint ORDER BY e.endpoint$$,
    'requests and every status column equal the emulator''s log, endpoint by endpoint (no answer: transport_failures)');
SELECT is((SELECT count(*) FROM stat WHERE requests <> status_2xx + status_401 + status_403 + status_404 + status_409
                                                    + status_429 + status_4xx_other + status_5xx + status_other
                                                    + transport_failures), 0::bigint,
          'requests is the sum of the ten columns');
SELECT results_eq(
    $$SELECT endpoint, retries FROM stat ORDER BY endpoint$$,
    $$SELECT e.endpoint, count(s.endpoint) - count(DISTINCT coalesce(s.request_id, 'seq ' || s.seq))
      FROM (SELECT endpoint FROM stat) e LEFT JOIN seen s ON s.endpoint = e.endpoint
      GROUP BY e.endpoint ORDER BY e.endpoint$$,
    'retries: the attempts that repeated an MS-RequestId');
SELECT ok((SELECT retry_wait_ms BETWEEN 900 AND 10000 FROM stat WHERE endpoint = 'qualifications'),
          'retry_wait_ms includes the 1 s Retry-After waited for');
SELECT is((SELECT array_agg(endpoint ORDER BY endpoint) FROM stat WHERE bytes_received > 0),
          ARRAY['create_qualification', 'customer_validations', 'customers', 'qualifications', 'token', 'validation_codes', 'validation_status'],
          'bytes_received > 0 for every endpoint (all answered with bodies)');
SELECT is((SELECT array_agg(endpoint ORDER BY endpoint) FROM stat
           WHERE mean_latency_ms > 0 AND mean_latency_ms <= max_latency_ms
             AND p50_latency_ms <= p95_latency_ms AND p95_latency_ms <= p99_latency_ms
             AND p99_latency_ms <= max_latency_ms),
          ARRAY['create_qualification', 'customer_validations', 'customers', 'qualifications', 'token', 'validation_codes', 'validation_status'],
          'latencies set, p50 <= p95 <= p99 <= max, mean within');
SELECT ok((SELECT shared_token_hits >= 1 FROM stat WHERE endpoint = 'token')
          AND (SELECT bool_and(shared_token_hits IS NULL) FROM stat WHERE endpoint <> 'token'),
          'shared_token_hits: counted on the token row only');
SELECT ok((SELECT bool_and(stats_reset BETWEEN c.at AND clock_timestamp()) FROM stat, clock c WHERE c.label = 'stat_reset'),
          'stats_reset is when pc_stat_reset() ran');
-- the last final failure of each endpoint
SELECT results_eq(
    $$SELECT endpoint, last_error_sqlstate, last_error_message <> '',
             last_error_at BETWEEN (SELECT min(at) FROM workload) AND clock_timestamp()
      FROM stat WHERE endpoint IN ('qualifications', 'create_qualification', 'token') ORDER BY endpoint$$,
    $$VALUES ('create_qualification', '23505', true, true), ('qualifications', '58000', true, true), ('token', '28000', true, true)$$,
    'last_error_sqlstate, _message and _at of the endpoints that failed');
SELECT ok((SELECT last_error_at >= (SELECT at FROM workload WHERE label = '503') - interval '5 s'
                  AND last_error_at >= (SELECT at FROM workload WHERE label = 'wrong secret')
           FROM stat WHERE endpoint = 'qualifications'),
          'qualifications: the last failure is the 503');
SELECT is((SELECT last_error_request_id FROM stat WHERE endpoint = 'qualifications'),
          (SELECT max(request_id) FROM seen WHERE lower(tenant) = '22222222-0000-0000-0000-000000000503'),
          'its last_error_request_id is the 503 request''s MS-RequestId in the emulator''s log');
SELECT is((SELECT last_error_request_id FROM stat WHERE endpoint = 'create_qualification'),
          (SELECT request_id FROM seen WHERE endpoint = 'create_qualification' AND status = 409),
          'create_qualification: the 409''s MS-RequestId');
SELECT is((SELECT count(*) FROM stat WHERE endpoint IN ('customers', 'validation_codes') AND last_error_at IS NULL
                                       AND last_error_sqlstate IS NULL), 2::bigint,
          'no last error where nothing failed');
\set QUIET 0

-- ======================================================================
-- f. Resets, privileges, and no secret in any view.
\set QUIET 1
-- nothing any view shows holds a secret or a token
CREATE TEMP TABLE shown AS
    SELECT 'pc_stat' AS source, row_to_json(s)::text AS row FROM pc_stat s
    UNION ALL SELECT 'pc_stat_governor', row_to_json(g)::text FROM pc_stat_governor g
    UNION ALL SELECT 'pc_stat_activity', row_to_json(a)::text FROM pc_stat_activity a
    UNION ALL SELECT 'progress', row_to_json(p)::text FROM progress p
    UNION ALL SELECT 'fetching', row_to_json(f)::text FROM fetching f;
SELECT ok((SELECT count(DISTINCT source) FROM shown) >= 4, 'the views have rows to check');
SELECT is((SELECT array_agg(row) FROM shown
           WHERE row ~ '(pcqual-test-secret|pcqual-test-refresh|emu-app-|emu-user-|not-the-app-secret)'), NULL,
          'no value in pc_stat, pc_stat_governor or pc_stat_activity contains a secret or a token');

SELECT pg_temp.tick('stat_reset2');
SELECT pc_stat_reset();
SELECT is((SELECT count(*) FROM pc_stat
           WHERE requests = 0 AND status_2xx + status_401 + status_403 + status_404 + status_409 + status_429
                                  + status_4xx_other + status_5xx + status_other + transport_failures = 0
             AND retries = 0 AND retry_wait_ms = 0 AND bytes_received = 0 AND coalesce(shared_token_hits, 0) = 0
             AND mean_latency_ms IS NULL AND max_latency_ms IS NULL AND p50_latency_ms IS NULL
             AND p95_latency_ms IS NULL AND p99_latency_ms IS NULL
             AND stats_reset BETWEEN (SELECT at FROM clock WHERE label = 'stat_reset2') AND clock_timestamp()),
          7::bigint, 'pc_stat_reset() zeroes every counter of the seven rows and sets stats_reset');

DROP ROLE IF EXISTS pcqual_tap_governor_plain;
DROP ROLE IF EXISTS pcqual_tap_governor_reader;
CREATE ROLE pcqual_tap_governor_plain NOLOGIN;
CREATE ROLE pcqual_tap_governor_reader NOLOGIN IN ROLE pg_read_all_stats;
CREATE TEMP TABLE denied (who text, what text, state text);
GRANT INSERT ON denied TO pcqual_tap_governor_plain, pcqual_tap_governor_reader;
CREATE TEMP TABLE probes (what text);
INSERT INTO probes VALUES ('SELECT pc_stat_reset()'), ('SELECT pc_governor_reset()'),
    ('SELECT * FROM pc_stat'), ('SELECT * FROM pc_stat_activity'), ('SELECT * FROM pc_stat_governor');
GRANT SELECT ON probes TO pcqual_tap_governor_plain, pcqual_tap_governor_reader;
SET ROLE pcqual_tap_governor_plain;
INSERT INTO denied SELECT 'plain', what, (pg_temp.error_of(what)).state FROM probes;
RESET ROLE;
SET ROLE pcqual_tap_governor_reader;
INSERT INTO denied SELECT 'reader', what, (pg_temp.error_of(what)).state FROM probes;
RESET ROLE;
SELECT results_eq($$SELECT what, state FROM denied WHERE who = 'plain' ORDER BY what$$,
                  $$VALUES ('SELECT * FROM pc_stat', '42501'), ('SELECT * FROM pc_stat_activity', '42501'),
                           ('SELECT * FROM pc_stat_governor', '42501'), ('SELECT pc_governor_reset()', '42501'),
                           ('SELECT pc_stat_reset()', '42501')$$,
                  'a role without privileges can neither reset nor read the views (42501)');
SELECT results_eq($$SELECT what, state FROM denied WHERE who = 'reader' ORDER BY what$$,
                  $$VALUES ('SELECT * FROM pc_stat', NULL), ('SELECT * FROM pc_stat_activity', NULL),
                           ('SELECT * FROM pc_stat_governor', NULL), ('SELECT pc_governor_reset()', '42501'),
                           ('SELECT pc_stat_reset()', '42501')$$,
                  'a member of pg_read_all_stats reads the three views, and still cannot reset');
DROP TABLE denied, probes;
DROP ROLE pcqual_tap_governor_plain;
DROP ROLE pcqual_tap_governor_reader;

-- leave no throttling, pause or token behind for the next suites
SELECT pg_temp.emulator('reset');
SELECT pc_governor_reset();
SELECT pc_disconnect();
\set QUIET 0

SELECT * FROM finish();
