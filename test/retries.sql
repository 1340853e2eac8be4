-- Retries: Retry-After, exponential backoff with full jitter, the same
-- MS-RequestId on every attempt, and waits that cancel and statement_timeout
-- end at once.  The emulator's customers 33333333-... fail in set ways.
\ir helpers.inc
SELECT plan(22);

CREATE FUNCTION pg_temp.attempts(t text) RETURNS TABLE (status int, request_id text) LANGUAGE sql AS $$
    SELECT status, request_id FROM pg_temp.emulator_log() WHERE kind = 'api' AND tenant = t ORDER BY seq
$$;

-- 429 with Retry-After: 1, then 200
SELECT pg_temp.tick('429');
SELECT is((SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000001')), 1::bigint,
          'a 429-then-200 customer succeeds');
SELECT ok(pg_temp.elapsed('429') BETWEEN interval '0.9 s' AND interval '2.5 s',
          'after about the Retry-After (1 s)');
SELECT results_eq($$SELECT status FROM pg_temp.attempts('33333333-0000-0000-0000-000000000001')$$,
                  $$VALUES (429), (200)$$, 'the emulator saw 429 then 200');
SELECT is((SELECT count(DISTINCT request_id) FROM pg_temp.attempts('33333333-0000-0000-0000-000000000001')), 1::bigint,
          'both attempts carry the same MS-RequestId');

-- 500 then 200
SELECT is((SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000002')), 1::bigint,
          'a 500-then-200 customer succeeds');
SELECT results_eq($$SELECT status, count(*) OVER (), count(*) OVER (PARTITION BY request_id)
                    FROM pg_temp.attempts('33333333-0000-0000-0000-000000000002')$$,
                  $$VALUES (500, 2::bigint, 2::bigint), (200, 2::bigint, 2::bigint)$$,
                  'the emulator saw the same MS-RequestId twice');

-- 429 without Retry-After backs off; an HTTP-date Retry-After is honoured;
-- a gateway's HTML 502 is retried.
SELECT is((SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000005')), 1::bigint,
          'a 429 without Retry-After is retried after a backoff');
SELECT is((SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000006')), 1::bigint,
          'a Retry-After given as an HTTP date is honoured');
SELECT is((SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000008')), 1::bigint,
          'a 502 from a gateway is retried');

-- Always 503: exactly 1 + max_retries attempts, and the ERROR says so.
SET pcqual.max_retries = 2;
SELECT pg_temp.tick('503');
CREATE TEMP TABLE failed AS
    SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('33333333-0000-0000-0000-000000000003')$$);
SELECT is((SELECT count(*) FROM pg_temp.attempts('33333333-0000-0000-0000-000000000003')), 3::bigint,
          'an always-503 customer is tried 1 + max_retries times');
SELECT results_eq($$SELECT state, message, substring(detail FROM '^Tried \d+ times\. MS-CorrelationId: ') IS NOT NULL FROM failed$$,
    $$VALUES ('58000', 'Partner Center answered HTTP 503 for customer 33333333-0000-0000-0000-000000000003', true)$$,
    'the ERROR names the last status, its DETAIL the attempts: Tried 3 times. MS-CorrelationId: ...');
SELECT is((SELECT substring(detail FROM '^Tried (\d+) times') FROM failed), '3', 'Tried 3 times');
SELECT ok(pg_temp.elapsed('503') < interval '2 s',
          'backoff with full jitter: at most 0.5 s + 1 s of waiting for two retries');
RESET pcqual.max_retries;

-- A Retry-After beyond pcqual.max_retry_wait fails at once, saying how long.
SELECT pg_temp.tick('cap');
SELECT results_eq(
    $$SELECT state, detail IS NOT NULL FROM pg_temp.error_of($q$SELECT * FROM pc_qualifications('33333333-0000-0000-0000-000000000004')$q$)$$,
    $$VALUES ('58000', true)$$, 'Retry-After: 3600 is beyond the 60 s cap: 58000');
SELECT ok(pg_temp.elapsed('cap') < interval '0.5 s', 'and it fails fast');
SELECT is((SELECT count(*) FROM pg_temp.attempts('33333333-0000-0000-0000-000000000004')), 1::bigint,
          'without waiting or retrying');
-- That 429 still paused the partner for every session, for as long as this
-- session would wait (max_retry_wait): forget it rather than wait.
SELECT pc_governor_reset();

-- Never retried: 400, 404, 409.  (The reset revokes the session's token;
-- pc_disconnect() forgets it, so that the first call gets a new token
-- rather than a 401 and a second attempt.)
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
CREATE TEMP TABLE final AS
SELECT e.* FROM unnest(ARRAY['22222222-0000-0000-0000-000000000400', '22222222-0000-0000-0000-000000000404',
                             '22222222-0000-0000-0000-000000000409']) t,
                pg_temp.error_of(format('SELECT * FROM pc_qualifications(%L)', t)) e;
SELECT results_eq($$SELECT status, count(*) FROM pg_temp.emulator_log() WHERE kind = 'api' AND status <> 401 GROUP BY status ORDER BY status$$,
                  $$VALUES (400, 1::bigint), (404, 1::bigint), (409, 1::bigint)$$,
                  '400, 404 and 409 are sent once');
SELECT is((SELECT count(*) FROM final WHERE detail LIKE 'MS-CorrelationId: %' AND detail NOT LIKE '%Tried%'), 3::bigint,
          'their DETAIL gives the ids without a count of attempts');

-- A wait ends at once on cancel or statement_timeout: a retry never
-- outlives the statement.
SET pcqual.max_retry_wait = '2h';
SET statement_timeout = '300ms';
SELECT pg_temp.tick('cancel');
CREATE TEMP TABLE canceled AS
    SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('33333333-0000-0000-0000-000000000004')$$);
RESET statement_timeout;
SELECT is((SELECT state FROM canceled), '57014', 'statement_timeout ends a 3600 s Retry-After wait');
SELECT ok(pg_temp.elapsed('cancel') < interval '1 s', 'within a second');
RESET pcqual.max_retry_wait;
-- The partner is paused for an hour now: a call fails at once rather than
-- wait longer than max_retry_wait, until a superuser ends the pause.
SELECT is((SELECT message FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$)) LIKE
          'Partner Center is throttling this partner until %', true,
          'a pause longer than max_retry_wait fails a call at once');
SELECT pc_governor_reset();
SELECT is((SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')), 1::bigint,
          'the session is usable after a canceled wait');

SELECT * FROM finish();
