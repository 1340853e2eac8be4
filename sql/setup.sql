-- Every suite runs against the Partner Center emulator (test/pc_emulator.py),
-- which test/check.sh starts on 127.0.0.1 and points pcqual at with the
-- emulator's App-only test credentials.
CREATE EXTENSION pcqual;

-- Runs a query and reports how it failed: SQLSTATE, message, hint and detail.
-- MS-CorrelationId and MS-RequestId are random GUIDs; they are masked here so
-- that the expected output is stable (test/headers.sql checks them).
CREATE FUNCTION error_of(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN state || ': ' || message
        || coalesce(E'\nDETAIL: ' || nullif(regexp_replace(detail,
               '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
               '<guid>', 'g'), ''), '')
        || coalesce(E'\nHINT: ' || nullif(hint, ''), '');
END
$$;
