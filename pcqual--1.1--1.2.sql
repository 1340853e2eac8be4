/* pcqual--1.1--1.2.sql: sessions, per-customer outcomes, writes, discovery */

\echo Use "ALTER EXTENSION pcqual UPDATE TO '1.2'" to load this file. \quit

-- A NULL array still gives no rows, but a NULL on_error is now an error
-- rather than a silently empty result.
ALTER FUNCTION pc_qualifications(uuid[], text) CALLED ON NULL INPUT;

CREATE FUNCTION pc_disconnect()
RETURNS integer
AS 'MODULE_PATHNAME', 'pc_disconnect'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pc_disconnect() IS
'Closes this session''s cached Partner Center connections and forgets its access token; '
'returns how many connections it closed (like postgres_fdw_disconnect_all()).';

REVOKE EXECUTE ON FUNCTION pc_disconnect() FROM PUBLIC;

CREATE FUNCTION pc_fetch_qualifications(
    tenants uuid[],
    OUT customer_tenant_id uuid,
    OUT succeeded boolean,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz,
    OUT error_sqlstate text,
    OUT error_message text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_fetch_qualifications'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1000;

COMMENT ON FUNCTION pc_fetch_qualifications(uuid[]) IS
'The bulk fetch with each customer''s outcome, for syncs that must not lose a customer: '
'its qualifications (succeeded = true); one row with a NULL qualification for a customer that has none; '
'or one row with succeeded = false, error_sqlstate and error_message (the error it would have raised, '
'also reported as a WARNING).';

REVOKE EXECUTE ON FUNCTION pc_fetch_qualifications(uuid[]) FROM PUBLIC;

-- Writes: setting a qualification cannot be undone at Microsoft.  Keep
-- EXECUTE on this function separate from the read-only ones.
CREATE FUNCTION pc_create_qualification(
    tenant uuid,
    qualification text,
    education_segment text DEFAULT NULL,
    website text DEFAULT NULL,
    validation_code text DEFAULT NULL,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_create_qualification'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1;

COMMENT ON FUNCTION pc_create_qualification(uuid, text, text, text, text) IS
'Sets a customer''s qualification (POST /v1/customers/{tenant}/qualifications), IRREVERSIBLY: '
'Education with education_segment K12 or HigherEducation (and optionally website), '
'GovernmentCommunityCloud with a validation_code from pc_validation_codes(), or StateOwnedEntity. '
'Needs App+User credentials (pcqual.refresh_token_file). Returns the qualification as the service answered, '
'usually InReview. Retries reuse the MS-RequestId, so a retried create is not made twice.';

REVOKE EXECUTE ON FUNCTION pc_create_qualification(uuid, text, text, text, text) FROM PUBLIC;

CREATE FUNCTION pc_validation_codes(
    OUT validation_id text,
    OUT organization_name text,
    OUT partner_id uuid,
    OUT max_creates integer,
    OUT remaining_creates integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_validation_codes'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 10;

COMMENT ON FUNCTION pc_validation_codes() IS
'The partner''s GovernmentCommunityCloud validation codes (GET /v1/customers/all/validations): '
'validation_id is what pc_create_qualification takes as validation_code.';

REVOKE EXECUTE ON FUNCTION pc_validation_codes() FROM PUBLIC;

CREATE FUNCTION pc_customers(
    company_name_prefix text DEFAULT NULL,
    domain_prefix text DEFAULT NULL,
    OUT tenant_id uuid,
    OUT company_name text,
    OUT domain text,
    OUT relationship text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_customers'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1000;

COMMENT ON FUNCTION pc_customers(text, text) IS
'The partner''s customers (GET /v1/customers, every page followed): tenant_id, company_name, domain and '
'relationship (relationshipToPartner). company_name_prefix or domain_prefix (not both) filters on the '
'service''s side, ignoring case.';

REVOKE EXECUTE ON FUNCTION pc_customers(text, text) FROM PUBLIC;

-- Scheduled sync: last-known-good state and a history of every change.

CREATE TABLE pc_qualification_state (
    customer_tenant_id uuid NOT NULL,
    qualification text NOT NULL,
    vetting_status text,
    vetting_reason text,
    vetting_created_date timestamptz,
    first_seen_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    PRIMARY KEY (customer_tenant_id, qualification)
);

COMMENT ON TABLE pc_qualification_state IS
'The latest known qualifications of each customer pc_sync_qualifications has fetched successfully; '
'a customer whose fetch failed keeps its rows. Where the service lists a qualification more than once, '
'the row with the latest vetting_created_date is kept.';

CREATE TABLE pc_qualification_changes (
    change_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_tenant_id uuid NOT NULL,
    qualification text NOT NULL,
    change text NOT NULL CHECK (change IN ('added', 'changed', 'removed')),
    old_vetting_status text,
    new_vetting_status text,
    old_vetting_reason text,
    new_vetting_reason text,
    old_vetting_created_date timestamptz,
    new_vetting_created_date timestamptz,
    observed_at timestamptz NOT NULL
);

-- "changes of one customer, newest first"
CREATE INDEX pc_qualification_changes_customer_idx
    ON pc_qualification_changes (customer_tenant_id, observed_at DESC, change_id DESC);

COMMENT ON TABLE pc_qualification_changes IS
'One row per qualification added, changed (status, reason or date) or removed, as pc_sync_qualifications '
'observed it; appended, never rewritten.';

CREATE TABLE pc_customer_sync (
    customer_tenant_id uuid PRIMARY KEY,
    last_attempt_at timestamptz NOT NULL,
    last_success_at timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error_sqlstate text,
    last_error_message text
);

-- "customers failing for N syncs"
CREATE INDEX pc_customer_sync_failing_idx
    ON pc_customer_sync (consecutive_failures) WHERE consecutive_failures > 0;

COMMENT ON TABLE pc_customer_sync IS
'How each customer''s last fetch by pc_sync_qualifications went: when it was tried and last succeeded, '
'how many syncs in a row failed, and the SQLSTATE and message of the last failure.';

-- pg_dump keeps the data of these tables.
SELECT pg_catalog.pg_extension_config_dump('pc_qualification_state', '');
SELECT pg_catalog.pg_extension_config_dump('pc_qualification_changes', '');
SELECT pg_catalog.pg_extension_config_dump('pc_qualification_changes_change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pc_customer_sync', '');

REVOKE ALL ON pc_qualification_state, pc_qualification_changes, pc_customer_sync FROM PUBLIC;

CREATE FUNCTION pc_sync_qualifications(
    tenants uuid[],
    OUT customers integer,
    OUT succeeded integer,
    OUT failed integer,
    OUT rows_changed integer)
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SECURITY DEFINER
SET search_path = @extschema@, pg_temp
ROWS 1
AS $$
#variable_conflict use_column
DECLARE
    synced_at timestamptz := now();
BEGIN
    -- One sync at a time per database: a second one waits here for the
    -- first to commit, then sees its state, so no change is recorded twice.
    PERFORM pg_advisory_xact_lock(hashtext('pcqual'), hashtext('pc_sync_qualifications'));

    -- (left over only if an earlier sync in this transaction failed)
    IF to_regclass('pg_temp.pcqual_sync_fetched') IS NOT NULL THEN
        DROP TABLE pg_temp.pcqual_sync_fetched;
    END IF;
    CREATE TEMP TABLE pcqual_sync_fetched ON COMMIT DROP AS
    SELECT f.*
    FROM pc_fetch_qualifications(tenants) WITH ORDINALITY AS f(customer_tenant_id, succeeded,
         qualification, vetting_status, vetting_reason, vetting_created_date,
         error_sqlstate, error_message, ord);

    -- The answer of each customer that answered, one row per qualification.
    IF to_regclass('pg_temp.pcqual_sync_latest') IS NOT NULL THEN
        DROP TABLE pg_temp.pcqual_sync_latest;
    END IF;
    CREATE TEMP TABLE pcqual_sync_latest ON COMMIT DROP AS
    SELECT DISTINCT ON (customer_tenant_id, qualification)
           customer_tenant_id, qualification, vetting_status, vetting_reason, vetting_created_date
    FROM pg_temp.pcqual_sync_fetched
    WHERE succeeded AND qualification IS NOT NULL
    ORDER BY customer_tenant_id, qualification, vetting_created_date DESC NULLS LAST, ord DESC;

    WITH answered AS (
        SELECT DISTINCT customer_tenant_id FROM pg_temp.pcqual_sync_fetched WHERE succeeded
    ), old AS (
        SELECT s.* FROM pc_qualification_state s JOIN answered USING (customer_tenant_id)
    )
    INSERT INTO pc_qualification_changes (customer_tenant_id, qualification, change,
        old_vetting_status, new_vetting_status, old_vetting_reason, new_vetting_reason,
        old_vetting_created_date, new_vetting_created_date, observed_at)
    SELECT coalesce(n.customer_tenant_id, o.customer_tenant_id),
           coalesce(n.qualification, o.qualification),
           CASE WHEN o.qualification IS NULL THEN 'added'
                WHEN n.qualification IS NULL THEN 'removed'
                ELSE 'changed' END,
           o.vetting_status, n.vetting_status, o.vetting_reason, n.vetting_reason,
           o.vetting_created_date, n.vetting_created_date, synced_at
    FROM old o
    FULL JOIN pg_temp.pcqual_sync_latest n
           ON n.customer_tenant_id = o.customer_tenant_id AND n.qualification = o.qualification
    WHERE o.qualification IS NULL OR n.qualification IS NULL
       OR (o.vetting_status, o.vetting_reason, o.vetting_created_date)
          IS DISTINCT FROM (n.vetting_status, n.vetting_reason, n.vetting_created_date)
    ORDER BY 1, 2;
    GET DIAGNOSTICS rows_changed = ROW_COUNT;

    DELETE FROM pc_qualification_state s
    USING (SELECT DISTINCT customer_tenant_id FROM pg_temp.pcqual_sync_fetched WHERE succeeded) a
    WHERE s.customer_tenant_id = a.customer_tenant_id
      AND NOT EXISTS (SELECT FROM pg_temp.pcqual_sync_latest n
                      WHERE n.customer_tenant_id = s.customer_tenant_id
                        AND n.qualification = s.qualification);

    INSERT INTO pc_qualification_state AS s
    SELECT customer_tenant_id, qualification, vetting_status, vetting_reason,
           vetting_created_date, synced_at, synced_at
    FROM pg_temp.pcqual_sync_latest
    ON CONFLICT (customer_tenant_id, qualification) DO UPDATE
       SET vetting_status = excluded.vetting_status,
           vetting_reason = excluded.vetting_reason,
           vetting_created_date = excluded.vetting_created_date,
           last_seen_at = excluded.last_seen_at;

    INSERT INTO pc_customer_sync AS s
    SELECT DISTINCT ON (customer_tenant_id)
           customer_tenant_id, synced_at,
           CASE WHEN succeeded THEN synced_at END,
           CASE WHEN succeeded THEN 0 ELSE 1 END,
           error_sqlstate, error_message
    FROM pg_temp.pcqual_sync_fetched
    ORDER BY customer_tenant_id
    ON CONFLICT (customer_tenant_id) DO UPDATE
       SET last_attempt_at = excluded.last_attempt_at,
           last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
           consecutive_failures = CASE WHEN excluded.consecutive_failures = 0 THEN 0
                                       ELSE s.consecutive_failures + 1 END,
           last_error_sqlstate = excluded.last_error_sqlstate,
           last_error_message = excluded.last_error_message;

    SELECT count(DISTINCT customer_tenant_id),
           count(DISTINCT customer_tenant_id) FILTER (WHERE succeeded),
           count(DISTINCT customer_tenant_id) FILTER (WHERE NOT succeeded)
      INTO customers, succeeded, failed
      FROM pg_temp.pcqual_sync_fetched;

    DROP TABLE pg_temp.pcqual_sync_latest;
    DROP TABLE pg_temp.pcqual_sync_fetched;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION pc_sync_qualifications(uuid[]) IS
'Fetches every distinct non-NULL tenant concurrently and, in the calling transaction, brings '
'pc_qualification_state, pc_qualification_changes and pc_customer_sync up to date: a customer that answered '
'replaces its state (changes recorded), one that failed keeps its state and has its failure counted. '
'Returns customers, succeeded, failed and rows_changed (change rows written). Syncs are serialised. '
'Runs with the extension owner''s rights: a job role needs only EXECUTE on it.';

REVOKE EXECUTE ON FUNCTION pc_sync_qualifications(uuid[]) FROM PUBLIC;
