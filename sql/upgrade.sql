-- Extension versions: 1.0 (one customer per call) updates to 1.1 (bulk).
DROP EXTENSION pcqual;
CREATE EXTENSION pcqual VERSION '1.0';
SELECT p.oid::regprocedure FROM pg_proc p WHERE proname = 'pc_qualifications' ORDER BY 1::text;
ALTER EXTENSION pcqual UPDATE TO '1.1';
SELECT p.oid::regprocedure, obj_description(p.oid, 'pg_proc') IS NOT NULL AS documented,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
FROM pg_proc p WHERE proname = 'pc_qualifications' ORDER BY 1::text;
