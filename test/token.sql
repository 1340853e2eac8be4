-- Access tokens: cached per backend, refreshed after a 401, one per mode.
\ir helpers.inc
BEGIN;
SELECT plan(17);

-- A token is fetched once and reused.
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000003');
SELECT results_eq(
    $$SELECT kind, count(*) FROM pg_temp.emulator_log() GROUP BY kind ORDER BY kind$$,
    $$VALUES ('api', 3::bigint), ('token', 1::bigint)$$,
    'three calls, one token request');

-- The service revokes it: the 401 drops the cached token, a new one is
-- fetched and the same logical request is sent again, once.  (A reset of
-- the emulator would drop the cluster's token too: the log is read from a
-- mark instead.)
SELECT coalesce(max(seq), 0) AS mark FROM pg_temp.emulator_log() \gset
SELECT pg_temp.emulator('revoke');
SELECT is((SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')), 1::bigint,
          'a call whose cached token was revoked succeeds');
SELECT results_eq(
    format('SELECT kind, status FROM pg_temp.emulator_log() WHERE seq > %s', :mark),
    $$VALUES ('api', 401), ('token', 200), ('api', 200)$$,
    '401, new token, retry');
SELECT is((SELECT count(DISTINCT request_id) FROM pg_temp.emulator_log() WHERE kind = 'api' AND seq > :mark),
          1::bigint, 'the retry after a token refresh sends the same MS-RequestId');

-- A 401 that a fresh token does not cure is reported, not retried forever.
SELECT coalesce(max(seq), 0) AS mark FROM pg_temp.emulator_log() \gset
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000401')$$)),
          '28000', 'a persistent 401 is 28000');
SELECT results_eq(
    format('SELECT kind, status FROM pg_temp.emulator_log() WHERE seq > %s', :mark),
    $$VALUES ('api', 401), ('token', 200), ('api', 401)$$,
    'one refresh and one retry, no more');
SELECT coalesce(max(seq), 0) AS mark FROM pg_temp.emulator_log() \gset
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000401')$$)),
          '28000', 'again, with the token that refresh obtained');
SELECT results_eq(
    format('SELECT kind, status FROM pg_temp.emulator_log() WHERE seq > %s', :mark),
    $$VALUES ('api', 401), ('token', 200), ('api', 401)$$,
    'a cached token gets its one refresh each time');
SELECT pc_disconnect();
SELECT coalesce(max(seq), 0) AS mark FROM pg_temp.emulator_log() \gset
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000401')$$)),
          '28000', 'a 401 with a token just obtained is 28000');
SELECT results_eq(
    format('SELECT kind, status FROM pg_temp.emulator_log() WHERE seq > %s', :mark),
    $$VALUES ('token', 200), ('api', 401)$$,
    'a token Azure AD just issued is not renewed after a 401');

-- A token that expires within the 5-minute margin is not reused.
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?token_expires_in=240');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token' AND status = 200), 2::bigint,
          'a token valid for 4 minutes is fetched anew for each call');
SELECT pg_temp.emulator('reset');

-- Changing the credentials changes the token.  App+User takes its refresh
-- token from a file of this suite's own: every refresh rewrites it with the
-- token Azure AD rotated.
SELECT pg_temp.tap_dir('refresh_token') AS refresh_file,
       pg_temp.tap_dir('rejected_token') AS rejected_file \gset
SELECT pg_temp.put_file(:'refresh_file', 'pcqual-test-refresh');
SET pcqual.refresh_token_file = :'refresh_file';
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT results_eq(
    $$SELECT kind, auth LIKE 'emu-user-%' OR auth = 'refresh_token' FROM pg_temp.emulator_log()$$,
    $$VALUES ('token', true), ('api', true)$$,
    'App+User: grant_type=refresh_token, and its token is used');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token'), 1::bigint,
          'the App+User token is cached too');
RESET pcqual.refresh_token_file;
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT results_eq(
    $$SELECT kind, left(auth, 8) FROM pg_temp.emulator_log() ORDER BY seq DESC LIMIT 2$$,
    $$VALUES ('api', 'emu-app-'), ('token', 'client_c')$$,
    'back to App-only: the App+User token is not reused, an App-only one is fetched');

-- An externally managed token never calls the token endpoint.
SELECT pg_temp.emulator('reset');
SET pcqual.access_token_file = '/tmp/pcqual-test/secrets/access_token';
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT results_eq(
    $$SELECT kind, auth FROM pg_temp.emulator_log()$$,
    $$VALUES ('api', 'pcqual-static-token')$$,
    'the token in pcqual.access_token_file is sent as is');
SELECT pg_temp.put_file(:'rejected_file', 'a-token-the-service-rejects');
SET pcqual.access_token_file = :'rejected_file';
SELECT pg_temp.emulator('reset');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$)),
          '28000', 'a rejected external token is 28000');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 1::bigint,
          'a rejected external token just read is not retried: pcqual cannot renew it');
RESET pcqual.access_token_file;

SELECT * FROM finish();
ROLLBACK;
