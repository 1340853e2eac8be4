-- A sync keeps what it fetched: an access token that cannot be had (Azure
-- AD down, here its 503) is the failure of the customers that waited for
-- it, not of the call.  pc_fetch_qualifications and pc_sync_qualifications
-- record it per customer and keep the customers already answered;
-- on_error => 'warning' returns them; on_error => 'error' raises.  And an
-- Azure AD outage is 58000, an outage, not 28000 "refused".
\ir helpers.inc
\set QUIET 1
SELECT plan(17);

SET pcqual.max_retries = 0;            -- Azure AD's 503 is final at once
SET client_min_messages = error;       -- (the token failure is also a WARNING)

\set c1   'f0000000-0000-4000-8000-000000000001'
\set c2   'f0000000-0000-4000-8000-000000000002'
-- answers 401 to every token: its request is sent again with a new one
\set c401 '22222222-0000-0000-0000-000000000401'

CREATE FUNCTION pg_temp.customers() RETURNS void LANGUAGE sql AS $f$
    SELECT pg_temp.emulator_customer('f0000000-0000-4000-8000-000000000001', $${"qualifications": [
        {"qualification": "Education", "vettingStatus": "Approved", "vettingCreatedDate": "2024-01-01T00:00:00Z"}]}$$);
    SELECT pg_temp.emulator_customer('f0000000-0000-4000-8000-000000000002', $${"qualifications": [
        {"qualification": "StateOwnedEntity"}]}$$);
$f$;
CREATE FUNCTION pg_temp.failures_of(t uuid) RETURNS integer LANGUAGE sql AS $$
    SELECT coalesce((SELECT consecutive_failures FROM pc_customer_sync WHERE customer_tenant_id = t), 0)
$$;
-- A token in the cluster's cache, then Azure AD goes down: the next 401
-- needs a token that cannot be had.  (That 401 drops the cached token, so
-- each case below starts with this.)
CREATE FUNCTION pg_temp.cached_token_then_outage() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_temp.emulator('config?token_fault=off');
    PERFORM count(*) FROM pc_qualifications('f0000000-0000-4000-8000-000000000001'::uuid);
    PERFORM pg_temp.emulator('config?token_fault=unavailable');
END
$$;
\set outage '''Azure AD answered HTTP 503 for a token request: AADSTS90033: A transient error has occurred. Please try again (code temporarily_unavailable)'''

------------------------------------------------------------------------
-- An outage of Azure AD is 58000 with Azure AD's own words, not 28000.
SELECT pg_temp.emulator('reset');
SELECT pg_temp.customers();
SELECT pg_temp.emulator('config?token_fault=unavailable');
SELECT results_eq($$SELECT state, message FROM pg_temp.error_of('SELECT * FROM pc_qualifications(''f0000000-0000-4000-8000-000000000001'')')$$,
    format('VALUES (%L, %s)', '58000', :'outage'),
    'an Azure AD 503 is 58000 "Azure AD answered HTTP 503 for a token request", not 28000 "refused"');

------------------------------------------------------------------------
-- Mid-batch: the token the batch began with is refused for one customer
-- (401); the new token it needs for that customer cannot be had.
SELECT pg_temp.cached_token_then_outage();
SELECT coalesce(max(seq), 0) AS mark FROM pg_temp.emulator_log() \gset
CREATE TEMP TABLE fetched AS
    SELECT customer_tenant_id::text AS tenant, succeeded, qualification, error_sqlstate, error_message
    FROM pc_fetch_qualifications(ARRAY[:'c1', :'c2', :'c401']::uuid[]);
SELECT set_eq($$SELECT tenant, succeeded, qualification, error_sqlstate, error_message FROM fetched$$,
    format($$VALUES (%L, true, 'Education', NULL, NULL), (%L, true, 'StateOwnedEntity', NULL, NULL),
                    (%L, false, NULL, '58000', %s)$$, :'c1', :'c2', :'c401', :'outage'),
    'pc_fetch_qualifications keeps the two answers and gives the third customer the token''s failure');
SELECT results_eq(format($$SELECT kind, status FROM pg_temp.emulator_log()
                           WHERE seq > %s AND (kind = 'token' OR tenant = %L) ORDER BY seq$$, :mark, :'c401'),
    $$VALUES ('api', 401), ('token', 503)$$,
    'the 401 asked for a new token, Azure AD answered 503, nothing more was sent for that customer');

SELECT pg_temp.cached_token_then_outage();
CREATE TEMP TABLE before_sync AS SELECT pg_temp.failures_of(:'c1') AS c1, pg_temp.failures_of(:'c401') AS c401;
CREATE TEMP TABLE mid_sync AS SELECT * FROM pc_sync_qualifications(ARRAY[:'c1', :'c2', :'c401']::uuid[]);
SELECT results_eq($$SELECT customers, succeeded, failed FROM mid_sync$$, $$VALUES (3, 2, 1)$$,
    'pc_sync_qualifications: two customers synced, one failed, no ERROR');
SELECT results_eq(format($$SELECT qualification, vetting_status FROM pc_qualification_state
                           WHERE customer_tenant_id IN (%L, %L) ORDER BY qualification$$, :'c1', :'c2'),
    $$VALUES ('Education', 'Approved'), ('StateOwnedEntity', NULL)$$,
    'the answered customers'' qualifications are stored');
SELECT results_eq(format($$SELECT consecutive_failures - (SELECT c401 FROM before_sync), last_error_sqlstate, last_error_message
                           FROM pc_customer_sync WHERE customer_tenant_id = %L$$, :'c401'),
    format('VALUES (1, %L, %s)', '58000', :'outage'),
    'the customer without a token counts a failure, with the token''s SQLSTATE and message');
SELECT is(pg_temp.failures_of(:'c1'), 0, 'an answered customer counts none');

SELECT pg_temp.cached_token_then_outage();
SELECT results_eq($$SELECT state FROM pg_temp.error_of(format('SELECT * FROM pc_qualifications(%L::uuid[], on_error => ''warning'')',
                                                              ARRAY['f0000000-0000-4000-8000-000000000001', '22222222-0000-0000-0000-000000000401']))$$,
    $$VALUES (NULL::text)$$, 'on_error => ''warning'': no ERROR');
SELECT pg_temp.cached_token_then_outage();
SELECT is((SELECT count(*) FROM pc_qualifications(ARRAY[:'c1', :'c401']::uuid[], on_error => 'warning')),
          1::bigint, 'on_error => ''warning'' returns the answered customer''s row');
SELECT pg_temp.cached_token_then_outage();
SELECT results_eq($$SELECT state, message FROM pg_temp.error_of(format('SELECT * FROM pc_qualifications(%L::uuid[], on_error => ''error'')',
                                                                      ARRAY['f0000000-0000-4000-8000-000000000001', '22222222-0000-0000-0000-000000000401']))$$,
    format('VALUES (%L, %s)', '58000', :'outage'),
    'on_error => ''error'' still raises the token''s error');

------------------------------------------------------------------------
-- At the start: no token at all.  Every customer fails with its error,
-- and a sync counts it.  (The last 401 dropped the cached token.)
CREATE TEMP TABLE start_fetched AS
    SELECT customer_tenant_id::text AS tenant, succeeded, error_sqlstate FROM pc_fetch_qualifications(ARRAY[:'c1', :'c2']::uuid[]);
SELECT set_eq($$SELECT * FROM start_fetched$$,
    format($$VALUES (%L, false, '58000'), (%L, false, '58000')$$, :'c1', :'c2'),
    'no token at the start: each customer''s outcome is the token''s failure');
CREATE TEMP TABLE start_sync AS SELECT * FROM pc_sync_qualifications(ARRAY[:'c1', :'c2']::uuid[]);
SELECT results_eq($$SELECT customers, succeeded, failed FROM start_sync$$, $$VALUES (2, 0, 2)$$,
    'a sync without a token: two failures, no ERROR');
SELECT is(pg_temp.failures_of(:'c1'), 1, 'pc_customer_sync counts the failure');
SELECT is((SELECT count(*) FROM pc_qualification_state WHERE customer_tenant_id = :'c1'), 1::bigint,
          'and the customer keeps its stored qualification');
SELECT is((SELECT count(*) FROM pc_qualifications(ARRAY[:'c1', :'c2']::uuid[], on_error => 'warning')), 0::bigint,
          'on_error => ''warning'' without a token: no rows, no ERROR');

-- A cancel while the token is asked for is not a customer's failure.
SELECT pg_temp.emulator('config?token_fault=off&token_latency_ms=2000');
SET statement_timeout = '300ms';
SELECT is((SELECT state FROM pg_temp.error_of(format('SELECT * FROM pc_fetch_qualifications(%L::uuid[])',
                                                     ARRAY['f0000000-0000-4000-8000-000000000001']))),
          '57014', 'statement_timeout while waiting for the token cancels pc_fetch_qualifications');
RESET statement_timeout;

-- Once Azure AD is back, the sync catches up.
SELECT pg_temp.emulator('config?token_latency_ms=0');
SELECT results_eq($$SELECT customers, succeeded, failed FROM pc_sync_qualifications(ARRAY['f0000000-0000-4000-8000-000000000001', 'f0000000-0000-4000-8000-000000000002']::uuid[])$$,
    $$VALUES (2, 2, 0)$$, 'with Azure AD back the next sync succeeds');

-- What this file synced goes, so that test/sync.sql counts only its own.
\set QUIET 1
DELETE FROM pc_qualification_changes WHERE customer_tenant_id IN (:'c1', :'c2', :'c401');
DELETE FROM pc_qualification_state WHERE customer_tenant_id IN (:'c1', :'c2', :'c401');
DELETE FROM pc_customer_sync WHERE customer_tenant_id IN (:'c1', :'c2', :'c401');
SELECT pg_temp.emulator('reset');
\set QUIET 0
SELECT * FROM finish();
