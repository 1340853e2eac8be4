-- pc_sync_qualifications' notification and pc_qualifications_as_of():
--   * a sync that wrote change rows sends one notification on the channel
--     pcqual_qualification_changes, delivered at commit, whose JSON payload
--     names its change_id range, the number of change rows and of distinct
--     customers; a sync that changed nothing sends none; a rolled-back sync
--     sends none; the payload stays small for 300 customers.  A dblink
--     session LISTENs (dblink_get_notify), as an application would.
--   * pc_qualifications_as_of(at, tenants) rebuilds the state at each
--     sync's time from the history: it equals a snapshot of
--     pc_qualification_state taken right after that sync (last_seen_at
--     exactly where the history can tell, else a lower bound), nothing
--     before the first sync, the tenants filter, and an index serves it.
\ir helpers.inc
\set QUIET 1
SELECT plan(38);

SET pcqual.max_retries = 0;            -- a failing customer fails at once
SET client_min_messages = error;       -- (each failed customer is also a WARNING)

\set t1 'e2000000-0000-4000-8000-000000000001'
\set t2 'e2000000-0000-4000-8000-000000000002'
\set t3 'e2000000-0000-4000-8000-000000000003'
\set t4 'e2000000-0000-4000-8000-000000000004'
\set t5 'e2000000-0000-4000-8000-000000000005'
CREATE TEMP TABLE mine AS
    SELECT unnest(ARRAY[:'t1', :'t2', :'t3', :'t4', :'t5']::uuid[]) AS id;

-- Each sync's result and time (read back from pc_customer_sync), and a
-- snapshot of the state of these customers right after it.
CREATE TEMP TABLE syncs (n int PRIMARY KEY, at timestamptz, customers int, succeeded int,
                         failed int, rows_changed int);
CREATE TEMP TABLE snapshots AS
    SELECT 0 AS n, * FROM pc_qualification_state WITH NO DATA;
CREATE FUNCTION pg_temp.snapshot(n int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE syncs SET at = (SELECT max(last_attempt_at) FROM pc_customer_sync) WHERE syncs.n = snapshot.n;
    INSERT INTO snapshots SELECT snapshot.n, s.* FROM pc_qualification_state s
    WHERE s.customer_tenant_id IN (SELECT id FROM mine);
END
$$;
CREATE FUNCTION pg_temp.sync(n int, tenants uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO syncs SELECT sync.n, NULL, * FROM pc_sync_qualifications(tenants);
    PERFORM pg_temp.snapshot(sync.n);
END
$$;
CREATE FUNCTION pg_temp.at(n int) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT at FROM syncs WHERE syncs.n = at.n
$$;

-- The listener: another session, LISTENing as an application does.  Its
-- notifications are collected into notes; a marker NOTIFY sent after a
-- sync arrives after anything that sync sent (notifications are delivered
-- in commit order), so "nothing arrived before the marker" is exact.
SELECT dblink_connect('listener', pg_temp.self_connstr());
SELECT dblink_exec('listener', 'LISTEN pcqual_qualification_changes');
SELECT pid FROM dblink('listener', 'SELECT pg_backend_pid()') AS r(pid int) \gset listener_
CREATE TEMP TABLE notes (k serial, channel text, pid int, payload text);
CREATE FUNCTION pg_temp.mark(marker text) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('pcqual_qualification_changes', marker)
$$;
-- the notifications up to the marker (which the caller has committed)
CREATE FUNCTION pg_temp.notes_until(marker text) RETURNS SETOF notes LANGUAGE plpgsql AS $$
DECLARE
    first int := (SELECT coalesce(max(k), 0) FROM notes);
BEGIN
    FOR i IN 1..1000 LOOP
        INSERT INTO notes (channel, pid, payload)
            SELECT notify_name, be_pid, extra FROM dblink_get_notify('listener');
        EXIT WHEN EXISTS (SELECT FROM notes WHERE k > first AND payload = marker);
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN QUERY SELECT * FROM notes WHERE k > first AND payload IS DISTINCT FROM marker ORDER BY k;
END
$$;
-- What a sync's notification should say, from its change rows.
CREATE FUNCTION pg_temp.expected_payload(n int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('first_change_id', min(change_id), 'last_change_id', max(change_id),
                              'changes', count(*), 'customers', count(DISTINCT customer_tenant_id))
    FROM pc_qualification_changes WHERE observed_at = pg_temp.at(n)
$$;

------------------------------------------------------------------------
-- Sync 1: everything new.
SELECT pg_temp.emulator_customer(:'t1', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingCreatedDate": "2024-01-01T00:00:00Z"},
    {"qualification": "StateOwnedEntity"}]}$$);
SELECT pg_temp.emulator_customer(:'t2', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "InReview", "vettingCreatedDate": "2024-02-01T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t3', $${"qualifications": [
    {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved", "vettingCreatedDate": "2024-03-01T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t4', '{"qualifications": []}');
-- t5: the emulator's generic answer
SELECT pg_temp.sync(1, (SELECT array_agg(id) FROM mine));
SELECT pg_temp.mark('marker 1');
CREATE TEMP TABLE notes_1 AS SELECT * FROM pg_temp.notes_until('marker 1');
SELECT is((SELECT count(*) FROM notes_1), 1::bigint, 'sync 1 wrote changes: one notification');
SELECT results_eq($$SELECT channel, pid FROM notes_1$$,
                  format('VALUES (%L, %s)', 'pcqual_qualification_changes', pg_backend_pid()),
                  'on pcqual_qualification_changes, from the session that synced');
SELECT is((SELECT payload::jsonb FROM notes_1), pg_temp.expected_payload(1),
          'its payload: the change_id range, the number of change rows and of customers');
SELECT is((SELECT payload::jsonb FROM notes_1),
          jsonb_build_object('first_change_id', (SELECT min(change_id) FROM pc_qualification_changes
                                                 WHERE observed_at = pg_temp.at(1)),
                             'last_change_id', (SELECT max(change_id) FROM pc_qualification_changes
                                                WHERE observed_at = pg_temp.at(1)),
                             'changes', 5, 'customers', 4),
          'sync 1: 5 changes of 4 customers (t4 has no qualifications)');
SELECT is((SELECT (payload::json ->> 'changes')::int FROM notes_1), (SELECT rows_changed FROM syncs WHERE n = 1),
          'changes is the rows_changed the sync returned');
SELECT is((SELECT count(*) FROM pc_qualification_changes c, notes_1 j
           WHERE c.change_id BETWEEN (j.payload::json ->> 'first_change_id')::bigint
                                 AND (j.payload::json ->> 'last_change_id')::bigint),
          5::bigint, 'the range holds exactly the sync''s change rows');
SELECT ok((SELECT payload ~ '^\{"first_change_id" : \d+, "last_change_id" : \d+, "changes" : \d+, "customers" : \d+\}$'
           FROM notes_1), 'the payload is a JSON object with these four keys, in this order');

------------------------------------------------------------------------
-- Sync 2: nothing changed: no notification.
SELECT pg_temp.sync(2, (SELECT array_agg(id) FROM mine));
SELECT pg_temp.mark('marker 2');
SELECT is((SELECT rows_changed FROM syncs WHERE n = 2), 0, 'sync 2: nothing changed');
SELECT is((SELECT count(*) FROM pg_temp.notes_until('marker 2')), 0::bigint,
          'a sync that changed nothing sends no notification');

------------------------------------------------------------------------
-- Sync 3: t2 changes, t1 loses StateOwnedEntity, t3 fails.
SELECT pg_temp.emulator_customer(:'t1', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingCreatedDate": "2024-01-01T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t2', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingReason": "Verified",
     "vettingCreatedDate": "2024-02-15T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t3', '{"fail": 503}');
SELECT pg_temp.sync(3, (SELECT array_agg(id) FROM mine));
SELECT pg_temp.mark('marker 3');
CREATE TEMP TABLE notes_3 AS SELECT * FROM pg_temp.notes_until('marker 3');
SELECT is((SELECT count(*) FROM notes_3), 1::bigint, 'sync 3: one notification');
SELECT is((SELECT payload::jsonb FROM notes_3), pg_temp.expected_payload(3), 'matching its change rows');
SELECT results_eq($$SELECT (payload::json ->> 'changes')::int, (payload::json ->> 'customers')::int FROM notes_3$$,
                  $$VALUES (2, 2)$$, 'a change and a removal, of 2 customers; the failure is no change');
SELECT ok((SELECT (payload::json ->> 'first_change_id')::bigint FROM notes_3)
          > (SELECT (payload::json ->> 'last_change_id')::bigint FROM notes_1),
          'the ranges of successive syncs follow each other');

-- A sync rolled back: no notification (notifications go at commit).
SELECT pg_temp.emulator_customer(:'t2', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Denied", "vettingCreatedDate": "2024-02-20T00:00:00Z"}]}$$);
BEGIN;
SELECT count(*) FROM pc_sync_qualifications(ARRAY[:'t2']::uuid[]);
ROLLBACK;
SELECT pg_temp.mark('marker rollback');
SELECT is((SELECT count(*) FROM pg_temp.notes_until('marker rollback')), 0::bigint,
          'a sync that was rolled back sends nothing');
SELECT pg_temp.emulator_customer(:'t2', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingReason": "Verified",
     "vettingCreatedDate": "2024-02-15T00:00:00Z"}]}$$);

------------------------------------------------------------------------
-- Sync 4: t1's StateOwnedEntity is back, t3 answers as before its failure,
-- t4 gets Education.
SELECT pg_temp.emulator_customer(:'t1', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Approved", "vettingCreatedDate": "2024-01-01T00:00:00Z"},
    {"qualification": "StateOwnedEntity"}]}$$);
SELECT pg_temp.emulator_customer(:'t3', $${"qualifications": [
    {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved", "vettingCreatedDate": "2024-03-01T00:00:00Z"}]}$$);
SELECT pg_temp.emulator_customer(:'t4', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "InReview", "vettingCreatedDate": "2024-04-01T00:00:00Z"}]}$$);
SELECT pg_temp.sync(4, (SELECT array_agg(id) FROM mine));
SELECT pg_temp.mark('marker 4');
SELECT is((SELECT payload::jsonb FROM pg_temp.notes_until('marker 4')), pg_temp.expected_payload(4),
          'sync 4: its notification');

------------------------------------------------------------------------
-- Sync 5, of t2 only, run by the listener's own session: it gets its own
-- notification too, once its statement has committed.
SELECT pg_temp.emulator_customer(:'t2', $${"qualifications": [
    {"qualification": "Education", "vettingStatus": "Denied", "vettingReason": "Not an Education Customer",
     "vettingCreatedDate": "2024-05-01T00:00:00Z"}]}$$);
INSERT INTO syncs SELECT 5, NULL, *
    FROM dblink('listener', format('SELECT * FROM pc_sync_qualifications(%L)', ARRAY[:'t2']::uuid[]))
         AS r(customers int, succeeded int, failed int, rows_changed int);
SELECT pg_temp.snapshot(5);
SELECT pg_temp.mark('marker 5');
CREATE TEMP TABLE notes_5 AS SELECT * FROM pg_temp.notes_until('marker 5');
SELECT results_eq($$SELECT pid, payload::jsonb FROM notes_5$$,
                  format('VALUES (%s, %L::jsonb)', :listener_pid, pg_temp.expected_payload(5)),
                  'a sync in the listening session: the same notification, from that session');

------------------------------------------------------------------------
-- 300 customers (the emulator's 44444444- population, as test/sync.sql):
-- one notification, a payload of a few dozen bytes.
CREATE TEMP TABLE population AS
    SELECT format('44444444-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid AS id FROM generate_series(1, 300) i;
SELECT pg_temp.sync(6, (SELECT array_agg(id) FROM population));
SELECT pg_temp.mark('marker 300');
CREATE TEMP TABLE notes_300 AS SELECT * FROM pg_temp.notes_until('marker 300');
SELECT is((SELECT count(*) FROM notes_300), 1::bigint, '300 customers, 300 changes: one notification');
SELECT results_eq($$SELECT (payload::json ->> 'changes')::int, (payload::json ->> 'customers')::int FROM notes_300$$,
                  $$VALUES (300, 300)$$, 'counting all 300');
SELECT is((SELECT payload::jsonb FROM notes_300), pg_temp.expected_payload(6), 'matching the change rows');
SELECT cmp_ok((SELECT octet_length(payload) FROM notes_300), '<', 120, 'and the payload is tiny');
SELECT dblink_disconnect('listener');

------------------------------------------------------------------------
-- pc_qualifications_as_of: each sync's time gives the state saved right
-- after that sync.  first_seen_at is exact; last_seen_at is exact where
-- the customer changed in that sync or has not been fetched successfully
-- since, else a lower bound (no row records a sync that saw no change).
CREATE TEMP TABLE as_of AS
    SELECT n, a.*
    FROM syncs, LATERAL pc_qualifications_as_of(syncs.at, (SELECT array_agg(id) FROM mine)) a;
SELECT set_eq($$SELECT n, customer_tenant_id, qualification, vetting_status, vetting_reason,
                       vetting_created_date, first_seen_at FROM as_of$$,
              $$SELECT n, customer_tenant_id, qualification, vetting_status, vetting_reason,
                       vetting_created_date, first_seen_at FROM snapshots$$,
              'as of each sync''s time: the state saved right after it (every column but last_seen_at)');
SELECT is((SELECT count(*) FROM as_of a JOIN snapshots s USING (n, customer_tenant_id, qualification)
           WHERE NOT a.last_seen_at BETWEEN a.first_seen_at AND s.last_seen_at),
          0::bigint, 'last_seen_at: never later than the true one, never before first_seen_at');
SELECT is((SELECT count(*) FROM as_of a JOIN snapshots s USING (n, customer_tenant_id, qualification)
           WHERE a.last_seen_at <> s.last_seen_at
             AND (EXISTS (SELECT FROM pc_qualification_changes c
                          WHERE c.customer_tenant_id = a.customer_tenant_id AND c.observed_at = pg_temp.at(n))
                  OR (SELECT last_success_at FROM pc_customer_sync c
                      WHERE c.customer_tenant_id = a.customer_tenant_id) <= pg_temp.at(n))),
          0::bigint, 'exact where the customer changed in that sync or was not fetched since');
SELECT set_eq($$SELECT * FROM pc_qualifications_as_of(pg_temp.at(5), (SELECT array_agg(id) FROM mine))$$,
              $$SELECT customer_tenant_id, qualification, vetting_status, vetting_reason, vetting_created_date,
                       first_seen_at, last_seen_at
                FROM pc_qualification_state WHERE customer_tenant_id IN (SELECT id FROM mine)$$,
              'as of the last sync of these customers: the state table itself, last_seen_at included');
SELECT is((SELECT count(*) FROM as_of WHERE n = 2 AND last_seen_at = pg_temp.at(1)),
          (SELECT count(*) FROM snapshots WHERE n = 2), 'sync 2 changed nothing: as of it, last seen in sync 1 (the lower bound)');
SELECT results_eq(format($$SELECT qualification, first_seen_at FROM pc_qualifications_as_of(pg_temp.at(4), ARRAY[%L]::uuid[])
                           ORDER BY 1$$, :'t1'),
                  $$VALUES ('Education', pg_temp.at(1)), ('StateOwnedEntity', pg_temp.at(4))$$,
                  'a qualification removed and added again: first seen when it came back');
SELECT is((SELECT count(*) FROM pc_qualifications_as_of(pg_temp.at(3), ARRAY[:'t1']::uuid[])
           WHERE qualification = 'StateOwnedEntity'), 0::bigint, 'as of its removal: not held');
SELECT results_eq(format($$SELECT vetting_status, vetting_reason FROM pc_qualifications_as_of(pg_temp.at(3), ARRAY[%L]::uuid[])$$, :'t3'),
                  $$VALUES ('Approved', NULL::text)$$,
                  'a customer whose fetch failed: as of then, what it held before');

-- Between syncs, the earlier one's state; before the first, nothing.
SELECT set_eq($$SELECT customer_tenant_id, qualification, vetting_status, first_seen_at
                FROM pc_qualifications_as_of(pg_temp.at(3) + (pg_temp.at(4) - pg_temp.at(3)) / 2,
                                             (SELECT array_agg(id) FROM mine))$$,
              $$SELECT customer_tenant_id, qualification, vetting_status, first_seen_at FROM snapshots WHERE n = 3$$,
              'between two syncs: the state after the earlier');
SELECT is((SELECT count(*) FROM pc_qualifications_as_of(pg_temp.at(1) - interval '1 microsecond',
                                                        (SELECT array_agg(id) FROM mine))),
          0::bigint, 'before the first sync: no rows');
SELECT is((SELECT count(*) FROM pc_qualifications_as_of(NULL, (SELECT array_agg(id) FROM mine))), 0::bigint,
          'a NULL time: no rows');

-- The tenants filter; NULL: every customer.
SELECT set_eq(format($$SELECT DISTINCT customer_tenant_id FROM pc_qualifications_as_of(pg_temp.at(4), ARRAY[%L, %L]::uuid[])$$,
                     :'t1', :'t4'),
              format($$VALUES (%L::uuid), (%L::uuid)$$, :'t1', :'t4'), 'tenants: only those customers');
SELECT is((SELECT count(*) FROM pc_qualifications_as_of(pg_temp.at(4), ARRAY[]::uuid[])), 0::bigint,
          'no tenants: no rows');
SELECT set_eq($$SELECT * FROM pc_qualifications_as_of(pg_temp.at(5)) WHERE customer_tenant_id IN (SELECT id FROM mine)$$,
              $$SELECT * FROM pc_qualifications_as_of(pg_temp.at(5), (SELECT array_agg(id) FROM mine))$$,
              'NULL tenants: every customer, the same rows for these');
SELECT set_eq($$SELECT * FROM pc_qualifications_as_of(pg_temp.at(6))$$,
              $$SELECT customer_tenant_id, qualification, vetting_status, vetting_reason, vetting_created_date,
                       first_seen_at, last_seen_at FROM pc_qualification_state$$,
              'as of now, for every customer: the state table');

-- An index serves it: the plan of the function's own query, shown by
-- auto_explain in a new session, over a history of a reasonable size
-- (10,000 more rows, of 5,000 other customers).  For some tenants the
-- planner picks an index by itself; for every customer a full scan is
-- cheapest, so enable_seqscan = off proves the index matches that query
-- too (the history in DISTINCT ON order, no sort).
INSERT INTO pc_qualification_changes (customer_tenant_id, qualification, change, new_vetting_status, observed_at)
    SELECT format('e2ffffff-0000-4000-8000-%s', lpad(i::text, 12, '0'))::uuid, q, 'added', 'Approved',
           pg_temp.at(1) - interval '1 day'
    FROM generate_series(1, 5000) i, unnest(ARRAY['Education', 'StateOwnedEntity']) q;
ANALYZE pc_qualification_changes;
CREATE TEMP TABLE plans AS
    SELECT q, string_agg(line, E'\n') AS plan
    FROM (VALUES ('some', format('SELECT count(*) FROM pc_qualifications_as_of(now(), ARRAY[%L, %L]::uuid[]);', :'t1', :'t2')),
                 ('every', 'SET enable_seqscan = off; SELECT count(*) FROM pc_qualifications_as_of(now());')) v(q, query),
         LATERAL pg_temp.session_output(
             E'LOAD ''auto_explain'';\nSET auto_explain.log_min_duration = 0;\n'
             'SET auto_explain.log_nested_statements = on;\nSET auto_explain.log_level = notice;\n'
             'SET client_min_messages = notice;\n' || query) AS line
    GROUP BY q;
SELECT ok((SELECT plan ~ '(Index Scan using \w+|Index Only Scan using \w+|Bitmap Heap Scan) on pc_qualification_changes c'
                   AND plan !~ 'Seq Scan on pc_qualification_changes c'
           FROM plans WHERE q = 'some'), 'some tenants: an index scan of the history, no full scan');
SELECT ok((SELECT plan ~ 'Index (Only )?Scan using pc_qualification_changes_as_of_idx on pc_qualification_changes c'
           FROM plans WHERE q = 'every'), 'every customer: the as-of index gives the history in order');
SELECT diag(q || E':\n' || plan) FROM plans
WHERE plan ~ 'Seq Scan on pc_qualification_changes c' OR plan !~ 'on pc_qualification_changes c';

-- Only the superuser may call it unless granted, as every pcqual function.
SELECT ok(NOT has_function_privilege('public', 'pc_qualifications_as_of(timestamptz, uuid[])', 'EXECUTE'),
          'PUBLIC may not execute pc_qualifications_as_of');

------------------------------------------------------------------------
-- What this file synced goes, so that the other suites count only their own.
\set QUIET 1
DELETE FROM pc_qualification_changes WHERE customer_tenant_id IN (SELECT id FROM mine UNION ALL SELECT id FROM population)
    OR customer_tenant_id::text LIKE 'e2ffffff-%';
DELETE FROM pc_qualification_state WHERE customer_tenant_id IN (SELECT id FROM mine UNION ALL SELECT id FROM population);
DELETE FROM pc_customer_sync WHERE customer_tenant_id IN (SELECT id FROM mine UNION ALL SELECT id FROM population);
SELECT pg_temp.emulator('reset');
\set QUIET 0
SELECT * FROM finish();
