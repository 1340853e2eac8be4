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
ROWS 5;

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
