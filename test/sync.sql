-- pc_sync_qualifications(): changes recorded once with old and new values,
-- a failing customer keeping its state while its failures are counted, a
-- customer with no qualifications, customers left out, two syncs at once,
-- a larger population, and a job role with EXECUTE only.
\ir helpers.inc
\set QUIET 1
SELECT plan(48);

SET pcqual.max_retries = 0;            -- a failing customer fails at once
SET client_min_messages = error;       -- (each failed customer is also a WARNING)

-- The customers, by what happens to them.
\set t_add    'e0000000-0000-4000-8000-000000000001'
\set t_change 'e0000000-0000-4000-8000-000000000002'
\set t_remove 'e0000000-0000-4000-8000-000000000003'
\set t_none   'e0000000-0000-4000-8000-000000000004'
\set t_fail   'e0000000-0000-4000-8000-000000000005'
\set t_out    'e0000000-0000-4000-8000-000000000006'
\set t_dup    '11111111-0000-0000-0000-000000000015'

-- Each sync's result, with the time it records (when it got its turn),
-- read back from pc_customer_sync.
CREATE TEMP TABLE syncs (n int PRIMARY KEY, at timestamptz, customers int, succeeded int,
                         failed int, rows_changed int);
CREATE FUNCTION pg_temp.sync(n int, tenants uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO syncs SELECT n, NULL, * FROM pc_sync_qualifications(tenants);
    UPDATE syncs SET at = (SELECT max(last_attempt_at) FROM pc_customer_sync) WHERE syncs.n = sync.n;
END
$$;
CREATE FUNCTION pg_temp.at(n int) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT at FROM syncs WHERE syncs.n = at.n
$$;
CREATE FUNCTION pg_temp.changes_of(n int) RETURNS SETOF pc_qualification_changes LANGUAGE sql AS $$
    SELECT * FROM pc_qualification_changes WHERE observed_at = pg_temp.at(n)
$$;

------------------------------------------------------------------------
-- Sync 1: everything is new.
SELECT pg_temp.emulator_customer(:'t_add', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingCreatedDate": "2024-01-01T00:00:00Z"},
    {"qualification": "StateOwnedEntity"}]}$$);
SELECT pg_temp.emulator_customer(:'t_change', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "InReview", "vettingCreatedDate": "2024-02-01T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t_remove', $${"qualifications": [
    {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved", "vettingCreatedDate": "2024-03-01T00:00:00Z"},
    {"qualification": "StateOwnedEntity"}]}$$);
SELECT pg_temp.emulator_customer(:'t_none', '{"qualifications": []}');
SELECT pg_temp.emulator_customer(:'t_fail', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved"}]}$$);
-- t_out: the emulator's generic answer (Education, Approved, 2021-01-01)
-- t_dup: Education listed three times; the latest (Approved) is kept

SELECT pg_temp.sync(1, ARRAY[:'t_add', :'t_change', :'t_remove', :'t_none', :'t_fail', :'t_out', :'t_dup',
                             :'t_add', NULL]::uuid[]);
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM syncs WHERE n = 1$$,
                  $$VALUES (7, 7, 0, 8)$$,
                  'sync 1: 7 distinct customers (a repeated one and NULL ignored), all succeeded, 8 changes');
SELECT is((SELECT count(*)::int FROM pg_temp.changes_of(1)), (SELECT rows_changed FROM syncs WHERE n = 1),
          'sync 1: rows_changed is the number of change rows written');
SELECT set_eq($$SELECT customer_tenant_id::text, qualification, change, old_vetting_status, new_vetting_status,
                       old_vetting_created_date, new_vetting_created_date
                FROM pg_temp.changes_of(1)$$,
              format($$VALUES (%1$L, 'Education', 'added', NULL, 'Approved', NULL::timestamptz, '2024-01-01T00:00:00Z'::timestamptz),
                              (%1$L, 'StateOwnedEntity', 'added', NULL, NULL, NULL, NULL),
                              (%2$L, 'Education', 'added', NULL, 'InReview', NULL, '2024-02-01T00:00:00Z'),
                              (%3$L, 'GovernmentCommunityCloud', 'added', NULL, 'Approved', NULL, '2024-03-01T00:00:00Z'),
                              (%3$L, 'StateOwnedEntity', 'added', NULL, NULL, NULL, NULL),
                              (%4$L, 'Education', 'added', NULL, 'Approved', NULL, NULL),
                              (%5$L, 'Education', 'added', NULL, 'Approved', NULL, '2021-01-01T00:00:00Z'),
                              (%6$L, 'Education', 'added', NULL, 'Approved', NULL, '2020-03-01T00:00:00.5Z')$$,
                     :'t_add', :'t_change', :'t_remove', :'t_fail', :'t_out', :'t_dup'),
              'sync 1: every qualification recorded as added, with its new values');
SELECT is((SELECT count(*) FROM pc_qualification_state), 8::bigint, 'sync 1: 8 state rows');
SELECT is((SELECT count(*) FROM pc_qualification_state WHERE customer_tenant_id = :'t_dup'), 1::bigint,
          'a qualification listed three times is one state row');
SELECT is((SELECT count(*) FROM pc_qualification_state WHERE customer_tenant_id = :'t_none'), 0::bigint,
          'a customer with no qualifications has no state rows');
SELECT ok((SELECT bool_and(first_seen_at = pg_temp.at(1) AND last_seen_at = pg_temp.at(1)) FROM pc_qualification_state),
          'first_seen_at and last_seen_at are the sync''s time');
SELECT results_eq($$SELECT count(*), count(*) FILTER (WHERE last_attempt_at = pg_temp.at(1) AND last_success_at = pg_temp.at(1)
                                                     AND consecutive_failures = 0 AND last_error_sqlstate IS NULL
                                                     AND last_error_message IS NULL)
                    FROM pc_customer_sync$$,
                  $$VALUES (7::bigint, 7::bigint)$$,
                  'pc_customer_sync: each customer, successful, once');

------------------------------------------------------------------------
-- Sync 2: a status changes, a qualification goes, a customer fails, and
-- t_out is not asked for.
SELECT pg_temp.emulator_customer(:'t_change', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingReason": "Verified",
     "vettingCreatedDate": "2024-02-15T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t_remove', $${"qualifications": [
    {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved", "vettingCreatedDate": "2024-03-01T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t_fail', '{"fail": 503}');
CREATE TEMP TABLE before_2 AS
    SELECT 'state' AS tab, to_jsonb(s) AS row FROM pc_qualification_state s WHERE customer_tenant_id = :'t_out'
    UNION ALL
    SELECT 'sync', to_jsonb(c) FROM pc_customer_sync c WHERE customer_tenant_id = :'t_out';

SELECT pg_temp.sync(2, ARRAY[:'t_add', :'t_change', :'t_remove', :'t_none', :'t_fail']::uuid[]);
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM syncs WHERE n = 2$$,
                  $$VALUES (5, 4, 1, 2)$$, 'sync 2: 5 customers, 4 succeeded, 1 failed, 2 changes');
SELECT is((SELECT count(*)::int FROM pg_temp.changes_of(2)), (SELECT rows_changed FROM syncs WHERE n = 2),
          'sync 2: rows_changed is the number of change rows written');
SELECT results_eq(format($$SELECT change, old_vetting_status, new_vetting_status, old_vetting_reason, new_vetting_reason,
                                  old_vetting_created_date, new_vetting_created_date
                           FROM pg_temp.changes_of(2) WHERE customer_tenant_id = %L$$, :'t_change'),
                  $$VALUES ('changed', 'InReview', 'Approved', NULL, 'Verified',
                            '2024-02-01T00:00:00Z'::timestamptz, '2024-02-15T00:00:00Z'::timestamptz)$$,
                  'a changed qualification: one row with the old and the new status, reason and date');
SELECT results_eq(format($$SELECT qualification, change, old_vetting_status, new_vetting_status,
                                  old_vetting_created_date, new_vetting_created_date
                           FROM pg_temp.changes_of(2) WHERE customer_tenant_id = %L$$, :'t_remove'),
                  $$VALUES ('StateOwnedEntity', 'removed', NULL, NULL, NULL::timestamptz, NULL::timestamptz)$$,
                  'a qualification gone: one removed row');
SELECT is((SELECT count(*) FROM pg_temp.changes_of(2) WHERE customer_tenant_id IN (:'t_add', :'t_none')), 0::bigint,
          'unchanged customers: no change rows');
SELECT results_eq(format($$SELECT qualification, vetting_status, vetting_reason, vetting_created_date, first_seen_at, last_seen_at
                           FROM pc_qualification_state WHERE customer_tenant_id = %L$$, :'t_change'),
                  $$VALUES ('Education', 'Approved', 'Verified', '2024-02-15T00:00:00Z'::timestamptz,
                            pg_temp.at(1), pg_temp.at(2))$$,
                  'the changed state row has the new values, first seen in sync 1, last seen in sync 2');
SELECT results_eq(format($$SELECT qualification FROM pc_qualification_state WHERE customer_tenant_id = %L$$, :'t_remove'),
                  $$VALUES ('GovernmentCommunityCloud')$$, 'the removed qualification''s state row is gone');
SELECT ok((SELECT bool_and(last_seen_at = pg_temp.at(2)) FROM pc_qualification_state WHERE customer_tenant_id = :'t_add'),
          'an unchanged qualification was seen again');

-- the failing customer
SELECT results_eq(format($$SELECT qualification, vetting_status, last_seen_at FROM pc_qualification_state
                           WHERE customer_tenant_id = %L$$, :'t_fail'),
                  $$VALUES ('Education', 'Approved', pg_temp.at(1))$$,
                  'a failing customer keeps its state rows');
SELECT is((SELECT count(*) FROM pc_qualification_changes WHERE customer_tenant_id = :'t_fail'
           AND change = 'removed'), 0::bigint, 'a failure is not a removal');
SELECT results_eq(format($$SELECT last_attempt_at, last_success_at, consecutive_failures, last_error_sqlstate
                           FROM pc_customer_sync WHERE customer_tenant_id = %L$$, :'t_fail'),
                  $$VALUES (pg_temp.at(2), pg_temp.at(1), 1, '58000')$$,
                  'its failure is recorded: attempt now, success before, 1 failure, SQLSTATE 58000');
SELECT matches((SELECT last_error_message FROM pc_customer_sync WHERE customer_tenant_id = :'t_fail'),
               '^Partner Center answered HTTP 503 for customer ' || :'t_fail',
               'with the error message');

-- no qualifications is a success
SELECT results_eq(format($$SELECT last_success_at, consecutive_failures, last_error_sqlstate
                           FROM pc_customer_sync WHERE customer_tenant_id = %L$$, :'t_none'),
                  $$VALUES (pg_temp.at(2), 0, NULL::text)$$,
                  'a customer with no qualifications succeeded, not failed');
SELECT is((SELECT count(*) FROM pc_qualification_state WHERE customer_tenant_id = :'t_none'), 0::bigint,
          'and still has no state rows');

-- the customer left out
SELECT set_eq($$SELECT tab, row FROM before_2$$,
              format($$SELECT 'state', to_jsonb(s) FROM pc_qualification_state s WHERE customer_tenant_id = %1$L
                       UNION ALL
                       SELECT 'sync', to_jsonb(c) FROM pc_customer_sync c WHERE customer_tenant_id = %1$L$$, :'t_out'),
              'a customer not in the input is untouched');
SELECT is((SELECT count(*) FROM pc_qualification_changes WHERE customer_tenant_id = :'t_out'), 1::bigint,
          'and has no new change rows');

------------------------------------------------------------------------
-- Sync 3: nothing changed, the customer still fails.
SELECT pg_temp.sync(3, ARRAY[:'t_add', :'t_change', :'t_remove', :'t_none', :'t_fail']::uuid[]);
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM syncs WHERE n = 3$$,
                  $$VALUES (5, 4, 1, 0)$$, 'sync 3: nothing changed, nothing recorded');
SELECT is((SELECT count(*) FROM pg_temp.changes_of(3)), 0::bigint, 'no change rows');
SELECT results_eq(format($$SELECT last_attempt_at, last_success_at, consecutive_failures
                           FROM pc_customer_sync WHERE customer_tenant_id = %L$$, :'t_fail'),
                  $$VALUES (pg_temp.at(3), pg_temp.at(1), 2)$$,
                  'the failing customer: 2 consecutive failures');

------------------------------------------------------------------------
-- Sync 4: the customer recovers (the emulator's generic answer: now with a date).
SELECT pg_temp.emulator_customer(:'t_fail', '{"clear": true}');
SELECT pg_temp.sync(4, ARRAY[:'t_add', :'t_change', :'t_remove', :'t_none', :'t_fail']::uuid[]);
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM syncs WHERE n = 4$$,
                  $$VALUES (5, 5, 0, 1)$$, 'sync 4: all succeeded, one change');
SELECT results_eq(format($$SELECT last_attempt_at, last_success_at, consecutive_failures, last_error_sqlstate, last_error_message
                           FROM pc_customer_sync WHERE customer_tenant_id = %L$$, :'t_fail'),
                  $$VALUES (pg_temp.at(4), pg_temp.at(4), 0, NULL::text, NULL::text)$$,
                  'the recovered customer: failures back to 0, last_success_at set, error cleared');
SELECT results_eq(format($$SELECT change, old_vetting_created_date, new_vetting_created_date
                           FROM pg_temp.changes_of(4) WHERE customer_tenant_id = %L$$, :'t_fail'),
                  $$VALUES ('changed', NULL::timestamptz, '2021-01-01T00:00:00Z'::timestamptz)$$,
                  'its change since its last success is recorded');

------------------------------------------------------------------------
-- Two syncs at once, from two sessions: the second waits for the first and
-- records nothing twice.  The emulator's latency makes them overlap.
SELECT pg_temp.emulator('config?latency_ms=300');
CREATE TEMP TABLE pair AS
    SELECT array_agg(format('e1000000-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid) AS tenants
    FROM generate_series(1, 10) i;
SELECT coalesce(max(seq), 0) AS seq_before_pair FROM pg_temp.emulator_log() \gset
SELECT dblink_connect('sync_a', pg_temp.self_connstr());
SELECT dblink_connect('sync_b', pg_temp.self_connstr());
SELECT dblink_send_query(c, format('SELECT * FROM pc_sync_qualifications(%L)', (SELECT tenants FROM pair)))
FROM unnest(ARRAY['sync_a', 'sync_b']) c;
CREATE TEMP TABLE lock_wait (seen boolean);
DO $$
DECLARE
    waiting int;
BEGIN
    FOR i IN 1..200 LOOP
        SELECT count(*) INTO waiting FROM pg_stat_activity
        WHERE application_name = 'pcqual_tap_peer' AND wait_event_type = 'Lock' AND wait_event = 'advisory';
        EXIT WHEN waiting > 0 OR (dblink_is_busy('sync_a') = 0 AND dblink_is_busy('sync_b') = 0);
        PERFORM pg_sleep(0.01);
    END LOOP;
    INSERT INTO lock_wait VALUES (waiting > 0);
END
$$;
SELECT ok((SELECT seen FROM lock_wait), 'while one sync runs, the other waits for its advisory lock');
CREATE TEMP TABLE pair_results AS
    SELECT c AS conn, r.*
    FROM unnest(ARRAY['sync_a', 'sync_b']) c,
         LATERAL dblink_get_result(c, false) AS r(customers int, succeeded int, failed int, rows_changed int);
SELECT is((SELECT array_agg(dblink_error_message(c)) FROM unnest(ARRAY['sync_a', 'sync_b']) c),
          ARRAY['OK', 'OK'], 'neither sync failed');
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM pair_results ORDER BY rows_changed$$,
                  $$VALUES (10, 10, 0, 0), (10, 10, 0, 10)$$,
                  'the first recorded the 10 new qualifications, the second, which saw them, nothing');
SELECT is((SELECT count(*) FROM pc_qualification_changes WHERE customer_tenant_id = ANY ((SELECT tenants FROM pair)::uuid[])),
          10::bigint, 'each change recorded once');
CREATE TEMP TABLE pair_gets AS
    SELECT * FROM pg_temp.emulator_log() WHERE seq > :seq_before_pair AND kind = 'api';
SELECT ok((SELECT count(DISTINCT correlation_id) = 2 AND bool_and(n = 10 AND last - first = 9)
           FROM (SELECT correlation_id, count(*) AS n, min(r) AS first, max(r) AS last
                 FROM (SELECT *, row_number() OVER (ORDER BY seq) AS r FROM pair_gets) g
                 GROUP BY correlation_id) runs),
          'the second sync fetched only after the first had finished');
SELECT is((SELECT count(*) FROM pc_qualification_state WHERE customer_tenant_id = ANY ((SELECT tenants FROM pair)::uuid[])),
          10::bigint, 'one state row each');
SELECT count(*) FROM unnest(ARRAY['sync_a', 'sync_b']) c, LATERAL dblink_get_result(c, false) AS r(n int);
SELECT dblink_disconnect('sync_a');
SELECT dblink_disconnect('sync_b');
SELECT pg_temp.emulator('config?latency_ms=0');

------------------------------------------------------------------------
-- A sync that waited for another takes its time once it has its turn, not
-- when its transaction began: observed_at never goes backwards.  Here this
-- session holds the syncs' lock while the other's sync waits.
SELECT pg_advisory_lock(hashtext('pcqual'), hashtext('pc_sync_qualifications'));
SELECT dblink_connect('sync_late', pg_temp.self_connstr());
SELECT dblink_send_query('sync_late', format('SELECT * FROM pc_sync_qualifications(%L)', (SELECT tenants FROM pair)));
DO $$
BEGIN
    FOR i IN 1..500 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'pcqual_tap_peer'
                          AND wait_event_type = 'Lock' AND wait_event = 'advisory');
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT pg_sleep(0.2);
CREATE TEMP TABLE released AS SELECT clock_timestamp() AS at;
SELECT pg_advisory_unlock(hashtext('pcqual'), hashtext('pc_sync_qualifications'));
SELECT count(*) FROM dblink_get_result('sync_late', false) AS r(customers int, succeeded int, failed int, rows_changed int);
SELECT count(*) FROM dblink_get_result('sync_late', false) AS r(n int);
SELECT dblink_disconnect('sync_late');
SELECT ok((SELECT min(last_attempt_at) FROM pc_customer_sync WHERE customer_tenant_id = ANY ((SELECT tenants FROM pair)::uuid[]))
          > (SELECT at FROM released),
          'a sync that waited for the lock records the time it got it, after the other sync''s end');

-- At REPEATABLE READ or SERIALIZABLE a sync is refused, before any request.
SELECT coalesce(max(seq), 0) AS seq_before_refused FROM pg_temp.emulator_log() \gset
CREATE TEMP TABLE refused (level text, state text, message text);
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO refused SELECT 'REPEATABLE READ', state, message
    FROM pg_temp.error_of(format('SELECT * FROM pc_sync_qualifications(%L)', (SELECT tenants FROM pair)));
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO refused SELECT 'SERIALIZABLE', state, message
    FROM pg_temp.error_of(format('SELECT * FROM pc_sync_qualifications(%L)', (SELECT tenants FROM pair)));
COMMIT;
SELECT results_eq($$SELECT state, message FROM refused ORDER BY level$$,
    $$VALUES ('0A000', 'pc_sync_qualifications must run at the READ COMMITTED isolation level, not REPEATABLE READ'),
             ('0A000', 'pc_sync_qualifications must run at the READ COMMITTED isolation level, not SERIALIZABLE')$$,
    'REPEATABLE READ and SERIALIZABLE: 0A000, naming READ COMMITTED');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log() WHERE seq > :seq_before_refused AND kind = 'api'), 0::bigint,
          'and nothing was sent');

------------------------------------------------------------------------
-- A population of 300 (the emulator's 44444444- customers): a change in
-- about change_percent of them, failures in about fail_percent, exactly as
-- the emulator's hash buckets say.
CREATE TEMP TABLE population AS
    SELECT id, ((h[1] << 24) | (h[2] << 16) | (h[3] << 8) | h[4]) % 100 AS change_bucket,
               ((h[5] << 24) | (h[6] << 16) | (h[7] << 8) | h[8]) % 100 AS fail_bucket
    FROM (SELECT format('44444444-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid AS id FROM generate_series(1, 300) i) t,
         LATERAL (SELECT array_agg(get_byte(sha256(convert_to(t.id::text, 'UTF8')), b)::bigint ORDER BY b) AS h
                  FROM generate_series(0, 7) b) hb;
SELECT pg_temp.sync(5, (SELECT array_agg(id) FROM population));
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM syncs WHERE n = 5$$,
                  $$VALUES (300, 300, 0, 300)$$, 'a population of 300: 300 qualifications added');
SELECT pg_temp.emulator('config?sync_epoch=1&change_percent=10&fail_percent=5');
SELECT pg_temp.sync(6, (SELECT array_agg(id) FROM population));
SELECT results_eq($$SELECT customers, succeeded, failed, rows_changed FROM syncs WHERE n = 6$$,
                  $$SELECT 300, count(*) FILTER (WHERE fail_bucket >= 5)::int, count(*) FILTER (WHERE fail_bucket < 5)::int,
                           count(*) FILTER (WHERE change_bucket < 10 AND fail_bucket >= 5)::int
                    FROM population$$,
                  'the next epoch: the customers in the fail bucket failed, those in the change bucket changed');
SELECT set_eq($$SELECT customer_tenant_id FROM pg_temp.changes_of(6)
                WHERE change = 'changed' AND old_vetting_status = 'InReview' AND new_vetting_status = 'Approved'$$,
              $$SELECT id FROM population WHERE change_bucket < 10 AND fail_bucket >= 5$$,
              'exactly those changed, from InReview to Approved');
SELECT set_eq($$SELECT customer_tenant_id FROM pc_customer_sync WHERE consecutive_failures = 1$$,
              $$SELECT id FROM population WHERE fail_bucket < 5$$,
              'exactly those failed');
SELECT is((SELECT count(*) FROM pc_qualification_state s JOIN population p ON p.id = s.customer_tenant_id
           WHERE p.fail_bucket < 5 AND s.last_seen_at = pg_temp.at(5)), (SELECT count(*) FROM population WHERE fail_bucket < 5),
          'and kept their state');
SELECT pg_temp.emulator('config?sync_epoch=0&change_percent=0&fail_percent=0');

------------------------------------------------------------------------
-- A job role needs only EXECUTE: the function runs with the extension
-- owner's rights, and the role cannot touch the tables itself.
DROP ROLE IF EXISTS pcqual_tap_sync_job;
CREATE ROLE pcqual_tap_sync_job;
GRANT EXECUTE ON FUNCTION pc_sync_qualifications(uuid[]) TO pcqual_tap_sync_job;
-- query's first value as text, or the SQLSTATE it raised, run as role
CREATE FUNCTION pg_temp.as_role(role name, query text, OUT result text, OUT state text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    BEGIN
        EXECUTE query INTO result;
    EXCEPTION WHEN OTHERS THEN
        state := SQLSTATE;
    END;
    RESET ROLE;
END
$$;
SELECT is((pg_temp.as_role('pcqual_tap_sync_job',
               format($$SELECT row(customers, succeeded, failed, rows_changed)::text
                        FROM pc_sync_qualifications(ARRAY[%L]::uuid[])$$, :'t_out'))).result,
          '(1,1,0,0)', 'a role with EXECUTE only can sync');
SELECT is((pg_temp.as_role('pcqual_tap_sync_job', 'SELECT count(*) FROM pc_qualification_state')).state, '42501',
          'but cannot read the state table itself');
SELECT is((pg_temp.as_role('pcqual_tap_sync_job', 'DELETE FROM pc_qualification_changes')).state, '42501',
          'nor rewrite the history');
SELECT is((SELECT last_attempt_at > pg_temp.at(1) FROM pc_customer_sync WHERE customer_tenant_id = :'t_out'), true,
          'the job role''s sync was recorded');
REVOKE EXECUTE ON FUNCTION pc_sync_qualifications(uuid[]) FROM pcqual_tap_sync_job;
DROP ROLE pcqual_tap_sync_job;

------------------------------------------------------------------------
-- Leave the tables as they were for the other suites.
TRUNCATE pc_qualification_state, pc_qualification_changes, pc_customer_sync;

SELECT * FROM finish();
