-- Who may do what.  EXECUTE on every pcqual function and every privilege on
-- its tables are revoked from PUBLIC; a superuser grants each role what it
-- needs (the README's GRANT pattern).  Four login roles, each used below in
-- a fresh session (\c) as an application would connect:
--   regress_crm_reader            the read functions, and SELECT on the tables
--   regress_pcqual_job            pc_sync_qualifications only
--   regress_qualification_admin   pc_create_qualification only
--   regress_nobody                nothing
-- They log in with the password of this test cluster's superuser (psql's
-- PGPASSWORD, which test/check.sh's pg_virtualenv sets), so that psql can
-- connect as them.
SELECT current_user AS superuser \gset
-- (What an interrupted earlier run may have left; roles are per cluster.)
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_pcqual_scratch;
DROP ROLE IF EXISTS regress_crm_reader, regress_pcqual_job, regress_qualification_admin,
    regress_nobody;
RESET client_min_messages;
\getenv password PGPASSWORD
\if :{?password}
\else
\set password 'no password needed'
\endif
CREATE ROLE regress_crm_reader LOGIN PASSWORD :'password';
CREATE ROLE regress_pcqual_job LOGIN PASSWORD :'password';
CREATE ROLE regress_qualification_admin LOGIN PASSWORD :'password';
CREATE ROLE regress_nobody LOGIN PASSWORD :'password';

GRANT EXECUTE ON FUNCTION pc_qualifications(uuid), pc_qualifications(text),
      pc_qualifications(uuid[], text), pc_customers(text, text),
      pc_validation_codes(), pc_disconnect() TO regress_crm_reader;
GRANT SELECT ON pc_qualification_state, pc_qualification_changes, pc_customer_sync
      TO regress_crm_reader;
GRANT EXECUTE ON FUNCTION pc_sync_qualifications(uuid[]) TO regress_pcqual_job;
GRANT EXECUTE ON FUNCTION pc_create_qualification(uuid, text, text, text, text, uuid)
      TO regress_qualification_admin;

-- Every function of the extension (found through pg_depend), and who may
-- execute it: PUBLIC may execute none.
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       has_function_privilege('regress_crm_reader', p.oid, 'EXECUTE') AS reader,
       has_function_privilege('regress_pcqual_job', p.oid, 'EXECUTE') AS job,
       has_function_privilege('regress_qualification_admin', p.oid, 'EXECUTE') AS admin
FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
  AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pcqual')
ORDER BY p.oid::regprocedure::text COLLATE "C";
-- Its tables: PUBLIC has no privilege on them; the reader may only read.
SELECT c.oid::regclass AS table_name,
       has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
           AS public_any,
       has_table_privilege('regress_crm_reader', c.oid, 'SELECT') AS reader_select,
       has_table_privilege('regress_crm_reader', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
           AS reader_write,
       has_table_privilege('regress_pcqual_job', c.oid, 'SELECT') AS job_select
FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind = 'r'
  AND d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pcqual')
ORDER BY c.relname COLLATE "C";

-- What a role can see of the settings, from every place PostgreSQL shows
-- them: SHOW ALL, pg_settings, pg_db_role_setting (ALTER DATABASE/ROLE ...
-- SET; readable by every role).  These helpers run with the caller's
-- privileges.
CREATE FUNCTION show_all() RETURNS TABLE (name text, setting text, description text)
LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'SHOW ALL'; END $$;
CREATE FUNCTION settings_holding_a_secret() RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM (
        SELECT setting FROM show_all()
        UNION ALL SELECT setting FROM pg_settings
        UNION ALL SELECT unnest(setconfig) FROM pg_db_role_setting) s
    WHERE setting ~ '(pcqual-test-secret|pcqual-test-refresh|pcqual-static-token)'
$$;
-- A scratch database the reader owns: even its owner cannot point pcqual
-- elsewhere in it (below).
CREATE DATABASE regress_pcqual_scratch OWNER regress_crm_reader;

-- ---- The reader, in a fresh session ---------------------------------------
\c - regress_crm_reader
-- The *_file settings are hidden (GUC_SUPERUSER_ONLY): where the secrets
-- are is none of the reader's business.  The other superuser-only
-- settings are visible, so a reader can tell where requests go.
SELECT name, setting FROM pg_settings WHERE name LIKE 'pcqual.%' ORDER BY name;
SELECT count(*) AS pcqual_settings_in_show_all FROM show_all() WHERE name LIKE 'pcqual.%';
SHOW pcqual.client_secret_file;
SELECT current_setting('pcqual.client_secret_file');
SELECT current_setting('pcqual.client_secret');
-- pg_db_role_setting is readable by everyone; it holds where a secret is,
-- never the secret itself.
SELECT setting AS database_setting
FROM pg_db_role_setting, unnest(setconfig) AS setting
WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND setting LIKE 'pcqual.%'
ORDER BY 1 COLLATE "C";
SELECT settings_holding_a_secret();

-- Reading works with the superuser's configuration ...
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
-- ... and after the call nothing more is visible.
SELECT settings_holding_a_secret();
SELECT count(*) AS pcqual_settings_in_show_all FROM show_all() WHERE name LIKE 'pcqual.%';

-- The reader cannot change where requests and tokens go, nor which
-- credentials or limits are used: SET, set_config(), ALTER ROLE ... SET and
-- ALTER DATABASE ... SET are all refused with 42501.
SET pcqual.base_url = 'http://attacker.example';
\echo :LAST_ERROR_SQLSTATE
SET pcqual.authority = 'http://attacker.example';
SET pcqual.ca_file = '/tmp/attacker-ca.pem';
SET pcqual.cloud = 'china';
SET pcqual.client_secret_file = '/tmp/attacker-secret';
SELECT set_config('pcqual.base_url', 'http://attacker.example', false);
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_crm_reader SET pcqual.base_url = 'http://attacker.example';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE regress_pcqual_scratch SET pcqual.authority = 'http://attacker.example';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE contrib_regression SET pcqual.authority = 'http://attacker.example';
\echo :LAST_ERROR_SQLSTATE
-- Every superuser-only setting, by set_config(): the SQLSTATE of each refusal.
SELECT name, substring(error_of(format('SELECT set_config(%L, %L, false)', name, value))
                       FROM '^ERROR:  (\w{5}):') AS sqlstate
FROM (VALUES ('pcqual.cloud', 'usgov'), ('pcqual.base_url', 'https://x.example'),
             ('pcqual.authority', 'https://x.example'), ('pcqual.resource', 'https://x.example'),
             ('pcqual.allow_http', 'off'), ('pcqual.ca_file', '/tmp/x.pem'),
             ('pcqual.partner_tenant', 'x.example'), ('pcqual.client_id', 'x'),
             ('pcqual.client_secret_file', '/tmp/x'),
             ('pcqual.client_certificate_file', '/tmp/x'),
             ('pcqual.client_key_file', '/tmp/x'), ('pcqual.refresh_token_file', '/tmp/x'),
             ('pcqual.access_token_file', '/tmp/x'), ('pcqual.max_response_size', '8MB'),
             ('pcqual.max_idle_connections', '0')) AS s(name, value)
ORDER BY name;
-- The configured values stay in force.
SHOW pcqual.base_url;
SHOW pcqual.authority;
SHOW pcqual.cloud;
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');

-- The reader may tune its own requests ...
SET pcqual.timeout = '10s';
SET pcqual.connect_timeout = '2s';
SET pcqual.max_retries = 1;
SET pcqual.max_retry_wait = '5s';
SET pcqual.concurrency = 4;
SET pcqual.application_name = 'crm-nightly';
SET pcqual.correlation_id = '7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745';
SELECT customer_tenant_id, qualification FROM pc_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000001', '11111111-0000-0000-0000-000000000004']::uuid[])
ORDER BY 1;
SELECT count(*) AS customers FROM pc_customers();
SELECT count(*) AS codes FROM pc_validation_codes();
-- ... and read the sync tables, but neither write them nor create
-- qualifications.
SELECT count(*) >= 0 AS readable FROM pc_qualification_state;
DELETE FROM pc_qualification_state;
SELECT * FROM pc_create_qualification('11111111-0000-0000-0000-000000000004', 'StateOwnedEntity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_sync_qualifications(ARRAY['11111111-0000-0000-0000-000000000004']::uuid[]);

-- ---- The scheduled job, in a fresh session ---------------------------------
-- pc_sync_qualifications runs with the extension owner's rights: the job
-- needs EXECUTE on it and nothing else.  It can read nothing else.
\c - regress_pcqual_job
SELECT * FROM pc_sync_qualifications(ARRAY['11111111-0000-0000-0000-000000000004']::uuid[]);
SELECT * FROM pc_qualification_state;
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000004');
SELECT settings_holding_a_secret();

-- ---- The writer, in a fresh session ----------------------------------------
-- It may call pc_create_qualification (which then asks for App+User
-- credentials, sql/write.sql), and nothing else.
\c - regress_qualification_admin
SELECT * FROM pc_create_qualification('11111111-0000-0000-0000-000000000004', 'StateOwnedEntity');
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000004');

-- ---- A role without grants, in a fresh session -----------------------------
\c - regress_nobody
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[]);
SELECT * FROM pc_fetch_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[]);
SELECT * FROM pc_customers();
SELECT * FROM pc_validation_codes();
SELECT pc_disconnect();
SELECT * FROM pc_sync_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[]);
SELECT * FROM pc_customer_sync;
SELECT settings_holding_a_secret();

-- ---- Back to the superuser: clean up ---------------------------------------
\c - :superuser
DROP DATABASE regress_pcqual_scratch;
DELETE FROM pc_qualification_changes;
DELETE FROM pc_qualification_state;
DELETE FROM pc_customer_sync;
DROP FUNCTION settings_holding_a_secret();
DROP FUNCTION show_all();
DROP OWNED BY regress_crm_reader, regress_pcqual_job, regress_qualification_admin,
    regress_nobody;
DROP ROLE regress_crm_reader, regress_pcqual_job, regress_qualification_admin,
    regress_nobody;
