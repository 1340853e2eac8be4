-- Credentials (1.2): secrets come from private files, re-read for every token
-- request; App-only with a client secret or a certificate (signed client
-- assertion), App+User with a refresh token file that rotated tokens are
-- written back to, an externally managed access token file; settings that
-- could redirect requests or secrets are the superuser's alone; no secret
-- reaches a message; text from the service is made safe to print.
\ir helpers.inc
SELECT plan(73);

SELECT split_part(current_setting('pcqual.base_url'), ':', 3)::int AS port \gset
SELECT pg_temp.tap_dir('client_secret') AS secret_file,
       pg_temp.tap_dir('client.key') AS key_file,
       pg_temp.tap_dir('other.key') AS other_key_file,
       pg_temp.tap_dir('refresh_token') AS refresh_file,
       pg_temp.tap_dir('access_token') AS access_file,
       '/tmp/pcqual-test/secrets/client.crt' AS cert_file \gset

-- The error of a call for one customer, under some settings.
CREATE FUNCTION pg_temp.call_error(settings text[] DEFAULT '{}',
    tenant uuid DEFAULT '11111111-0000-0000-0000-000000000001')
RETURNS TABLE (state text, message text, detail text, hint text) LANGUAGE sql AS $$
    SELECT * FROM pg_temp.error_under(settings, format('SELECT * FROM pc_qualifications(%L)', tenant))
$$;
CREATE FUNCTION pg_temp.token_requests() RETURNS SETOF emulator_requests LANGUAGE sql AS $$
    SELECT * FROM pg_temp.emulator_log() WHERE kind = 'token' ORDER BY seq
$$;

------------------------------------------------------------------------
-- The client secret file: read for every token request, so that replacing
-- its contents takes effect without a reload.
SELECT pg_temp.put_file(:'secret_file', 'pcqual-test-secret');
SET pcqual.client_secret_file = :'secret_file';
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'App-only with pcqual.client_secret_file');
SELECT results_eq($$SELECT auth, body FROM pg_temp.token_requests()$$,
    $$VALUES ('client_credentials', 'grant_type,client_id,client_secret,resource')$$,
    'the token request is a client_credentials grant with client_secret');

SELECT pg_temp.put_file(:'secret_file', 'not-the-app-secret');
SELECT pc_disconnect();
CREATE TEMP TABLE wrong_secret AS SELECT * FROM pg_temp.call_error();
SELECT results_eq($$SELECT state, message, detail LIKE 'AADSTS7000215:%' FROM wrong_secret$$,
    $$VALUES ('28000', 'Azure AD refused pcqual''s token request: HTTP 401, invalid_client', true)$$,
    'a new (wrong) secret in the file is used at once: Azure AD refuses it (28000, AADSTS7000215)');
SELECT matches((SELECT hint FROM wrong_secret), 'pcqual\.client_secret_file',
               'the HINT points at the secret file');

SELECT pg_temp.put_file(:'secret_file', E'pcqual-test-secret \t\n');
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'the right secret again works, without a reload; trailing white space is stripped');

-- Files that are not private, not there, empty or not files: refused
-- before anything is sent.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT pg_temp.run1('chmod 640 ' || pg_temp.sq(:'secret_file'));
CREATE TEMP TABLE group_readable AS SELECT * FROM pg_temp.call_error();
SELECT results_eq($$SELECT state, message FROM group_readable$$,
    format($$VALUES ('F0000', 'credential file "%s" of pcqual.client_secret_file is accessible to group or others')$$,
           :'secret_file'),
    'a secret file the group may read is refused (F0000, as PostgreSQL refuses its own ssl_key_file)');
SELECT matches((SELECT hint FROM group_readable), 'chmod 600', 'the HINT says chmod 600');
SELECT pg_temp.run1('chmod 604 ' || pg_temp.sq(:'secret_file'));
SELECT is((SELECT state FROM pg_temp.call_error()), 'F0000', 'a world-readable secret file is refused');
SELECT pg_temp.run1('chmod 600 ' || pg_temp.sq(:'secret_file'));
SELECT results_eq(
    $$SELECT e.state, e.message ~ m
      FROM (VALUES ('/tmp/pcqual-tap-no-such-file', '^could not open credential file .*: No such file or directory$'),
                   (pg_temp.tap_dir(), 'is not a regular file$')) f(path, m),
           pg_temp.call_error(ARRAY['pcqual.client_secret_file', f.path]) e$$,
    $$VALUES ('58P01', true), ('F0000', true)$$,
    'a missing secret file is undefined_file (58P01), a directory config_file_error (F0000)');
SELECT pg_temp.put_file(pg_temp.tap_dir('empty'), E'  \n');
SELECT results_eq(
    $$SELECT state, message LIKE '%is empty' FROM pg_temp.call_error(ARRAY['pcqual.client_secret_file', pg_temp.tap_dir('empty')])$$,
    $$VALUES ('F0000', true)$$, 'a secret file of white space only is refused as empty (F0000)');
SELECT is(pg_temp.emulator_stat('token_requests'), 0::bigint, 'none of these sent a token request');
RESET pcqual.client_secret_file;

------------------------------------------------------------------------
-- A certificate credential: a client assertion signed with the key.
SELECT pg_temp.run1(format('cp %s %s && chmod 600 %2$s', '/tmp/pcqual-test/secrets/client.key', pg_temp.sq(:'key_file')));
SET pcqual.client_secret_file = '';
SET pcqual.client_certificate_file = :'cert_file';
SET pcqual.client_key_file = :'key_file';
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'App-only with a certificate and its key');
CREATE TEMP TABLE assertion_grant AS SELECT * FROM pg_temp.token_requests();
SELECT is((SELECT auth FROM assertion_grant), 'client_credentials+assertion',
          'the emulator verified a signed client assertion');
SELECT ok((SELECT string_to_array(body, ',') @> ARRAY['grant_type', 'client_id', 'client_assertion_type', 'client_assertion', 'resource']
                  AND NOT string_to_array(body, ',') && ARRAY['client_secret']
           FROM assertion_grant),
          'the form has client_assertion_type and client_assertion, and no client_secret');
SELECT is(pg_temp.emulator_stat('assertion_grants'), 1::bigint, 'one assertion grant');

-- With the secret file still set as well, the certificate wins, and the
-- secret is not sent along.
SET pcqual.client_secret_file = '/tmp/pcqual-test/secrets/client_secret';
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'certificate and secret file both set: the call works');
SELECT ok((SELECT NOT string_to_array(body, ',') && ARRAY['client_secret'] AND auth = 'client_credentials+assertion'
           FROM pg_temp.token_requests()),
          'the certificate is used and no client_secret is sent');
SET pcqual.client_secret_file = '';

-- A key file others may read is refused; so is a key without its certificate.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();
SELECT pg_temp.run1('chmod 640 ' || pg_temp.sq(:'key_file'));
SELECT results_eq($$SELECT state, message FROM pg_temp.call_error()$$,
    format($$VALUES ('F0000', 'credential file "%s" of pcqual.client_key_file is accessible to group or others')$$,
           :'key_file'),
    'a group-readable private key is refused (F0000)');
SELECT pg_temp.run1('chmod 600 ' || pg_temp.sq(:'key_file'));
SELECT results_eq($$SELECT state, message, detail FROM pg_temp.call_error(ARRAY['pcqual.client_certificate_file', ''])$$,
    $$VALUES ('28000', 'pcqual has no credentials for Partner Center', 'pcqual.client_certificate_file is not set.')$$,
    'a key without a certificate: no credentials (28000)');
SELECT is(pg_temp.emulator_stat('token_requests'), 0::bigint, 'nothing was sent');

-- A key that does not belong to the certificate: Azure AD refuses the
-- signature, and the message quotes Azure AD, never the assertion.
SELECT pg_temp.run1(format('openssl genrsa -out %s 2048 2>&1 && chmod 600 %1$s', pg_temp.sq(:'other_key_file')));
CREATE TEMP TABLE wrong_key AS SELECT * FROM pg_temp.call_error(ARRAY['pcqual.client_key_file', :'other_key_file']);
SELECT results_eq($$SELECT state, message, detail ~ '^AADSTS700027: ' FROM wrong_key$$,
    $$VALUES ('28000', 'Azure AD refused pcqual''s token request: HTTP 401, invalid_client', true)$$,
    'a key that is not the certificate''s: Azure AD refuses the assertion (28000, AADSTS700027)');
SELECT ok((SELECT concat_ws(' ', message, detail, hint) !~ 'eyJ' FROM wrong_key),
          'the refusal does not quote the assertion');
SELECT results_eq($$SELECT auth, status FROM pg_temp.token_requests()$$,
    $$VALUES ('client_credentials+assertion', 401)$$,
    'the emulator saw an assertion grant and refused its signature');

RESET pcqual.client_certificate_file;
RESET pcqual.client_key_file;
RESET pcqual.client_secret_file;

------------------------------------------------------------------------
-- App+User: the refresh token file, and the rotated refresh token written
-- back to it.
SELECT pg_temp.put_file(:'refresh_file', 'pcqual-test-refresh');
SET pcqual.refresh_token_file = :'refresh_file';
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?refresh_rotation_strict=on');
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'App+User with pcqual.refresh_token_file');
SELECT results_eq($$SELECT kind, CASE kind WHEN 'api' THEN left(auth, 9) ELSE auth END FROM pg_temp.emulator_log()$$,
    $$VALUES ('token', 'refresh_token'), ('api', 'emu-user-')$$,
    'a refresh_token grant, and the App+User token is sent');
SELECT matches(pg_read_file(:'refresh_file'), '^pcqual-test-refresh-rot-\d+\n$',
               'the file now holds the rotated refresh token Azure AD answered with');
SELECT is(pg_temp.file_mode(:'refresh_file'), '600', 'and is still mode 600');
SELECT is(pg_temp.run1(format('ls -A %s | grep -c tmp; true', pg_temp.sq(pg_temp.tap_dir()))), '0',
          'no temporary file is left behind');
CREATE TEMP TABLE first_rotation AS SELECT pg_read_file(:'refresh_file') AS token;

-- Strict rotation: every refresh token works once.  Two more refreshes
-- succeed only if each used the token the previous one saved.
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000002')$$), '1',
          'a second refresh (strict rotation) succeeds');
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000003')$$), '1',
          'a third refresh (strict rotation) succeeds');
SELECT isnt(pg_read_file(:'refresh_file'), (SELECT token FROM first_rotation),
            'each refresh saved a new token');

-- The used original token again: expired, 28000, and the HINT names the file.
SELECT pg_temp.put_file(:'refresh_file', 'pcqual-test-refresh');
SELECT pc_disconnect();
CREATE TEMP TABLE expired_refresh AS SELECT * FROM pg_temp.call_error();
SELECT results_eq($$SELECT state, message, detail ~ '^AADSTS70008: ' FROM expired_refresh$$,
    $$VALUES ('28000', 'Azure AD refused pcqual''s token request: HTTP 400, invalid_grant', true)$$,
    'a used refresh token is refused (28000, AADSTS70008)');
SELECT matches((SELECT hint FROM expired_refresh), 'pcqual\.refresh_token_file',
               'the HINT says to write a new refresh token to pcqual.refresh_token_file');
SELECT is(pg_read_file(:'refresh_file'), E'pcqual-test-refresh\n', 'a refused refresh leaves the file alone');

-- A read-only (0400) refresh token file is rotated as well and stays 0400:
-- the server's user (not root: root could write any file) cannot open it
-- for writing, so the new file is written 0600, synced, then made 0400.
SELECT pg_temp.put_file(pg_temp.tap_dir('refresh_ro'), 'pcqual-test-refresh', '400');
SELECT set_config('pcqual.refresh_token_file', pg_temp.tap_dir('refresh_ro'), false);
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?refresh_rotation_strict=on');
SELECT pc_disconnect();
SELECT isnt(pg_temp.run1('id -u'), '0', 'the server does not run as root');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'App+User with a 0400 refresh token file');
SELECT matches(pg_read_file(pg_temp.tap_dir('refresh_ro')), '^pcqual-test-refresh-rot-\d+\n$',
               'the 0400 file now holds the rotated refresh token');
SELECT is(pg_temp.file_mode(pg_temp.tap_dir('refresh_ro')), '400', 'and is still mode 400');
SELECT pc_disconnect();
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000002')$$), '1',
          'the next refresh (strict rotation) uses the token written back');
SELECT is(pg_temp.run1(format('ls -A %s | grep -c tmp; true', pg_temp.sq(pg_temp.tap_dir()))), '0',
          'no temporary file is left behind');
SELECT pg_temp.emulator('config?refresh_rotation_strict=off');
RESET pcqual.refresh_token_file;

------------------------------------------------------------------------
-- An externally managed token: re-read when the file changes, and after a 401.
SELECT pg_temp.put_file(:'access_file', 'pcqual-static-token');
SET pcqual.access_token_file = :'access_file';
SELECT pg_temp.emulator('reset');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'the token in pcqual.access_token_file works');
SELECT pg_temp.put_file(:'access_file', 'a-token-the-service-rejects');
SELECT is((SELECT state FROM pg_temp.call_error()), '28000',
          'a rejected token written to the file is used at the next call (401: 28000)');
SELECT pg_temp.put_file(:'access_file', 'pcqual-static-token');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'the good token written back works again, without pc_disconnect()');
SELECT results_eq($$SELECT kind, auth, status FROM pg_temp.emulator_log()$$,
    $$VALUES ('api', 'pcqual-static-token', 200), ('api', 'a-token-the-service-rejects', 401),
             ('api', 'pcqual-static-token', 200)$$,
    'each call sent the token the file held; no token request');

-- After a 401 the file is read again even when it looks unchanged (same
-- inode, size and modification time): a rejected token of the same length
-- as the good one is read and used ...
SELECT pg_temp.put_file(:'access_file', 'pcqual-static-tokeX');
SELECT is((SELECT state FROM pg_temp.call_error()), '28000', 'a rejected token: 28000');
-- ... then the good one is written over it in place, keeping the mtime.
SELECT pg_temp.run1(format($c$f=%s; t=$(stat -c %%y "$f"); printf '%%s\n' pcqual-static-token > "$f"; touch -d "$t" "$f"$c$,
                           pg_temp.sq(:'access_file')));
SELECT pg_temp.emulator('reset');
SELECT is(pg_temp.rows_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$), '1',
          'the next call, refused with the cached token, re-reads the file and succeeds');
SELECT results_eq($$SELECT auth, status, count(*) OVER (PARTITION BY request_id) FROM pg_temp.emulator_log()$$,
    $$VALUES ('pcqual-static-tokeX', 401, 2::bigint), ('pcqual-static-token', 200, 2::bigint)$$,
    '401 with the cached token, then the token read again, same MS-RequestId');
RESET pcqual.access_token_file;

------------------------------------------------------------------------
-- Settings that decide where requests and secrets go are the superuser's:
-- a role that may call the functions cannot change them, at connection
-- time or later, and its calls still go where the superuser said.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pcqual_tap_job') THEN
        DROP OWNED BY pcqual_tap_job;
        DROP ROLE pcqual_tap_job;
    END IF;
END
$$;
CREATE ROLE pcqual_tap_job LOGIN PASSWORD 'pcqual-tap-job-pw';
GRANT EXECUTE ON FUNCTION pc_qualifications(uuid), pc_qualifications(text) TO pcqual_tap_job;
SELECT format('host=127.0.0.1 port=%s dbname=%s user=pcqual_tap_job password=pcqual-tap-job-pw',
              current_setting('port'), current_database()) AS job_connstr \gset

CREATE TEMP TABLE at_login AS SELECT * FROM pg_temp.error_of(format('SELECT dblink_connect(%L, %L)', 'job_redirected',
    :'job_connstr' || format(' options=''-c pcqual.base_url=http://127.0.0.1:%s''', :port + 5)));
SELECT results_eq($$SELECT state, detail ~ 'permission denied to set parameter "pcqual.base_url"' FROM at_login$$,
    $$VALUES ('08001', true)$$,
    'a login with options=-c pcqual.base_url=... is refused: permission denied (42501) to set parameter');
SELECT is((SELECT detail ~ 'permission denied to set parameter "pcqual.client_secret_file"'
           FROM pg_temp.error_of(format('SELECT dblink_connect(%L, %L)', 'job_secret',
               :'job_connstr' || ' options=''-c pcqual.client_secret_file=/tmp/other''')) e),
          true, 'so is options=-c pcqual.client_secret_file=...');
SELECT is(dblink_connect('job', :'job_connstr'), 'OK', 'the same role logs in without the options');
SELECT results_eq($$SELECT state, message FROM pg_temp.error_of($q$SELECT dblink_exec('job', 'SET pcqual.authority = ''http://127.0.0.1:1''')$q$)$$,
    $$VALUES ('42501', 'permission denied to set parameter "pcqual.authority"')$$,
    'and its SET pcqual.authority is refused (42501)');
SELECT pg_temp.emulator('reset');
SELECT is((SELECT n FROM dblink('job', $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000005')$$) AS t(n bigint)),
          2::bigint, 'its call works');
SELECT dblink_disconnect('job');

-- Every such setting, by SET and by set_config(), as the role.
CREATE TEMP TABLE guarded (name text, value text);
INSERT INTO guarded VALUES
    ('pcqual.base_url', format('http://127.0.0.1:%s', :port + 5)),
    ('pcqual.authority', format('http://127.0.0.1:%s', :port + 5)),
    ('pcqual.cloud', 'china'),
    ('pcqual.resource', 'https://attacker.example'),
    ('pcqual.allow_http', 'on'),
    ('pcqual.ca_file', '/tmp/attacker-ca.crt'),
    ('pcqual.partner_tenant', 'redirect.onmicrosoft.com'),
    ('pcqual.client_id', 'another-app'),
    ('pcqual.client_secret_file', '/tmp/other'),
    ('pcqual.client_certificate_file', '/tmp/other'),
    ('pcqual.client_key_file', '/tmp/other'),
    ('pcqual.refresh_token_file', '/tmp/other'),
    ('pcqual.access_token_file', '/tmp/other'),
    ('pcqual.max_response_size', '2048'),
    ('pcqual.max_idle_connections', '1');
GRANT SELECT ON guarded TO pcqual_tap_job;
SELECT pg_temp.emulator('reset');
SET ROLE pcqual_tap_job;
CREATE TEMP TABLE as_job AS
    SELECT g.name, s.state AS by_set, c.state AS by_set_config
    FROM guarded g,
         pg_temp.error_of(format('SET %s = %L', g.name, g.value)) s,
         pg_temp.error_of(format('SELECT set_config(%L, %L, false)', g.name, g.value)) c;
CREATE TEMP TABLE job_view AS SELECT
    current_setting('pcqual.base_url') AS base_url,
    current_setting('pcqual.authority') AS authority,
    (SELECT state FROM pg_temp.error_of($$ALTER ROLE pcqual_tap_job SET pcqual.base_url = 'http://127.0.0.1:1'$$)) AS alter_role,
    (SELECT state FROM pg_temp.error_of($$SELECT current_setting('pcqual.client_secret_file')$$)) AS show_secret_file,
    (SELECT count(*) FROM pg_settings WHERE name ~ '^pcqual\.(client_secret|client_certificate|client_key|refresh_token|access_token)_file$') AS file_settings_listed,
    (SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')) AS rows;
RESET ROLE;
SELECT results_eq($$SELECT count(*), count(*) FILTER (WHERE by_set = '42501' AND by_set_config = '42501') FROM as_job$$,
    $$VALUES (15::bigint, 15::bigint)$$,
    'SET and set_config() of every endpoint, TLS, credential and limit setting are refused (42501)');
SELECT results_eq($$SELECT base_url, authority, alter_role, show_secret_file, file_settings_listed FROM job_view$$,
    format($$VALUES ('http://127.0.0.1:%1$s', 'http://127.0.0.1:%1$s', '42501', '42501', 0::bigint)$$, :port),
    'after the refusals the settings are unchanged; ALTER ROLE ... SET is refused; the credential file settings are hidden');
SELECT results_eq($$SELECT (SELECT rows FROM job_view), kind, status FROM pg_temp.emulator_log() WHERE kind <> 'token'$$,
    $$VALUES (1::bigint, 'api', 200)$$,
    'and the role''s call went to the configured service (the redirect target saw nothing)');
DROP TABLE guarded, as_job, job_view;
REVOKE EXECUTE ON FUNCTION pc_qualifications(uuid), pc_qualifications(text) FROM pcqual_tap_job;
DROP ROLE pcqual_tap_job;

------------------------------------------------------------------------
-- The retired secret settings take no value, and never echo one.
CREATE TEMP TABLE retired AS
    SELECT * FROM pg_temp.error_under('{}', $$SET pcqual.client_secret = 'pcqual-tap-retired-value'$$);
SELECT results_eq($$SELECT state, message FROM retired$$,
    $$VALUES ('22023', 'pcqual.client_secret no longer takes a secret as its value: the value was ignored')$$,
    'SET pcqual.client_secret = ''...'' is refused (22023), naming the setting');
SELECT ok((SELECT concat_ws(' ', message, detail, hint) !~ 'pcqual-tap-retired-value'
                  AND hint ~ 'pcqual\.client_secret_file' FROM retired),
          'without echoing the value; the HINT names pcqual.client_secret_file');
SELECT results_eq(
    $$SELECT s.name, e.state, e.hint ~ (s.name || '_file') AND e.message ~ ('^' || s.name || ' no longer')
      FROM unnest(ARRAY['pcqual.refresh_token', 'pcqual.access_token']) s(name),
           pg_temp.error_under('{}', format('SET %s = %L', s.name, 'pcqual-tap-retired-value')) e$$,
    $$VALUES ('pcqual.refresh_token', '22023', true), ('pcqual.access_token', '22023', true)$$,
    'pcqual.refresh_token and pcqual.access_token too, each named in the message');
SELECT is((SELECT state FROM pg_temp.error_under('{}', $$SET pcqual.access_token = ''$$)), NULL,
          'an empty value is accepted');
CREATE TEMP TABLE alter_system AS
    SELECT line FROM pg_temp.session_output($$ALTER SYSTEM SET pcqual.client_secret = 'pcqual-tap-retired-value';$$) line;
SELECT ok((SELECT bool_or(line ~ '^ERROR:  22023: pcqual.client_secret no longer takes a secret as its value')
                  AND NOT bool_or(line ~ 'pcqual-tap-retired-value') FROM alter_system),
          'ALTER SYSTEM SET pcqual.client_secret is refused (22023) without echoing the value');
SELECT ok(pg_read_file('postgresql.auto.conf') !~ 'pcqual-tap-retired-value',
          'and nothing reached postgresql.auto.conf');

------------------------------------------------------------------------
-- A service that quotes the request back: a small echo server of this
-- suite's own (the emulator never echoes), answering every token request
-- 400 with the form in its "error" and "error_description", raw and
-- percent-decoded, and every API request 401 quoting its Authorization
-- header.  The secrets must not reach the message, encoded or not.
SELECT pg_temp.put_file(pg_temp.tap_dir('echo.py'), $py$
import http.server, json, os, sys, threading, urllib.parse
threading.Timer(120, os._exit, (0,)).start()       # never outlive the suite
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("latin-1")
        said = "you sent: %s, that is: %s" % (raw, urllib.parse.unquote_plus(raw))
        self.reply(400, {"error": "invalid_request " + said,
                         "error_description": "AADSTS90014: " + said})
    def do_GET(self):
        self.reply(401, {"code": 900420, "description": "you sent: %s" % self.headers.get("Authorization")})
server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
$py$);
SELECT pg_temp.run1(format('python3 %s %s > %s 2>&1 < /dev/null & echo $!', pg_temp.sq(pg_temp.tap_dir('echo.py')),
                           pg_temp.sq(pg_temp.tap_dir('echo.port')), pg_temp.sq(pg_temp.tap_dir('echo.log')))) AS echo_pid \gset
SELECT 'http://127.0.0.1:' || pg_temp.run1(format('for i in $(seq 100); do [ -s %1$s ] && break; sleep 0.05; done; cat %1$s',
                                                  pg_temp.sq(pg_temp.tap_dir('echo.port')))) AS echo_url \gset

-- A secret with characters the form percent-encodes.
SELECT pg_temp.put_file(pg_temp.tap_dir('echo_secret'), 'pcqual-echo-secret+/=&%');
SELECT pg_temp.put_file(pg_temp.tap_dir('echo_refresh'), 'pcqual-echo-refresh');
SELECT pg_temp.put_file(pg_temp.tap_dir('echo_access'), 'pcqual-echo-access-token');
CREATE TEMP TABLE echoed AS
    SELECT c.mode, e.*
    FROM (VALUES ('secret', ARRAY['pcqual.client_secret_file', pg_temp.tap_dir('echo_secret')]),
                 ('certificate', ARRAY['pcqual.client_certificate_file', :'cert_file', 'pcqual.client_key_file', :'key_file']),
                 ('refresh token', ARRAY['pcqual.refresh_token_file', pg_temp.tap_dir('echo_refresh'),
                                         'pcqual.client_secret_file', pg_temp.tap_dir('echo_secret')]),
                 ('access token', ARRAY['pcqual.access_token_file', pg_temp.tap_dir('echo_access')])) c(mode, settings),
         pg_temp.call_error(ARRAY['pcqual.base_url', :'echo_url', 'pcqual.authority', :'echo_url'] || c.settings) e;
SELECT pg_temp.run1('kill ' || :echo_pid);
SELECT results_eq($$SELECT mode, state, concat_ws(' ', message, detail) ~ 'you sent: ' FROM echoed ORDER BY mode$$,
    $$VALUES ('access token', '28000', true), ('certificate', '28000', true), ('refresh token', '28000', true), ('secret', '28000', true)$$,
    'an echoing service''s refusals are quoted (28000)');
CREATE FUNCTION pg_temp.echoed_text(which text) RETURNS text LANGUAGE sql AS $$
    SELECT concat_ws(' ', message, detail, hint) FROM echoed WHERE mode = which
$$;
SELECT ok(pg_temp.echoed_text('secret') !~ 'pcqual-echo-secret',
          'the client secret is not in the message, neither as sent (percent-encoded) nor decoded');
SELECT ok(pg_temp.echoed_text('certificate') !~ 'eyJ',
          'the client assertion is not in the message, not even the part of it that fits');
SELECT ok(pg_temp.echoed_text('refresh token') !~ 'pcqual-echo-(refresh|secret)',
          'neither are the refresh token and the client secret of an App+User refresh');
SELECT ok(pg_temp.echoed_text('access token') !~ 'pcqual-echo-access-token',
          'nor the access token a Partner Center error quotes back');

------------------------------------------------------------------------
-- No secret in any message, at any level: sessions run with
-- client_min_messages = debug5 (and log_min_messages = debug5), through
-- successes and failures of every credential, and everything they print,
-- and what the server log got, is searched for the secrets.
SELECT pg_temp.put_file(:'secret_file', 'pcqual-test-secret');
SELECT pg_temp.put_file(pg_temp.tap_dir('wrong_secret'), 'not-the-app-secret');
SELECT pg_temp.put_file(:'refresh_file', 'pcqual-test-refresh');
SELECT pg_temp.put_file(pg_temp.tap_dir('used_refresh'), 'pcqual-test-refresh');
SELECT pg_temp.put_file(:'access_file', 'pcqual-static-token');
SELECT pg_temp.put_file(pg_temp.tap_dir('rejected_token'), 'a-token-the-service-rejects');
SELECT pg_temp.run1('readlink -f /proc/$PPID/fd/2') AS server_log_path \gset
CREATE TEMP TABLE log_start AS
    SELECT (pg_stat_file(:'server_log_path', true)).size AS size,
           coalesce(NOT (pg_stat_file(:'server_log_path', true)).isdir, false) AS readable;
SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator('config?refresh_rotation_strict=on');
CREATE TEMP TABLE debug_output AS SELECT line FROM pg_temp.session_output(format($script$
SET client_min_messages = debug5;
SET log_min_messages = debug5;
SET pcqual.max_retries = 1;
SELECT 'session-start';
-- App-only, secret: success, then a wrong secret
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SET pcqual.client_secret_file = %1$L;
SELECT pc_disconnect();
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
RESET pcqual.client_secret_file;
-- a revoked token: 401, a new token, the retry
COPY (SELECT 1) TO PROGRAM 'curl -sf --noproxy ''*'' -o /dev/null -X POST http://127.0.0.1:%2$s/_emulator/revoke';
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
-- a token answer that cannot be used
COPY (SELECT 1) TO PROGRAM 'curl -sf --noproxy ''*'' -o /dev/null -X POST http://127.0.0.1:%2$s/_emulator/config?token_fault=crlf';
SELECT pc_disconnect();
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
COPY (SELECT 1) TO PROGRAM 'curl -sf --noproxy ''*'' -o /dev/null -X POST http://127.0.0.1:%2$s/_emulator/config?token_fault=off';
-- certificate: success, then a wrong key
SET pcqual.client_certificate_file = %3$L;
SET pcqual.client_key_file = %4$L;
SELECT pc_disconnect();
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SET pcqual.client_key_file = %5$L;
SELECT pc_disconnect();
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
RESET pcqual.client_certificate_file;
RESET pcqual.client_key_file;
-- App+User: success (the token rotates), then a used refresh token
SET pcqual.refresh_token_file = %6$L;
SELECT pc_disconnect();
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SET pcqual.refresh_token_file = %7$L;
SELECT pc_disconnect();
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
RESET pcqual.refresh_token_file;
-- an external token: success, then rejected
SET pcqual.access_token_file = %8$L;
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SET pcqual.access_token_file = %9$L;
SELECT 'ok:' || count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
RESET pcqual.access_token_file;
-- a failing API call and a bulk call
SELECT 'ok:' || count(*) FROM pc_qualifications('22222222-0000-0000-0000-000000000403');
SELECT 'ok:' || count(*) FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000001', '22222222-0000-0000-0000-000000000404']::uuid[], 'warning');
SELECT 'session-end';
$script$, pg_temp.tap_dir('wrong_secret'), :port, :'cert_file', :'key_file', :'other_key_file',
          :'refresh_file', pg_temp.tap_dir('used_refresh'), :'access_file', pg_temp.tap_dir('rejected_token'))) line;
SELECT pg_temp.emulator('config?refresh_rotation_strict=off');
CREATE TEMP TABLE server_log AS
    SELECT CASE WHEN readable THEN pg_read_file(:'server_log_path', size, (pg_stat_file(:'server_log_path')).size - size) END AS text
    FROM log_start;
CREATE TEMP TABLE secret_pattern (what text, pattern text);
INSERT INTO secret_pattern VALUES
    ('the client secret', 'pcqual-test-secret'), ('a wrong secret', 'not-the-app-secret'),
    ('a refresh token', 'pcqual-test-refresh'), ('the external token', 'pcqual-static-token'),
    ('a rejected token', 'a-token-the-service-rejects'), ('an issued access token', 'emu-(app|user)-'),
    ('a client assertion (a JWT)', 'eyJ');

SELECT ok((SELECT bool_or(line = 'session-end') AND bool_or(line ~ '^DEBUG:  ')
                  AND bool_or(line ~ '^DETAIL:  AADSTS7000215: ') AND bool_or(line ~ '^DETAIL:  AADSTS700027: ')
                  AND bool_or(line ~ '^DETAIL:  AADSTS70008: ') AND bool_or(line ~ 'token answer cannot be used')
                  AND bool_or(line ~ '^ERROR:  28000: Partner Center answered HTTP 401')
           FROM debug_output),
          'the debug5 session ran every case and its messages were captured');
SELECT is((SELECT count(*) FROM debug_output WHERE line = 'ok:1'), 6::bigint,
          'the six calls meant to succeed did');
SELECT is((SELECT string_agg(DISTINCT p.what, ', ') FROM debug_output d, secret_pattern p WHERE d.line ~ p.pattern),
          NULL, 'no secret or token in any message the client got at debug5');
SELECT CASE WHEN (SELECT text FROM server_log) IS NULL
            THEN skip('the server log is not a file this test can read')
            ELSE is((SELECT coalesce(string_agg(p.what, ', '), 'none')
                            || CASE WHEN l.text ~ 'AADSTS7000215' THEN '' ELSE ' (but the session''s messages are missing)' END
                     FROM server_log l LEFT JOIN secret_pattern p ON l.text ~ p.pattern GROUP BY l.text),
                    'none', 'nor in the server log at log_min_messages = debug5') END;

------------------------------------------------------------------------
-- Text from the service is quoted safely: control and direction-changing
-- characters are shown as \xNN.
SELECT pg_temp.emulator_customer('d0000000-0000-4000-8000-00000000c0de',
    '{"qualifications": [{"qualification": "Edu\u0007cation", "vettingStatus": "Approved",
                          "vettingCreatedDate": "2021-01-01\u001b[2J\r\nERROR: forged \u202e"}]}');
CREATE TEMP TABLE quoted AS SELECT line FROM pg_temp.session_output(
    $$SELECT count(*) FROM pc_qualifications('d0000000-0000-4000-8000-00000000c0de');$$) line;
SELECT is((SELECT line FROM quoted WHERE line ~ '^WARNING'),
    'WARNING:  22007: vetting date "2021-01-01\x1B[2J\x0D\x0AERROR: forged \xE2\x80\xAE" of customer d0000000-0000-4000-8000-00000000c0de is not ISO 8601',
    'a vetting date with ESC, CR, LF and U+202E is quoted with \xNN escapes, on one line');
SELECT is((SELECT line FROM quoted WHERE line ~ '^DETAIL'),
    'DETAIL:  vetting_created_date of its Edu\x07cation qualification is NULL.',
    'so is a qualification name with BEL');
-- An error description and code with control characters.
SELECT pg_temp.emulator_customer('d0000000-0000-4000-8000-0000000bad01',
    '{"fail": 400, "description": "Invalid\u0007 customer\u001b[31m\r\nERROR:  forged\u202e", "code": "2001\r\n"}');
SELECT results_eq(
    $$SELECT state, message FROM pg_temp.error_of($q$SELECT * FROM pc_qualifications('d0000000-0000-4000-8000-0000000bad01')$q$)$$,
    $$VALUES ('22023', 'Partner Center answered HTTP 400 for customer d0000000-0000-4000-8000-0000000bad01: Invalid\x07 customer\x1B[31m\x0D\x0AERROR:  forged\xE2\x80\xAE (code 2001\x0D\x0A)')$$,
    'an error description and code with BEL, ESC, CR, LF and U+202E are quoted with \xNN escapes');

SELECT * FROM finish();
