-- Every failure is one ERROR naming the customer, with the HTTP status and
-- Partner Center's code and description when the body has them.  DETAIL
-- carries MS-CorrelationId and MS-RequestId (masked here as <guid>).
-- Retries are shown in test/retries.sql; here each failure is final at once.
SET pcqual.max_retries = 0;

-- 400: 22023
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000400')$$);
-- 401 and 403: 28000 (the code may be a number or a string)
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000401')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000403')$$);
-- 404: P0002 (no_data_found)
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000404')$$);
-- a bare JSON string body
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000409')$$);
-- 429 with Retry-After, 5xx and unexpected statuses: 58000
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000429')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000500')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000418')$$);
-- a gateway's HTML page and an empty body are not dumped into the message
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000502')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000503')$$);

-- A 200 whose body is not a qualifications collection: 22032, no rows.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000600')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000601')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000602')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000603')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000604')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000605')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000608')$$);

-- No answer: a dropped connection, a truncated body, a refused connection,
-- a timeout: 58000.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000609')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000610')$$);
SET pcqual.timeout = '300ms';
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$);
RESET pcqual.timeout;
BEGIN;
SET LOCAL pcqual.base_url = 'http://127.0.0.1:1';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;

-- A body larger than pcqual.max_response_size is cut off while it
-- downloads: 54000.  Raising the limit lets it through.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000606')$$);
SET pcqual.max_response_size = '8MB';
SELECT count(*) > 1000 AS many_rows FROM pc_qualifications('22222222-0000-0000-0000-000000000606');
RESET pcqual.max_response_size;

-- An error in a join stops the statement: no partial rows.
SELECT error_of($$
    SELECT * FROM (VALUES ('11111111-0000-0000-0000-000000000001'::uuid),
                          ('22222222-0000-0000-0000-000000000404'::uuid)) c(t)
    CROSS JOIN LATERAL pc_qualifications(c.t)$$);

-- The session is usable after each of them.
SELECT qualification FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
