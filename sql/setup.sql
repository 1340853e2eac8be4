-- Every suite runs against the Partner Center emulator (test/pc_emulator.py),
-- which test/check.sh starts on 127.0.0.1:18765, in a cluster that preloads
-- pcqual (shared_preload_libraries = 'pcqual', as every installation must).
--
-- The settings the suites rely on, for this database: where requests and
-- token requests go, and the emulator's App-only credentials.  The secret is
-- not a setting: it is in a file only the server's operating system user can
-- read (test/prepare-test-files.sh makes it).  Each later suite runs in a new
-- session, so these apply to all of them.
SELECT format('ALTER DATABASE %I SET %s = %L', current_database(), name, value)
FROM (VALUES
    ('pcqual.base_url',           'http://127.0.0.1:18765'),
    ('pcqual.authority',          'http://127.0.0.1:18765'),
    ('pcqual.allow_http',         'on'),
    ('pcqual.ca_file',            '/tmp/pcqual-test/tls/ca.crt'),
    ('pcqual.partner_tenant',     'pcqual-test-partner.onmicrosoft.com'),
    ('pcqual.client_id',          'pcqual-test-app'),
    ('pcqual.client_secret_file', '/tmp/pcqual-test/secrets/client_secret')
) AS s(name, value)
\gexec

CREATE EXTENSION pcqual;

-- Runs a query and reports how it failed, as psql shows an error with
-- \set VERBOSITY verbose (ERROR: SQLSTATE: message, DETAIL, HINT), or "no
-- error".  Used only where DETAIL carries the random MS-RequestId (and
-- MS-CorrelationId) of a request: those GUIDs are shown as <guid>, except a
-- correlation id the suite fixed with SET pcqual.correlation_id, which is
-- shown as it is (test/headers.sql checks the ids themselves).  Every other
-- error is shown as psql shows it.  Suites print its result with
-- \pset format unaligned and \pset tuples_only on, so that it reads like
-- psql's own output; it never aborts the transaction.
CREATE FUNCTION error_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
    fixed_id text := nullif(current_setting('pcqual.correlation_id'), '');
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    IF fixed_id IS NOT NULL THEN
        detail := replace(detail, fixed_id, E'\x01');
    END IF;
    detail := regexp_replace(detail,
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<guid>', 'g');
    IF fixed_id IS NOT NULL THEN
        detail := replace(detail, E'\x01', fixed_id);
    END IF;
    RETURN 'ERROR:  ' || state || ': ' || message
        || coalesce(E'\nDETAIL:  ' || nullif(detail, ''), '')
        || coalesce(E'\nHINT:  ' || nullif(hint, ''), '');
END
$$;

-- The emulator's control API (test/pc_emulator.py documents it), reached
-- with curl at pcqual.base_url through COPY ... PROGRAM, which runs as the
-- server's operating system user (superusers only):
--   emulator_post('reset')             forget everything the suites did before
--                                      (it revokes every token it issued: the
--                                      cluster's shared one is dropped with it)
--   emulator_post('customer?tenant=T', '{"qualifications": [...]}')
--                                      make GET of customer T answer that
--   emulator_get('stats'), emulator_get('requests?format=json&kind=api')
--                                      counters, and what pcqual sent
CREATE FUNCTION emulator_post(command text, body json DEFAULT '{}') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('COPY (SELECT %L) TO PROGRAM %L'
                   ' WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')',
                   body::jsonb::text,
                   format('curl -sf --noproxy ''*'' -o /dev/null -X POST -H %s --data-binary @- %s',
                          '''Content-Type: application/json''',
                          quote_literal(current_setting('pcqual.base_url')
                                        || '/_emulator/' || command)));
    IF command = 'reset' THEN
        PERFORM pc_disconnect();
    END IF;
END
$$;

CREATE FUNCTION emulator_get(what text) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    answer text;
BEGIN
    IF to_regclass('pg_temp.emulator_output') IS NULL THEN
        CREATE TEMP TABLE emulator_output (line text);
    END IF;
    TRUNCATE emulator_output;
    EXECUTE format('COPY emulator_output FROM PROGRAM %L'
                   ' WITH (FORMAT csv, QUOTE E''\x01'', DELIMITER E''\x02'')',
                   format('curl -sf --noproxy ''*'' %s',
                          quote_literal(current_setting('pcqual.base_url')
                                        || '/_emulator/' || what)));
    SELECT string_agg(line, E'\n') INTO answer FROM emulator_output;
    RETURN answer::json;
END
$$;

