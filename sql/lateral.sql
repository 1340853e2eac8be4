-- The batched LATERAL join: the natural query,
--   SELECT ... FROM customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
-- is planned as a Custom Scan (PcqualBatchedLateral) that reads the outer
-- side in batches and fetches each batch's tenants concurrently, instead of
-- a Nested Loop that sends one request per row, one after another.  Every
-- shape it accepts returns what the Nested Loop returns (pcqual.batch_lateral
-- = off), row for row and in the same order.
CREATE SCHEMA crm;
CREATE TABLE crm.customers (id int PRIMARY KEY, name text, tenant_id uuid, segment text);
INSERT INTO crm.customers VALUES
    (1, 'Contoso University', '11111111-0000-0000-0000-000000000001', 'edu'),
    (2, 'Fabrikam Schools',   '11111111-0000-0000-0000-000000000003', 'edu'),
    (3, 'Northwind Agency',   '11111111-0000-0000-0000-000000000006', 'gov'),
    (4, 'Woodgrove Trust',    '11111111-0000-0000-0000-000000000004', 'gov'),
    (5, 'Tailspin (no tenant yet)', NULL, 'edu'),
    (6, 'Litware (no qualification)', '11111111-0000-0000-0000-000000000007', 'edu'),
    (7, 'Contoso (second account)', '11111111-0000-0000-0000-000000000001', 'edu'),
    (8, 'Adatum Academy',     '11111111-0000-0000-0000-000000000005', 'edu');
ANALYZE crm.customers;
-- The planner weighs a request at pcqual.expected_latency (default 100 ms):
-- here the batch is cheaper than the Nested Loop for any number of rows.

-- The README's first example.
EXPLAIN (COSTS OFF)
SELECT c.name, q.*
FROM crm.customers c
CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;

SELECT c.name, q.*
FROM crm.customers c
CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;

-- Runs a query once batched and once as the Nested Loop
-- (pcqual.batch_lateral = off): whether the first plan used the batch,
-- whether both returned the same rows in the same order, and how many.
-- What EXPLAIN ANALYZE says of the batch (FORMAT JSON: the same in every
-- version): its batch size, batches, tenants fetched, requests sent.
CREATE FUNCTION batch_counts(query text)
RETURNS TABLE ("Batch Size" int, "Batches" int, "Tenants Fetched" int, "Requests" int)
LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) ' || query INTO plan;
    RETURN QUERY WITH RECURSIVE node(p) AS (
        SELECT plan -> 0 -> 'Plan'
        UNION ALL
        SELECT child FROM node, json_array_elements(p -> 'Plans') child)
    SELECT (p ->> 'Batch Size')::int, (p ->> 'Batches')::int,
           (p ->> 'Tenants Fetched')::int, (p ->> 'Requests')::int
    FROM node WHERE p ->> 'Custom Plan Provider' = 'PcqualBatchedLateral';
END
$$;

-- Whether a statement's plan uses the batch.
CREATE FUNCTION uses_batch(query text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
        IF line LIKE '%PcqualBatchedLateral%' THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

CREATE FUNCTION same_as_nested_loop(query text,
    OUT batched boolean, OUT same_rows boolean, OUT row_count int)
LANGUAGE plpgsql AS $$
DECLARE
    on_rows text[];
    off_rows text[];
BEGIN
    PERFORM set_config('pcqual.batch_lateral', 'on', true);
    batched := uses_batch(query);
    EXECUTE format('SELECT array_agg(t::text) FROM (%s) t', query) INTO on_rows;
    PERFORM set_config('pcqual.batch_lateral', 'off', true);
    EXECUTE format('SELECT array_agg(t::text) FROM (%s) t', query) INTO off_rows;
    PERFORM set_config('pcqual.batch_lateral', 'on', true);
    same_rows := on_rows IS NOT DISTINCT FROM off_rows;
    row_count := coalesce(cardinality(on_rows), 0);
END
$$;

-- CROSS JOIN LATERAL: customers with several, one and no qualification; a
-- NULL tenant gives no row (the function is STRICT); a duplicate tenant is
-- fetched once per batch and joined to each of its rows.
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, c.name, q.* FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);

-- LEFT JOIN LATERAL ... ON true: a NULL tenant and a customer without a
-- qualification give the NULL-extended row.
EXPLAIN (COSTS OFF)
SELECT c.name, q.qualification, q.vetting_status
FROM crm.customers c
LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true;

SELECT c.name, q.qualification, q.vetting_status
FROM crm.customers c
LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true;

SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.* FROM crm.customers c
    LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true$$);

-- A join condition: only approved qualifications match; the others' rows
-- are NULL-extended.
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.qualification FROM crm.customers c
    LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON q.vetting_status = 'Approved'$$);

-- Quals on either side, on both, and above a LEFT JOIN (IS NULL: the
-- customers without a match).
SELECT * FROM same_as_nested_loop($$
    SELECT c.name, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
    WHERE c.segment = 'edu' AND q.qualification <> 'StateOwnedEntity'$$);
SELECT * FROM same_as_nested_loop($$
    SELECT c.name, q.vetting_reason FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
    WHERE q.vetting_reason IS NOT NULL OR c.id = 3$$);
-- The planner makes an anti join of this one (the customers without an
-- Education qualification).  It estimates a single row, where the two
-- plans cost the same; enable_nestloop = off takes the batch.
SET enable_nestloop = off;
EXPLAIN (COSTS OFF)
SELECT c.name FROM crm.customers c
LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON q.qualification = 'Education'
WHERE q.qualification IS NULL;
SELECT * FROM same_as_nested_loop($$
    SELECT c.name FROM crm.customers c
    LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON q.qualification = 'Education'
    WHERE q.qualification IS NULL$$);
RESET enable_nestloop;

-- Expressions over both sides, and the argument an expression of the
-- outer side.
SELECT * FROM same_as_nested_loop($$
    SELECT upper(c.name) || ': ' || coalesce(q.vetting_status, '-') AS line,
           q.vetting_created_date IS NOT NULL AS dated
    FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(coalesce(c.tenant_id,
        '11111111-0000-0000-0000-000000000004')) q$$);

-- The outer side's order is kept, whatever it is.
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q ORDER BY c.id DESC$$);

-- Small batches: rows come out in order across batch boundaries.
SET pcqual.lateral_batch_size = 3;
EXPLAIN (COSTS OFF)
SELECT c.id, q.qualification FROM crm.customers c
CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.qualification FROM crm.customers c
    LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true$$);

-- LIMIT: the batch stops once enough rows were emitted.  (Where few rows
-- are wanted, the Nested Loop is often cheaper and the planner keeps it;
-- enable_nestloop = off shows the batch.)  Five rows need two batches of
-- three customers, not three batches.
SET enable_nestloop = off;
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q LIMIT 5$$);
SELECT * FROM batch_counts($$SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q LIMIT 5$$);
RESET enable_nestloop;
RESET pcqual.lateral_batch_size;

-- The outer side a subquery, a join, or another batch's input; a join above.
SELECT * FROM same_as_nested_loop($$
    SELECT s.name, q.qualification
    FROM (SELECT name, tenant_id FROM crm.customers WHERE id <> 2 ORDER BY name) s
    CROSS JOIN LATERAL pc_qualifications(s.tenant_id) q$$);
SELECT * FROM same_as_nested_loop($$
    SELECT a.id, b.id, q.qualification
    FROM crm.customers a JOIN crm.customers b ON a.tenant_id = b.tenant_id AND a.id < b.id
    CROSS JOIN LATERAL pc_qualifications(a.tenant_id) q$$);
SELECT * FROM same_as_nested_loop($$
    SELECT c.name, q.qualification, s.name AS same_segment
    FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
    JOIN crm.customers s ON s.segment = c.segment AND s.id = 1$$);

-- A view over the join, an expression of its columns computed above it,
-- and a qual on the view (the projection is the batch's own).
CREATE VIEW crm.qualified AS
    SELECT c.id, c.name, q.qualification,
           coalesce(q.qualification = 'Education' AND q.vetting_status = 'Approved', false) AS approved
    FROM crm.customers c
    LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true;
SET enable_nestloop = off;       -- one row estimated: make it the batch
SELECT * FROM same_as_nested_loop($$
    SELECT name, approved FROM crm.qualified WHERE name LIKE 'Contoso%'$$);
RESET enable_nestloop;
SELECT * FROM same_as_nested_loop($$SELECT count(*), count(*) FILTER (WHERE approved) FROM crm.qualified$$);
DROP VIEW crm.qualified;

-- As the inner side of a Nested Loop, the batch is rescanned: each rescan
-- fetches again and returns the same rows.
SELECT * FROM same_as_nested_loop($$
    SELECT g, x.qualification
    FROM generate_series(1, 2) g,
         LATERAL (SELECT q.qualification FROM crm.customers c
                  CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
                  WHERE c.id <= g + 1 OFFSET 0) x$$);

-- Cursors: the batch reads forward only; a SCROLL cursor gets the
-- Materialize PostgreSQL puts above such a node, a plain one refuses
-- FETCH BACKWARD as it always does.  (cursor_tuple_fraction = 1: planned
-- for all its rows, as the plain query is, not for a fast first row.)
BEGIN;
SET LOCAL cursor_tuple_fraction = 1.0;
DECLARE scrolling SCROLL CURSOR FOR
    SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;
FETCH 3 FROM scrolling;
FETCH BACKWARD 2 FROM scrolling;
FETCH ALL FROM scrolling;
DECLARE forward_only CURSOR FOR
    SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;
FETCH 2 FROM forward_only;
FETCH BACKWARD 1 FROM forward_only;
ROLLBACK;

-- A customer that fails fails the statement as the Nested Loop's call
-- would: same SQLSTATE, same message.
\pset format unaligned
\pset tuples_only on
INSERT INTO crm.customers VALUES (9, 'Gone Ltd', 'fa115d17-a529-411d-8b2b-8d9024697b9d', 'gov');
SELECT error_of($$SELECT c.name, q.* FROM crm.customers c
                  CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
SET pcqual.batch_lateral = off;
SELECT error_of($$SELECT c.name, q.* FROM crm.customers c
                  CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);
RESET pcqual.batch_lateral;
\pset format aligned
\pset tuples_only off
-- ... and not when a LIMIT stops before its row (the last one), as with
-- the Nested Loop: the batch fetched it, but never reached it.
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q LIMIT 3$$);
DELETE FROM crm.customers WHERE id = 9;

-- Shapes the batch does not take: the planner keeps its own plan
-- (enable_memoize = off: the plans read the same in every version).
SET enable_memoize = off;
-- pcqual.batch_lateral = off:
SET pcqual.batch_lateral = off;
EXPLAIN (COSTS OFF)
SELECT c.name, q.* FROM crm.customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;
RESET pcqual.batch_lateral;
-- WITH ORDINALITY:
EXPLAIN (COSTS OFF)
SELECT c.name, q.* FROM crm.customers c
CROSS JOIN LATERAL pc_qualifications(c.tenant_id) WITH ORDINALITY q;
-- several functions in one FROM item (ROWS FROM):
EXPLAIN (COSTS OFF)
SELECT c.name, q.* FROM crm.customers c
CROSS JOIN LATERAL ROWS FROM (pc_qualifications(c.tenant_id), generate_series(1, 2)) q;
-- an argument that is not of the outer side alone (a volatile one):
EXPLAIN (COSTS OFF)
SELECT c.name, q.* FROM crm.customers c
CROSS JOIN LATERAL pc_qualifications(CASE WHEN random() < 2 THEN c.tenant_id END) q;
-- an UPDATE ... FROM, or FOR UPDATE (PostgreSQL may recheck a joined row):
SELECT uses_batch($$UPDATE crm.customers u SET segment = x.qualification
    FROM crm.customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) x
    WHERE u.id = c.id$$) AS update_from_batched;
SELECT * FROM same_as_nested_loop($$
    SELECT c.id, q.qualification FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q FOR UPDATE OF c$$);
-- the whole row of the function:
EXPLAIN (COSTS OFF)
SELECT c.name, q FROM crm.customers c CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q;
RESET enable_memoize;

-- EXPLAIN ANALYZE shows the batches, the tenants fetched (distinct per
-- batch) and the requests sent.
SELECT * FROM batch_counts($$SELECT c.name, q.* FROM crm.customers c
    CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q$$);

DROP FUNCTION same_as_nested_loop(text);
DROP FUNCTION uses_batch(text);
DROP FUNCTION batch_counts(text);
DROP TABLE crm.customers;
DROP SCHEMA crm;
