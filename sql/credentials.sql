-- Credentials are files that a superuser names in settings; pcqual reads a
-- file whenever it requests a token (no reload needed: the next token
-- request reads the new contents) and strips trailing white space.  Which
-- files are set decides the mode, first match wins:
--   pcqual.access_token_file              a token you manage, sent as it is
--   pcqual.refresh_token_file             App+User (sql/write.sql)
--   pcqual.client_certificate_file + pcqual.client_key_file
--                                         App-only, signed client assertion
--   pcqual.client_secret_file             App-only, client secret
-- plus pcqual.partner_tenant and pcqual.client_id.  A file must be a
-- regular file that neither group nor others may access (the rule
-- PostgreSQL applies to ssl_key_file); the public certificate may be
-- world-readable.  Every refusal is SQLSTATE 28000 (psql's
-- :LAST_ERROR_SQLSTATE, echoed after each).
--
-- The files of this suite are made here, in /tmp/pcqual-regress, as a DBA
-- would make them: owned by the server's operating system user (postgres),
-- private to it.  COPY ... TO PROGRAM and COPY ... FROM PROGRAM run a shell
-- command as that user (superusers only); umask 077 makes a new file mode
-- 600 and a new directory mode 700.
--
-- psql's CONTEXT line is not shown: it would only say that
-- pc_qualifications(text), the SQL wrapper for a quoted tenant id, called
-- pc_qualifications(uuid).
\set SHOW_CONTEXT never
CREATE TEMP TABLE shell (line text);
COPY shell FROM PROGRAM 'rm -rf /tmp/pcqual-regress && umask 077 && mkdir /tmp/pcqual-regress';
SELECT emulator_post('reset');

-- The database's setting (sql/setup.sql): the secret file that
-- test/prepare-test-files.sh made, mode 600.
SHOW pcqual.client_secret_file;
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');

-- A secret file of our own works the same.
COPY (SELECT 'pcqual-test-secret') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/client_secret';
COPY shell FROM PROGRAM 'stat -c "%a %n" /tmp/pcqual-regress/client_secret';
SELECT * FROM shell;
SET pcqual.client_secret_file = '/tmp/pcqual-regress/client_secret';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');

-- A file that group or others may read is refused, whatever it holds.
COPY (SELECT 'pcqual-test-secret') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/group_readable';
COPY shell FROM PROGRAM 'chmod 640 /tmp/pcqual-regress/group_readable';
SET pcqual.client_secret_file = '/tmp/pcqual-regress/group_readable';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE

-- A directory is not a credential file.
SET pcqual.client_secret_file = '/tmp/pcqual-regress';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE

-- A missing file.
SET pcqual.client_secret_file = '/tmp/pcqual-regress/missing';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE

-- An empty file, or one holding only white space.
COPY (SELECT '   ') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/empty';
SET pcqual.client_secret_file = '/tmp/pcqual-regress/empty';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE

-- A wrong secret: Azure AD's refusal is quoted (the emulator answers as
-- Azure AD does), the secret never is.
COPY (SELECT 'not-the-secret-4711') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/wrong_secret';
SET pcqual.client_secret_file = '/tmp/pcqual-regress/wrong_secret';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
-- The file is read again for the next token request: once it holds the
-- right secret, the same setting works, without a reload.
COPY (SELECT 'pcqual-test-secret') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/wrong_secret';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');

-- A certificate instead of a secret: pcqual signs a client assertion (a JWT)
-- with the private key; the emulator checks it as Azure AD does, against the
-- certificate registered for the app (test/make-certs.sh made both).  The
-- certificate is public and may be world-readable (644); the key is 600.
-- The secret file stays set: a certificate takes precedence, and the secret
-- is then not sent at all.
SET pcqual.client_secret_file = '/tmp/pcqual-regress/client_secret';
SET pcqual.client_certificate_file = '/tmp/pcqual-test/secrets/client.crt';
SET pcqual.client_key_file = '/tmp/pcqual-test/secrets/client.key';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT r->>'auth' AS grant, r->>'body' AS form_fields, r->>'status' AS status
FROM json_array_elements(emulator_get('requests?format=json&kind=token')) r
ORDER BY (r->>'seq')::int DESC LIMIT 1;
-- A certificate without its key (or a key without its certificate) is
-- incomplete.
SET pcqual.client_key_file = '';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
-- A key that others may read is refused like a secret.
COPY shell FROM PROGRAM 'cp /tmp/pcqual-test/secrets/client.key /tmp/pcqual-regress/client.key && chmod 644 /tmp/pcqual-regress/client.key';
SET pcqual.client_key_file = '/tmp/pcqual-regress/client.key';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET pcqual.client_certificate_file;
RESET pcqual.client_key_file;

-- An access token you manage (pcqual.access_token_file) is sent as it is,
-- with no token request; it must be one visible-ASCII word.
SELECT (emulator_get('stats')->>'token_requests')::int AS token_requests_before \gset
SET pcqual.access_token_file = '/tmp/pcqual-test/secrets/access_token';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
SELECT (emulator_get('stats')->>'token_requests')::int - :token_requests_before
       AS token_requests_since;
COPY (SELECT 'two words') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/access_token';
SET pcqual.access_token_file = '/tmp/pcqual-regress/access_token';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET pcqual.access_token_file;

-- An empty refresh token file (App+User) is refused like any empty file,
-- though pcqual reads it while holding it locked: the ERROR alone, nothing
-- about the file's descriptor.
COPY (SELECT ' ') TO PROGRAM 'umask 077 && cat > /tmp/pcqual-regress/refresh_token';
SET pcqual.refresh_token_file = '/tmp/pcqual-regress/refresh_token';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET pcqual.refresh_token_file;

-- No credentials at all, or no partner tenant or client id: 28000, and
-- the HINT says what a superuser sets.
SET pcqual.client_secret_file = '';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET pcqual.client_secret_file;
SET pcqual.partner_tenant = '';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET pcqual.partner_tenant;
SET pcqual.client_id = '';
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
\echo :LAST_ERROR_SQLSTATE
RESET pcqual.client_id;

-- No message above quoted a secret, and none is a setting value.
SELECT count(*) AS settings_holding_a_secret
FROM pg_settings
WHERE setting ~ '(pcqual-test-secret|pcqual-test-refresh|pcqual-static-token|not-the-secret)';

-- Back to the database's settings: the session works.
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
COPY shell FROM PROGRAM 'rm -rf /tmp/pcqual-regress';
