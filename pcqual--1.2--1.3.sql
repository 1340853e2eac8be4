/* pcqual--1.2--1.3.sql: one client per partner: statistics, progress, the governor */

\echo Use "ALTER EXTENSION pcqual UPDATE TO '1.3'" to load this file. \quit

-- Cumulative counters per endpoint, as pg_stat_statements keeps them per
-- statement: since pc_stat_reset() or the server's start.
CREATE FUNCTION pc_stat(
    OUT endpoint text,
    OUT requests bigint,
    OUT status_2xx bigint,
    OUT status_401 bigint,
    OUT status_403 bigint,
    OUT status_404 bigint,
    OUT status_409 bigint,
    OUT status_429 bigint,
    OUT status_4xx_other bigint,
    OUT status_5xx bigint,
    OUT status_other bigint,
    OUT transport_failures bigint,
    OUT retries bigint,
    OUT retry_wait_ms double precision,
    OUT bytes_received bigint,
    OUT mean_latency_ms double precision,
    OUT max_latency_ms double precision,
    OUT p50_latency_ms double precision,
    OUT p95_latency_ms double precision,
    OUT p99_latency_ms double precision,
    OUT shared_token_hits bigint,
    OUT last_error_at timestamptz,
    OUT last_error_sqlstate text,
    OUT last_error_message text,
    OUT last_error_request_id text,
    OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_stat'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE
ROWS 7;

COMMENT ON FUNCTION pc_stat() IS
'What pcqual sent to Partner Center and Azure AD since pc_stat_reset() or the server''s start, '
'one row per endpoint: attempts by status, retries, bytes, latency, the last error (the pc_stat view).';

CREATE VIEW pc_stat AS SELECT * FROM pc_stat();

CREATE FUNCTION pc_stat_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'pc_stat_reset'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION pc_stat_reset() IS
'Sets every pc_stat counter back to zero and stats_reset to now.';

-- One row per backend inside a pcqual call: a progress view, like
-- pg_stat_progress_*.
CREATE FUNCTION pc_stat_activity(
    OUT pid integer,
    OUT function text,
    OUT started_at timestamptz,
    OUT customers_total bigint,
    OUT customers_done bigint,
    OUT customers_failed bigint,
    OUT requests_in_flight integer,
    OUT retries bigint,
    OUT throttled bigint,
    OUT waiting_until timestamptz,
    OUT window_size integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_stat_activity'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION pc_stat_activity() IS
'One row per backend now inside a pcqual function: customers done of total, requests in flight, '
'retries, 429s, the pause it waits for (the pc_stat_activity view).';

CREATE VIEW pc_stat_activity AS SELECT * FROM pc_stat_activity();

-- The cluster-wide governor: one row per partner (API) and token endpoint.
CREATE FUNCTION pc_stat_governor(
    OUT kind text,
    OUT target text,
    OUT in_flight integer,
    OUT window_size integer,
    OUT learned_limit integer,
    OUT paused_until timestamptz,
    OUT active_backends integer,
    OUT waiting_backends integer,
    OUT throttled bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_stat_governor'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION pc_stat_governor() IS
'The cluster-wide governor''s state per partner: requests in flight, the window, the limit a 429 taught, '
'the Retry-After pause, backends active and waiting (the pc_stat_governor view).';

CREATE VIEW pc_stat_governor AS SELECT * FROM pc_stat_governor();

CREATE FUNCTION pc_governor_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'pc_governor_reset'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION pc_governor_reset() IS
'Forgets every partner''s learned window, limit and Retry-After pause: the next call starts afresh. '
'Requests in flight keep their slots.';

COMMENT ON FUNCTION pc_disconnect() IS
'Closes this session''s cached Partner Center connections and drops the cluster''s access token of the credential '
'in effect (the next call of any session requests a new one); returns how many connections it closed.';

-- Readable by monitoring roles, as PostgreSQL's own statistics are; the
-- resets are the superuser's unless granted.
REVOKE ALL ON FUNCTION pc_stat(), pc_stat_activity(), pc_stat_governor() FROM PUBLIC;
REVOKE ALL ON pc_stat, pc_stat_activity, pc_stat_governor FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pc_stat(), pc_stat_activity(), pc_stat_governor() TO pg_read_all_stats;
GRANT SELECT ON pc_stat, pc_stat_activity, pc_stat_governor TO pg_read_all_stats;
REVOKE ALL ON FUNCTION pc_stat_reset(), pc_governor_reset() FROM PUBLIC;

-- A sync refuses isolation levels other than READ COMMITTED, and takes its
-- time once it holds the lock.
CREATE OR REPLACE FUNCTION pc_sync_qualifications(
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
    synced_at timestamptz;
    first_change bigint;
    last_change bigint;
    changed_customers integer;
BEGIN
    -- Each statement below must see what the sync before this one
    -- committed while this one waited for the lock: only READ COMMITTED
    -- takes a new snapshot per statement.  At REPEATABLE READ or
    -- SERIALIZABLE the transaction's snapshot predates the wait, so the
    -- sync would record changes against stale state or fail with 40001.
    -- Refused before any request is sent.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'pc_sync_qualifications must run at the READ COMMITTED isolation level, not %',
                        upper(current_setting('transaction_isolation'))
              USING ERRCODE = 'feature_not_supported',
                    HINT = 'Run it in its own transaction, or after SET TRANSACTION ISOLATION LEVEL READ COMMITTED.';
    END IF;

    -- One sync at a time per database: a second one waits here for the
    -- first to commit, then sees its state, so no change is recorded twice.
    PERFORM pg_advisory_xact_lock(hashtext('pcqual'), hashtext('pc_sync_qualifications'));
    -- The time of this sync, taken once the lock is held (not now(), the
    -- transaction's start): observed_at then never goes backwards from
    -- one sync to the next.
    synced_at := clock_timestamp();

    CREATE TEMP TABLE pcqual_sync_fetched ON COMMIT DROP AS
    SELECT f.*
    FROM pc_fetch_qualifications(tenants) WITH ORDINALITY AS f(customer_tenant_id, succeeded,
         qualification, vetting_status, vetting_reason, vetting_created_date,
         error_sqlstate, error_message, ord);

    -- The answer of each customer that answered, one row per qualification.
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
    ), written AS (
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
        ORDER BY 1, 2
        RETURNING change_id, customer_tenant_id
    )
    SELECT count(*), min(change_id), max(change_id), count(DISTINCT customer_tenant_id)
      INTO rows_changed, first_change, last_change, changed_customers
      FROM written;

    -- Listeners learn of the changes when this transaction commits (never
    -- if it rolls back): one notification per sync that wrote change rows,
    -- naming their change_id range, whatever the sync's size.  Syncs are
    -- serialised, so the range holds this sync's rows and no other's.
    IF rows_changed > 0 THEN
        PERFORM pg_notify('pcqual_qualification_changes',
                          json_build_object('first_change_id', first_change,
                                            'last_change_id', last_change,
                                            'changes', rows_changed,
                                            'customers', changed_customers)::text);
    END IF;

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

    -- (so that another sync in this transaction can create them again)
    DROP TABLE pg_temp.pcqual_sync_latest;
    DROP TABLE pg_temp.pcqual_sync_fetched;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION pc_sync_qualifications(uuid[]) IS
'Fetches every distinct non-NULL tenant concurrently and, in the calling transaction, brings '
'pc_qualification_state, pc_qualification_changes and pc_customer_sync up to date: a customer that answered '
'replaces its state (changes recorded), one that failed keeps its state and has its failure counted. '
'Returns customers, succeeded, failed and rows_changed (change rows written). Syncs are serialised; '
'each runs at READ COMMITTED (other levels are refused) and its observed_at is when it got its turn. '
'A sync that wrote change rows sends one notification on the channel pcqual_qualification_changes, '
'delivered when its transaction commits, with the JSON payload {"first_change_id", "last_change_id", '
'"changes", "customers"} (its change_id range, how many change rows, how many distinct customers); '
'a sync that changed nothing sends none. '
'Runs with the extension owner''s rights: a job role needs only EXECUTE on it.';

-- "each qualification's latest change at a moment" (pc_qualifications_as_of)
CREATE INDEX pc_qualification_changes_as_of_idx
    ON pc_qualification_changes (customer_tenant_id, qualification, observed_at DESC, change_id DESC);

-- The state as it was at a moment, rebuilt from the history: for each
-- customer and qualification the latest change observed at or before that
-- moment, unless it is a removal.  Runs with the extension owner's rights,
-- as the sync does, hence the fixed search_path.  Two queries, so that the
-- one for some tenants plans with the tenants as an index condition.
CREATE FUNCTION pc_qualifications_as_of(
    at timestamptz,
    tenants uuid[] DEFAULT NULL,
    OUT customer_tenant_id uuid,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz,
    OUT first_seen_at timestamptz,
    OUT last_seen_at timestamptz)
RETURNS SETOF record
LANGUAGE plpgsql STABLE PARALLEL SAFE
SECURITY DEFINER
SET search_path = @extschema@, pg_temp
ROWS 1000
AS $$
BEGIN
    IF tenants IS NULL THEN
        RETURN QUERY
        SELECT l.customer_tenant_id, l.qualification, l.new_vetting_status, l.new_vetting_reason,
               l.new_vetting_created_date,
               (SELECT max(a.observed_at) FROM pc_qualification_changes a
                WHERE a.customer_tenant_id = l.customer_tenant_id AND a.qualification = l.qualification
                  AND a.change = 'added' AND a.observed_at <= pc_qualifications_as_of.at),
               greatest((SELECT max(b.observed_at) FROM pc_qualification_changes b
                         WHERE b.customer_tenant_id = l.customer_tenant_id
                           AND b.observed_at <= pc_qualifications_as_of.at),
                        (SELECT s.last_success_at FROM pc_customer_sync s
                         WHERE s.customer_tenant_id = l.customer_tenant_id
                           AND s.last_success_at <= pc_qualifications_as_of.at))
        FROM (SELECT DISTINCT ON (c.customer_tenant_id, c.qualification) c.*
              FROM pc_qualification_changes c
              WHERE c.observed_at <= pc_qualifications_as_of.at
              ORDER BY c.customer_tenant_id, c.qualification, c.observed_at DESC, c.change_id DESC) l
        WHERE l.change <> 'removed';
    ELSE
        RETURN QUERY
        SELECT l.customer_tenant_id, l.qualification, l.new_vetting_status, l.new_vetting_reason,
               l.new_vetting_created_date,
               (SELECT max(a.observed_at) FROM pc_qualification_changes a
                WHERE a.customer_tenant_id = l.customer_tenant_id AND a.qualification = l.qualification
                  AND a.change = 'added' AND a.observed_at <= pc_qualifications_as_of.at),
               greatest((SELECT max(b.observed_at) FROM pc_qualification_changes b
                         WHERE b.customer_tenant_id = l.customer_tenant_id
                           AND b.observed_at <= pc_qualifications_as_of.at),
                        (SELECT s.last_success_at FROM pc_customer_sync s
                         WHERE s.customer_tenant_id = l.customer_tenant_id
                           AND s.last_success_at <= pc_qualifications_as_of.at))
        FROM (SELECT DISTINCT ON (c.customer_tenant_id, c.qualification) c.*
              FROM pc_qualification_changes c
              WHERE c.observed_at <= pc_qualifications_as_of.at
                AND c.customer_tenant_id = ANY (pc_qualifications_as_of.tenants)
              ORDER BY c.customer_tenant_id, c.qualification, c.observed_at DESC, c.change_id DESC) l
        WHERE l.change <> 'removed';
    END IF;
END
$$;

COMMENT ON FUNCTION pc_qualifications_as_of(timestamptz, uuid[]) IS
'The qualifications pc_qualification_state held at a moment, rebuilt from pc_qualification_changes: '
'for each customer and qualification the latest change observed at or before at, unless it is a removal '
'(its new_* values; the columns of pc_qualification_state). tenants (NULL: every customer) limits it to '
'those customers. Before the first sync: no rows. first_seen_at is exact: when the qualification was last added. '
'last_seen_at is exact when the customer''s last successful fetch (pc_customer_sync.last_success_at) is at or '
'before at, else a lower bound: the latest change of that customer at or before at (syncs that saw it unchanged '
'leave no row in the history). Runs with the extension owner''s rights.';

REVOKE EXECUTE ON FUNCTION pc_qualifications_as_of(timestamptz, uuid[]) FROM PUBLIC;

-- pc_create_qualification takes request_id, the caller's idempotency key.
-- A new argument is a new function: the roles granted EXECUTE on the old
-- one are granted it on the new one before the old one goes.
CREATE FUNCTION pc_create_qualification(
    tenant uuid,
    qualification text,
    education_segment text DEFAULT NULL,
    website text DEFAULT NULL,
    validation_code text DEFAULT NULL,
    request_id uuid DEFAULT NULL,
    OUT qualification text,
    OUT vetting_status text,
    OUT vetting_reason text,
    OUT vetting_created_date timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_create_qualification'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1;

COMMENT ON FUNCTION pc_create_qualification(uuid, text, text, text, text, uuid) IS
'Sets a customer''s qualification (POST /v1/customers/{tenant}/qualifications), IRREVERSIBLY: '
'Education with education_segment K12 or HigherEducation (and optionally website), '
'GovernmentCommunityCloud with a validation_code from pc_validation_codes(), or StateOwnedEntity. '
'Needs App+User credentials (pcqual.refresh_token_file). Returns the qualification as the service answered, '
'usually InReview. Retries reuse the MS-RequestId, so a retried create is not made twice; request_id, when given, '
'is that MS-RequestId (Partner Center''s idempotency key): the same call run again with the same request_id gets '
'the answer to the first instead of a second create. Store one key per intended create.';

REVOKE EXECUTE ON FUNCTION pc_create_qualification(uuid, text, text, text, text, uuid) FROM PUBLIC;

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.grantee::regrole::text AS grantee, a.is_grantable
        FROM pg_proc p, aclexplode(p.proacl) a
        WHERE p.oid = 'pc_create_qualification(uuid, text, text, text, text)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION pc_create_qualification(uuid, text, text, text, text, uuid) TO %s%s',
                       g.grantee, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;
DROP FUNCTION pc_create_qualification(uuid, text, text, text, text);

-- A customer's validations: its account validation status (App+User
-- only) and the GovernmentCommunityCloud validation code linked to it.

CREATE FUNCTION pc_validation_status(
    tenant uuid,
    OUT type text,
    OUT status text,
    OUT last_updated timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_validation_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1;

COMMENT ON FUNCTION pc_validation_status(uuid) IS
'A customer''s account validation (GET /v1/customers/{tenant}/validationStatus?type=account): '
'type (account), status (Unknown, UnderReview, Allowed or NotAllowed) and when it last changed. '
'Needs App+User credentials (pcqual.refresh_token_file); others are refused before any request.';

REVOKE EXECUTE ON FUNCTION pc_validation_status(uuid) FROM PUBLIC;

CREATE FUNCTION pc_customer_validations(
    tenant uuid,
    OUT validation_id text,
    OUT organization_name text,
    OUT partner_id uuid)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_customer_validations'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1;

COMMENT ON FUNCTION pc_customer_validations(uuid) IS
'The GovernmentCommunityCloud validation code linked to a customer (GET /v1/customers/{tenant}/validations), '
'as pc_validation_codes() lists the partner''s: no row when none is linked.';

REVOKE EXECUTE ON FUNCTION pc_customer_validations(uuid) FROM PUBLIC;

-- Credential health: will the credential work tomorrow morning?

CREATE FUNCTION pc_credential_status(
    request_token boolean DEFAULT false,
    OUT mode text,
    OUT settings text[],
    OUT files text[],
    OUT file_checks text[],
    OUT certificate_subject text,
    OUT certificate_thumbprint text,
    OUT certificate_not_before timestamptz,
    OUT certificate_not_after timestamptz,
    OUT certificate_days_left integer,
    OUT refresh_token_saved_at timestamptz,
    OUT refresh_token_days_left integer,
    OUT token_expires_at timestamptz,
    OUT token_mfa boolean,
    OUT last_token_request_at timestamptz,
    OUT last_token_outcome text,
    OUT last_token_sqlstate text,
    OUT last_token_message text,
    OUT last_token_detail text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pc_credential_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE
ROWS 1;

COMMENT ON FUNCTION pc_credential_status(boolean) IS
'One row about the credential in effect, never a secret: the mode (app_secret, app_certificate, app_user, '
'access_token_file or none), its file settings and files, each file''s check (ok, or why it fails the private-file rule), '
'the certificate''s subject, SHA-1 thumbprint (what x5t encodes), validity and days left, the refresh token''s last save '
'and the days left before 90 days of disuse expire it, the cached access token''s expiry and whether its sign-in used MFA '
'(NULL: not a JWT or no amr claim), and the last token request''s time, outcome, SQLSTATE and message '
'(and, for a request made by this call, its DETAIL: Azure AD''s AADSTS code and description). '
'request_token => true asks Azure AD for a token now (replacing the cached one) and reports the outcome in the row.';

REVOKE EXECUTE ON FUNCTION pc_credential_status(boolean) FROM PUBLIC;
