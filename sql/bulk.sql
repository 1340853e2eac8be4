-- pc_qualifications(tenants uuid[], on_error text DEFAULT 'error'): many
-- customers in one call, fetched concurrently.
SET timezone = 'UTC';
SET datestyle = 'ISO';


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

-- on_error => 'error' (the default): the first customer that fails raises
-- its ERROR, and no rows are returned.
SELECT error_of($$SELECT * FROM pc_qualifications(ARRAY[
    '11111111-0000-0000-0000-000000000001',
    '22222222-0000-0000-0000-000000000404']::uuid[])$$);

-- on_error => 'warning': one WARNING per failed customer, the others' rows.
-- (One request at a time here, so that the WARNINGs come in a stable order,
-- and terse, as their DETAIL carries random request ids.)
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

-- Anything else is an error.
SELECT * FROM pc_qualifications(ARRAY['11111111-0000-0000-0000-000000000001']::uuid[], 'ignore');

-- Quoted tenant ids and a bare NULL still mean one customer.
SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000005');
SELECT count(*) FROM pc_qualifications(NULL);
SELECT error_of($$SELECT * FROM pc_qualifications('not-a-guid')$$);

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
