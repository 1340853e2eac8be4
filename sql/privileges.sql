-- EXECUTE is revoked from PUBLIC; a reader role is granted it explicitly.
CREATE ROLE regress_pcqual_reader;
SET ROLE regress_pcqual_reader;
SELECT * FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
RESET ROLE;

GRANT EXECUTE ON FUNCTION pc_qualifications(uuid), pc_qualifications(text),
    pc_qualifications(uuid[], text) TO regress_pcqual_reader;
SET ROLE regress_pcqual_reader;
-- The library is not loaded yet in this session: PostgreSQL accepts any
-- pcqual.* value as a placeholder.  When the first call loads pcqual, a
-- superuser-only value a reader planted is thrown away, not used.
SET pcqual.base_url = 'http://attacker.example';
SELECT qualification, vetting_status FROM pc_qualifications('11111111-0000-0000-0000-000000000001');

-- A reader cannot change where requests and tokens go ...
SET pcqual.base_url = 'http://attacker.example';
SET pcqual.authority = 'http://attacker.example';
SET pcqual.allow_http = off;
SET pcqual.ca_file = '/tmp/attacker.pem';
SET pcqual.client_id = 'other-app';
SET pcqual.access_token = 'stolen';
-- ... nor read the secrets ...
SHOW pcqual.client_secret;
SELECT count(*) AS secrets_visible FROM pg_settings
WHERE name IN ('pcqual.client_secret', 'pcqual.refresh_token', 'pcqual.access_token');
-- ... but may tune its own requests.
SET pcqual.timeout = '10s';
SET pcqual.application_name = 'crm-nightly';
SET pcqual.correlation_id = '7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745';
SELECT qualification FROM pc_qualifications('11111111-0000-0000-0000-000000000001');
RESET ROLE;

REVOKE EXECUTE ON FUNCTION pc_qualifications(uuid), pc_qualifications(text),
    pc_qualifications(uuid[], text) FROM regress_pcqual_reader;
DROP ROLE regress_pcqual_reader;
