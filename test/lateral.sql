-- The batched LATERAL join (src/lateral.c) as the emulator sees it: one
-- request per distinct tenant per batch, at most pcqual.concurrency in
-- flight, batches as the outer side is read; failures, cancel and
-- statement_timeout in the middle of a batch; the session usable after.
\ir helpers.inc
SELECT pg_temp.self_connstr() AS connstr \gset
\set QUIET 1
SELECT plan(21);

CREATE TEMP TABLE customers (id int PRIMARY KEY, tenant_id uuid);
-- 300 distinct tenants of the emulator's bulk population, each twice, and
-- ten without a tenant.
INSERT INTO customers
SELECT i, CASE WHEN i > 600 THEN NULL
               ELSE format('44444444-0000-4000-8000-%s', lpad(((i - 1) % 300)::text, 12, '0'))::uuid END
FROM generate_series(1, 610) i;
ANALYZE customers;

CREATE FUNCTION pg_temp.api_requests() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'api'
$$;
-- The batch's EXPLAIN ANALYZE counters (FORMAT JSON).
CREATE FUNCTION pg_temp.batch_counts(query text, OUT batches int, OUT tenants int, OUT requests int)
LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || query INTO plan;
    WITH RECURSIVE node(p) AS (
        SELECT plan -> 0 -> 'Plan'
        UNION ALL
        SELECT child FROM node, json_array_elements(p -> 'Plans') child)
    SELECT (p ->> 'Batches')::int, (p ->> 'Tenants Fetched')::int, (p ->> 'Requests')::int
    INTO batches, tenants, requests
    FROM node WHERE p ->> 'Custom Plan Provider' = 'PcqualBatchedLateral';
END
$$;

------------------------------------------------------------------------
-- Requests: one per distinct tenant per batch, concurrently
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?latency_ms=20');
SET pcqual.concurrency = 16;
SELECT pg_temp.tick('one batch');
SELECT is((SELECT count(*) FROM customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q),
          600::bigint, 'every customer with a tenant gets its row');
SELECT cmp_ok(pg_temp.elapsed('one batch'), '<', interval '3 seconds',
              '300 tenants at 20 ms in one batch: concurrent, not 6 s one after another');
SELECT is(pg_temp.api_requests(), 300::bigint,
          'one request per distinct tenant: the duplicates are fetched once in the batch');
SELECT cmp_ok(pg_temp.emulator_stat('max_in_flight'), '>', 1::bigint, 'several requests in flight at once');
SELECT cmp_ok(pg_temp.emulator_stat('max_in_flight'), '<=', 16::bigint, 'never more than pcqual.concurrency');

-- Batches of 100 outer rows: each batch fetches its own distinct tenants
-- (rows 1..300 and 301..600 hold the same tenants).
SET pcqual.lateral_batch_size = 100;
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?latency_ms=0');
SELECT results_eq($$SELECT * FROM pg_temp.batch_counts(
                      'SELECT * FROM customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q')$$,
                  $$VALUES (7, 600, 600)$$,
                  'seven batches of up to 100 rows; 600 tenants fetched, one request each');
SELECT is(pg_temp.api_requests(), 600::bigint, '... as the emulator counted');

-- LIMIT: batches stop once enough rows came out.
SELECT pg_temp.emulator('reset');
SET enable_nestloop = off;
SELECT is((SELECT count(*) FROM (SELECT * FROM customers c
              CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q LIMIT 150) t), 150::bigint,
          'LIMIT 150 over batches of 100');
SELECT is(pg_temp.api_requests(), 200::bigint, 'two batches fetched, not seven');
RESET enable_nestloop;
RESET pcqual.lateral_batch_size;

------------------------------------------------------------------------
-- A failure: the statement fails as the Nested Loop's would, at that row
CREATE TEMP TABLE failing AS SELECT * FROM customers WHERE id <= 20;
INSERT INTO failing VALUES (21, '22222222-0000-0000-0000-000000000503');
SET pcqual.max_retries = 0;     -- until the end of the token case
CREATE TEMP TABLE batched_error AS SELECT * FROM pg_temp.error_of(
    $$SELECT * FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
SET pcqual.batch_lateral = off;
CREATE TEMP TABLE nested_error AS SELECT * FROM pg_temp.error_of(
    $$SELECT * FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
RESET pcqual.batch_lateral;
SELECT is((SELECT state FROM batched_error), (SELECT state FROM nested_error),
          'a customer answering 503: the batch raises the Nested Loop''s SQLSTATE');
SELECT isnt((SELECT state FROM batched_error), NULL, '... which is an error');
SELECT is((SELECT message FROM batched_error), (SELECT message FROM nested_error),
          '... and its message');

-- A token that cannot be had: the batch raises what the first call would.
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?token_fault=unavailable');
CREATE TEMP TABLE token_batched AS SELECT * FROM pg_temp.error_of(
    $$SELECT * FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
SET pcqual.batch_lateral = off;
CREATE TEMP TABLE token_nested AS SELECT * FROM pg_temp.error_of(
    $$SELECT * FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
RESET pcqual.batch_lateral;
RESET pcqual.max_retries;
SELECT pg_temp.emulator('reset');
SELECT results_eq($$SELECT state, message FROM token_batched$$,
                  $$SELECT state, message FROM token_nested$$,
                  'no access token: the same error as the Nested Loop''s first call');

------------------------------------------------------------------------
-- statement_timeout and cancel in the middle of a batch
-- (22222222-...0611 answers after 10 s)
INSERT INTO failing VALUES (22, '22222222-0000-0000-0000-000000000611');
DELETE FROM failing WHERE id = 21;
SET statement_timeout = '500ms';
SELECT pg_temp.tick('timeout');
CREATE TEMP TABLE timed_out AS SELECT * FROM pg_temp.error_of(
    $$SELECT * FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
RESET statement_timeout;
SELECT is((SELECT state FROM timed_out), '57014', 'statement_timeout ends the batch with query_canceled');
SELECT cmp_ok(pg_temp.elapsed('timeout'), '<', interval '2 seconds', '... at once, not after the slow answer');
SELECT is((SELECT count(*) FROM customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
           WHERE c.id <= 5), 5::bigint, 'the session is usable after it');

SELECT dblink_connect('victim', :'connstr');
SELECT pid AS victim_pid FROM dblink('victim', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT dblink_exec('victim', $$CREATE TEMP TABLE failing AS SELECT * FROM (VALUES
    (1, '44444444-0000-4000-8000-000000000001'::uuid),
    (2, '22222222-0000-0000-0000-000000000611'::uuid)) v(id, tenant_id)$$);
SELECT dblink_send_query('victim',
    $$SELECT count(*) FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
SELECT pg_sleep(0.5);
SELECT is(dblink_is_busy('victim'), 1, 'the other session waits for its batch');
CREATE TEMP TABLE cancel_sent AS SELECT clock_timestamp() AS at, pg_cancel_backend(:victim_pid) AS sent;
SELECT pg_temp.wait_until_done('victim', (SELECT at FROM cancel_sent), interval '5 seconds');
SELECT cmp_ok(clock_timestamp() - (SELECT at FROM cancel_sent), '<', interval '1 second',
              'pg_cancel_backend() ends the batch within a second');
SELECT matches(dblink_error_message('victim'), 'canceling statement due to user request',
               'the canceled session saw query_canceled');
SELECT count(*) FROM dblink_get_result('victim', false) AS t(n bigint);
SELECT count(*) FROM dblink_get_result('victim', false) AS t(n bigint);
SELECT is((SELECT n FROM dblink('victim',
              $$SELECT count(*) FROM failing c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q WHERE c.id = 1$$)
              AS t(n bigint)), 1::bigint, 'the canceled session is usable');
SELECT pg_sleep(0.2);
SELECT is(pg_temp.emulator_stat('in_flight'), 0::bigint, 'nothing is left in flight');
SELECT dblink_disconnect('victim');

SELECT * FROM finish();
