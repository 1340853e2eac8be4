-- Every ERROR leaves the session usable, and nothing leaks: no sockets or
-- other file descriptors, no memory.  The faults include the paths that
-- free a body and retry (401: a new token, the same request again), a
-- redirect, a refused TLS certificate and a refused token request.
\ir helpers.inc
BEGIN;
SELECT plan(8);
-- every fault is final at once here: test/retries.sql covers retries
SET LOCAL pcqual.max_retries = 0;

CREATE TEMP TABLE faults (tenant uuid, state text);
INSERT INTO faults VALUES
    ('22222222-0000-0000-0000-000000000302', '58000'),
    ('22222222-0000-0000-0000-000000000400', '22023'),
    ('22222222-0000-0000-0000-000000000401', '28000'),
    ('22222222-0000-0000-0000-000000000403', '42501'),
    ('22222222-0000-0000-0000-000000000404', 'P0002'),
    ('22222222-0000-0000-0000-000000000409', '58000'),
    ('22222222-0000-0000-0000-000000000418', '58000'),
    ('22222222-0000-0000-0000-000000000429', '58000'),
    ('22222222-0000-0000-0000-000000000500', '58000'),
    ('22222222-0000-0000-0000-000000000502', '58000'),
    ('22222222-0000-0000-0000-000000000503', '58000'),
    ('22222222-0000-0000-0000-000000000600', '22032'),
    ('22222222-0000-0000-0000-000000000601', '22032'),
    ('22222222-0000-0000-0000-000000000602', '22032'),
    ('22222222-0000-0000-0000-000000000603', '22032'),
    ('22222222-0000-0000-0000-000000000604', '22032'),
    ('22222222-0000-0000-0000-000000000605', '22032'),
    ('22222222-0000-0000-0000-000000000606', '54000'),
    ('22222222-0000-0000-0000-000000000607', '54000'),
    ('22222222-0000-0000-0000-000000000608', '22032'),
    ('22222222-0000-0000-0000-000000000609', '58000'),
    ('22222222-0000-0000-0000-000000000610', '58000');

-- Every fault, each followed by a good call in the same session.
CREATE FUNCTION pg_temp.fault_then_success(t uuid, OUT state text, OUT rows_after bigint)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT e.state INTO state
    FROM pg_temp.error_of(format('SELECT * FROM pc_qualifications(%L)', t)) e;
    -- the 429 fixture pauses the partner for its Retry-After (7 s) and
    -- narrows the cluster's window: test/governor.sql covers that, here
    -- it would only make 250 rounds last half an hour
    PERFORM pc_governor_reset();
    SELECT count(*) INTO rows_after FROM pc_qualifications('11111111-0000-0000-0000-000000000005');
END
$$;
SELECT results_eq(
    $$SELECT f.tenant, r.state, r.rows_after
      FROM faults f, pg_temp.fault_then_success(f.tenant) r ORDER BY f.tenant$$,
    $$SELECT tenant, state, 2::bigint FROM faults ORDER BY tenant$$,
    'each fault raises its SQLSTATE and the next call works');

-- Open file descriptors and backend memory after a warm-up ...  The backend
-- opens relation files of its own as it goes (temporary tables, a TRUNCATE's
-- new file), so those are not counted; curl may keep an idle connection or
-- two, so a small slack is allowed: a leak per call would add hundreds.
CREATE FUNCTION pg_temp.open_fds() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE emulator_sink;
    EXECUTE format('COPY emulator_sink FROM PROGRAM %L',
                   format('ls -l /proc/%s/fd | grep -v -e ''/base/'' -e ''^total'' | wc -l', pg_backend_pid()));
    RETURN (SELECT line::bigint FROM emulator_sink);
END
$$;
CREATE FUNCTION pg_temp.backend_memory() RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts
$$;
-- malloc'd memory (curl, cJSON) shows in the backend's anonymous RSS
CREATE FUNCTION pg_temp.anon_rss_kb() RETURNS bigint LANGUAGE sql AS $$
    SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status')
                     FROM 'RssAnon:\s+(\d+)')::bigint
$$;
-- Each round also meets an expired certificate (the emulator's TLS port
-- P+3) and a wrong client secret; it counts those failures.
SELECT pg_temp.put_file(pg_temp.tap_dir('wrong_secret'), 'not-the-app-secret');
CREATE TEMP TABLE other_faults AS SELECT
    format('https://127.0.0.1:%s', split_part(current_setting('pcqual.base_url'), ':', 3)::int + 3) AS expired_url,
    pg_temp.tap_dir('wrong_secret') AS wrong_secret_file;
CREATE FUNCTION pg_temp.round_of_faults(n int, OUT tls_refused int, OUT token_refused int)
LANGUAGE plpgsql AS $$
DECLARE
    o other_faults;
BEGIN
    SELECT * INTO o FROM other_faults;
    tls_refused := 0;
    token_refused := 0;
    FOR i IN 1..n LOOP
        PERFORM pg_temp.fault_then_success(f.tenant) FROM faults f
        WHERE f.tenant NOT IN ('22222222-0000-0000-0000-000000000607');
        tls_refused := tls_refused + (SELECT count(*) FROM pg_temp.error_under(ARRAY['pcqual.base_url', o.expired_url],
            $q$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$q$)
            WHERE message LIKE 'could not verify the TLS certificate%')::int;
        token_refused := token_refused + (SELECT count(*) FROM pg_temp.error_under(ARRAY['pcqual.client_secret_file', o.wrong_secret_file],
            $q$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$q$)
            WHERE message LIKE 'Azure AD refused pcqual''s token request%')::int;
    END LOOP;
END
$$;
-- The emulator's answers by status, to count the 401s.
CREATE FUNCTION pg_temp.answers_with(status text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE emulator_sink;
    EXECUTE format('COPY emulator_sink FROM PROGRAM %L WITH (FORMAT csv, QUOTE e''\x01'', DELIMITER e''\x02'')',
                   format('curl -sf --noproxy ''*'' %s/_emulator/stats', current_setting('pcqual.base_url')));
    RETURN coalesce((string_agg(line, '')::json -> 'status_counts' ->> status)::bigint, 0) FROM emulator_sink;
END
$$;
-- Every table the rest reads or writes exists (its file open) before the
-- warm figures are taken: only what the calls open counts.
CREATE TEMP TABLE warm (fds bigint, mem bigint, rss_kb bigint);
CREATE TEMP TABLE before_rounds (tokens bigint, unauthorized bigint);
CREATE TEMP TABLE rounds (tls_refused int, token_refused int);
SELECT pg_temp.round_of_faults(2), pg_temp.answers_with('401'), pg_temp.emulator_stat('token_requests');
INSERT INTO warm SELECT pg_temp.open_fds(), pg_temp.backend_memory(), pg_temp.anon_rss_kb();

-- ... and after 250 more rounds of every fault (11,500 calls).
INSERT INTO before_rounds
    SELECT pg_temp.emulator_stat('token_requests'), pg_temp.answers_with('401');
INSERT INTO rounds SELECT * FROM pg_temp.round_of_faults(250);
SELECT results_eq(
    $$SELECT pg_temp.answers_with('401') - unauthorized, pg_temp.emulator_stat('token_requests') - tokens
      FROM before_rounds$$,
    $$VALUES (3 * 250::bigint, 2 * 250::bigint)$$,
    'every round ran the 401 path (401 on the cached token, a new token, the request again: 401) and a refused token request (401)');
SELECT results_eq($$SELECT tls_refused, token_refused FROM rounds$$, $$VALUES (250, 250)$$,
                  'every round met a refused certificate and a refused secret');
SELECT cmp_ok(pg_temp.open_fds(), '<=', (SELECT fds + 5 FROM warm),
              'no file descriptor is leaked by 11,500 calls mixing faults and successes');
SELECT cmp_ok(pg_temp.backend_memory() - (SELECT mem FROM warm), '<', 1024 * 1024::bigint,
              'backend memory contexts stay flat (within 1 MB) over 11,500 calls');
SELECT cmp_ok(pg_temp.anon_rss_kb() - (SELECT rss_kb FROM warm), '<', 2048::bigint,
              'malloc''d memory (curl handles, cJSON trees) stays flat (within 2 MB) over 11,500 calls');

-- After a canceled request too.
SET LOCAL statement_timeout = '200ms';
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$)),
          '57014', 'a canceled request');
SET LOCAL statement_timeout = 0;
SELECT cmp_ok(pg_temp.open_fds(), '<=', (SELECT fds + 5 FROM warm),
              'no file descriptor is leaked by a canceled request');

SELECT * FROM finish();
ROLLBACK;
