-- The pcqual.* settings.  SHOW knows them once the library is loaded: by a
-- first call, by LOAD, or for every session by shared_preload_libraries.
LOAD 'pcqual';

-- Defaults of the settings anyone may change.
SHOW pcqual.timeout;
SHOW pcqual.connect_timeout;
SHOW pcqual.correlation_id;
SHOW pcqual.application_name;
SHOW pcqual.max_response_size;
SHOW pcqual.resource;

-- Empty endpoints mean the cloud's defaults; pcqual.cloud switches them.
BEGIN;
SET LOCAL pcqual.base_url = '';
SET LOCAL pcqual.authority = '';
SHOW pcqual.cloud;
SHOW pcqual.base_url;
SHOW pcqual.authority;
SET LOCAL pcqual.cloud = 'china';
SHOW pcqual.base_url;
SHOW pcqual.authority;
ROLLBACK;
SET pcqual.cloud = 'mars';

-- Values that end up in a URL or a header are checked when set.
SET pcqual.correlation_id = 'not-a-guid';
SET pcqual.correlation_id = '7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745';
RESET pcqual.correlation_id;
SET pcqual.application_name = E'crm\r\nX-Injected: 1';
SET pcqual.base_url = 'ftp://example.com';
SET pcqual.base_url = 'https://example.com/?q=1';
SET pcqual.timeout = 0;

-- The pcqual. prefix is reserved: a misspelt setting is an error, not a
-- silently ignored placeholder.
SET pcqual.time_out = '10s';

-- Only https:// is used unless pcqual.allow_http is on (local emulators).
BEGIN;
SET LOCAL pcqual.allow_http = off;
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;

-- Secrets are never shown, not even to a superuser, and SHOW ALL skips them.
SHOW pcqual.client_secret;
SHOW pcqual.refresh_token;
SELECT name, setting FROM pg_settings
WHERE name IN ('pcqual.client_secret', 'pcqual.refresh_token', 'pcqual.access_token')
ORDER BY name;
SELECT count(*) FROM (SELECT (pg_show_all_settings()).*) s
WHERE name IN ('pcqual.client_secret', 'pcqual.refresh_token', 'pcqual.access_token')
  AND setting = 'pcqual-test-secret';

-- Missing credentials: 28000 with a hint naming the settings to set.
BEGIN;
SET LOCAL pcqual.client_secret = '';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;
BEGIN;
SET LOCAL pcqual.partner_tenant = '';
SET LOCAL pcqual.refresh_token = 'pcqual-test-refresh';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;

-- App-only with a wrong secret: the token endpoint's error_description is
-- quoted, the secret never is.
BEGIN;
SET LOCAL pcqual.client_secret = 'wrong-secret-4711';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$)
       LIKE '%wrong-secret-4711%' AS secret_in_message;
ROLLBACK;

-- App+User: a refresh token.
BEGIN;
SET LOCAL pcqual.refresh_token = 'pcqual-test-refresh';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SET LOCAL pcqual.refresh_token = 'an-expired-refresh-token';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;

-- An externally managed access token is sent as is.
BEGIN;
SET LOCAL pcqual.access_token = 'pcqual-static-token';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SET LOCAL pcqual.access_token = 'a-token-the-service-rejects';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;

-- Back to App-only: the session is usable.
SELECT qualification FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
