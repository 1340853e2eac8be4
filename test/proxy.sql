-- Proxies: pcqual sends its requests, API and token alike, through
-- pcqual.proxy and through nothing else.  Empty (the default) means no proxy
-- at all: https_proxy, http_proxy and ALL_PROXY in the server's environment
-- are ignored, so a proxy an administrator set for other programs never sees
-- a Bearer token or a client secret.  pcqual.no_proxy lists hosts reached
-- directly.  Only a superuser sets either; a proxy URL with a user name or
-- password is refused (secrets are never settings).
--
-- The test proxy (test/connect_proxy.py, started next to the emulator on
-- P+6) tunnels CONNECT and forwards plain HTTP, and logs one line per
-- request.  test/check.sh starts the cluster with https_proxy, http_proxy
-- and ALL_PROXY pointing at it (test/proxy-environment.sh); the suite's own
-- curl commands pass --noproxy '*'.
\ir helpers.inc
SELECT plan(29);

SELECT split_part(current_setting('pcqual.base_url'), ':', 3)::int AS port \gset
SELECT format('http://127.0.0.1:%s', :port) AS plain,
       format('https://127.0.0.1:%s', :port + 1) AS tls,
       format('127.0.0.1:%s', :port + 1) AS tls_host_port,
       format('http://127.0.0.1:%s', :port + 6) AS proxy \gset

-- What the test proxy saw since its last reset, one line per request.
CREATE FUNCTION pg_temp.proxy_log() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT pg_temp.run(format('curl -sf --noproxy ''*'' %s/_proxy/log',
                              pg_temp.sq(current_setting('pcqual_tap.proxy'))))
$$;
CREATE FUNCTION pg_temp.proxy_reset() RETURNS void LANGUAGE sql AS $$
    SELECT pg_temp.run1(format('curl -sf --noproxy ''*'' -o /dev/null -X POST %s/_proxy/reset',
                               pg_temp.sq(current_setting('pcqual_tap.proxy'))))
$$;
SELECT set_config('pcqual_tap.proxy', :'proxy', false);

-- A call for one customer with the API and the token endpoint at url and
-- some more settings, on new connections and with a new token (so that a
-- token request is sent); its error, if any.  Both logs start empty.
CREATE FUNCTION pg_temp.call_at(url text, settings text[] DEFAULT '{}')
RETURNS TABLE (state text, message text, detail text, hint text) LANGUAGE plpgsql AS $$
DECLARE
    at_url text[] := ARRAY['pcqual.base_url', url, 'pcqual.authority', url] || settings;
BEGIN
    PERFORM pg_temp.emulator('reset');
    PERFORM pg_temp.error_under(at_url, 'SELECT pc_disconnect()');
    PERFORM pg_temp.proxy_reset();
    RETURN QUERY SELECT * FROM pg_temp.error_under(at_url,
        'SELECT count(*) FROM pc_qualifications(''11111111-0000-0000-0000-000000000001'')');
END
$$;

------------------------------------------------------------------------
-- The environment: the postmaster, and so every backend, has the three
-- variables pointing at the test proxy (otherwise the tests below would
-- prove nothing) ...
SELECT results_eq(
    format($$SELECT pg_temp.run1(%L)$$,
           'for v in https_proxy http_proxy ALL_PROXY; do printf "%s=%s\n" "$v" "$(printenv "$v")"; done'),
    ARRAY[format(E'https_proxy=%1$s\nhttp_proxy=%1$s\nALL_PROXY=%1$s', :'proxy')],
    'the backend''s environment has https_proxy, http_proxy and ALL_PROXY naming the test proxy (test/check.sh sets them)');
-- ... and a program that honours them, curl without --noproxy, goes through it.
SELECT pg_temp.proxy_reset();
SELECT pg_temp.run1(format('curl -sf -o /dev/null %s/_emulator/health', pg_temp.sq(:'plain')));
SELECT results_eq($$SELECT * FROM pg_temp.proxy_log()$$,
    ARRAY[format('GET %s/_emulator/health', :'plain')],
    'curl run by the backend uses the environment''s proxy');

-- pcqual.proxy empty (the default): the environment's proxy sees nothing,
-- over https or plain http, for the token request and the API alike.
SELECT is(current_setting('pcqual.proxy'), '', 'pcqual.proxy is empty by default');
SELECT is((SELECT state FROM pg_temp.call_at(:'tls')), NULL, 'https without pcqual.proxy works');
SELECT results_eq($$SELECT kind, status FROM pg_temp.emulator_log()$$,
    $$VALUES ('token', 200), ('api', 200)$$,
    'the token and the API request reached the emulator');
SELECT is((SELECT count(*) FROM pg_temp.proxy_log()), 0::bigint,
          'https: the environment''s proxy saw nothing of pcqual');
SELECT is((SELECT state FROM pg_temp.call_at(:'plain')), NULL, 'plain http without pcqual.proxy works');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 2::bigint,
          'the token and the API request reached the emulator');
SELECT is((SELECT count(*) FROM pg_temp.proxy_log()), 0::bigint,
          'plain http: the environment''s proxy saw nothing of pcqual');

------------------------------------------------------------------------
-- pcqual.proxy set: https goes through a CONNECT tunnel (the proxy sees
-- host and port, never a header), the token request and the API alike.
SELECT is((SELECT state FROM pg_temp.call_at(:'tls', ARRAY['pcqual.proxy', :'proxy'])), NULL,
          'https through pcqual.proxy works');
SELECT results_eq($$SELECT kind, status FROM pg_temp.emulator_log()$$,
    $$VALUES ('token', 200), ('api', 200)$$,
    'the token and the API request reached the emulator through the tunnel');
SELECT ok((SELECT count(*) FROM pg_temp.proxy_log()) > 0
          AND (SELECT bool_and(l = 'CONNECT ' || :'tls_host_port') FROM pg_temp.proxy_log() l),
          format('the proxy saw only CONNECT %s', :'tls_host_port'));

-- Plain http through the proxy: it forwards the requests, and sees them.
SELECT is((SELECT state FROM pg_temp.call_at(:'plain', ARRAY['pcqual.proxy', :'proxy'])), NULL,
          'plain http through pcqual.proxy works');
SELECT results_eq($$SELECT * FROM pg_temp.proxy_log()$$,
    ARRAY[format('POST %s/pcqual-test-partner.onmicrosoft.com/oauth2/token', :'plain'),
          format('GET %s/v1/customers/11111111-0000-0000-0000-000000000001/qualifications', :'plain')],
    'the proxy forwarded the token request and the API request');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 2::bigint,
          'and the emulator answered both');

-- pcqual.no_proxy: the hosts listed are reached directly.
SELECT is((SELECT state FROM pg_temp.call_at(:'tls', ARRAY['pcqual.proxy', :'proxy',
                                                             'pcqual.no_proxy', '127.0.0.1'])), NULL,
          'https with 127.0.0.1 in pcqual.no_proxy works');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 2::bigint,
          'the token and the API request reached the emulator');
SELECT is((SELECT count(*) FROM pg_temp.proxy_log()), 0::bigint,
          'pcqual.no_proxy = ''127.0.0.1'': the proxy saw nothing');

-- A proxy that does not answer: a transport error that names its address
-- (port 1 of 127.0.0.1: nothing listens there), not the emulator's.
CREATE TEMP TABLE unreachable AS
    SELECT * FROM pg_temp.call_at(:'tls', ARRAY['pcqual.proxy', 'http://127.0.0.1:1',
                                                 'pcqual.max_retries', '0']);
SELECT is((SELECT state FROM unreachable), '58000', 'an unreachable proxy: 58000');
SELECT matches((SELECT message FROM unreachable), '^could not get an answer from Azure AD for a token request',
               'the token request got no answer');
-- libcurl up to 8.14 says "Failed to connect to 127.0.0.1 port 1", 8.22
-- "Failed to connect to 127.0.0.1:18766 over proxy 127.0.0.1".
SELECT matches((SELECT detail FROM unreachable), '127\.0\.0\.1 port 1\M|over proxy 127\.0\.0\.1\M',
               'the DETAIL names the proxy''s address (curl''s reason)');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 0::bigint,
          'and nothing went to the emulator directly');

------------------------------------------------------------------------
-- What pcqual.proxy accepts: http://, https:// or socks5h:// and a host ...
SELECT is((SELECT state FROM pg_temp.error_under(
               ARRAY['pcqual.proxy', 'socks5h://proxy.example.com:1080', 'pcqual.no_proxy', 'login.microsoftonline.com,.example.com'],
               'SELECT 1')), NULL,
          'a socks5h:// proxy and a no_proxy list are accepted');
-- ... and nothing else (22023).
SELECT results_eq($$SELECT state, message, detail FROM pg_temp.error_under('{}', 'SET pcqual.proxy = ''ftp://proxy.example.com''')$$,
    $$VALUES ('22023', 'invalid value for parameter "pcqual.proxy": "ftp://proxy.example.com"',
              'The proxy URL must start with http://, https:// or socks5h://.')$$,
    'ftp:// is refused (22023)');
SELECT results_eq($$SELECT state, detail FROM pg_temp.error_under('{}', 'SET pcqual.proxy = ''http://''')$$,
    $$VALUES ('22023', 'The proxy URL must name a host, as in http://proxy.example.com:3128, without spaces, query or fragment.')$$,
    'a URL without a host is refused (22023)');
-- A user name and password: refused, and never quoted.
CREATE TEMP TABLE with_credentials AS
    SELECT * FROM pg_temp.error_under('{}', 'SET pcqual.proxy = ''http://proxyuser:s3cret-pw@proxy.example.com:3128''');
SELECT results_eq($$SELECT state, message FROM with_credentials$$,
    $$VALUES ('22023', 'pcqual.proxy must not hold a user name or password: the value was refused')$$,
    'a proxy URL with user:password is refused (22023)');
SELECT ok((SELECT concat_ws(' ', message, detail, hint) !~ 's3cret|proxyuser' FROM with_credentials),
          'the error does not repeat the user name or the password');
SELECT results_eq($$SELECT detail, hint FROM with_credentials$$,
    $$VALUES ('A secret in a setting is exposed to other roles, to pg_file_settings and to the server log; pcqual does not support proxy authentication.',
              'Use a proxy that authorises the database server by its address, and set pcqual.proxy to its URL without credentials, such as http://proxy.example.com:3128.')$$,
    'the DETAIL says why, the HINT what to do instead');

-- Only a superuser sets them (42501).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pcqual_tap_proxy_user') THEN
        CREATE ROLE pcqual_tap_proxy_user;
    END IF;
END
$$;
SELECT results_eq($$SELECT s.name, e.state
                    FROM (VALUES ('pcqual.proxy', 'http://attacker.example:3128'), ('pcqual.no_proxy', '*')) s(name, value),
                         pg_temp.error_under(ARRAY['role', 'pcqual_tap_proxy_user'],
                                             format('SET %s = %L', s.name, s.value)) e
                    ORDER BY 1$$,
    $$VALUES ('pcqual.no_proxy', '42501'), ('pcqual.proxy', '42501')$$,
    'another role cannot set pcqual.proxy or pcqual.no_proxy (42501)');
DROP ROLE pcqual_tap_proxy_user;

SELECT * FROM finish();
