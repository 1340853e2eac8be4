-- pc_create_qualification(tenant, qualification, education_segment,
-- website, validation_code): sets a customer's qualification at Microsoft.
-- That cannot be undone, so pcqual checks everything it can before it
-- sends anything, and needs App+User credentials, as Partner Center does
-- for writes.  What each qualification takes:
--   Education                 education_segment K12 or HigherEducation,
--                             optionally website
--   GovernmentCommunityCloud  validation_code, from pc_validation_codes()
--   StateOwnedEntity          nothing else
-- Names match ignoring case and are sent in Partner Center's spelling.
--
-- The customers 77777777-0000-0000-0000-0000000000NN are not fixtures of
-- the emulator: it remembers what is created for them (until
-- POST /_emulator/reset, done here first, so the suite can run again).
SELECT emulator_post('reset');
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- ---- Refused before any request (no credentials needed to see these) -----
-- NULL tenant or qualification: 22004.  (The function is not STRICT: a
-- write never skips a customer silently.)
SELECT * FROM pc_create_qualification(NULL, 'Education', 'K12');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', NULL);
-- An unknown qualification, or one that exists but cannot be set: 22023,
-- with a HINT listing what can be set.
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Educaton');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Nonprofit');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'none');
-- Education needs a valid segment and takes no validation code.
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Education');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Education',
    education_segment => 'University');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Education',
    education_segment => 'K12', validation_code => '12345');
-- GovernmentCommunityCloud needs a validation code and takes nothing else.
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'GovernmentCommunityCloud');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'GovernmentCommunityCloud', validation_code => '');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'GovernmentCommunityCloud', education_segment => 'K12', validation_code => '12345');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'GovernmentCommunityCloud', website => 'https://contoso.gov', validation_code => '12345');
-- StateOwnedEntity takes nothing else.
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'StateOwnedEntity', education_segment => 'K12');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'StateOwnedEntity', website => 'https://contoso.gov');
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
    'StateOwnedEntity', validation_code => '12345');

-- ---- Credentials ----------------------------------------------------------
-- This database's App-only credentials (sql/setup.sql) cannot write: 28000,
-- and nothing is sent.
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Education', 'K12');
\echo :LAST_ERROR_SQLSTATE
-- Nor can an externally managed token.
BEGIN;
SET LOCAL pcqual.access_token_file = '/tmp/pcqual-test/secrets/access_token';
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Education', 'K12');
ROLLBACK;
SELECT count(*) AS posts_sent
FROM json_array_elements(emulator_get('requests?format=json&kind=api')) r
WHERE r->>'method' = 'POST';

-- App+User: a refresh token from an MFA sign-in, in a private file.  pcqual
-- exchanges it for an access token and writes the rotated refresh token
-- Azure AD answers with back to the file.  This suite's own copy of the
-- token, in /tmp/pcqual-regress (COPY ... PROGRAM runs as the server's
-- operating system user; umask 077 makes the file mode 600).
CREATE TEMP TABLE shell (line text);
COPY shell FROM PROGRAM 'rm -rf /tmp/pcqual-regress && umask 077 && mkdir /tmp/pcqual-regress';
COPY (SELECT 'pcqual-test-refresh') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/refresh_token';
SET pcqual.refresh_token_file = '/tmp/pcqual-regress/refresh_token';

-- ---- Creates ----------------------------------------------------------------
-- The service answers with the new qualification, usually InReview, dated
-- now (shown as "dated").
SELECT qualification, vetting_status, vetting_reason, vetting_created_date IS NOT NULL AS dated
FROM pc_create_qualification('77777777-0000-0000-0000-000000000001', 'Education', 'K12',
                             website => 'https://contoso.example.edu');
-- Names in any case: sent as Education and HigherEducation.
SELECT qualification, vetting_status, vetting_created_date IS NOT NULL AS dated
FROM pc_create_qualification('77777777-0000-0000-0000-000000000002', 'education', 'highereducation');
-- GovernmentCommunityCloud with one of the partner's validation codes; each
-- create uses up one of the code's remaining creates.
SELECT validation_id, organization_name, max_creates, remaining_creates
FROM pc_validation_codes() ORDER BY validation_id;
SELECT qualification, vetting_status, vetting_created_date IS NOT NULL AS dated
FROM pc_create_qualification('77777777-0000-0000-0000-000000000003',
                             'governmentcommunitycloud', validation_code => '12345');
SELECT validation_id, remaining_creates FROM pc_validation_codes() WHERE validation_id = '12345';
-- StateOwnedEntity: no vetting.
SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000004', 'STATEOWNEDENTITY');
-- Created qualifications are then read like any other.
SELECT customer_tenant_id, qualification, vetting_status
FROM pc_qualifications(ARRAY['77777777-0000-0000-0000-000000000001',
                             '77777777-0000-0000-0000-000000000002',
                             '77777777-0000-0000-0000-000000000003',
                             '77777777-0000-0000-0000-000000000004']::uuid[])
ORDER BY 1, 2;
-- Some services answer a create with the customer's whole list
-- ({"qualifications": [...]}, as the emulator does for aaaaaaaa-...
-- tenants): pcqual returns what the service answered.
SELECT qualification, vetting_status
FROM pc_create_qualification('aaaaaaaa-0000-0000-0000-000000000001', 'StateOwnedEntity');
SELECT qualification, vetting_status
FROM pc_create_qualification('aaaaaaaa-0000-0000-0000-000000000001', 'Education', 'K12')
ORDER BY 1;

-- What pcqual sent: one JSON POST per create, with only the fields given,
-- in Partner Center's spelling.
SELECT r->>'tenant' AS tenant, r->>'content_type' AS content_type, r->>'body' AS body,
       r->>'status' AS status
FROM json_array_elements(emulator_get('requests?format=json&kind=api')) r
WHERE r->>'method' = 'POST'
ORDER BY (r->>'seq')::int;

-- ---- Refused by the service -----------------------------------------------
-- error_of() (sql/setup.sql) shows these errors with the random request id
-- masked.
\pset format unaligned
\pset tuples_only on
-- A customer cannot hold a qualification twice, nor Education with
-- GovernmentCommunityCloud: 409, SQLSTATE 23505 (unique_violation).
SELECT error_of($$SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
                                                       'Education', 'K12')$$);
SELECT error_of($$SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000001',
                                                       'GovernmentCommunityCloud',
                                                       validation_code => '12345')$$);
-- The service checks the validation code: 67890 has no creates left, 99999
-- does not exist (400: 22023).
SELECT error_of($$SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000005',
                                                       'GovernmentCommunityCloud',
                                                       validation_code => '67890')$$);
SELECT error_of($$SELECT * FROM pc_create_qualification('77777777-0000-0000-0000-000000000005',
                                                       'GovernmentCommunityCloud',
                                                       validation_code => '99999')$$);
-- Fault tenants answer POSTs as they answer GETs: ...0404 404 Tenant not
-- found (P0002), ...0302 a redirect, never followed (58000).
SET pcqual.max_retries = 0;
SELECT error_of($$SELECT * FROM pc_create_qualification('22222222-0000-0000-0000-000000000404',
                                                       'StateOwnedEntity')$$);
SELECT error_of($$SELECT * FROM pc_create_qualification('22222222-0000-0000-0000-000000000302',
                                                       'StateOwnedEntity')$$);
RESET pcqual.max_retries;
\pset format aligned
\pset tuples_only off

-- The refresh token file now holds the token Azure AD rotated to, still
-- mode 600.
SELECT pg_read_file('/tmp/pcqual-regress/refresh_token') LIKE 'pcqual-test-refresh-rot-%'
       AS rotated;
COPY shell FROM PROGRAM 'stat -c "%a %n" /tmp/pcqual-regress/refresh_token';
SELECT * FROM shell;

RESET pcqual.refresh_token_file;
COPY shell FROM PROGRAM 'rm -rf /tmp/pcqual-regress';
