/* pcqual--1.0--1.1.sql: many customers in one call, fetched concurrently */

\echo Use "ALTER EXTENSION pcqual UPDATE TO '1.1'" to load this file. \quit

CREATE FUNCTION pc_qualifications(
    tenants uuid[],
    on_error text DEFAULT 'error',
    OUT customer_tenant_id uuid,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_qualifications_bulk'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
ROWS 1000;

COMMENT ON FUNCTION pc_qualifications(uuid[], text) IS
'Qualifications of many Partner Center customers, fetched concurrently (pcqual.concurrency at a time, '
'connections reused, retries and Retry-After per request): one row per qualification with its customer_tenant_id. '
'Each distinct non-NULL tenant is fetched once. on_error => ''error'' (default) raises the first failure; '
'''warning'' reports one WARNING per failed customer and returns the others'' rows.';

REVOKE EXECUTE ON FUNCTION pc_qualifications(uuid[], text) FROM PUBLIC;

-- With two overloads, a quoted tenant id such as
-- pc_qualifications('11111111-...') could be a uuid or a uuid[] literal and
-- PostgreSQL would call the function "not unique".  This overload takes the
-- literal as text, so quoted ids and bare NULLs keep working as in 1.0.
CREATE FUNCTION pc_qualifications(
    tenant text,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz)
RETURNS SETOF record
LANGUAGE sql STRICT VOLATILE PARALLEL UNSAFE
ROWS 2
AS $$ SELECT * FROM pc_qualifications(tenant::uuid) $$;

COMMENT ON FUNCTION pc_qualifications(text) IS
'pc_qualifications(uuid) for a tenant id written as a quoted literal.';

REVOKE EXECUTE ON FUNCTION pc_qualifications(text) FROM PUBLIC;
