/* pcqual--1.0.sql */

\echo Use "CREATE EXTENSION pcqual" to load this file. \quit

CREATE FUNCTION pc_qualifications(
    tenant uuid,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_qualifications'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE
ROWS 2;

COMMENT ON FUNCTION pc_qualifications(uuid) IS
'Qualifications of one Partner Center customer (GET /v1/customers/{tenant}/qualifications): '
'qualification, vetting_status, vetting_reason, vetting_created_date, in the order the service sent them. '
'NULL tenant: no rows and no request. Errors carry the MS-CorrelationId and MS-RequestId.';

REVOKE EXECUTE ON FUNCTION pc_qualifications(uuid) FROM PUBLIC;
