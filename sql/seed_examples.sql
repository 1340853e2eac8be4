-- The examples of Microsoft's "Get a customer's qualifications" page, each
-- served by the emulator for its own customer tenant.
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- Approved
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
-- In Review
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000002');
-- Denied
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000003');
-- State Owned Entity: no vetting fields at all
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000004');
-- State Owned Entity with Education
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000005');
-- State Owned Entity with GCC; the date is spelled vettingCreateDate and has
-- seven fraction digits
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000006');

-- The page's own use: join with a CRM table.
CREATE TEMP TABLE customers (name text, tenant_id uuid);
INSERT INTO customers VALUES
    ('Contoso University', '11111111-0000-0000-0000-000000000001'),
    ('Fabrikam Schools',   '11111111-0000-0000-0000-000000000003'),
    ('Northwind Agency',   '11111111-0000-0000-0000-000000000006'),
    ('Prospect, no tenant yet', NULL);
SELECT c.name, q.*
FROM customers c
CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
ORDER BY c.name, q.qualification;
-- LEFT JOIN LATERAL keeps customers without qualifications
SELECT c.name, q.qualification, q.vetting_status
FROM customers c
LEFT JOIN LATERAL pc_qualifications(c.tenant_id) q ON true
ORDER BY c.name, q.qualification;
