-- Extension versions: 1.0 (one customer per call), 1.1 (bulk), 1.2
-- (sessions, per-customer outcomes, writes, discovery, scheduled sync).  An
-- installation updated with ALTER EXTENSION ... UPDATE ends up with exactly
-- what a new installation of 1.2 has.

-- What a new 1.2 installation has: its functions, tables and sequences
-- (the tables' row types are left out: PostgreSQL 17 lists them as members
-- too), each function's properties, comments and PUBLIC's EXECUTE
-- privilege.
CREATE FUNCTION pcqual_objects()
RETURNS TABLE (object text, properties text, documented boolean, public_may_execute boolean)
LANGUAGE sql AS $$
    SELECT pg_describe_object(d.classid, d.objid, 0),
           CASE WHEN d.classid = 'pg_proc'::regclass THEN
               (SELECT format('%s, %s, %s%s%s, returns %s',
                              CASE p.provolatile WHEN 'v' THEN 'volatile'
                                                 WHEN 's' THEN 'stable' ELSE 'immutable' END,
                              CASE p.proparallel WHEN 'u' THEN 'parallel unsafe'
                                                 WHEN 'r' THEN 'parallel restricted'
                                                 ELSE 'parallel safe' END,
                              CASE WHEN p.proisstrict THEN 'strict' ELSE 'called on null input' END,
                              CASE WHEN p.prosecdef THEN ' security definer' ELSE '' END,
                              coalesce(' ' || array_to_string(p.proconfig, ','), ''),
                              pg_get_function_result(p.oid))
                FROM pg_proc p WHERE p.oid = d.objid)
           END,
           CASE WHEN d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass) THEN
               obj_description(d.objid, d.classid::regclass::name) IS NOT NULL
           END,
           CASE WHEN d.classid = 'pg_proc'::regclass THEN
               has_function_privilege('public', d.objid, 'EXECUTE')
           END
    FROM pg_depend d
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
      AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass)
      AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pcqual')
$$;
SELECT extversion FROM pg_extension WHERE extname = 'pcqual';
CREATE TEMP TABLE new_install AS SELECT * FROM pcqual_objects();
SELECT * FROM new_install ORDER BY object COLLATE "C";

-- 1.0 ...
DROP EXTENSION pcqual;
CREATE EXTENSION pcqual VERSION '1.0';
SELECT object, documented, public_may_execute FROM pcqual_objects() ORDER BY object COLLATE "C";
-- ... to 1.1 ...
ALTER EXTENSION pcqual UPDATE TO '1.1';
SELECT object, documented, public_may_execute FROM pcqual_objects() ORDER BY object COLLATE "C";
-- ... to 1.2 (the default version).
ALTER EXTENSION pcqual UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pcqual';
-- Nothing missing, nothing extra, nothing different.
(SELECT 'only updated' AS difference, * FROM pcqual_objects()
 EXCEPT SELECT 'only updated', * FROM new_install)
UNION ALL
(SELECT 'only new', * FROM new_install
 EXCEPT SELECT 'only new', * FROM pcqual_objects())
ORDER BY 1, 2;
-- The sync tables are configuration tables: pg_dump keeps their rows (and
-- the change_id sequence's position).
SELECT t::regclass AS dumped_with_data FROM pg_extension, unnest(extconfig) AS t
WHERE extname = 'pcqual' ORDER BY t::regclass::text COLLATE "C";

-- The updated installation works.
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT * FROM pc_sync_qualifications(ARRAY['11111111-0000-0000-0000-000000000004']::uuid[]);
SELECT customer_tenant_id, qualification, change FROM pc_qualification_changes;
DROP FUNCTION pcqual_objects();
