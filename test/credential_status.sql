-- pc_credential_status(): the DBA's morning check of the credential in
-- effect, never a secret, and the token path's WARNINGs (a certificate
-- that expires within 30 days, an App+User token without MFA) once per
-- backend.  request_token => true asks Azure AD now and reports the
-- outcome in the row, not as an ERROR.
\ir helpers.inc
\set QUIET 1
SELECT plan(23);

SELECT pg_temp.tap_dir('client.key') AS key_file,
       pg_temp.tap_dir('expiring.key') AS expiring_key_file,
       pg_temp.tap_dir('refresh_token') AS refresh_file,
       pg_temp.tap_dir('access_token') AS access_file,
       '/tmp/pcqual-test/secrets/client.crt' AS cert_file,
       '/tmp/pcqual-test/secrets/client-expiring.crt' AS expiring_cert_file \gset
SELECT pg_temp.run1(format('cp %s %s && chmod 600 %2$s', '/tmp/pcqual-test/secrets/client.key', pg_temp.sq(:'key_file')));
SELECT pg_temp.run1(format('cp %s %s && chmod 600 %2$s', '/tmp/pcqual-test/secrets/client-expiring.key', pg_temp.sq(:'expiring_key_file')));

-- The WARNINGs a statement gives in a new session (psql's stderr), with
-- some superuser settings for that session.
CREATE FUNCTION pg_temp.warnings_of(settings text, query text) RETURNS text LANGUAGE sql AS $$
    SELECT pg_temp.run1(format('PGOPTIONS=%s psql -X -q -At -h %s -p %s -d %s -c %s -c %s 2>&1 >/dev/null | grep -c "^WARNING" ; true',
                               pg_temp.sq(settings),
                               pg_temp.sq(split_part(current_setting('unix_socket_directories'), ',', 1)),
                               current_setting('port'), pg_temp.sq(current_database()),
                               pg_temp.sq(query), pg_temp.sq(query)))
$$;
\set QUIET 0

SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();

------------------------------------------------------------------------
-- App-only with a secret: the file, and nothing cached yet.
SELECT results_eq($$SELECT mode, settings, files, file_checks, token_expires_at FROM pc_credential_status()$$,
    $$VALUES ('app_secret', ARRAY['pcqual.client_secret_file'], ARRAY['/tmp/pcqual-test/secrets/client_secret'],
              ARRAY['ok'], NULL::timestamptz)$$,
    'App-only with a secret: its setting, its file (ok), no token cached (pc_disconnect dropped it)');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1', 'a call');
SELECT results_eq($$SELECT token_expires_at > now() + interval '50 minutes', last_token_request_at <= clock_timestamp(),
                           last_token_outcome, last_token_sqlstate FROM pc_credential_status()$$,
    $$VALUES (true, true, 'success', NULL::text)$$,
    'after it: the shared token''s expiry (an hour, less the margin) and a successful request');
SELECT is((SELECT token_mfa FROM pc_credential_status()), NULL, 'an opaque App-only token: MFA unknown');
SELECT ok(NOT EXISTS (SELECT FROM pc_credential_status() s, unnest(ARRAY[s.mode, s.certificate_subject, s.last_token_message]
                                                                  || s.files || s.file_checks) v
                      WHERE v LIKE '%pcqual-test-secret%' OR v LIKE '%emu-app-%'),
          'no secret and no token in the row');

-- A bad file is shown, not raised; request_token reports the refusal.
SELECT pg_temp.put_file(pg_temp.tap_dir('open_secret'), 'pcqual-test-secret', '644');
SET pcqual.client_secret_file = :'refresh_file';      -- (does not exist yet)
SELECT alike((SELECT file_checks[1] FROM pc_credential_status()), 'could not open credential file %No such file or directory',
            'a missing file: why, not an ERROR');
SELECT set_config('pcqual.client_secret_file', pg_temp.tap_dir('open_secret'), false);
SELECT alike((SELECT file_checks[1] FROM pc_credential_status()), '%is accessible to group or others',
            'a file others may read fails the private-file rule');
SELECT pg_temp.put_file(pg_temp.tap_dir('wrong_secret'), 'not-the-app-secret');
SELECT set_config('pcqual.client_secret_file', pg_temp.tap_dir('wrong_secret'), false);
SELECT results_eq($$SELECT file_checks, last_token_outcome, last_token_sqlstate, last_token_message LIKE 'Azure AD refused pcqual''s token request%'
                    FROM pc_credential_status(request_token => true)$$,
    $$VALUES (ARRAY['ok'], 'failure', '28000', true)$$,
    'request_token => true with a wrong secret: the refusal (28000) in the row, no ERROR');
SELECT results_eq($$SELECT last_token_outcome, last_token_sqlstate FROM pc_credential_status()$$,
    $$VALUES ('failure', '28000')$$, 'and the cache remembers it as the last request');
RESET pcqual.client_secret_file;
CREATE TEMP TABLE before_probe AS SELECT pg_temp.emulator_stat('token_requests') AS n;
SELECT results_eq($$SELECT last_token_outcome, token_expires_at > now() FROM pc_credential_status(request_token => true)$$,
    $$VALUES ('success', true)$$, 'request_token => true with the right secret: success');
SELECT is(pg_temp.emulator_stat('token_requests') - (SELECT n FROM before_probe), 1::bigint,
          'it asked Azure AD even with a token cached');

------------------------------------------------------------------------
-- A certificate: subject, thumbprint (the x5t pcqual sends), validity.
SET pcqual.client_secret_file = '';
SET pcqual.client_certificate_file = :'cert_file';
SET pcqual.client_key_file = :'key_file';
SELECT results_eq($$SELECT mode, settings, file_checks FROM pc_credential_status()$$,
    $$VALUES ('app_certificate', ARRAY['pcqual.client_certificate_file', 'pcqual.client_key_file'], ARRAY['ok', 'ok'])$$,
    'a certificate credential: both files');
SELECT results_eq($$SELECT certificate_thumbprint, certificate_subject FROM pc_credential_status()$$,
    format('VALUES (%L, %L)',
           replace(split_part(pg_temp.run1('openssl x509 -noout -fingerprint -sha1 -in /tmp/pcqual-test/secrets/client.crt'), '=', 2), ':', ''),
           pg_temp.run1('openssl x509 -noout -subject -nameopt RFC2253 -in /tmp/pcqual-test/secrets/client.crt | sed "s/^subject=//"')),
    'the thumbprint and subject are what openssl says');
SELECT results_eq($$SELECT certificate_not_after = (SELECT pg_temp.run1('openssl x509 -noout -enddate -in /tmp/pcqual-test/secrets/client.crt | sed "s/^notAfter=//"'))::timestamptz,
                           certificate_days_left > 30 FROM pc_credential_status()$$,
    $$VALUES (true, true)$$, 'its end date, and more than 30 days left');
SELECT is(pg_temp.warnings_of(format('-c pcqual.client_secret_file= -c pcqual.client_certificate_file=%s -c pcqual.client_key_file=%s', :'cert_file', :'key_file'),
                              $$SELECT pc_disconnect(), count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$),
          '0', 'a certificate with a year left: no WARNING');
SELECT set_config('pcqual.client_certificate_file', :'expiring_cert_file', false),
       set_config('pcqual.client_key_file', :'expiring_key_file', false);
SELECT results_eq($$SELECT certificate_days_left BETWEEN 8 AND 10, certificate_not_before < now() FROM pc_credential_status()$$,
    $$VALUES (true, true)$$, 'a certificate that expires in 10 days: its days left');
SELECT is(pg_temp.warnings_of(format('-c pcqual.client_secret_file= -c pcqual.client_certificate_file=%s -c pcqual.client_key_file=%s', :'expiring_cert_file', :'expiring_key_file'),
                              $$SELECT pc_disconnect(), count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$),
          '1', 'its token requests: one WARNING per backend (two requests here)');
RESET pcqual.client_certificate_file;
RESET pcqual.client_key_file;

------------------------------------------------------------------------
-- App+User: the refresh token's age, MFA.
SELECT pg_temp.put_file(:'refresh_file', 'pcqual-test-refresh');
SELECT pg_temp.run1(format('touch -d "80 days ago" %s', pg_temp.sq(:'refresh_file')));
SET pcqual.refresh_token_file = :'refresh_file';
SELECT pg_temp.emulator('reset');
SELECT results_eq($$SELECT mode, settings[1], refresh_token_days_left, refresh_token_saved_at < now() - interval '79 days' FROM pc_credential_status()$$,
    $$VALUES ('app_user', 'pcqual.refresh_token_file', 10, true)$$,
    'a refresh token last saved 80 days ago: 10 days left before 90 days of disuse');
SELECT results_eq($$SELECT last_token_outcome, token_mfa, refresh_token_days_left FROM pc_credential_status(request_token => true)$$,
    $$VALUES ('success', true, 90)$$,
    'a refresh rotates it (90 days again), and the token''s amr lists mfa');
SELECT pg_temp.emulator('config?token_mfa=off');
SELECT is((SELECT token_mfa FROM pc_credential_status(request_token => true)), false, 'a token issued without MFA: false');
SELECT is(pg_temp.warnings_of(format('-c pcqual.refresh_token_file=%s', :'refresh_file'),
                              $$SELECT pc_disconnect(), count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$),
          '1', 'the token path warns once per backend about a token without MFA');
SELECT pg_temp.emulator('config?token_mfa=on&refresh_expired=on');
SELECT results_eq($$SELECT last_token_outcome, last_token_sqlstate, last_token_detail ~ '^AADSTS700082: ' FROM pc_credential_status(request_token => true)$$,
    $$VALUES ('failure', '28000', true)$$,
    'a refresh token expired by disuse: AADSTS700082 in the row');
SELECT pg_temp.emulator('config?refresh_expired=off');
RESET pcqual.refresh_token_file;

-- A token managed elsewhere, not a JWT: MFA unknown, and no WARNING.
SELECT pg_temp.put_file(:'access_file', 'pcqual-static-token');
SELECT set_config('pcqual.access_token_file', :'access_file', false);
SELECT results_eq($$SELECT mode, token_mfa, token_expires_at FROM pc_credential_status()$$,
    $$VALUES ('access_token_file', NULL::boolean, NULL::timestamptz)$$,
    'pcqual.access_token_file with an opaque token: no expiry, MFA unknown');
RESET pcqual.access_token_file;

SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT * FROM finish();
