-- The rest of the qualification API: a customer's account validation
-- status (App+User only, refused before any request otherwise) and the
-- GCC validation code linked to it; MS-Contract-Version on every Partner
-- Center request; and exactly-once creates with a caller's request_id.
\ir helpers.inc
\set QUIET 1
SELECT plan(17);
SET pcqual.max_retries = 0;
SELECT pg_temp.put_file(pg_temp.tap_dir('refresh_token'), 'pcqual-test-refresh');
SELECT pg_temp.tap_dir('refresh_token') AS refresh_token_file \gset
\set QUIET 0

SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();

------------------------------------------------------------------------
-- pc_validation_status(tenant): App+User only.
SELECT results_eq($$SELECT state, message, hint ~ 'pcqual\.refresh_token_file'
                    FROM pg_temp.error_under('{}', 'SELECT * FROM pc_validation_status(''11111111-0000-0000-0000-000000000010'')')$$,
    $$VALUES ('28000', 'the account validation status needs App+User credentials', true)$$,
    'App-only credentials: 28000, the HINT names pcqual.refresh_token_file');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 0::bigint, 'and nothing was sent, not even a token request');

SET pcqual.refresh_token_file = :'refresh_token_file';
SELECT results_eq($$SELECT * FROM pc_validation_status('11111111-0000-0000-0000-000000000010')$$,
    $$VALUES ('account', 'Allowed', '2024-03-01T10:00:00Z'::timestamptz)$$,
    'App+User: type, status and when it last changed');
SELECT results_eq($$SELECT status FROM pc_validation_status('11111111-0000-0000-0000-000000000011')
                    UNION ALL SELECT status FROM pc_validation_status('11111111-0000-0000-0000-000000000012')
                    UNION ALL SELECT status FROM pc_validation_status('11111111-0000-0000-0000-000000000013')$$,
    $$VALUES ('UnderReview'), ('NotAllowed'), ('Unknown')$$, 'the other statuses');
SELECT results_eq($$SELECT path, query FROM pg_temp.emulator_log() WHERE kind = 'api' ORDER BY seq LIMIT 1$$,
    $$VALUES ('/v1/customers/11111111-0000-0000-0000-000000000010/validationStatus?type=account', 'type=account')$$,
    'GET /v1/customers/{tenant}/validationStatus?type=account');
SELECT results_eq($$SELECT state, message FROM pg_temp.error_of('SELECT * FROM pc_validation_status(''22222222-0000-0000-0000-000000000404'')')$$,
    $$VALUES ('P0002', 'Partner Center answered HTTP 404 for the account validation status of customer 22222222-0000-0000-0000-000000000404: Tenant not found (code 60003)')$$,
    'a 404: P0002, naming what was asked');
SELECT is((SELECT state FROM pg_temp.error_of('SELECT * FROM pc_validation_status(''22222222-0000-0000-0000-000000000602'')')),
          '22032', 'an answer without "status": 22032');
SELECT is((SELECT state FROM pg_temp.error_of('SELECT * FROM pc_validation_status(NULL)')),
          '22004', 'a NULL tenant is refused');
RESET pcqual.refresh_token_file;

------------------------------------------------------------------------
-- pc_customer_validations(tenant): App-only is enough.
SELECT results_eq($$SELECT * FROM pc_customer_validations('c0dec0de-0000-4000-8000-000000000001')$$,
    $$SELECT validation_id, organization_name, partner_id FROM pc_validation_codes() WHERE validation_id = '12345'$$,
    'the validation code linked to a customer, as pc_validation_codes() lists it');
SELECT is((SELECT count(*) FROM pc_customer_validations('11111111-0000-0000-0000-000000000001')), 0::bigint,
          'none linked: no row');
SELECT is((SELECT state FROM pg_temp.error_of('SELECT * FROM pc_customer_validations(''22222222-0000-0000-0000-000000000503'')')),
          '58000', 'a 503: 58000');

------------------------------------------------------------------------
-- MS-Contract-Version: v1 on every Partner Center request, not to Azure AD.
SELECT results_eq($$SELECT kind, contract_version FROM pg_temp.emulator_log() GROUP BY 1, 2 ORDER BY 1$$,
    $$VALUES ('api', 'v1'), ('token', NULL)$$,
    'MS-Contract-Version: v1 on each API request, none on token requests');
SELECT pg_temp.emulator('config?require_contract_version=on');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'a Partner Center that requires it answers');
SELECT pg_temp.emulator('config?require_contract_version=off');

------------------------------------------------------------------------
-- Exactly-once creates: the first create reached Partner Center but its
-- answer came too late (a timeout); run again with the same request_id it
-- gets the first one's answer, not a second create (nor a 409).
SET pcqual.refresh_token_file = :'refresh_token_file';
SELECT pg_temp.emulator('config?latency_ms=700');
SET pcqual.timeout = '300ms';
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_create_qualification('d1000000-0000-4000-8000-000000000001',
                                                 'StateOwnedEntity', request_id => 'c7a1e5d0-0000-4000-8000-000000000001')$$)),
          '58000', 'the first create times out (its POST reached Partner Center)');
RESET pcqual.timeout;
SELECT pg_sleep(1);                    -- the emulator has made the create
SELECT pg_temp.emulator('config?latency_ms=0');
SELECT results_eq($$SELECT qualification FROM pc_create_qualification('d1000000-0000-4000-8000-000000000001',
                      'StateOwnedEntity', request_id => 'c7a1e5d0-0000-4000-8000-000000000001')$$,
    $$VALUES ('StateOwnedEntity')$$,
    'run again with the same request_id: the first create''s answer');
SELECT results_eq($$SELECT request_id, count(*) FROM pg_temp.emulator_log() WHERE kind = 'api' AND method = 'POST' GROUP BY 1$$,
    $$VALUES ('c7a1e5d0-0000-4000-8000-000000000001', 2::bigint)$$,
    'both POSTs carried the caller''s key as MS-RequestId');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM pc_create_qualification('d1000000-0000-4000-8000-000000000001',
                                                 'StateOwnedEntity')$$)),
          '23505', 'without the key, a rerun is a second create: 409, the customer holds it already');
RESET pcqual.refresh_token_file;

SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT * FROM finish();
