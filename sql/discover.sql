-- What the partner has: its customers (pc_customers) and its
-- GovernmentCommunityCloud validation codes (pc_validation_codes).  Both
-- work with App-only credentials.
SELECT emulator_post('reset');

-- pc_validation_codes(): GET /v1/customers/all/validations.  validation_id
-- is what pc_create_qualification takes as validation_code (sql/write.sql);
-- a missing organization name is NULL.
SELECT * FROM pc_validation_codes() ORDER BY validation_id;

-- pc_customers(): GET /v1/customers, every page (pcqual asks for 100
-- customers a page and follows the MS-ContinuationToken of each page's
-- "next" link).  The emulator's partner has 100 customers
-- cccccccc-0000-4000-8000-000000000NNN.
SELECT count(*) AS customers, count(DISTINCT tenant_id) AS distinct_tenants
FROM pc_customers();
SELECT * FROM pc_customers() ORDER BY tenant_id LIMIT 6;
-- relationship is relationshipToPartner as the service spells it.
SELECT relationship, count(*) FROM pc_customers() GROUP BY 1 ORDER BY 1;
-- Names come as the service sent them (UTF-8); a customer whose company
-- profile has no tenantId is listed with its "id".
SELECT * FROM pc_customers()
WHERE tenant_id IN ('cccccccc-0000-4000-8000-000000000042',
                    'cccccccc-0000-4000-8000-000000000077')
ORDER BY tenant_id;

-- One filter, applied by the service, ignoring case: a company name prefix
-- or a domain prefix.
SELECT count(*) FROM pc_customers(company_name_prefix => 'contoso');
SELECT * FROM pc_customers(company_name_prefix => 'TAILSPIN') ORDER BY tenant_id LIMIT 3;
SELECT * FROM pc_customers(domain_prefix => 'Mueller');
SELECT * FROM pc_customers(company_name_prefix => 'Müller');
SELECT count(*) FROM pc_customers(domain_prefix => 'no-such-customer');
-- What pcqual sent for the last call: the filter as URL-encoded JSON.
SELECT r->>'path' AS path
FROM json_array_elements(emulator_get('requests?format=json&kind=api')) r
ORDER BY (r->>'seq')::int DESC LIMIT 1;
-- The service filters on one field per request: both prefixes are refused
-- (filter on one and refine in SQL), and so is an empty one (pass NULL for
-- every customer).  22023, before any request.
SELECT * FROM pc_customers('Contoso', 'contoso');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_customers(company_name_prefix => '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pc_customers(domain_prefix => '');
-- Customers with their qualifications: a join with the bulk read.
SELECT c.company_name, q.qualification, q.vetting_status
FROM pc_customers(company_name_prefix => 'Woodgrove') c
LEFT JOIN pc_qualifications(ARRAY(SELECT tenant_id
                                  FROM pc_customers(company_name_prefix => 'Woodgrove'))) q
       ON q.customer_tenant_id = c.tenant_id
ORDER BY c.company_name LIMIT 3;
