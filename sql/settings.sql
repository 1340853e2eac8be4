-- The pcqual.* settings.  pcqual is preloaded (shared_preload_libraries), so
-- they exist from the start of every session.  context "superuser": only a
-- superuser may change it (SET, ALTER ROLE/DATABASE ... SET, postgresql.conf);
-- "user": any role may tune it for its own session.  sql/setup.sql set the
-- "database" ones for this database; credentials are files (*_file), never
-- values.  (The *_file settings are hidden from other roles: see
-- sql/privileges.sql.)
SELECT name, setting, unit, context, source
FROM pg_settings WHERE name LIKE 'pcqual.%' ORDER BY name;

-- The pcqual. prefix is reserved: a misspelt setting is an error, not a
-- silently ignored placeholder.
SET pcqual.time_out = '10s';

-- Clouds.  An empty base_url or authority means the cloud's own endpoint;
-- SHOW tells which one is in force.
BEGIN;
SET LOCAL pcqual.base_url = '';
SET LOCAL pcqual.authority = '';
SHOW pcqual.cloud;
SHOW pcqual.base_url;
SHOW pcqual.authority;
-- US Government: its own sign-in authority, the global API.
SET LOCAL pcqual.cloud = 'usgov';
SHOW pcqual.base_url;
SHOW pcqual.authority;
-- China (21Vianet): both its own.
SET LOCAL pcqual.cloud = 'china';
SHOW pcqual.base_url;
SHOW pcqual.authority;
-- An explicit URL wins over the cloud's.
SET LOCAL pcqual.base_url = 'https://pc-proxy.example.com/';
SHOW pcqual.base_url;
ROLLBACK;
SET pcqual.cloud = 'mars';

-- URLs: https:// (http:// is accepted here but used only with
-- pcqual.allow_http, below), and nothing after the base: no query, no
-- fragment, no spaces.
SET pcqual.base_url = 'ftp://example.com';
SET pcqual.base_url = 'https://example.com/?q=1';
SET pcqual.authority = 'https://login.example.com/#x';
SET pcqual.authority = 'https://login example.com';

-- Only https:// is used unless pcqual.allow_http is on (for local emulators
-- such as this one): nothing is sent, not even the token request.  (psql's
-- CONTEXT line is not shown: it would only say that pc_qualifications(text),
-- the SQL wrapper for a quoted tenant id, called pc_qualifications(uuid).)
\set SHOW_CONTEXT never
BEGIN;
SET LOCAL pcqual.allow_http = off;
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
ROLLBACK;

-- pcqual.partner_tenant becomes a path segment of the sign-in URL
-- ({authority}/{partner_tenant}/oauth2/token): a GUID or a domain name.
BEGIN;
SET LOCAL pcqual.partner_tenant = '6f1c2a4e-0b1d-4c5e-9a7b-3c2d1e0f9a8b';
SET LOCAL pcqual.partner_tenant = 'contoso.onmicrosoft.com';
SET LOCAL pcqual.partner_tenant = 'Contoso-Partner.com';
ROLLBACK;
SET pcqual.partner_tenant = '../x';
SET pcqual.partner_tenant = 'a/b';
SET pcqual.partner_tenant = '-bad-.com';
SET pcqual.partner_tenant = 'contoso..com';

-- Values that end up in an HTTP header or the token request must not
-- smuggle in a line break or another control character (header
-- injection).  A carriage return is refused the same way as the line feed
-- shown here.
SET pcqual.application_name = E'crm\nX-Injected: 1';
SELECT error_of($$SET pcqual.application_name = E'crm\r\nX-Injected: 1'$$)
       LIKE 'ERROR:  22023: invalid value for parameter "pcqual.application_name"%'
       AS carriage_return_refused;
SET pcqual.client_id = E'pcqual-test-app\nX-Injected: 1';
SET pcqual.resource = E'https://api.partnercenter.microsoft.com\nX-Injected: 1';
-- The correlation id must be a GUID; empty (the default) means a new GUID
-- per statement.
SET pcqual.correlation_id = 'not-a-guid';
SET pcqual.correlation_id = '7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745';
SHOW pcqual.correlation_id;
RESET pcqual.correlation_id;
SET pcqual.application_name = 'crm-nightly';
SHOW pcqual.application_name;
RESET pcqual.application_name;

-- Numbers have ranges.
SET pcqual.max_retries = 11;
SET pcqual.concurrency = 0;
SET pcqual.max_idle_connections = -1;

-- Retired: before 1.2, secrets were setting values, which other roles, the
-- server log and pg_file_settings could see.  These settings now refuse
-- any value, and the message never repeats it; the HINT names the file
-- setting to use instead.
SET pcqual.client_secret = 'hunter2-app-secret';
SET pcqual.refresh_token = 'hunter2-refresh-token';
SET pcqual.access_token = 'hunter2-access-token';
SELECT error_of($$SET pcqual.client_secret = 'hunter2-app-secret'$$)
       LIKE '%hunter2%' AS value_in_message;
-- Stored settings are refused too.
ALTER DATABASE contrib_regression SET pcqual.client_secret = 'hunter2-app-secret';
ALTER ROLE CURRENT_USER SET pcqual.refresh_token = 'hunter2-refresh-token';
-- Empty is accepted (a configuration that clears them keeps working), and
-- they are not listed by SHOW ALL or pg_settings.
SET pcqual.client_secret = '';
SET pcqual.refresh_token = '';
SET pcqual.access_token = '';
SELECT count(*) AS retired_listed FROM pg_settings
WHERE name IN ('pcqual.client_secret', 'pcqual.refresh_token', 'pcqual.access_token');

-- Settings that anyone may change apply to the next call; this one still
-- works with all of the above refused.
SET pcqual.timeout = '10s';
SET pcqual.max_retries = 1;
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
