-- Every ERROR leaves the session usable, and nothing leaks: no sockets or
-- other file descriptors, no memory.
\ir helpers.inc
BEGIN;
SELECT plan(6);
-- every fault is final at once here: test/retries.sql covers retries
SET LOCAL pcqual.max_retries = 0;

CREATE TEMP TABLE faults (tenant uuid, state text);
INSERT INTO faults VALUES
    ('22222222-0000-0000-0000-000000000400', '22023'),
    ('22222222-0000-0000-0000-000000000401', '28000'),
    ('22222222-0000-0000-0000-000000000403', '28000'),
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
    SELECT count(*) INTO rows_after FROM pc_qualifications('11111111-0000-0000-0000-000000000005');
END
$$;
SELECT results_eq(
    $$SELECT f.tenant, r.state, r.rows_after
      FROM faults f, pg_temp.fault_then_success(f.tenant) r ORDER BY f.tenant$$,
    $$SELECT tenant, state, 2::bigint FROM faults ORDER BY tenant$$,
    'each fault raises its SQLSTATE and the next call works');

-- Open file descriptors and backend memory after a warm-up ...  The backend
-- opens a few relation files of its own as it goes (and curl may keep an idle
-- connection or two), so a small slack is allowed: a leak per call would add
-- hundreds.
CREATE FUNCTION pg_temp.open_fds() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_ls_dir('/proc/' || pg_backend_pid() || '/fd')
$$;
CREATE FUNCTION pg_temp.backend_memory() RETURNS bigint LANGUAGE sql AS $$
    SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts
$$;
-- malloc'd memory (curl, cJSON) shows in the backend's anonymous RSS
CREATE FUNCTION pg_temp.anon_rss_kb() RETURNS bigint LANGUAGE sql AS $$
    SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status')
                     FROM 'RssAnon:\s+(\d+)')::bigint
$$;
CREATE FUNCTION pg_temp.round_of_faults(n int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_temp.fault_then_success(f.tenant) FROM faults f
        WHERE f.tenant NOT IN ('22222222-0000-0000-0000-000000000607');
    END LOOP;
END
$$;
SELECT pg_temp.round_of_faults(2);
CREATE TEMP TABLE warm AS
    SELECT pg_temp.open_fds() AS fds, pg_temp.backend_memory() AS mem,
           pg_temp.anon_rss_kb() AS rss_kb;

-- ... and after 250 more rounds of every fault (10,000 calls).
SELECT pg_temp.round_of_faults(250);
SELECT cmp_ok(pg_temp.open_fds(), '<=', (SELECT fds + 5 FROM warm),
              'no file descriptor is leaked by 10,000 calls mixing faults and successes');
SELECT cmp_ok(pg_temp.backend_memory() - (SELECT mem FROM warm), '<', 1024 * 1024::bigint,
              'backend memory contexts stay flat (within 1 MB) over 10,000 calls');
SELECT cmp_ok(pg_temp.anon_rss_kb() - (SELECT rss_kb FROM warm), '<', 2048::bigint,
              'malloc''d memory (curl handles, cJSON trees) stays flat (within 2 MB) over 10,000 calls');

-- After a canceled request too.
SET LOCAL statement_timeout = '200ms';
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$)),
          '57014', 'a canceled request');
SET LOCAL statement_timeout = 0;
SELECT cmp_ok(pg_temp.open_fds(), '<=', (SELECT fds + 5 FROM warm),
              'no file descriptor is leaked by a canceled request');

SELECT * FROM finish();
ROLLBACK;
