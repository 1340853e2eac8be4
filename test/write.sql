-- pc_create_qualification(): the local checks that send nothing, App+User
-- only, the JSON body sent for each kind of qualification, the same
-- MS-RequestId on a retried create, 409 as unique_violation, and the
-- answers that are never retried.
\ir helpers.inc
\set QUIET 1
SELECT plan(89);

-- The API requests the emulator saw for one customer, in order.
CREATE FUNCTION pg_temp.posts(customer uuid) RETURNS SETOF emulator_requests
LANGUAGE sql AS $$
    SELECT * FROM pg_temp.emulator_log() r
    WHERE r.kind = 'api' AND r.method = 'POST' AND lower(r.tenant) = posts.customer::text
    ORDER BY r.seq
$$;
CREATE FUNCTION pg_temp.log_count() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM pg_temp.emulator_log()
$$;

-- App+User credentials: a refresh token file of this suite's own, since
-- every refresh rotates (rewrites) it.
SELECT pg_temp.put_file(pg_temp.tap_dir('refresh_token'), 'pcqual-test-refresh');
SELECT pg_temp.tap_dir('refresh_token') AS refresh_token_file \gset

------------------------------------------------------------------------
-- Refused locally: nothing at all is sent, not even a token request.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();

-- App-only (the database's client_secret_file): refused before any request.
CREATE TEMP TABLE refused AS SELECT * FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'StateOwnedEntity')$$);
SELECT is((SELECT state FROM refused), '28000', 'App-only credentials: invalid_authorization_specification');
SELECT is((SELECT message FROM refused), 'creating a qualification needs App+User credentials',
          'the message says App+User is needed');
SELECT matches((SELECT hint FROM refused), 'pcqual\.refresh_token_file', 'the HINT names pcqual.refresh_token_file');

-- An externally managed token is refused too, even with a refresh token
-- file set (pcqual.access_token_file wins).
SET pcqual.refresh_token_file = :'refresh_token_file';
SET pcqual.access_token_file = '/tmp/pcqual-test/secrets/access_token';
SELECT is((SELECT state FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'StateOwnedEntity')$$)),
          '28000', 'a static access token (pcqual.access_token_file) is refused locally');
RESET pcqual.access_token_file;

-- Arguments that are checked before anything is sent (App+User is set now).
CREATE TEMP TABLE bad_args (n serial, label text, query text, want_state text, want_message text);
INSERT INTO bad_args (label, query, want_state, want_message) VALUES
 ('NULL tenant', $$SELECT * FROM pc_create_qualification(NULL, 'Education', 'K12')$$,
  '22004', '^tenant must not be NULL$'),
 ('NULL qualification', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', NULL)$$,
  '22004', '^qualification must not be NULL$'),
 ('Nonprofit cannot be set', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'nonprofit')$$,
  '22023', '^qualification "Nonprofit" cannot be set$'),
 ('unknown qualification', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'Educaton', 'K12')$$,
  '22023', '^invalid qualification "Educaton"$'),
 ('Education without a segment', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'Education')$$,
  '22023', 'Education qualification needs an education_segment$'),
 ('Education with an unknown segment', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'Education', 'Primary')$$,
  '22023', '^invalid education_segment "Primary"$'),
 ('Education with a validation code', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'Education', 'K12', validation_code => '12345')$$,
  '22023', 'Education qualification takes no validation_code$'),
 ('GCC without a validation code', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'GovernmentCommunityCloud')$$,
  '22023', 'GovernmentCommunityCloud qualification needs a validation_code$'),
 ('GCC with an empty validation code', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'GovernmentCommunityCloud', validation_code => '')$$,
  '22023', 'GovernmentCommunityCloud qualification needs a validation_code$'),
 ('GCC with a segment', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'GovernmentCommunityCloud', 'K12', validation_code => '12345')$$,
  '22023', 'GovernmentCommunityCloud qualification takes no education_segment$'),
 ('GCC with a website', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'GovernmentCommunityCloud', website => 'https://example.gov', validation_code => '12345')$$,
  '22023', 'GovernmentCommunityCloud qualification takes no website$'),
 ('StateOwnedEntity with a website', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'StateOwnedEntity', website => 'https://example.org')$$,
  '22023', 'StateOwnedEntity qualification takes no website$'),
 ('StateOwnedEntity with a validation code', $$SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'StateOwnedEntity', validation_code => '12345')$$,
  '22023', 'StateOwnedEntity qualification takes no validation_code$');
CREATE TEMP TABLE bad_results AS
    SELECT b.*, e.state, e.message FROM bad_args b, pg_temp.error_under('{}', b.query) e;
SELECT is(state, want_state, label || ': SQLSTATE ' || want_state) FROM bad_results ORDER BY n;
SELECT matches(message, want_message, label || ': message') FROM bad_results ORDER BY n;

SELECT is(pg_temp.log_count(), 0::bigint,
          'no request at all (neither a token nor a POST) for a locally refused call');

------------------------------------------------------------------------
-- The body of each kind: Content-Type application/json, only the fields
-- that are set, never null, in Partner Center's spelling whatever the case
-- of the arguments.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
CREATE TEMP TABLE created (label text, tenant uuid, want_body jsonb, qualification text,
                           vetting_status text, vetting_reason text, vetting_created_date timestamptz);
INSERT INTO created SELECT 'Education K12', 'd0000000-0000-4000-8000-000000000001',
    '{"qualification": "Education", "educationSegment": "K12"}', *
    FROM pc_create_qualification('d0000000-0000-4000-8000-000000000001', 'education', 'k12');
INSERT INTO created SELECT 'Education HigherEducation with a website', 'd0000000-0000-4000-8000-000000000002',
    '{"qualification": "Education", "educationSegment": "HigherEducation", "website": "https://www.contoso.edu/?a=1&b=\"2\""}', *
    FROM pc_create_qualification('d0000000-0000-4000-8000-000000000002', 'EDUCATION', 'highereducation',
                                 website => 'https://www.contoso.edu/?a=1&b="2"');
INSERT INTO created SELECT 'GovernmentCommunityCloud', 'd0000000-0000-4000-8000-000000000003',
    '{"qualification": "GovernmentCommunityCloud", "validationCode": "12345"}', *
    FROM pc_create_qualification('d0000000-0000-4000-8000-000000000003', 'governmentcommunitycloud',
                                 validation_code => '12345');
INSERT INTO created SELECT 'StateOwnedEntity', 'd0000000-0000-4000-8000-000000000004',
    '{"qualification": "StateOwnedEntity"}', *
    FROM pc_create_qualification('d0000000-0000-4000-8000-000000000004', 'stateOWNEDentity');

CREATE TEMP TABLE sent AS
    SELECT c.label, c.want_body, p.* FROM created c, pg_temp.posts(c.tenant) p;
SELECT is((SELECT count(*) FROM sent WHERE sent.label = c.label), 1::bigint, c.label || ': one POST')
FROM created c ORDER BY c.tenant;
SELECT is(content_type, 'application/json', label || ': Content-Type application/json')
FROM sent ORDER BY tenant;
SELECT is(body::jsonb, want_body, label || ': the body has exactly the fields set, canonically spelt')
FROM sent ORDER BY tenant;
SELECT ok(body !~ 'null', label || ': no null in the body') FROM sent ORDER BY tenant;
SELECT ok(bool_and(status = 201 AND auth LIKE 'emu-user-%'), 'each POST carried an App+User token and got 201')
FROM sent;
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token' AND auth = 'refresh_token'),
          1::bigint, 'one refresh_token grant for the four creates');
SELECT results_eq($$SELECT qualification, vetting_status, vetting_created_date IS NOT NULL
                    FROM created ORDER BY tenant$$,
                  $$VALUES ('Education', 'InReview', true), ('Education', 'InReview', true),
                           ('GovernmentCommunityCloud', 'InReview', true), ('StateOwnedEntity', NULL, false)$$,
                  'each create returns the qualification as the service answered');
SELECT matches(pg_read_file(:'refresh_token_file'), '^pcqual-test-refresh-rot-[0-9]+\s*$',
               'the rotated refresh token was written back to the file, as Azure AD sent it');
SELECT is((SELECT remaining_creates FROM pc_validation_codes() WHERE validation_id = '12345'), 3,
          'the GovernmentCommunityCloud create used one of its validation code''s creates');

------------------------------------------------------------------------
-- A create retried after a 503 keeps its MS-RequestId, so it is made once.
-- The emulator's 33333333-...0009 answers 503 the first time it sees an
-- MS-RequestId.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
CREATE TEMP TABLE retried AS
    SELECT * FROM pc_create_qualification('33333333-0000-0000-0000-000000000009', 'StateOwnedEntity');
CREATE TEMP TABLE retried_posts AS SELECT * FROM pg_temp.posts('33333333-0000-0000-0000-000000000009');
SELECT is((SELECT count(*) FROM retried), 1::bigint, 'the retried create returns its one row');
SELECT is((SELECT array_agg(status ORDER BY seq) FROM retried_posts), ARRAY[503, 201],
          'two POSTs: 503, then 201');
SELECT is((SELECT count(DISTINCT request_id) FROM retried_posts WHERE request_id IS NOT NULL), 1::bigint,
          'both carried the same MS-RequestId');
SELECT is((SELECT count(DISTINCT body) FROM retried_posts), 1::bigint, 'and the same body');
SELECT is(pg_temp.emulator_stat('qualifications_created'), 1::bigint, 'the qualification was created once');
SELECT is((SELECT count(*) FROM pc_qualifications('33333333-0000-0000-0000-000000000009')
           WHERE qualification = 'StateOwnedEntity'), 1::bigint,
          'the customer holds it once');

-- 5xx beyond pcqual.max_retries: every attempt with the same MS-RequestId.
SET pcqual.max_retries = 1;
CREATE TEMP TABLE unavailable AS SELECT * FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('22222222-0000-0000-0000-000000000503', 'StateOwnedEntity')$$);
RESET pcqual.max_retries;
SELECT is((SELECT state FROM unavailable), '58000', 'a create still failing with 503: system_error');
SELECT results_eq($$SELECT count(*), count(DISTINCT request_id)
                    FROM pg_temp.posts('22222222-0000-0000-0000-000000000503')$$,
                  $$VALUES (2::bigint, 1::bigint)$$,
                  'max_retries = 1: two POSTs with one MS-RequestId');
SELECT matches((SELECT detail FROM unavailable), '^Tried 2 times\. MS-CorrelationId: .*, MS-RequestId: ',
               'the DETAIL counts the attempts');

------------------------------------------------------------------------
-- 409: unique_violation with Partner Center's code and description.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT is((SELECT qualification FROM pc_create_qualification('d0000000-0000-4000-8000-000000000005',
                                                              'StateOwnedEntity')),
          'StateOwnedEntity', 'a first create succeeds');
CREATE TEMP TABLE again AS SELECT * FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000005', 'StateOwnedEntity')$$);
SELECT is((SELECT state FROM again), '23505', 'creating it again: unique_violation');
SELECT matches((SELECT message FROM again),
               '^Partner Center answered HTTP 409 for customer d0000000-0000-4000-8000-000000000005: \S.* \(code 600040\)$',
               'the message has Partner Center''s description and code');
SELECT matches((SELECT hint FROM again), 'same qualification twice', 'the HINT explains the conflict');
SELECT is((SELECT count(*) FROM pg_temp.posts('d0000000-0000-4000-8000-000000000005')), 2::bigint,
          'the 409 was not retried (one POST for each call)');

SELECT pc_create_qualification('d0000000-0000-4000-8000-000000000006', 'Education', 'K12');
SELECT is((SELECT state FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000006', 'GovernmentCommunityCloud',
                                          validation_code => '24680')$$)),
          '23505', 'GovernmentCommunityCloud on an Education customer: unique_violation');

------------------------------------------------------------------------
-- 400, 401, 403, 404 and 409 are never retried: one POST each.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT pc_qualifications('11111111-0000-0000-0000-000000000001');   -- (a token, App+User)
CREATE TEMP TABLE final_answers (n int, tenant uuid, label text, want_state text, args text);
INSERT INTO final_answers VALUES
 (1, '22222222-0000-0000-0000-000000000400', '400', '22023', $$'StateOwnedEntity'$$),
 (2, '22222222-0000-0000-0000-000000000403', '403', '42501', $$'StateOwnedEntity'$$),
 (3, '22222222-0000-0000-0000-000000000404', '404', 'P0002', $$'StateOwnedEntity'$$),
 (4, '22222222-0000-0000-0000-000000000409', '409', '23505', $$'StateOwnedEntity'$$),
 (5, 'd0000000-0000-4000-8000-000000000007', '400 for an unknown validation code', '22023',
     $$'GovernmentCommunityCloud', validation_code => '99999'$$),
 (6, 'd0000000-0000-4000-8000-000000000008', '400 for a validation code with no creates left', '22023',
     $$'GovernmentCommunityCloud', validation_code => '67890'$$);
CREATE TEMP TABLE final_results AS
    SELECT f.*, e.state, e.message, e.hint
    FROM final_answers f,
         pg_temp.error_under('{}', format('SELECT * FROM pc_create_qualification(%L, %s)', f.tenant, f.args)) e;
SELECT is(state, want_state, label || ': SQLSTATE ' || want_state) FROM final_results ORDER BY n;
SELECT is((SELECT count(*) FROM pg_temp.posts(f.tenant)), 1::bigint, f.label || ': one POST, not retried')
FROM final_answers f ORDER BY n;
SELECT matches((SELECT message FROM final_results WHERE n = 5), '\(code 600019\)$',
               'a 400''s message carries Partner Center''s code');
SELECT unalike((SELECT hint FROM final_results WHERE n = 2), '%App+User%',
              'a 403 with another code than 900329 does not blame App-only credentials');

-- 403 with code 900329 (Partner Center refusing an App-only token): the
-- HINT asks for App+User credentials.  pcqual refuses App-only locally, so
-- only an emulator override can produce it; skipped while the emulator's
-- customer override takes no "code".
SELECT (pg_temp.error_under('{}', $$SELECT pg_temp.emulator_customer('d0000000-0000-4000-8000-000000000009',
    '{"fail": 403, "code": 900329, "description": "This resource does not support application-only authentication."}')$$)).state
    IS NULL AS app_only_answer \gset
\if :app_only_answer
CREATE TEMP TABLE app_only AS SELECT * FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('d0000000-0000-4000-8000-000000000009', 'StateOwnedEntity')$$);
SELECT is((SELECT state FROM app_only), '28000', '403 code 900329: invalid_authorization_specification');
SELECT matches((SELECT hint FROM app_only), 'needs App\+User credentials.*pcqual\.refresh_token_file',
               'the HINT asks for App+User credentials (pcqual.refresh_token_file)');
SELECT is((SELECT count(*) FROM pg_temp.posts('d0000000-0000-4000-8000-000000000009')), 1::bigint,
          '403 code 900329: one POST, not retried');
\else
SELECT skip('the emulator cannot answer a create with 403 code 900329 (no "code" in its customer override)', 3);
\endif

-- 401: never retried when the token is new; a cached token gets one
-- refresh, then the POST is sent once more with the same MS-RequestId.
SELECT pc_disconnect();
CREATE TEMP TABLE unauthorized AS SELECT * FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('22222222-0000-0000-0000-000000000401', 'StateOwnedEntity')$$);
SELECT is((SELECT state FROM unauthorized), '28000', '401: invalid_authorization_specification');
SELECT is((SELECT count(*) FROM pg_temp.posts('22222222-0000-0000-0000-000000000401')), 1::bigint,
          '401 with a token just obtained: one POST, not retried');
SELECT max(seq) AS before_cached FROM pg_temp.emulator_log() \gset
SELECT is((SELECT state FROM pg_temp.error_under('{}', $$
    SELECT * FROM pc_create_qualification('22222222-0000-0000-0000-000000000401', 'StateOwnedEntity')$$)),
          '28000', '401 with a cached token: still 28000');
CREATE TEMP TABLE after_refresh AS
    SELECT * FROM pg_temp.emulator_log() WHERE seq > :before_cached;
SELECT results_eq($$SELECT kind, method, status FROM after_refresh ORDER BY seq$$,
                  $$VALUES ('api', 'POST', 401), ('token', 'POST', 200), ('api', 'POST', 401)$$,
                  'with a cached token: POST, one token refresh, POST again, and no more');
SELECT is((SELECT count(DISTINCT request_id) FROM after_refresh WHERE kind = 'api'), 1::bigint,
          'the second POST kept the MS-RequestId');

SELECT * FROM finish();
