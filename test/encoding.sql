-- In a database whose encoding is not UTF-8 (here LATIN1), a customer whose
-- answer holds a character that encoding lacks is that customer's failure
-- (22P05, untranslatable_character), not the statement's: a sync stores
-- the other customers and counts the failure, as for any other bad answer.
-- Characters LATIN1 has (é) are converted.  The LATIN1 database is created
-- here (so this file runs outside a transaction) and reached with dblink.
\ir helpers.inc
\set QUIET 1
SELECT plan(7);

\set ok   'f1000000-0000-4000-8000-000000000001'
\set bad  'f1000000-0000-4000-8000-000000000002'
\set ascii 'f1000000-0000-4000-8000-000000000003'

SELECT pg_temp.emulator('reset');
SELECT pg_temp.emulator_customer(:'ok', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingReason": "École publique, vérifiée"}]}$$);
SELECT pg_temp.emulator_customer(:'bad', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Rejected", "vettingReason": "Tōkyō office: documents missing"}]}$$);
SELECT pg_temp.emulator_customer(:'ascii', $${"qualifications": [{"qualification": "StateOwnedEntity"}]}$$);

DROP DATABASE IF EXISTS pcqual_latin1;
CREATE DATABASE pcqual_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
-- the same pcqual settings as this database (the emulator, its credentials)
SELECT format('ALTER DATABASE pcqual_latin1 SET %s = %L', split_part(c, '=', 1), substr(c, strpos(c, '=') + 1))
FROM pg_db_role_setting s, unnest(s.setconfig) AS c
WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND c LIKE 'pcqual.%'
\gexec
SELECT dblink_connect('latin1', replace(pg_temp.self_connstr(),
    'dbname=' || pg_temp.conninfo_value(current_database()), 'dbname=pcqual_latin1'));
SELECT dblink_exec('latin1', 'CREATE EXTENSION pcqual');
\set QUIET 0

SELECT is((SELECT e FROM dblink('latin1', 'SHOW server_encoding') AS t(e text)), 'LATIN1',
          'the other database is LATIN1');

CREATE TEMP TABLE fetched AS
    SELECT * FROM dblink('latin1', format($$SELECT customer_tenant_id, succeeded, vetting_reason, error_sqlstate, error_message
                                            FROM pc_fetch_qualifications(ARRAY[%L, %L, %L]::uuid[])$$, :'ok', :'bad', :'ascii'))
        AS t(tenant uuid, succeeded boolean, vetting_reason text, error_sqlstate text, error_message text);
SELECT set_eq($$SELECT tenant, succeeded, vetting_reason, error_sqlstate FROM fetched$$,
    format($$VALUES (%L::uuid, true, 'École publique, vérifiée', NULL::text),
                    (%L::uuid, false, NULL, '22P05'),
                    (%L::uuid, true, NULL, NULL)$$, :'ok', :'bad', :'ascii'),
    'pc_fetch_qualifications: the customer with "ō" fails with 22P05, the other two are answered (é converted)');
SELECT matches((SELECT error_message FROM fetched WHERE NOT succeeded),
    '^invalid answer from Partner Center for customer f1000000-0000-4000-8000-000000000002: item 1: "vettingReason" has a character with no equivalent in encoding "LATIN1"$',
    'its message names the customer, the field and the encoding');

SELECT results_eq(
    $$SELECT * FROM dblink('latin1', format('SELECT customers, succeeded, failed FROM pc_sync_qualifications(ARRAY[%L, %L, %L]::uuid[])',
                                              'f1000000-0000-4000-8000-000000000001', 'f1000000-0000-4000-8000-000000000002',
                                              'f1000000-0000-4000-8000-000000000003')) AS t(c int, s int, f int)$$,
    $$VALUES (3, 2, 1)$$,
    'pc_sync_qualifications goes on: two customers synced, one failed, no ERROR');
SELECT results_eq(
    $$SELECT * FROM dblink('latin1', 'SELECT customer_tenant_id, qualification, vetting_reason FROM pc_qualification_state ORDER BY 1')
        AS t(tenant uuid, qualification text, reason text)$$,
    format($$VALUES (%L::uuid, 'Education', 'École publique, vérifiée'), (%L::uuid, 'StateOwnedEntity', NULL)$$, :'ok', :'ascii'),
    'the answered customers are stored, in LATIN1');
SELECT results_eq(
    $$SELECT * FROM dblink('latin1', 'SELECT customer_tenant_id, consecutive_failures, last_error_sqlstate FROM pc_customer_sync WHERE consecutive_failures > 0')
        AS t(tenant uuid, failures int, sqlstate text)$$,
    format($$VALUES (%L::uuid, 1, '22P05')$$, :'bad'),
    'the failing customer counts one failure, with 22P05');

-- Alone, it is the statement's ERROR, with the same SQLSTATE and message.
SELECT results_eq(
    format($$SELECT state, message FROM pg_temp.error_of(%L)$$,
           format($$SELECT * FROM dblink('latin1', %L) AS t(n bigint)$$,
                  format('SELECT count(*) FROM pc_qualifications(%L::uuid)', :'bad'))),
    $$VALUES ('22P05', 'invalid answer from Partner Center for customer f1000000-0000-4000-8000-000000000002: item 1: "vettingReason" has a character with no equivalent in encoding "LATIN1"')$$,
    'pc_qualifications(uuid) for that customer raises 22P05');

\set QUIET 1
SELECT dblink_disconnect('latin1');
DROP DATABASE pcqual_latin1;
SELECT pg_temp.emulator('reset');
\set QUIET 0
SELECT * FROM finish();
