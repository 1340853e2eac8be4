-- pc_customers() and pc_validation_codes(): every page of the customer list
-- followed with its MS-ContinuationToken, the server-side filters as
-- URL-encoded JSON, cancellation while paging, and the validation codes.
\ir helpers.inc
\set QUIET 1
SELECT plan(43);

-- The customer-list requests the emulator saw, in order.
CREATE FUNCTION pg_temp.list_requests() RETURNS SETOF emulator_requests
LANGUAGE sql AS $$
    SELECT * FROM pg_temp.emulator_log() r
    WHERE r.kind = 'api' AND r.path LIKE '/v1/customers?%'
    ORDER BY r.seq
$$;

------------------------------------------------------------------------
-- Validation codes
SELECT results_eq($$SELECT validation_id, organization_name, partner_id, max_creates, remaining_creates
                    FROM pc_validation_codes() ORDER BY validation_id$$,
                  $$VALUES ('12345', 'Contoso, Inc.', '9daaeb1c-4195-4db5-9f1d-509eb70c8c2d'::uuid, 5, 4),
                           ('24680', NULL, '9daaeb1c-4195-4db5-9f1d-509eb70c8c2d'::uuid, 10, 10),
                           ('67890', 'Fabrikam Government', '9daaeb1c-4195-4db5-9f1d-509eb70c8c2d'::uuid, 3, 0)$$,
                  'pc_validation_codes(): every code with its organization, partner and creates');
SELECT results_eq($$SELECT method, path, status FROM pg_temp.emulator_log() WHERE kind = 'api'$$,
                  $$VALUES ('GET', '/v1/customers/all/validations', 200)$$,
                  'one GET /v1/customers/all/validations');
SELECT pg_temp.emulator('config?validations_shape=wrapped');
SELECT is((SELECT count(*) FROM pc_validation_codes()), 3::bigint,
          'the codes wrapped in {"totalCount", "items"} are read too');
SELECT pg_temp.emulator('config?validations_shape=empty');
SELECT is((SELECT count(*) FROM pc_validation_codes()), 0::bigint, 'no codes: no rows');
SELECT pg_temp.emulator('config?validations_shape=array');

------------------------------------------------------------------------
-- Every page, each asked for with the previous page's continuation token.
-- 250 customers at pcqual's page size of 100: three pages.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();   -- (the reset revoked its token)
SELECT pg_temp.emulator('config?customer_count=250');
CREATE TEMP TABLE everyone AS SELECT * FROM pc_customers();
CREATE TEMP TABLE pages AS SELECT * FROM pg_temp.list_requests();
SELECT is((SELECT count(*) FROM everyone), 250::bigint, 'pc_customers() returns every customer');
SELECT is((SELECT count(DISTINCT tenant_id) FROM everyone), 250::bigint, 'each once');
SELECT is((SELECT count(*) FROM pages), 3::bigint, 'in three pages of 100');
SELECT is(pg_temp.emulator_stat('customer_pages'), 3::bigint, 'the emulator served three pages');
SELECT ok((SELECT bool_and(status = 200) FROM pages), 'every page was answered 200');
SELECT is((SELECT continuation_token FROM pages ORDER BY seq LIMIT 1), NULL,
          'the first page is asked for without MS-ContinuationToken');
SELECT is((SELECT query FROM pages ORDER BY seq LIMIT 1), 'size=100', 'and with size=100 only');
SELECT ok((SELECT bool_and(continuation_token IS NOT NULL AND continuation_token ~ '[+/=]')
           FROM (SELECT * FROM pages ORDER BY seq OFFSET 1) p),
          'each next page carries the continuation token, unaltered (base64 with + / =)');
SELECT is((SELECT count(DISTINCT continuation_token) FROM pages), 2::bigint,
          'a different token for each next page');
SELECT ok((SELECT bool_and(pg_temp.query_param(query, 'seekOperation') = 'Next'
                           AND pg_temp.query_param(query, 'size') = '100')
           FROM (SELECT * FROM pages ORDER BY seq OFFSET 1) p),
          'each next page is asked for with seekOperation=Next');
SELECT results_eq($$SELECT tenant_id, company_name, domain, relationship FROM everyone
                    WHERE tenant_id IN ('cccccccc-0000-4000-8000-000000000001', 'cccccccc-0000-4000-8000-000000000042',
                                        'cccccccc-0000-4000-8000-000000000077', 'cccccccc-0000-4000-8000-000000000250')
                    ORDER BY tenant_id$$,
                  $$VALUES ('cccccccc-0000-4000-8000-000000000001'::uuid, 'Contoso School 001',
                            'contoso-school-001.onmicrosoft.com', 'reseller'),
                           ('cccccccc-0000-4000-8000-000000000042'::uuid, 'Müller Bildung GmbH – Zürich 日本',
                            'muellerbildung.onmicrosoft.com', 'reseller'),
                           ('cccccccc-0000-4000-8000-000000000077'::uuid, 'Fabrikam Bank 077',
                            'fabrikam-bank-077.onmicrosoft.com', 'reseller'),
                           ('cccccccc-0000-4000-8000-000000000250'::uuid, 'Woodgrove Hospital 250',
                            'woodgrove-hospital-250.onmicrosoft.com', 'advisor')$$,
                  'the columns: tenant id (or the customer id), name in UTF-8, domain, relationship');
SELECT is((SELECT count(*) FROM everyone WHERE relationship = 'advisor'), 25::bigint,
          'relationshipToPartner of every customer');

------------------------------------------------------------------------
-- Filters: {"Field", "Value", "Operator": "starts_with"} as URL-encoded JSON.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();   -- (the reset revoked its token)
SELECT pg_temp.emulator('config?customer_count=250');
CREATE TEMP TABLE contoso AS SELECT * FROM pc_customers('contoso');
CREATE TEMP TABLE contoso_requests AS SELECT * FROM pg_temp.list_requests();
SELECT is((SELECT count(*) FROM contoso), 50::bigint, 'company_name_prefix ''contoso'': the 50 Contoso customers');
SELECT ok((SELECT bool_and(company_name LIKE 'Contoso School %') FROM contoso), 'and only those');
SELECT is((SELECT query FROM contoso_requests),
          'size=100&filter=%7B%22Field%22%3A%22CompanyName%22%2C%22Value%22%3A%22contoso%22%2C%22Operator%22%3A%22starts_with%22%7D',
          'one request, the filter as percent-encoded JSON');

SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();   -- (the reset revoked its token)
SELECT pg_temp.emulator('config?customer_count=250');
SELECT is((SELECT count(*) FROM pc_customers(domain_prefix => 'NORTHWIND-traders-1')), 20::bigint,
          'domain_prefix, ignoring case: northwind-traders-1*');
SELECT is((SELECT pg_temp.query_param(query, 'filter')::jsonb FROM pg_temp.list_requests()),
          '{"Field": "Domain", "Value": "NORTHWIND-traders-1", "Operator": "starts_with"}'::jsonb,
          'the Domain filter');

-- Characters that mean something in a URL or in JSON, and UTF-8.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();   -- (the reset revoked its token)
SELECT is((SELECT tenant_id FROM pc_customers('Müller Bildung GmbH – Zürich')),
          'cccccccc-0000-4000-8000-000000000042'::uuid, 'a UTF-8 prefix with spaces finds its customer');
SELECT is((SELECT count(*) FROM pc_customers(E'a&b=c+d "e" #f %g\\h')), 0::bigint,
          'a prefix with & = + " # % \ is a valid filter that matches nobody');
CREATE TEMP TABLE special AS SELECT * FROM pg_temp.list_requests();
SELECT ok((SELECT bool_and(query ~ '^size=100&filter=[A-Za-z0-9._~%-]+$') FROM special),
          'the filter is percent-encoded: only unreserved characters and %XX in the query');
SELECT results_eq($$SELECT pg_temp.query_param(query, 'filter')::jsonb FROM special ORDER BY seq$$,
                  $$VALUES ('{"Field": "CompanyName", "Value": "Müller Bildung GmbH – Zürich", "Operator": "starts_with"}'::jsonb),
                           (jsonb_build_object('Field', 'CompanyName', 'Value', E'a&b=c+d "e" #f %g\\h',
                                               'Operator', 'starts_with'))$$,
                  'and decodes to the JSON filter with the prefix exactly');
SELECT ok((SELECT bool_and(status = 200) FROM special), 'the emulator accepted both filters');

-- A filter applies to every page.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();   -- (the reset revoked its token)
SELECT pg_temp.emulator('config?customer_count=600');
SELECT is((SELECT count(*) FROM pc_customers('Tailspin')), 120::bigint,
          'a filter matching 120 customers: all of them');
SELECT is((SELECT count(*) FROM pg_temp.list_requests()), 2::bigint, 'in two pages');
SELECT pg_temp.emulator('config?customer_count=250');

------------------------------------------------------------------------
-- Arguments refused before any request.
SELECT pg_temp.emulator('reset');
SELECT pc_disconnect();   -- (the reset revoked its token)
CREATE TEMP TABLE bad AS
    SELECT n, e.* FROM (VALUES
        (1, $$SELECT * FROM pc_customers('Contoso', 'contoso')$$),
        (2, $$SELECT * FROM pc_customers('')$$),
        (3, $$SELECT * FROM pc_customers(domain_prefix => '')$$)) AS q(n, query),
        pg_temp.error_under('{}', q.query) e;
SELECT is((SELECT state FROM bad WHERE n = 1), '22023', 'both prefixes: invalid_parameter_value');
SELECT is((SELECT message FROM bad WHERE n = 1),
          'pc_customers takes company_name_prefix or domain_prefix, not both', 'saying so');
SELECT is((SELECT state FROM bad WHERE n = 2), '22023', 'an empty company_name_prefix: invalid_parameter_value');
SELECT is((SELECT message FROM bad WHERE n = 2), 'company_name_prefix must not be empty', 'saying so');
SELECT is((SELECT state FROM bad WHERE n = 3), '22023', 'an empty domain_prefix: invalid_parameter_value');
SELECT is((SELECT count(*) FROM pg_temp.emulator_log()), 0::bigint, 'nothing was sent for them');

------------------------------------------------------------------------
-- Cancelled while waiting for a next page: query_canceled, promptly, and
-- the session stays usable.
SELECT pg_temp.emulator('config?customer_count=250');
SELECT count(*) FROM pc_customers();              -- a token
SELECT pg_temp.emulator('config?customers_page_latency_ms=10000');
SET statement_timeout = '1s';
SELECT pg_temp.tick('paging');
CREATE TEMP TABLE cancelled AS SELECT * FROM pg_temp.error_of($$SELECT * FROM pc_customers()$$);
RESET statement_timeout;
SELECT is((SELECT state FROM cancelled), '57014', 'statement_timeout while paging: query_canceled');
SELECT cmp_ok(pg_temp.elapsed('paging'), '<', interval '2 s', 'within a fraction of a second of the timeout');
SELECT pg_sleep(0.2);
SELECT is(pg_temp.emulator_stat('in_flight'), 0::bigint, 'the next page''s request was abandoned');
SELECT pg_temp.emulator('config?customers_page_latency_ms=0');
SELECT is((SELECT count(*) FROM pc_customers()), 250::bigint, 'the session is usable: every customer again');

-- pg_cancel_backend() from another session ends the paging the same way.
SELECT pg_temp.emulator('config?customers_page_latency_ms=10000');
SELECT dblink_connect('pager', pg_temp.self_connstr());
SELECT pid AS pager_pid FROM dblink('pager', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT count(*) AS pages_before FROM pg_temp.list_requests() \gset
SELECT dblink_send_query('pager', 'SELECT count(*) FROM pc_customers()');
CREATE TEMP TABLE waiting (pages_before bigint);
INSERT INTO waiting VALUES (:pages_before);
DO $$
BEGIN   -- until the first page is answered and the second one asked for
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT count(*) FROM pg_temp.list_requests()) > (SELECT pages_before FROM waiting)
              AND pg_temp.emulator_stat('in_flight') = 1;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT is(dblink_is_busy('pager'), 1, 'the other session waits for its second page');
SELECT pg_temp.tick('cancel');
SELECT pg_cancel_backend(:pager_pid);
DO $$
BEGIN
    WHILE dblink_is_busy('pager') = 1 AND pg_temp.elapsed('cancel') < interval '5 s' LOOP
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;
SELECT cmp_ok(pg_temp.elapsed('cancel'), '<', interval '1 s', 'pg_cancel_backend() ends the paging within a second');
SELECT is((SELECT count(*) FROM dblink_get_result('pager', false) AS t(n bigint)), 0::bigint,
          'the cancelled call returns nothing');
SELECT matches(dblink_error_message('pager'), 'canceling statement due to user request',
               'the other session saw query_canceled');
SELECT count(*) FROM dblink_get_result('pager', false) AS t(n bigint);
SELECT pg_temp.emulator('config?customers_page_latency_ms=0');
SELECT is((SELECT n FROM dblink('pager', 'SELECT count(*) FROM pc_customers()') AS t(n bigint)), 250::bigint,
          'and is usable');
SELECT dblink_disconnect('pager');

SELECT * FROM finish();
