-- pc_qualifications(uuid[]): concurrency, connection reuse, on_error,
-- cancellation, throttling, retries and token refresh within a batch.
\ir helpers.inc
SELECT plan(15);

-- n generic customers (the emulator answers any GUID with one row)
CREATE FUNCTION pg_temp.tenants(n int) RETURNS uuid[] LANGUAGE sql AS $$
    -- random, but in the emulator's bulk range (44444444-...): a random id
    -- could start fa11 or 2222..., the emulator's 404 and fault tenants
    SELECT array_agg(('44444444' || substr(gen_random_uuid()::text, 9))::uuid)
    FROM generate_series(1, n)
$$;

-- At most pcqual.concurrency requests in flight, and really concurrent.
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');  -- warm up
SELECT pg_temp.emulator('config?latency_ms=100');
SET pcqual.concurrency = 8;
SELECT pg_temp.tick('bulk');
SELECT is((SELECT count(*) FROM pc_qualifications(pg_temp.tenants(40))), 40::bigint,
          '40 customers, one row each');
SELECT ok(pg_temp.elapsed('bulk') < interval '1.5 s',
          '40 requests of 100 ms at concurrency 8 take about 5 x 100 ms, not 4 s');
SELECT ok(pg_temp.emulator_stat('max_in_flight') BETWEEN 4 AND 8,
          'the emulator saw several, and at most pcqual.concurrency, requests at once');

-- Connections are reused across batches.
CREATE TEMP TABLE before AS SELECT pg_temp.emulator_stat('connections') AS connections;
SELECT count(*) FROM pc_qualifications(pg_temp.tenants(40));
SELECT cmp_ok(pg_temp.emulator_stat('connections') - (SELECT connections FROM before), '<=', 1::bigint,
              'a second batch opens no new connections (the one counted is curl''s own)');

-- on_error => 'error': the first failure raises at once; the slow requests
-- still in flight are abandoned, and the emulator sees them go.
SELECT pg_temp.emulator('config?latency_ms=0');
SELECT pg_temp.tick('abandon');
SELECT is((SELECT state FROM pg_temp.error_of($$
    SELECT * FROM pc_qualifications(ARRAY['22222222-0000-0000-0000-000000000404',
                                          '22222222-0000-0000-0000-000000000611']::uuid[])$$)),
          'P0002', 'the 404 is raised');
SELECT ok(pg_temp.elapsed('abandon') < interval '1 s', 'without waiting for the slow customer');
SELECT pg_sleep(0.3);
SELECT is(pg_temp.emulator_stat('in_flight'), 0::bigint, 'the abandoned request was closed');

-- statement_timeout stops a whole batch.
SET statement_timeout = '300ms';
SELECT pg_temp.tick('timeout');
CREATE TEMP TABLE timed AS SELECT * FROM pg_temp.error_of($$
    SELECT * FROM pc_qualifications(ARRAY['22222222-0000-0000-0000-000000000611',
                                          '11111111-0000-0000-0000-000000000001']::uuid[]
                                    || pg_temp.tenants(5))$$);
RESET statement_timeout;
SELECT is((SELECT state FROM timed), '57014', 'statement_timeout cancels the batch');
SELECT ok(pg_temp.elapsed('timeout') < interval '1 s', 'within a fraction of a second');
SELECT pg_sleep(0.3);
SELECT is(pg_temp.emulator_stat('in_flight'), 0::bigint, 'nothing is left in flight');

-- Throttling: the emulator answers 429 (Retry-After: 1) above 4 requests in
-- flight.  pcqual halves its limit after each 429 and retries: no customer
-- is lost.
SELECT pg_temp.emulator('reset');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');  -- new token
SELECT pg_temp.emulator('config?latency_ms=20&throttle_inflight=4&throttle_retry_after=1');
SET pcqual.concurrency = 32;
SELECT is((SELECT count(*) FROM pc_qualifications(pg_temp.tenants(100))), 100::bigint,
          'a throttled batch of 100 still returns 100 rows');
SELECT ok(pg_temp.emulator_stat('throttled') > 0, 'the emulator did throttle');
SELECT is((SELECT count(DISTINCT request_id) FROM pg_temp.emulator_log() WHERE kind = 'api' AND status = 200),
          101::bigint, 'every customer got its answer, retries reusing their MS-RequestId');
SELECT pg_temp.emulator('config?latency_ms=0&throttle_inflight=0');

-- Retries and the token refresh work per request inside a batch.
SELECT pg_temp.emulator('reset');
SELECT is((SELECT count(*) FROM pc_qualifications(ARRAY['33333333-0000-0000-0000-000000000001',
                                                        '33333333-0000-0000-0000-000000000002',
                                                        '33333333-0000-0000-0000-000000000008']::uuid[]
                                                  || pg_temp.tenants(20))), 23::bigint,
          'a batch with a revoked token and three flaky customers returns every row');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token'), 1::bigint,
          'one new token for the whole batch');

SELECT * FROM finish();
