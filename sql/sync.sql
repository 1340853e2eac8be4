-- pc_sync_qualifications(tenants uuid[]): the scheduled sync.  It fetches
-- every distinct non-NULL tenant (as pc_fetch_qualifications does) and, in
-- the calling transaction, brings three tables up to date:
--   pc_qualification_state    the latest known qualifications per customer
--   pc_qualification_changes  one row per qualification added, changed or
--                             removed, appended, never rewritten
--   pc_customer_sync          per customer: last attempt, last success,
--                             failures in a row, the last error
-- A customer that answered replaces its state; one that failed keeps it and
-- has its failure counted; a customer not in the array is not touched.  It
-- returns one row: customers, succeeded, failed, rows_changed (change rows
-- written).
--
-- Each sync below runs in a transaction of its own.  The time it writes is
-- when it got its turn (the lock that serialises syncs, taken after any
-- wait for another sync), not the transaction's now(): each transaction
-- reads it back from pc_customer_sync into :synced_at and the queries
-- compare with it rather than show it.
SELECT emulator_post('reset');
TRUNCATE pc_qualification_changes, pc_qualification_state, pc_customer_sync RESTART IDENTITY;
SET timezone = 'UTC';
SET datestyle = 'ISO';
-- Failures are final at once (no retries), requests go one at a time so
-- that the WARNINGs come in a stable order, and WARNINGs are terse: their
-- DETAIL carries random request ids.
SET pcqual.max_retries = 0;
SET pcqual.concurrency = 1;
\set VERBOSITY terse

-- The customers:
--   66666666-0000-0000-0000-000000000001 and ...0002: made to answer what
--       this suite needs, and to change between syncs
--       (POST /_emulator/customer?tenant=..., sql/setup.sql)
--   11111111-0000-0000-0000-000000000015: lists Education three times
--       (Denied, InReview, Approved, in date order): the state keeps the
--       latest
--   11111111-0000-0000-0000-000000000007: has no qualifications
--   22222222-0000-0000-0000-000000000404: a fault tenant, always 404 Tenant
--       not found
SELECT emulator_post('customer?tenant=66666666-0000-0000-0000-000000000001',
    '{"qualifications": [
        {"qualification": "Education", "vettingStatus": "InReview",
         "vettingCreatedDate": "2024-01-15T10:00:00Z"},
        {"qualification": "StateOwnedEntity"}]}');
SELECT emulator_post('customer?tenant=66666666-0000-0000-0000-000000000002',
    '{"qualifications": [
        {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved",
         "vettingCreatedDate": "2023-05-01T00:00:00Z"}]}');

-- ---- First sync ------------------------------------------------------------
-- NULL entries and duplicates are ignored: five customers, one failed.
BEGIN;
SELECT * FROM pc_sync_qualifications(ARRAY[
    '66666666-0000-0000-0000-000000000001',
    '66666666-0000-0000-0000-000000000002',
    '11111111-0000-0000-0000-000000000015',
    '11111111-0000-0000-0000-000000000007',
    '22222222-0000-0000-0000-000000000404',
    NULL,
    '66666666-0000-0000-0000-000000000001']::uuid[]);
SELECT max(last_attempt_at) AS synced_at FROM pc_customer_sync \gset
-- Every qualification is new: 'added'.  The customer without
-- qualifications and the failed one have no state and no changes.
SELECT customer_tenant_id, qualification, vetting_status, vetting_reason,
       vetting_created_date, first_seen_at = :'synced_at' AS first_seen_now,
       last_seen_at = :'synced_at' AS last_seen_now
FROM pc_qualification_state ORDER BY 1, 2;
SELECT change_id, customer_tenant_id, qualification, change,
       old_vetting_status, new_vetting_status, new_vetting_created_date,
       observed_at = :'synced_at' AS observed_now
FROM pc_qualification_changes ORDER BY change_id;
-- The failure is recorded with the SQLSTATE and message of its error.
SELECT customer_tenant_id, last_attempt_at = :'synced_at' AS attempted_now,
       last_success_at = :'synced_at' AS succeeded_now, consecutive_failures,
       last_error_sqlstate, last_error_message
FROM pc_customer_sync ORDER BY 1;
COMMIT;

-- ---- Second sync, nothing changed ------------------------------------------
-- No change rows; the failing customer has failed twice in a row.
BEGIN;
SELECT * FROM pc_sync_qualifications(ARRAY[
    '66666666-0000-0000-0000-000000000001',
    '66666666-0000-0000-0000-000000000002',
    '11111111-0000-0000-0000-000000000015',
    '11111111-0000-0000-0000-000000000007',
    '22222222-0000-0000-0000-000000000404']::uuid[]);
SELECT max(last_attempt_at) AS synced_at FROM pc_customer_sync \gset
SELECT count(*) AS change_rows FROM pc_qualification_changes;
-- The state was seen again now, first seen before.
SELECT customer_tenant_id, qualification, vetting_status,
       first_seen_at < :'synced_at' AS first_seen_before, last_seen_at = :'synced_at' AS last_seen_now
FROM pc_qualification_state ORDER BY 1, 2;
SELECT customer_tenant_id, last_attempt_at = :'synced_at' AS attempted_now,
       last_success_at = :'synced_at' AS succeeded_now, consecutive_failures,
       last_error_sqlstate
FROM pc_customer_sync ORDER BY 1;
COMMIT;

-- ---- Third sync: answers change ---------------------------------------------
-- ...0001 now has Education denied, GovernmentCommunityCloud instead of
-- StateOwnedEntity; ...0002 fails (500).  Only these two are synced.
SELECT emulator_post('customer?tenant=66666666-0000-0000-0000-000000000001',
    '{"qualifications": [
        {"qualification": "Education", "vettingStatus": "Denied",
         "vettingReason": "Not an Academic Domain",
         "vettingCreatedDate": "2024-02-01T09:30:00Z"},
        {"qualification": "GovernmentCommunityCloud", "vettingStatus": "InReview",
         "vettingCreatedDate": "2024-02-01T09:30:00Z"}]}');
SELECT emulator_post('customer?tenant=66666666-0000-0000-0000-000000000002',
    '{"fail": 500}');
BEGIN;
SELECT * FROM pc_sync_qualifications(ARRAY[
    '66666666-0000-0000-0000-000000000001',
    '66666666-0000-0000-0000-000000000002']::uuid[]);
SELECT max(last_attempt_at) AS synced_at FROM pc_customer_sync \gset
-- One row per difference, with the old and the new values.
SELECT customer_tenant_id, qualification, change,
       old_vetting_status, new_vetting_status, old_vetting_reason, new_vetting_reason,
       old_vetting_created_date, new_vetting_created_date
FROM pc_qualification_changes WHERE observed_at = :'synced_at' ORDER BY change_id;
-- ...0001's state is replaced; the failed ...0002 keeps its state, as do
-- the customers that were not synced (not seen now).
SELECT customer_tenant_id, qualification, vetting_status, vetting_reason,
       last_seen_at = :'synced_at' AS last_seen_now
FROM pc_qualification_state ORDER BY 1, 2;
-- ...0002's failure: last_success_at is the previous sync's.  The customers
-- that were not synced keep their rows (not attempted now).
SELECT customer_tenant_id, last_attempt_at = :'synced_at' AS attempted_now,
       last_success_at < :'synced_at' AS succeeded_before, consecutive_failures,
       last_error_sqlstate, last_error_message
FROM pc_customer_sync ORDER BY 1;
COMMIT;

-- ---- Fourth sync: ...0002 answers again -------------------------------------
-- Same answer as before its failure: no change, and its failure count
-- starts again at 0.
SELECT emulator_post('customer?tenant=66666666-0000-0000-0000-000000000002',
    '{"qualifications": [
        {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved",
         "vettingCreatedDate": "2023-05-01T00:00:00Z"}]}');
BEGIN;
SELECT * FROM pc_sync_qualifications(ARRAY['66666666-0000-0000-0000-000000000002']::uuid[]);
SELECT max(last_attempt_at) AS synced_at FROM pc_customer_sync \gset
SELECT customer_tenant_id, last_success_at = :'synced_at' AS succeeded_now, consecutive_failures,
       last_error_sqlstate, last_error_message
FROM pc_customer_sync WHERE customer_tenant_id = '66666666-0000-0000-0000-000000000002';
COMMIT;

-- No customers: nothing to do.
SELECT * FROM pc_sync_qualifications(ARRAY[]::uuid[]);
SELECT * FROM pc_sync_qualifications(NULL);

-- The history: every change, oldest first.
SELECT change_id, customer_tenant_id, qualification, change, old_vetting_status,
       new_vetting_status
FROM pc_qualification_changes ORDER BY change_id;

-- pc_qualifications_as_of(at, tenants DEFAULT NULL): the state as it was at
-- a moment, rebuilt from the history (the latest change of each
-- qualification at or before it, unless a removal).  As of each sync that
-- recorded changes (the first and the third): what pc_qualification_state
-- held right after it.
SELECT s.n AS sync_with_changes, a.customer_tenant_id, a.qualification, a.vetting_status,
       a.vetting_reason, a.vetting_created_date, a.first_seen_at = s1.at AS first_seen_in_first
FROM (SELECT observed_at AS at, dense_rank() OVER (ORDER BY observed_at) AS n
      FROM pc_qualification_changes GROUP BY observed_at) s,
     (SELECT min(observed_at) AS at FROM pc_qualification_changes) s1,
     LATERAL pc_qualifications_as_of(s.at) a
ORDER BY 1, 2, 3;
-- Before the first sync nothing; one customer with tenants; as of now the
-- state table itself.
SELECT count(*) AS before_first
FROM pc_qualifications_as_of((SELECT min(observed_at) FROM pc_qualification_changes) - interval '1 second');
SELECT qualification, vetting_status
FROM pc_qualifications_as_of(now(), ARRAY['66666666-0000-0000-0000-000000000001']::uuid[]) ORDER BY 1;
SELECT count(*) AS differences
FROM ((SELECT * FROM pc_qualifications_as_of(now()) EXCEPT ALL SELECT * FROM pc_qualification_state)
      UNION ALL
      (SELECT * FROM pc_qualification_state EXCEPT ALL SELECT * FROM pc_qualifications_as_of(now()))) d;

TRUNCATE pc_qualification_changes, pc_qualification_state, pc_customer_sync RESTART IDENTITY;

-- A sync runs at READ COMMITTED: at REPEATABLE READ or SERIALIZABLE its
-- snapshot would predate its wait for another sync.  Refused before any
-- request.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM pc_sync_qualifications(ARRAY['66666666-0000-0000-0000-000000000001']::uuid[]);
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT * FROM pc_sync_qualifications(ARRAY['66666666-0000-0000-0000-000000000001']::uuid[]);
ROLLBACK;
