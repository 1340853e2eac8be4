-- A scheduled sync: pg_cron (preloaded, background workers, database
-- pcqual_tap) runs pc_sync_qualifications() for a job role that has only
-- EXECUTE on it.  One real run at the next minute boundary: the run
-- succeeds, its requests reach the emulator with the database's pcqual
-- settings, and the state tables are brought up to date.
\ir helpers.inc
\set QUIET 1
SELECT plan(13);
SET client_min_messages = error;

\set c_one  'c0000000-0000-4000-8000-00000000c001'
\set c_none 'c0000000-0000-4000-8000-00000000c002'
\set c_gone 'c0000000-0000-4000-8000-00000000c003'
SELECT pg_temp.emulator_customer(:'c_none', '{"qualifications": []}');
SELECT pg_temp.emulator_customer(:'c_gone', '{"fail": 404}');

-- The job's role: it may log in (a background worker connects as it),
-- schedule jobs and run the sync, and nothing else.
DROP ROLE IF EXISTS pcqual_tap_cron_job;
CREATE ROLE pcqual_tap_cron_job LOGIN;
GRANT USAGE ON SCHEMA cron TO pcqual_tap_cron_job;
GRANT EXECUTE ON FUNCTION pc_sync_qualifications(uuid[]) TO pcqual_tap_cron_job;

-- A job added in the very last seconds of a minute might only be picked up
-- after the next boundary: wait for the new minute then.
DO $$
BEGIN
    IF extract(second FROM clock_timestamp()) >= 57 THEN
        PERFORM pg_sleep(61 - extract(second FROM clock_timestamp()));
    END IF;
END
$$;

CREATE TEMP TABLE job (jobid bigint, scheduled_at timestamptz);
GRANT ALL ON job TO pcqual_tap_cron_job;
SET ROLE pcqual_tap_cron_job;
INSERT INTO job
SELECT cron.schedule('pcqual-test-sync', '* * * * *',
                     format('SELECT * FROM pc_sync_qualifications(ARRAY[%L, %L, %L]::uuid[])',
                            :'c_one', :'c_none', :'c_gone')),
       clock_timestamp();
RESET ROLE;

-- Wait for the run (at most until the next minute boundary and a bit).
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '75 s';
BEGIN
    WHILE clock_timestamp() < deadline AND NOT EXISTS (
            SELECT FROM cron.job_run_details d JOIN job USING (jobid)
            WHERE d.status IN ('succeeded', 'failed')) LOOP
        PERFORM pg_sleep(0.25);
    END LOOP;
END
$$;
SELECT cron.unschedule(jobid) FROM job;
CREATE TEMP TABLE run AS
    SELECT d.* FROM cron.job_run_details d JOIN job USING (jobid) ORDER BY d.runid LIMIT 1;

SELECT is((SELECT count(*) FROM run), 1::bigint, 'the job ran at the next minute boundary');
SELECT is((SELECT status FROM run), 'succeeded', 'the run succeeded');
SELECT is((SELECT return_message FROM run), 'SELECT 1', 'and returned the sync''s one row');
SELECT is((SELECT username || ' in ' || database FROM run), 'pcqual_tap_cron_job in ' || current_database(),
          'as the job''s role, in this database');
SELECT cmp_ok((SELECT start_time FROM run) - (SELECT scheduled_at FROM job), '<=', interval '62 s',
              'no later than the next minute boundary');

-- What the run did: its requests reached the emulator (the job's session
-- had the database's pcqual settings) ...
SELECT set_eq($$SELECT lower(tenant), status FROM pg_temp.emulator_log() WHERE kind = 'api'$$,
              format($$VALUES (%L, 200), (%L, 200), (%L, 404)$$, :'c_one', :'c_none', :'c_gone'),
              'the job''s session sent one request per customer to the emulator');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE kind = 'token' AND auth = 'client_credentials'),
          1::bigint, 'with a token obtained with the database''s App-only credentials');

-- ... and the state tables were written (by the SECURITY DEFINER sync).
SELECT results_eq(format($$SELECT qualification, vetting_status FROM pc_qualification_state
                           WHERE customer_tenant_id IN (%L, %L, %L)$$, :'c_one', :'c_none', :'c_gone'),
                  $$VALUES ('Education', 'Approved')$$,
                  'pc_qualification_state: the one qualification');
SELECT results_eq(format($$SELECT customer_tenant_id::text, change FROM pc_qualification_changes
                           WHERE customer_tenant_id IN (%L, %L, %L)$$, :'c_one', :'c_none', :'c_gone'),
                  format($$VALUES (%L, 'added')$$, :'c_one'),
                  'pc_qualification_changes: recorded as added');
SELECT set_eq(format($$SELECT customer_tenant_id::text, consecutive_failures, last_error_sqlstate
                       FROM pc_customer_sync WHERE customer_tenant_id IN (%L, %L, %L)$$, :'c_one', :'c_none', :'c_gone'),
              format($$VALUES (%L, 0, NULL), (%L, 0, NULL), (%L, 1, 'P0002')$$, :'c_one', :'c_none', :'c_gone'),
              'pc_customer_sync: two successes and the failure');
-- (pg_cron records start_time once it has sent the command, which may be
-- after the job's transaction began: the run began at its minute boundary)
SELECT ok((SELECT bool_and(last_attempt_at BETWEEN (SELECT date_trunc('minute', start_time) FROM run)
                                               AND (SELECT end_time FROM run))
           FROM pc_customer_sync WHERE customer_tenant_id IN (:'c_one', :'c_none', :'c_gone')),
          'written during the run');

SELECT is((SELECT count(*) FROM cron.job WHERE jobname = 'pcqual-test-sync'), 0::bigint, 'the job is unscheduled');
SELECT pg_sleep(0.2);
SELECT is((SELECT count(*) FROM cron.job_run_details d JOIN job USING (jobid) WHERE d.status = 'running'), 0::bigint,
          'and nothing of it is still running');

-- Leave the cluster and the tables as they were.
DELETE FROM cron.job_run_details WHERE jobid = (SELECT jobid FROM job);
REVOKE ALL ON SCHEMA cron FROM pcqual_tap_cron_job;
REVOKE ALL ON FUNCTION pc_sync_qualifications(uuid[]) FROM pcqual_tap_cron_job;
DROP TABLE job;
DROP ROLE pcqual_tap_cron_job;
TRUNCATE pc_qualification_state, pc_qualification_changes, pc_customer_sync;

SELECT * FROM finish();
