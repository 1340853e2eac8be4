-- pc_qualifications(tenants uuid[], on_error text DEFAULT 'error'): many
-- customers in one call, fetched concurrently (pcqual.concurrency at a
-- time, connections reused).  pc_fetch_qualifications(tenants uuid[]) is
-- the same fetch reporting each customer's outcome (bottom).
SET timezone = 'UTC';
SET datestyle = 'ISO';
-- psql's CONTEXT line is not shown: it would only name the SQL function
-- that raised an error.
\set SHOW_CONTEXT never


-- Rows carry their customer; a customer's rows keep the service's order.
SELECT * FROM pc_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000006',
    '11111111-0000-0000-0000-000000000003',
    '11111111-0000-0000-0000-000000000007']::uuid[])
ORDER BY customer_tenant_id, qualification;

-- Each distinct non-NULL tenant is fetched once.
SELECT customer_tenant_id, count(*)
FROM pc_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000005', NULL,
    '11111111-0000-0000-0000-000000000005',
    '11111111-0000-0000-0000-000000000001']::uuid[])
GROUP BY 1 ORDER BY 1;

-- Empty arrays and NULL arrays give no rows.
SELECT count(*) FROM pc_qualifications(ARRAY[]::uuid[]);
SELECT count(*) FROM pc_qualifications(ARRAY[NULL]::uuid[]);
SELECT count(*) FROM pc_qualifications(NULL::uuid[]);
SELECT count(*) FROM pc_qualifications(NULL::uuid[], on_error => 'warning');

-- on_error => 'error' (the default): the first customer that fails raises
-- its ERROR, and no rows are returned.  (22222222-0000-0000-0000-000000000404
-- is a fault tenant: the emulator answers 404 Tenant not found.  error_of()
-- shows the error with its random request id masked, sql/setup.sql.)
SELECT error_of($$SELECT * FROM pc_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000001',
    '22222222-0000-0000-0000-000000000404']::uuid[])$$)
\g (format=unaligned tuples_only=on)

-- on_error => 'warning': one WARNING per failed customer, the others' rows.
-- (One request at a time here, so that the WARNINGs come in a stable order,
-- and terse, as their DETAIL carries random request ids.)  The fault
-- tenants 22222222-0000-0000-0000-000000000NNN answer: 404 Tenant not found,
-- 600 a 200 with malformed JSON, 503 an empty 503.
\set VERBOSITY terse
SET pcqual.max_retries = 0;
SET pcqual.concurrency = 1;
SELECT customer_tenant_id, qualification
FROM pc_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000001',
    '22222222-0000-0000-0000-000000000404',
    '22222222-0000-0000-0000-000000000600',
    '22222222-0000-0000-0000-000000000503',
    '11111111-0000-0000-0000-000000000004']::uuid[], on_error => 'warning')
ORDER BY 1;
RESET pcqual.max_retries;
RESET pcqual.concurrency;
\set VERBOSITY default

-- Anything else is an error (22023), and so is NULL (22004): a NULL
-- on_error does not silently return nothing.
SELECT * FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[], 'ignore');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[], NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_qualifications(NULL::uuid[], on_error => NULL);
\echo :LAST_ERROR_SQLSTATE

-- Quoted tenant ids and a bare NULL still mean one customer.
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000005');
SELECT count(*) FROM pc_qualifications(NULL);
SELECT * FROM pc_qualifications('not-a-guid');

-- The nightly materialized view: every CRM customer, qualified or not.
CREATE SCHEMA crm;
CREATE TABLE crm.customers (name text, tenant_id uuid);
INSERT INTO crm.customers VALUES
    ('Contoso University', '11111111-0000-0000-0000-000000000001'),
    ('Fabrikam Schools',   '11111111-0000-0000-0000-000000000003'),
    ('Northwind Agency',   '11111111-0000-0000-0000-000000000006'),
    ('Tailspin Toys',      '11111111-0000-0000-0000-000000000007'),
    ('Prospect, no tenant yet', NULL);
CREATE MATERIALIZED VIEW crm.customer_qualifications AS
SELECT c.name, c.tenant_id, q.qualification, q.vetting_status, q.vetting_reason,
       q.vetting_created_date
FROM crm.customers c
LEFT JOIN pc_qualifications(ARRAY(SELECT tenant_id FROM crm.customers)) q
       ON q.customer_tenant_id = c.tenant_id;
CREATE UNIQUE INDEX ON crm.customer_qualifications (tenant_id, qualification);
REFRESH MATERIALIZED VIEW CONCURRENTLY crm.customer_qualifications;
SELECT name, qualification, vetting_status FROM crm.customer_qualifications ORDER BY name, qualification;
DROP SCHEMA crm CASCADE;

-- pc_fetch_qualifications: every customer's outcome, for a sync that must
-- not lose one (pc_sync_qualifications, sql/sync.sql, is built on it).  A
-- customer with no qualification gets one row with a NULL qualification;
-- a failed customer one row with succeeded = false and the SQLSTATE and
-- message of the error it would have raised (also given as a WARNING).
-- 11111111-0000-0000-0000-000000000007 has no qualifications; the fault
-- tenants answer 404 Tenant not found and 429 Rate limit exceeded.
\set VERBOSITY terse
SET pcqual.max_retries = 0;
SET pcqual.concurrency = 1;
SELECT customer_tenant_id, succeeded, qualification, vetting_status, error_sqlstate,
       error_message
FROM pc_fetch_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000005',
    '11111111-0000-0000-0000-000000000007',
    '22222222-0000-0000-0000-000000000404',
    '22222222-0000-0000-0000-000000000429', NULL]::uuid[])
ORDER BY customer_tenant_id, qualification;
\set VERBOSITY default
-- That 429 paused the partner for every session for its Retry-After (7 s):
-- forget it rather than wait.
SELECT pc_governor_reset();
SELECT count(*) FROM pc_fetch_qualifications(NULL);
