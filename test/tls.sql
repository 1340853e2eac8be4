-- TLS and redirects (1.2): certificates are always verified, against
-- pcqual.ca_file or the system's CAs; a certificate failure is 58000 with
-- curl's own reason, and is not retried; redirects are never followed, by
-- API or token requests; a token answer that would inject header lines is
-- refused.  The emulator listens with TLS on P+1 (good certificate), P+2
-- (wrong name), P+3 (expired), P+4 (self-signed), and records whatever
-- reaches its redirect target on P+5 (P: the plain HTTP port).
\ir helpers.inc
SELECT plan(28);

SELECT split_part(current_setting('pcqual.base_url'), ':', 3)::int AS port \gset
SELECT format('https://127.0.0.1:%s', :port + 1) AS good,
       format('https://127.0.0.1:%s', :port + 2) AS wrong_name,
       format('https://127.0.0.1:%s', :port + 3) AS expired,
       format('https://127.0.0.1:%s', :port + 4) AS self_signed \gset

-- A call for one customer with the API and the token endpoint at url,
-- with some more settings; its error, if any.
CREATE FUNCTION pg_temp.call_at(url text, settings text[] DEFAULT '{}',
    tenant uuid DEFAULT '11111111-0000-0000-0000-000000000001')
RETURNS TABLE (state text, message text, detail text, hint text) LANGUAGE sql AS $$
    SELECT * FROM pg_temp.error_under(ARRAY['pcqual.base_url', url, 'pcqual.authority', url] || settings,
                                      format('SELECT * FROM pc_qualifications(%L)', tenant))
$$;

------------------------------------------------------------------------
-- The good certificate, trusted through pcqual.ca_file (the database sets
-- it to the test CA).
SELECT pc_disconnect();
SELECT is((SELECT state FROM pg_temp.call_at(:'good')), NULL,
          'https with a certificate signed by pcqual.ca_file''s CA works');
SELECT results_eq($$SELECT kind, status FROM pg_temp.emulator_log()$$,
    $$VALUES ('token', 200), ('api', 200)$$,
    'the token and the API request went over TLS to the emulator');
SELECT is((SELECT count(*) FROM pg_temp.call_at(:'good') WHERE state IS NULL), 1::bigint,
          'and again, on the cached connection and token');

-- Without pcqual.ca_file the system's CAs are used: they do not know the
-- test CA.  pc_disconnect() drops the shared token of the credential in
-- effect: here that of the TLS authority, so that a token request is made.
SELECT pg_temp.emulator('reset');
SELECT is((SELECT state FROM pg_temp.error_under(ARRAY['pcqual.authority', :'good'], 'SELECT pc_disconnect()')), NULL,
          'pc_disconnect() under the TLS authority drops that authority''s token');
CREATE TEMP TABLE system_cas AS SELECT * FROM pg_temp.call_at(:'good', ARRAY['pcqual.ca_file', '']);
SELECT results_eq($$SELECT state, message FROM system_cas$$,
    $$VALUES ('58000', 'could not verify the TLS certificate of 127.0.0.1 for a token request')$$,
    'pcqual.ca_file = '''': the system''s CAs do not trust the test CA (58000)');
-- (curl's wording changes between versions: Debian 12's and 13's say "SSL
-- certificate problem: unable to get local issuer certificate", testing's
-- "SSL certificate OpenSSL verify result: unable to get local issuer
-- certificate (20)")
SELECT matches((SELECT detail FROM system_cas), '^SSL certificate .*issuer.*\. MS-CorrelationId: ',
               'the DETAIL gives curl''s reason, then the ids');
SELECT matches((SELECT hint FROM system_cas), 'pcqual\.ca_file', 'the HINT names pcqual.ca_file');

-- The bad certificates: refused, each with its own reason, for the token
-- endpoint and for the API alike.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
CREATE TEMP TABLE refused AS
    SELECT c.what, e.*
    FROM (VALUES ('wrong name', :'wrong_name'), ('expired', :'expired'), ('self-signed', :'self_signed')) c(what, url),
         pg_temp.call_at(c.url) e;
SELECT results_eq($$SELECT what, state, message FROM refused ORDER BY what$$,
    $$VALUES ('expired', '58000', 'could not verify the TLS certificate of 127.0.0.1 for a token request'),
             ('self-signed', '58000', 'could not verify the TLS certificate of 127.0.0.1 for a token request'),
             ('wrong name', '58000', 'could not verify the TLS certificate of 127.0.0.1 for a token request')$$,
    'a wrong-name, an expired and a self-signed certificate are refused (58000)');
SELECT matches((SELECT detail FROM refused WHERE what = 'wrong name'), '(?i)(subject|name).*(match|127\.0\.0\.1)',
               'wrong name: curl says the name does not match');
SELECT matches((SELECT detail FROM refused WHERE what = 'expired'), '(?i)expired',
               'expired: curl says the certificate has expired');
SELECT matches((SELECT detail FROM refused WHERE what = 'self-signed'), '(?i)self[- ]signed|issuer',
               'self-signed: curl says it is self-signed');
SELECT is((SELECT count(DISTINCT split_part(detail, '. MS-CorrelationId', 1)) FROM refused), 3::bigint,
          'three different reasons');
SELECT is((SELECT count(*) FROM refused WHERE detail ~ 'Tried'), 0::bigint,
          'a certificate failure is not retried: no DETAIL counts attempts');
SELECT is(pg_temp.emulator_stat('token_requests') + pg_temp.emulator_stat('api_requests'), 0::bigint,
          'and no request was sent over the refused connections');

-- The API alone on a bad certificate (tokens from the plain listener).
CREATE TEMP TABLE api_refused AS SELECT * FROM pg_temp.error_under(ARRAY['pcqual.base_url', :'expired'],
    $$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT results_eq($$SELECT state, message, detail !~ 'Tried' FROM api_refused$$,
    $$VALUES ('58000', 'could not verify the TLS certificate of 127.0.0.1 for customer 11111111-0000-0000-0000-000000000001', true)$$,
    'the API on an expired certificate: 58000 naming the customer, not retried');
SELECT is(pg_temp.emulator_stat('api_requests'), 0::bigint, 'no API request reached the emulator');

-- A CA file that is not there refuses every certificate.
SELECT is((SELECT state FROM pg_temp.call_at(:'good', ARRAY['pcqual.ca_file', '/tmp/pcqual-tap-no-such-ca.crt'])), '58000',
          'a missing pcqual.ca_file is 58000');

SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000005')$$), '2',
          'the session is usable after certificate failures');
SELECT is((SELECT state FROM pg_temp.call_at(:'good')), NULL,
          'and https to the good certificate still works');

------------------------------------------------------------------------
-- Redirects are never followed: neither the API's 302 nor the token
-- endpoint's 307 leads anything (a token, a secret) to the target.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
CREATE TEMP TABLE api_redirect AS
    SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000302')$$);
SELECT results_eq($$SELECT state, message FROM api_redirect$$,
    $$VALUES ('58000', 'Partner Center answered HTTP 302 for customer 22222222-0000-0000-0000-000000000302')$$,
    'an API answer 302 is an error (58000)');
SELECT matches((SELECT hint FROM pg_temp.error_under('{}', $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000302')$$)),
               '^pcqual never follows redirects', 'its HINT says pcqual never follows redirects');
SELECT pc_disconnect();
CREATE TEMP TABLE token_redirect AS
    SELECT * FROM pg_temp.error_under(ARRAY['pcqual.partner_tenant', 'redirect.onmicrosoft.com'],
                                      $$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT results_eq($$SELECT state, message, hint ~ '^pcqual never follows redirects' FROM token_redirect$$,
    $$VALUES ('58000', 'Azure AD answered HTTP 307 for a token request', true)$$,
    'a token endpoint answering 307 is an error (58000), not followed');
SELECT results_eq($$SELECT kind, status FROM pg_temp.emulator_log() ORDER BY seq$$,
    $$VALUES ('token', 200), ('api', 302), ('api', 302), ('token', 307)$$,
    'the emulator saw the redirecting answers ...');
SELECT is(pg_temp.emulator_stat('redirect_target_requests'), 0::bigint,
          '... and nothing reached the redirect target: no Authorization header, no token form');

------------------------------------------------------------------------
-- A token answer whose token holds CR LF (header injection) is refused.
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?token_fault=crlf');
SELECT pc_disconnect();
CREATE TEMP TABLE crlf AS SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT results_eq($$SELECT state, message FROM crlf$$,
    $$VALUES ('28000', 'Azure AD''s token answer cannot be used: the access token contains characters not allowed in an HTTP header')$$,
    'a token with CR LF inside: 28000 "Azure AD''s token answer cannot be used"');
SELECT results_eq($$SELECT kind, status, correlation_id IS DISTINCT FROM 'crlf-injected' FROM pg_temp.emulator_log()$$,
    $$VALUES ('token', 200, true)$$,
    'the token was never sent: no API request, nothing injected');
SELECT pg_temp.emulator('config?token_fault=no_token');
SELECT is((SELECT message FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$)),
          'Azure AD answered HTTP 200 without an access token', 'an answer without a token: 28000');
SELECT pg_temp.emulator('config?token_fault=off');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'with a good token answer again the call works');

SELECT * FROM finish();
