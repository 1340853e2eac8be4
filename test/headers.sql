-- What pcqual sends with every request.
\ir helpers.inc
BEGIN;
SELECT plan(16);

SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
CREATE TEMP TABLE api AS SELECT * FROM pg_temp.emulator_log() WHERE kind = 'api';

SELECT is((SELECT count(*) FROM api), 2::bigint, 'one request per call');
SELECT ok((SELECT bool_and(method = 'GET' AND path LIKE '/v1/customers/%/qualifications') FROM api),
          'GET {base}/v1/customers/{tenant}/qualifications');
SELECT ok((SELECT bool_and(auth LIKE 'emu-app-%') FROM api), 'Authorization: Bearer with the App-only token');
SELECT ok((SELECT bool_and(accept = 'application/json') FROM api), 'Accept: application/json');
SELECT ok((SELECT bool_and(user_agent = 'pcqual/' || (SELECT extversion FROM pg_extension WHERE extname = 'pcqual')) FROM api),
          'User-Agent: pcqual/<version>');
SELECT ok((SELECT bool_and(application = 'pcqual') FROM api), 'MS-PartnerCenter-Application defaults to pcqual');
SELECT ok((SELECT bool_and(request_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$') FROM api),
          'MS-RequestId is a version 4 GUID');
SELECT is((SELECT count(DISTINCT request_id) FROM api), 2::bigint, 'each logical request has its own MS-RequestId');
SELECT is((SELECT count(DISTINCT correlation_id) FROM api), 2::bigint, 'each statement has its own MS-CorrelationId');

-- one statement, several customers: one correlation id, several request ids
SELECT pg_temp.emulator('reset');
SELECT count(*) FROM (VALUES ('11111111-0000-0000-0000-000000000001'::uuid),
                             ('11111111-0000-0000-0000-000000000004'::uuid),
                             ('11111111-0000-0000-0000-000000000005'::uuid)) c(t)
CROSS JOIN LATERAL pc_qualifications(c.t);
SELECT results_eq(
    $$SELECT count(DISTINCT correlation_id), count(DISTINCT request_id) FROM pg_temp.emulator_log() WHERE kind = 'api'$$,
    $$VALUES (1::bigint, 3::bigint)$$,
    'a statement shares one MS-CorrelationId across its requests');

-- settings a caller may choose
SET pcqual.correlation_id = '7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745';
SET pcqual.application_name = 'contoso-crm-refresh';
SELECT pg_temp.emulator('reset');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT results_eq(
    $$SELECT DISTINCT correlation_id, application FROM pg_temp.emulator_log() WHERE kind = 'api'$$,
    $$VALUES ('7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745', 'contoso-crm-refresh')$$,
    'pcqual.correlation_id and pcqual.application_name are sent as set');
RESET pcqual.application_name;

-- an error carries the ids the service saw, so support can find the call
CREATE TEMP TABLE failure AS
    SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000404')$$);
SELECT ok((SELECT f.detail LIKE '%MS-CorrelationId: 7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745%'
                  AND f.detail LIKE '%MS-RequestId: ' || l.request_id || '%'
           FROM failure f, pg_temp.emulator_log() l
           WHERE l.tenant = '22222222-0000-0000-0000-000000000404'),
          'the DETAIL of an error names the MS-CorrelationId and MS-RequestId that were sent');
RESET pcqual.correlation_id;

-- the token request
SELECT pg_temp.emulator('revoke');
SELECT pg_temp.emulator('reset');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT results_eq(
    $$SELECT method, path, auth, content_type, body FROM pg_temp.emulator_log() WHERE kind = 'token'$$,
    $$VALUES ('POST', '/pcqual-test-partner.onmicrosoft.com/oauth2/token', 'client_credentials',
              'application/x-www-form-urlencoded', 'grant_type,client_id,client_secret,resource')$$,
    'App-only tokens come from {authority}/{partner_tenant}/oauth2/token: a form with grant_type=client_credentials');

-- Connections stay alive between calls.  The emulator counts the TCP
-- connections it accepted; each read of a counter costs one (curl's own), and
-- two reads come after the first count.
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
CREATE TEMP TABLE before AS
    SELECT pg_temp.emulator_stat('connections') AS connections,
           pg_temp.emulator_stat('api_requests') AS api_requests;
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000003');
SELECT is(pg_temp.emulator_stat('connections') - (SELECT connections FROM before), 2::bigint,
          'three calls reuse the connection the session already had open');
SELECT is(pg_temp.emulator_stat('api_requests') - (SELECT api_requests FROM before), 3::bigint,
          'the emulator saw the three calls');

-- a NULL tenant sends nothing
SELECT pg_temp.emulator('reset');
SELECT count(*) FROM pc_qualifications(NULL);
SELECT is(pg_temp.emulator_stat('api_requests'), 0::bigint, 'a NULL tenant sends no request');

SELECT * FROM finish();
ROLLBACK;
