-- A customer's validations, next to its qualifications:
--   pc_validation_status(tenant)     its account validation
--       (GET /v1/customers/{tenant}/validationStatus?type=account):
--       App+User only, refused before any request with other credentials
--   pc_customer_validations(tenant)  the GovernmentCommunityCloud
--       validation code linked to it (GET /v1/customers/{tenant}/validations)
--   pc_credential_status()           the credential in effect, never a secret
-- The emulator answers the account validation status by the tenant id's
-- last hex digit, and links code 12345 to the tenants starting c0dec0de.
SELECT emulator_post('reset');
SET timezone = 'UTC';
SET datestyle = 'ISO';
SET pcqual.max_retries = 0;

-- App-only (this database's settings): 28000, nothing sent.
SELECT * FROM pc_validation_status('11111111-0000-0000-0000-000000000010');
-- The linked code works with App-only credentials; none linked: no row.
SELECT * FROM pc_customer_validations('c0dec0de-0000-4000-8000-000000000001');
SELECT * FROM pc_customer_validations('11111111-0000-0000-0000-000000000001');

-- App+User: this suite's own copy of the refresh token, in a private file.
CREATE TEMP TABLE shell (line text);
COPY shell FROM PROGRAM 'rm -rf /tmp/pcqual-regress-validation && umask 077 && mkdir /tmp/pcqual-regress-validation';
COPY (SELECT 'pcqual-test-refresh') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress-validation/refresh_token';
SET pcqual.refresh_token_file = '/tmp/pcqual-regress-validation/refresh_token';
SELECT t.tenant, v.*
FROM (VALUES ('11111111-0000-0000-0000-000000000010'::uuid), ('11111111-0000-0000-0000-000000000011'),
             ('11111111-0000-0000-0000-000000000012'), ('11111111-0000-0000-0000-000000000013')) t(tenant),
     LATERAL pc_validation_status(t.tenant) v;
-- Failures are reported as for the other functions (the request ids in
-- DETAIL are new GUIDs each time: error_of() shows them as <guid>).
\pset format unaligned
\pset tuples_only on
SELECT error_of($$SELECT * FROM pc_validation_status('22222222-0000-0000-0000-000000000404')$$);
\pset format aligned
\pset tuples_only off
SELECT * FROM pc_validation_status(NULL);

-- The morning check (columns that do not change from run to run).
SELECT mode, settings, file_checks, refresh_token_days_left, token_mfa,
       last_token_outcome
FROM pc_credential_status(request_token => true);
RESET pcqual.refresh_token_file;
SELECT mode, settings, files, file_checks FROM pc_credential_status();
COPY shell FROM PROGRAM 'rm -rf /tmp/pcqual-regress-validation';
