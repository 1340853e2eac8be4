-- Every failure is one ERROR naming the customer, with the HTTP status and
-- Partner Center's code and description when the body has them.  Its
-- DETAIL carries the MS-CorrelationId and MS-RequestId that Microsoft
-- support asks for (and "Tried N times." when the request was retried);
-- its HINT says what to check.  The SQLSTATE tells the kind of failure:
--   22023  400, the request was refused as invalid
--   28000  401 and 403, the token or the partner's rights
--   P0002  404, no such customer
--   58000  429, 5xx, other statuses, redirects, no answer at all
--   54000  the answer is larger than pcqual.max_response_size
--   22032  a 200 whose body is not a qualifications collection
--
-- The correlation id is fixed here (any role may set it, e.g. to find a
-- night's requests in Microsoft's logs), so it shows in each DETAIL; the
-- request id is a new GUID per request and shows as <guid> (error_of(),
-- sql/setup.sql).  Each customer below is a fault tenant of the emulator:
-- 22222222-0000-0000-0000-000000000NNN answers status NNN, or a fault.
-- Retries are shown in test/retries.sql; here each failure is final at
-- once unless said otherwise.
SELECT emulator_post('reset');
SET pcqual.correlation_id = '7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745';
SET pcqual.max_retries = 0;
\pset format unaligned
\pset tuples_only on

-- ...0400: 400 {"code": 2001, "description": "Invalid customer id."}
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000400')$$);
-- ...0401: 401 with code 900420.  A 401 is sent once more with a new token
-- (same MS-RequestId), in case the cached one was revoked: two attempts.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000401')$$);
-- ...0403: 403; the code may be a string ("2002") as well as a number.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000403')$$);
-- ...0404: 404 Tenant not found (code 60003)
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000404')$$);
-- ...0409: 409 whose body is a bare JSON string, quoted as the description.
-- (Only a create's 409 is 23505, sql/write.sql.)
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000409')$$);
-- ...0429: 429 with Retry-After: 7 and a {"statusCode", "message"} body.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000429')$$);
-- A 429 pauses every session's requests to the partner for Retry-After (7 s
-- here) and halves the cluster's window; pc_governor_reset() forgets both.
SELECT pc_governor_reset();
-- With retries, a wait longer than pcqual.max_retry_wait is not waited for.
SET pcqual.max_retries = 3;
SET pcqual.max_retry_wait = '1s';
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000429')$$);
RESET pcqual.max_retry_wait;
SET pcqual.max_retries = 0;
SELECT pc_governor_reset();
-- ...0500: 500 with code 500
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000500')$$);
-- ...0418: an unexpected status; the body has only a "message"
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000418')$$);
-- ...0502: a gateway's 1 kB HTML page, and ...0503: an empty body.  A body
-- that is not a Partner Center error is not dumped into the message.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000502')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000503')$$);
-- 5xx is retried (here twice, without waiting): DETAIL counts the attempts.
SET pcqual.max_retries = 2;
SET pcqual.max_retry_wait = 0;
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000503')$$);
RESET pcqual.max_retry_wait;
SET pcqual.max_retries = 0;

-- Redirects are never followed, so neither the token nor a request reaches
-- another host.  ...0302: 302 with Location: the emulator's redirect target
-- (port 18770), which records whatever reaches it.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000302')$$);
-- The token endpoint redirects (307) for the partner tenant
-- redirect.onmicrosoft.com: the form with the secret is not sent on.
BEGIN;
SET LOCAL pcqual.partner_tenant = 'redirect.onmicrosoft.com';
SELECT error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$);
ROLLBACK;
SELECT emulator_get('stats')->'redirect_target_requests' AS requests_at_redirect_target;

-- A 200 whose body is not a qualifications collection: 22032, no rows.
-- ...0600: malformed JSON
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000600')$$);
-- ...0601: the JSON number 42
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000601')$$);
-- ...0602: an item without "qualification"; ...0603: "qualification": 7
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000602')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000603')$$);
-- ...0604: an empty body; ...0605: an HTML maintenance page
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000604')$$);
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000605')$$);
-- ...0608: 100,000 nested arrays (the parser stops at a fixed depth)
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000608')$$);

-- No answer: 58000, with curl's own reason first in DETAIL.  Its wording
-- varies with the curl version (and names the milliseconds that passed), so
-- it is shown as <curl's reason> below, except for the first.
-- ...0609: the connection is closed without an answer
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000609')$$);
-- ...0610: the answer announces 1000 bytes and sends 10
SELECT regexp_replace(error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000610')$$),
                      'DETAIL:  .*?\. MS-', 'DETAIL:  <curl''s reason>. MS-');
-- ...0611: the answer takes 10 seconds; pcqual.timeout gives up first.
SET pcqual.timeout = '300ms';
SELECT regexp_replace(error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$),
                      'DETAIL:  .*?\. MS-', 'DETAIL:  <curl''s reason>. MS-');
RESET pcqual.timeout;
-- Nothing listens on the port.
BEGIN;
SET LOCAL pcqual.base_url = 'http://127.0.0.1:1';
SELECT regexp_replace(error_of($$SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001')$$),
                      'DETAIL:  .*?\. MS-', 'DETAIL:  <curl''s reason>. MS-');
ROLLBACK;

-- ...0606: a 5 MB answer, larger than pcqual.max_response_size (1MB by
-- default): 54000, cut off while it downloads.  A superuser may raise the
-- limit.
SELECT error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000606')$$);
SET pcqual.max_response_size = '8MB';
SELECT count(*) > 1000 AS many_rows FROM pc_qualifications('22222222-0000-0000-0000-000000000606');
RESET pcqual.max_response_size;

-- Text from the service is quoted with control characters shown as \xNN,
-- so that an answer cannot forge lines in a message or a log, nor send
-- escape sequences to a terminal.  Customers 55555555-0000-0000-0000-00000000000N
-- are made to answer what is needed here (POST /_emulator/customer,
-- sql/setup.sql):
--   ...0001: a date holding CR LF, and a qualification starting with ESC [31m
--   ...0002: a 400 whose description holds ESC [31m, CR LF and a
--            right-to-left override (U+202E, shown as its UTF-8 bytes)
\pset format aligned
\pset tuples_only off
SELECT emulator_post('customer?tenant=55555555-0000-0000-0000-000000000001',
    json_build_object('qualifications', json_build_array(json_build_object(
        'qualification', E'\u001b[31mEducation',
        'vettingStatus', 'Approved',
        'vettingCreatedDate', E'2021-01-01\r\nX-Injected: 1'))));
SELECT emulator_post('customer?tenant=55555555-0000-0000-0000-000000000002',
    json_build_object('fail', 400,
                      'description', E'Bad request\u001b[31m\r\nX-Injected: 1 \u202Etxt.exe'));
SELECT error_of($$SELECT * FROM pc_qualifications('55555555-0000-0000-0000-000000000002')$$)
\g (format=unaligned tuples_only=on)
-- ...0001's date is not ISO 8601, so it is NULL, with a WARNING quoting
-- both (a cosmetic field does not fail a call).  (The qualification itself
-- is data and is returned as the service sent it.)
SELECT length(qualification) AS qualification_length, vetting_status, vetting_created_date
FROM pc_qualifications('55555555-0000-0000-0000-000000000001');
\pset format unaligned
\pset tuples_only on

-- An error in a join stops the statement: no partial rows.
SELECT error_of($$
    SELECT * FROM (VALUES ('11111111-0000-0000-0000-000000000001'::uuid),
                          ('22222222-0000-0000-0000-000000000404'::uuid)) c(t)
    CROSS JOIN LATERAL pc_qualifications(c.t)$$);

-- The session is usable after each of them.
\pset format aligned
\pset tuples_only off
SELECT qualification FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
