-- A user's own pgTAP test of CRM views over pcqual, run offline: the Partner
-- Center emulator (pcqual-emulator --fixtures fixtures.json) answers for the
-- four customers below.  run.sh starts the emulator, makes a scratch
-- database pointed at it and runs this file with pg_prove.
--
-- Everything is created inside the transaction and rolled back at the end;
-- only the requests to the emulator happen for real.
BEGIN;
SELECT plan(9);

CREATE SCHEMA crm;

CREATE TABLE crm.customers (
    tenant_id uuid PRIMARY KEY,
    name      text NOT NULL
);

-- the tenant ids of fixtures.json
INSERT INTO crm.customers VALUES
    ('6f1d2c3b-0001-4e5f-8a9b-000000000001', 'Lakeside School'),   -- Education, approved
    ('6f1d2c3b-0002-4e5f-8a9b-000000000002', 'Fourth Coffee'),     -- Education, denied
    ('6f1d2c3b-0003-4e5f-8a9b-000000000003', 'Tailspin Toys'),     -- no qualification
    ('6f1d2c3b-0004-4e5f-8a9b-000000000004', 'Adventure Works');   -- 404: left the partner

-- The views under test.
--
-- Each customer with each of its qualifications, one row with NULLs for a
-- customer that has none, and whether it may buy education offers.  One
-- request per customer row; a customer Partner Center does not know fails
-- the whole query (pcqual raises P0002, no_data_found).
CREATE VIEW crm.customer_qualifications AS
SELECT c.tenant_id, c.name, q.qualification, q.vetting_status, q.vetting_reason,
       q.vetting_created_date,
       coalesce(q.qualification = 'Education' AND q.vetting_status = 'Approved', false)
           AS education_approved
FROM crm.customers c
LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true;

-- The report that must not fail: all customers in one bulk call, with each
-- customer's outcome (a failed customer is a row with succeeded = false and
-- the SQLSTATE it would have raised, and a WARNING).
CREATE VIEW crm.education_report AS
SELECT c.name,
       bool_and(f.succeeded) AS fetched,
       bool_or(coalesce(f.qualification = 'Education' AND f.vetting_status = 'Approved',
                        false)) AS education_approved,
       max(f.error_sqlstate) AS error_sqlstate
FROM crm.customers c
LEFT JOIN pc_fetch_qualifications(ARRAY(SELECT tenant_id FROM crm.customers)) f
       ON f.customer_tenant_id = c.tenant_id
GROUP BY c.name;

-- ---- customer_qualifications ----

SELECT results_eq(
    $$SELECT name, qualification, vetting_status, vetting_reason, vetting_created_date
      FROM crm.customer_qualifications
      WHERE name <> 'Adventure Works'
      ORDER BY name$$,
    $$VALUES ('Fourth Coffee', 'Education', 'Denied', 'Not an Education Customer',
              timestamptz '2024-02-01 09:30:00+00'),
             ('Lakeside School', 'Education', 'Approved', NULL,
              timestamptz '2024-01-01 00:00:00+00'),
             ('Tailspin Toys', NULL, NULL, NULL, NULL)$$,
    'each known customer with its qualifications; one without any is listed once');

SELECT is((SELECT education_approved FROM crm.customer_qualifications
           WHERE name = 'Lakeside School'), true,
          'an approved Education qualification may buy education offers');

SELECT is((SELECT education_approved FROM crm.customer_qualifications
           WHERE name = 'Fourth Coffee'), false,
          'a denied one may not');

SELECT is((SELECT education_approved FROM crm.customer_qualifications
           WHERE name = 'Tailspin Toys'), false,
          'no qualification: false, not NULL');

SELECT throws_ok(
    $$SELECT * FROM crm.customer_qualifications$$,
    'P0002',
    'Partner Center answered HTTP 404 for customer 6f1d2c3b-0004-4e5f-8a9b-000000000004: Tenant not found (code 60003)',
    'a customer Partner Center does not know fails the whole view with no_data_found');

SELECT throws_ok(
    $$SELECT * FROM crm.customer_qualifications WHERE name = 'Adventure Works'$$,
    'P0002', NULL,
    '... and so does asking for that customer alone');

-- ---- education_report ----

-- pc_fetch_qualifications reports the failed customer as a WARNING too:
-- keep it out of the test's output
SET LOCAL client_min_messages = error;

SELECT results_eq(
    $$SELECT name, fetched, education_approved, error_sqlstate
      FROM crm.education_report ORDER BY name$$,
    $$VALUES ('Adventure Works', false, false, 'P0002'),
             ('Fourth Coffee', true, false, NULL),
             ('Lakeside School', true, true, NULL),
             ('Tailspin Toys', true, false, NULL)$$,
    'the report lists every customer; the unknown one as not fetched, with P0002');

SELECT is((SELECT count(*) FROM crm.education_report WHERE education_approved), 1::bigint,
          'one customer may buy education offers');

SELECT is((SELECT string_agg(name, ', ' ORDER BY name) FROM crm.education_report
           WHERE fetched AND NOT education_approved),
          'Fourth Coffee, Tailspin Toys',
          'the customers to follow up');

RESET client_min_messages;

SELECT * FROM finish();
ROLLBACK;
