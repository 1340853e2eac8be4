#!/bin/bash
# Runs inside pg_virtualenv: the emulator, a CRM table, and the sample query.
set -euo pipefail
cd "$(dirname "$0")/.."

source test/start-emulator.sh

createdb pcqual_demo
psql -X -q -v ON_ERROR_STOP=1 -v db=pcqual_demo -d pcqual_demo -f test/emulator-settings.psql
psql -X -q -v ON_ERROR_STOP=1 -d pcqual_demo <<'SQL'
CREATE EXTENSION pcqual;
CREATE SCHEMA crm;
CREATE TABLE crm.customers (name text, tenant_id uuid);
INSERT INTO crm.customers VALUES
    ('Contoso University', '11111111-0000-0000-0000-000000000001'),
    ('Fabrikam Schools',   '11111111-0000-0000-0000-000000000003'),
    ('Litware Academy',    '11111111-0000-0000-0000-000000000002'),
    ('Northwind Agency',   '11111111-0000-0000-0000-000000000006'),
    ('Woodgrove Trust',    '11111111-0000-0000-0000-000000000004');
SET timezone = 'UTC';
\echo
\echo '-- one customer per call'
SELECT c.name, q.*
FROM crm.customers c
CROSS JOIN LATERAL pc_qualifications(c.tenant_id) q
ORDER BY c.name, q.qualification;
\echo '-- every customer in one concurrent call'
SELECT c.name, q.qualification, q.vetting_status
FROM crm.customers c
LEFT JOIN pc_qualifications(ARRAY(SELECT tenant_id FROM crm.customers)) q
       ON q.customer_tenant_id = c.tenant_id
ORDER BY c.name, q.qualification;
SQL
