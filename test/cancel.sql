-- A request in flight is interrupted by statement_timeout and by
-- pg_cancel_backend() within a fraction of a second, as query_canceled
-- (57014), and the session stays usable.  The emulator's customer
-- 22222222-...0611 takes 10 s to answer.
\ir helpers.inc
SELECT pg_temp.self_connstr() AS connstr \gset
\set QUIET 1
SELECT plan(9);

-- statement_timeout
SET statement_timeout = '400ms';
CREATE TEMP TABLE timed AS
    SELECT clock_timestamp() AS started, e.*
    FROM pg_temp.error_of($$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$) e;
CREATE TEMP TABLE timed_end AS SELECT clock_timestamp() AS ended;
RESET statement_timeout;
SELECT is((SELECT state FROM timed), '57014', 'statement_timeout ends a slow request with query_canceled');
SELECT cmp_ok((SELECT ended - started FROM timed, timed_end), '<', interval '1.5 seconds',
              'within a fraction of a second of the timeout');
SELECT is((SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000001')), 1::bigint,
          'the session is usable after the timeout');

-- pg_cancel_backend() from another session
SELECT dblink_connect('victim', :'connstr');
SELECT pid AS victim_pid FROM dblink('victim', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT dblink_send_query('victim',
    $$SELECT * FROM pc_qualifications('22222222-0000-0000-0000-000000000611')$$);
SELECT pg_sleep(0.5);
SELECT is(dblink_is_busy('victim'), 1, 'the other session is waiting for the slow answer');
CREATE TEMP TABLE cancel_sent AS SELECT clock_timestamp() AS at, pg_cancel_backend(:victim_pid) AS sent;
SELECT pg_temp.wait_until_done('victim', (SELECT at FROM cancel_sent), interval '5 seconds');
SELECT cmp_ok(clock_timestamp() - (SELECT at FROM cancel_sent), '<', interval '1 second',
              'pg_cancel_backend() ends the request within a second');
SELECT is((SELECT count(*) FROM dblink_get_result('victim', false) AS t(q text, s text, r text, d timestamptz)), 0::bigint,
          'the canceled statement returns no rows');
SELECT matches(dblink_error_message('victim'), 'canceling statement due to user request',
               'the canceled session saw query_canceled');
-- dblink wants one more, empty, result before the connection is reused
SELECT count(*) FROM dblink_get_result('victim', false) AS t(q text, s text, r text, d timestamptz);
SELECT is((SELECT n FROM dblink('victim',
              $$SELECT count(*) FROM pc_qualifications('11111111-0000-0000-0000-000000000005')$$) AS t(n bigint)),
          2::bigint, 'the canceled session is usable');
-- the canceled request's connection was closed: the emulator sees nothing in flight
SELECT pg_sleep(0.2);
SELECT is(pg_temp.emulator_stat('in_flight'), 0::bigint, 'nothing is left in flight');
SELECT dblink_disconnect('victim');

SELECT * FROM finish();
