#!/usr/bin/env python3
"""Microsoft Partner Center emulator for the pcqual test suite.

Standard library only (Python 3.11 and later; the `openssl` command line is
used to verify client assertions).  Listens on loopback only.  One file, no
imports of its own: Debian's package installs it as /usr/bin/pcqual-emulator.
Usage:

  pcqual-emulator (or: python3 test/pc_emulator.py)
        [--host 127.0.0.1] [--port 18765] [--latency-ms 0] [--quiet]
        [--tls-dir DIR] [--client-cert FILE ...]
        [--fixtures FILE] [--secret-file PATH] [--print-settings]
        [--settings-format sql|alter-database:DBNAME] [--pid-file PATH]

The default port may also come from the environment variable
PCQUAL_EMULATOR_PORT.  The last five options are for testing your own SQL
over pcqual offline (below: "Your own tests").

Listeners (P = --port; all share one state, one log, one config):
  P     plain HTTP: everything below
  P+1   HTTPS, the same app, certificate DIR/server.crt      } only with
  P+2   HTTPS, DIR/wrong-name.crt (SAN DNS:other.example)     } --tls-dir DIR
  P+3   HTTPS, DIR/expired.crt (valid 2020-01-01..02 only)    } (made by
  P+4   HTTPS, DIR/self-signed.crt (not signed by DIR/ca.crt) } test/make-certs.sh)
  P+5   plain HTTP, the REDIRECT TARGET (always started): answers every
        request, whatever method and path, 200 {"redirected": true} and
        records it with kind "redirect-target", the Authorization header in
        the auth column and the body's form key names in the body column
        (NULL when there was no body): a test can prove nothing reached it.
Every listener is required: the emulator exits with an error when one of
the ports is taken.  --port 0 picks a free block of 6 consecutive ports.
Unless --quiet is given, the first line written to stdout is
  pc_emulator listening on http://HOST:P
(unchanged, so a harness can learn P) and the second
  pc_emulator also on [https://HOST:P+1 (server) https://HOST:P+2
  (wrong-name) https://HOST:P+3 (expired) https://HOST:P+4 (self-signed) ]
  http://HOST:P+5 (redirect target)
(one line; the https part only with --tls-dir), then, with
--print-settings, the settings (below).  TLS: TLS 1.2+, ALPN http/1.1,
keep-alive as on plain HTTP.

Your own tests: --fixtures, --print-settings, --secret-file, --pid-file.
  --fixtures FILE   a JSON file, read before listening, the start state (and
        so applied again by POST /_emulator/reset):
          {
            "comment": "anything (ignored)",
            "customers": {
              "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e01": {"qualifications": [
                  {"qualification": "Education", "vettingStatus": "Approved",
                   "vettingCreatedDate": "2024-01-01T00:00:00Z"}]},
              "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e02": {"qualifications": []},
              "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e04": {"fail": 404,
                  "description": "Tenant not found.", "code": 60003},
              "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e05": [
                  {"validation_status": {"type": "account", "status": "Allowed"}},
                  {"fail": 503, "endpoint": "qualifications"}]
            },
            "config": {"latency_ms": 20, "customer_count": 3}
          }
        All three keys are optional; no other key is allowed.  "customers":
        customer tenant id (a GUID, any case, each tenant once) -> a body
        POST /_emulator/customer?tenant=<that id> accepts, or an array of
        such bodies applied in that order (see /_emulator/customer below:
        qualifications, validation_status, validations, fail with
        description and code, endpoint); they are read by the same code, so
        they mean the same and are checked the same; the tenant's other
        endpoints answer as without the file.  "config": settings as POST
        /_emulator/config takes them in a JSON body (any of its keys, the
        same values: numbers, true/false, "on"/"off", ...); --latency-ms,
        when given, wins over the file's latency_ms.  Anything wrong with the
        file (unreadable, not JSON, a key repeated in an object, an unknown
        top-level key, a tenant that is not a GUID, an entry
        /_emulator/customer would refuse, an unknown setting or a bad value)
        ends the emulator with exit status 2 before it listens, and one
        line on stderr naming the file, the JSON path and the problem:
          pc_emulator: --fixtures f.json: customers.<tenant>.fail: expected
          an HTTP status from 400 to 599 (a number)
          pc_emulator: --fixtures f.json: config.latency_ms: bad value -5:
          expected a number >= 0
  --secret-file PATH  writes the client secret ("pcqual-test-secret" and a
        newline) to PATH, mode 0600, before listening: a new file renamed
        over PATH (whatever was there, a symbolic link too, is replaced);
        removed again at exit if it is still that file.  pcqual reads it as
        the server's operating system user, who must own it: run the
        emulator as that user (sudo -u postgres pcqual-emulator ...) or
        chown the file (examples/crm-view-test/run.sh does, as root).
        Cannot write it: exit status 2.
  --print-settings  (needs --secret-file) once listening, prints to stdout
        the SQL that points pcqual at this emulator, one statement a line,
        after the two listening lines (unchanged), or alone with --quiet:
          SET pcqual.base_url = 'http://127.0.0.1:P';
          SET pcqual.authority = 'http://127.0.0.1:P';
          SET pcqual.allow_http = on;
          SET pcqual.partner_tenant = 'pcqual-test-partner.onmicrosoft.com';
          SET pcqual.client_id = 'pcqual-test-app';
          SET pcqual.client_secret_file = '<PATH, absolute>';
        (P the real port, also with --port 0).  These are superuser-only
        settings, and App-only credentials: what needs App+User tokens
        (validationStatus, POST qualifications) answers 403 900329 to them.
        --settings-format alter-database:DBNAME prints ALTER DATABASE
        "DBNAME" SET ... lines instead (the identifier quoted), which every
        later session of that database gets (pg_regress and pg_prove open a
        session per test file).
  --pid-file PATH   once listening and the settings printed, writes the
        process id and a newline there (mode 0644, renamed into place, so
        it never holds half a number); removed at exit.  A script starts
        the emulator in the background and waits for the file (or for the
        first stdout line, without --quiet): it is then ready, its settings
        already written.  Cannot write it: exit status 2.
  SIGTERM or SIGINT: exit status 0 (files removed).

--tls-dir DIR also registers DIR/client.crt, and DIR/client-expiring.crt
when it exists (test/make-certs.sh makes both), as the application's
certificates for client assertions (an assertion names its certificate by
x5t); --client-cert FILE (repeatable) registers FILE instead (and works
without --tls-dir).

Credentials: client id "pcqual-test-app", secret "pcqual-test-secret",
refresh token "pcqual-test-refresh" (and "pcqual-test-refresh-idle", which
always answers AADSTS700082); the access token "pcqual-static-token" is
always accepted (App-only).

Access tokens.  App-only: "emu-app-N" (opaque), unless config
app_token_jwt=on makes them JWT-shaped too.  App+User (refresh_token grant):
always JWT-shaped, three base64url parts (no padding) joined by ".":
  emu-user-N.PAYLOAD.SIGNATURE
The first part is the token's id, NOT a base64url JSON header (so that the
token still starts with its kind); config jwt_header=json makes it a real
one, base64url of {"typ":"JWT","alg":"RS256","kid":"emu-user-N"}.  PAYLOAD
is base64url of the JSON claims {"aud": the form's resource (default
https://api.partnercenter.microsoft.com), "iss": "https://sts.windows.net/
<partner tenant>/", "iat", "nbf", "exp" (Unix seconds: now +
token_expires_in), "appid": "pcqual-test-app", "tid": <partner tenant>,
"uti": "emu-user-N", "ver": "1.0", "amr", "scp": the form's scope (default
user_impersonation), "upn": "admin@partner.example"}; "amr" is
["pwd", "mfa"], or ["pwd"] when config token_mfa=off at the time the token
is issued.  App-only JWTs have "idtyp": "app" and "roles": [] instead of
amr/scp/upn.  SIGNATURE is an HMAC no client can check.  The emulator
accepts a token exactly as it issued it (it never parses one).

Token endpoint (Azure AD v1):  POST /{partner_tenant}/oauth2/token
  form-encoded.  Answers carry Cache-Control: no-store, no-cache.  No error
  body ever echoes a secret, an assertion or a refresh token.  Config
  token_latency_ms (default 0) delays every answer of this endpoint.
  - partner tenant "redirect.onmicrosoft.com" (any case): 307 with
    Location: http://HOST:P+5/stolen-token, whatever the request.
  - grant_type=client_credentials with client_id + client_secret: an
    App-only token "emu-app-N" (JWT-shaped with app_token_jwt=on)
    ({"token_type","expires_in" (a string),
    "ext_expires_in","access_token","resource"}); "resource" is required
    (400 AADSTS900144); a wrong id or secret: 401 AADSTS7000215.
    Logged with auth "client_credentials".
  - grant_type=client_credentials with client_assertion_type=
    urn:ietf:params:oauth:client-assertion-type:jwt-bearer and
    client_assertion=JWT (a certificate credential), checked as Azure AD
    does; every failure answers {"error": "invalid_client",
    "error_description": "AADSTSnnn: ...", "error_codes": [nnn]}:
      400 AADSTS9002313  client_secret sent too, or another assertion type
      401 AADSTS700027   no certificate registered (no --tls-dir/--client-cert)
      400 AADSTS50027    not three base64url parts; header or payload not a
                         JSON object; "typ" present but not JWT; no "jti"
      401 AADSTS700027   header "alg" not RS256; "x5t" missing or not the
                         base64url (unpadded) SHA-1 thumbprint of the
                         registered certificate's DER ("The key was not
                         found": thumbprint not registered); RS256
                         signature over "header.payload" does not verify
                         with the certificate's public key (checked with
                         `openssl dgst -sha256 -verify`)
      401 AADSTS700016   "iss" or "sub" is not pcqual-test-app
      401 AADSTS700021   form field client_id present and not the "iss"
      401 AADSTS700023   "aud" is not the token endpoint URL exactly as the
                         client addressed it: SCHEME://HOST-HEADER/PATH
                         (http on P, https on P+1..P+4; no query)
      401 AADSTS700024   "exp" missing, not a number, not in the future or
                         more than 24 h ahead; "nbf" (optional) later than
                         now + 5 min
      401 AADSTS50013    "jti" already used by an accepted assertion
                         (remembered until /_emulator/reset)
    Success: an App-only token, as for the secret; logged with auth
    "client_credentials+assertion".
  - grant_type=refresh_token: an App+User token "emu-user-N.PAYLOAD.SIG"
    (above; {"token_type", "expires_in" (a number),"access_token",
    "refresh_token","scope"}); a
    client_id or client_secret, if sent, must be right (401 AADSTS7000215).
    Every success returns a NEW refresh token "pcqual-test-refresh-rot-N"
    (N global, never reused).  Valid refresh tokens: "pcqual-test-refresh"
    and every one issued (issued ones stay valid across reset).  Unknown:
    400 invalid_grant AADSTS70000.  Expired by disuse: the refresh token
    "pcqual-test-refresh-idle" always, and every valid one while config
    refresh_expired=on, answer 400 {"error": "invalid_grant",
    "error_description": "AADSTS700082: The refresh token has expired due
    to inactivity. ...", "error_codes": [700082]} (a use that answers this
    is not a use for refresh_rotation_strict).  Config
    refresh_rotation_strict=on: each refresh token, the original too, works
    once (uses while it was off do not count); a used one answers 400
    invalid_grant AADSTS70008 ("The
    refresh token has expired or was revoked"); /_emulator/reset forgets
    which were used.
  - config token_fault (default off) changes every 200 answer:
      crlf      access_token is "emu-...-N\\r\\nMS-CorrelationId: crlf-injected"
                (a client that puts it in a header unchecked shows
                "crlf-injected" in the log's correlation_id column)
      no_token  the JSON has no access_token field
      non_json  an HTML page (text/html) instead of JSON
      unavailable  503 temporarily_unavailable AADSTS90033 instead (an
                Azure AD outage: the grant was good)
  - anything else: 400 unsupported_grant_type AADSTS70003; not POST: 405.
  The log's body column for the token endpoint holds only the form's key
  names, comma-separated, in order (e.g. "grant_type,client_id,
  client_secret,resource"; a key that is not [A-Za-z0-9_.-]{1,64} shows
  as "?"), never a value.

Partner Center API (Authorization: Bearer <token>; a missing, unknown,
revoked or expired token answers 401 code 900420 with WWW-Authenticate).
MS-CorrelationId and MS-RequestId are echoed on every API answer.  Then,
for every path and method:
  - config require_mfa=on: an App+User token issued without mfa in its amr
    answers 401 {"code": 900421, "description": "Multi-factor
    authentication is required: ..."} with WWW-Authenticate: Bearer
    error="insufficient_claims" (App-only tokens are not affected)
  - config require_contract_version=on: a request whose MS-Contract-Version
    header is missing or not exactly "v1" answers 400 (PC error body, code
    400).  The header is recorded (log column contract_version) either way.
  GET  /v1/customers/{tenant}/qualifications
         first an override set with /_emulator/customer (below) or
         --fixtures (above), then FIXTURES (below), then the fault tenants,
         then (any valid GUID) the 44444444- bulk tenants, the
         qualifications created with POST (as a bare array), else
         GENERIC_OK; not a GUID: 400; fa11...: 404.
  POST /v1/customers/{tenant}/qualifications       (create)
         in this order:
         - an App-only token (emu-app-*, pcqual-static-token): 403
           {"code": 900329, "description": "This resource doesn't support
           application-only authentication.", ...}
         - tenant not a GUID: 400 2001; 22222222-...-000000000302: the 302
           below; the 22222222 error fixtures (400..503): their answer;
           fa11...: 404
         - idempotency: an answer already given to this tenant for the same
           MS-RequestId is replayed as it was (counted as post_replays);
           answers remembered: everything from here on except the first
           503 of 33333333-0000-0000-0000-000000000009
         - 33333333-0000-0000-0000-000000000009: 503 (PC error body) the
           first time an MS-RequestId is seen, normal processing when the
           same MS-RequestId comes again; no MS-RequestId: always 503
         - Content-Type not application/json (parameters allowed): 415 600050
         - body not a JSON object: 400 600010; a key other than
           qualification, educationSegment, website, validationCode: 400
           600014; a null value: 400 600015; a non-string value: 400 600016;
           qualification missing or not Education, GovernmentCommunityCloud,
           StateOwnedEntity (any case): 400 600011
         - Education: educationSegment must be exactly K12 or
           HigherEducation (400 600017); website optional; validationCode
           not allowed (400 600018)
         - GovernmentCommunityCloud: validationCode (or the older ?code=)
           required (400 600013), must be a validationId of
           /v1/customers/all/validations (400 600019) with remainingCreates
           > 0 (400 600020); educationSegment/website not allowed (600018)
         - StateOwnedEntity: no other field (400 600018)
         - the tenant already holds it (created earlier), or holds
           Education and asks GCC or the reverse: 409 600040
         - success: remembered for the tenant (until reset); a GCC create
           decrements its validation code's remainingCreates and links the
           code to the customer (GET .../validations); answers 201
           with the one new item {"qualification","vettingStatus":
           "InReview","vettingCreatedDate"} (StateOwnedEntity: only
           "qualification"), or, for tenants starting "aaaaaaaa", 200
           {"qualifications": [every item created for the tenant]}.
  GET  /v1/customers/{tenant}/validationStatus?type=account   App+User only
         in this order: an App-only token: 403 900329 (as POST above);
         type missing or not exactly "account": 400 (PC error body, code
         400); then as the customer endpoints below.  Answer 200
         {"type": "account", "status": S, "lastUpdateDateTime":
         "2024-03-01T10:00:00Z"}, S by the tenant id's LAST hex digit:
         0 4 8 c Allowed, 1 5 9 d UnderReview, 2 6 a e NotAllowed,
         3 7 b f Unknown.  Counted as validation_status_requests.
  GET  /v1/customers/{tenant}/validations  App-only or App+User
         the GCC validation code linked to the customer, a bare array:
         [{"customerId": <tenant, lower-case>, "partnerId",
           "organizationName", "validationId", "eTag"}] (partnerId, name and
         eTag as in /v1/customers/all/validations below) for a tenant with
         a successful GovernmentCommunityCloud create (its code; until
         reset) or, else, a tenant starting "c0dec0de" (code 12345, Contoso,
         Inc.); [] otherwise.  Counted as customer_validations_requests.
    Both, after the checks above, in this order: an override of that
    endpoint (/_emulator/customer below); the 22222222- fault tenants as
    for GET qualifications (the same statuses and bodies, except the
    endpoint's own bodies for 600 malformed JSON, 602 the key field
    (status / validationId) missing, 603 that field a number, 612 100 KB
    fields; 611 waits 10 s, then the normal answer); the 33333333-
    retry tenants 1..8 (attempts counted per endpoint; a 200 step is the
    normal answer); not a GUID: 400 2001; fa11...: 404 60003.  Other
    methods: 405.
  GET  /v1/customers/all/validations      App-only or App+User
         [{"partnerId","organizationName","validationId","maxCreates",
           "remainingCreates","eTag"}, ...]: 12345 (Contoso, Inc., 4 of 5
         left), 67890 (Fabrikam Government, 0 of 3 left), 24680
         (organizationName null, 10 of 10 left); reset restores the counts.
         Config validations_shape: array (default), wrapped
         ({"totalCount": n, "items": [...]}), empty ([]).
  GET  /v1/customers[?size=N][&filter=F][&seekOperation=Next]
         customer list, App-only or App+User.  Config customer_count
         customers (default 100, at most 100000), for n = 1, 2, ...:
         id = tenant id cccccccc-0000-4000-8000-<n in 12 digits>;
         companyName "<prefix> <n in at least 3 digits>" with prefix by
         (n-1) mod 5: Contoso School, Fabrikam Bank, Northwind Traders,
         Tailspin Toys, Woodgrove Hospital; domain: the name lower-case,
         spaces as "-", + ".onmicrosoft.com" (contoso-school-001.
         onmicrosoft.com); relationshipToPartner "advisor" when n is a
         multiple of 10, else "reseller".  Except: n = 42 is "Müller Bildung
         GmbH – Zürich 日本" (domain muellerbildung.onmicrosoft.com; sent as
         raw UTF-8), and n = 77's
         companyProfile has no tenantId (use "id").  Answer:
           {"totalCount": <items on THIS page>, "items": [{"id",
            "companyProfile": {"tenantId","domain","companyName",
            "attributes": {"objectType": "CustomerCompanyProfile"}},
            "relationshipToPartner","attributes": {"objectType":
            "Customer"}}, ...],
            "links": {"self": {"uri": <request path>, "method": "GET",
            "headers": []}, "next": {"uri": "/v1/customers?size=N&
            seekOperation=Next", "method": "GET", "headers": [{"key":
            "MS-ContinuationToken", "value": <token>}]}},
            "attributes": {"objectType": "Collection"}}
         size 1..500, default 40 (on Next: the token's size unless size=
         is given); anything else: 400.  The last page has no "next".
         Next page: seekOperation=Next (any case) and the header
         MS-ContinuationToken; missing, altered or foreign token: 400.
         The token is standard base64 (always contains "+", "/" and "=")
         of an HMAC-signed JSON {offset, size, filter, nonce}; it carries
         the filter (a filter= on a Next request is ignored).
         filter= (URL-encoded JSON) {"Field": "CompanyName" | "Domain",
         "Value": "<text>", "Operator": "starts_with"}: case-insensitive
         prefix match; another Field or Operator, a non-string Value, or
         not JSON: 400.  Config customers_page_latency_ms (default 0)
         delays every Next page (the wait ends early, logged 499, if the
         client leaves).  Pages served count as customer_pages.
  other methods: 405; other paths: 404.

Fixtures by customer tenant id (case-insensitive):
  11111111-0000-0000-0000-0000000000NN  success shapes (FIXTURES)
  22222222-0000-0000-0000-000000000NNN  status NNN (400 401 403 404 409
        418 429 500 502 503) also for POST, or a fault (600 malformed JSON,
        601 wrong shape, 602/603 bad item, 604 empty, 605 HTML, 606 5 MB,
        607 endless chunked stream, 608 deep nesting, 609 dropped
        connection, 610 truncated body, 611 10 s slow answer, 612 100 KB
        fields); 302: GET and POST answer 302 with
        Location: http://HOST:P+5/stolen (the redirect target).
  33333333-0000-0000-0000-00000000000N  N=1..8 fail then succeed, or always
        fail (RETRY_FIXTURES; attempt counters cleared by reset); N=9 the
        POST idempotency fault above.
  44444444-XXXX-XXXX-XXXX-XXXXXXXXXXXX  bulk population for benchmarks and
        scheduled-sync tests.  h = SHA-256 of the lower-case tenant id
        (ASCII); change bucket = int(h[0:4], big endian) mod 100; fail
        bucket = int(h[4:8], big endian) mod 100 (independent).  With config
        sync_epoch E (default 0), change_percent C, fail_percent F (both
        0..100, default 0):
          fail bucket < F and E >= 1  -> 503 (PC error body) every time
          else 200 [{"qualification": "Education", "vettingStatus": S,
                     "vettingCreatedDate": "2024-01-15T10:00:00Z"}]
               S = "Approved" if change bucket < C and E is odd,
                   else "InReview"
        so going from an even to an odd epoch changes exactly the C% of
        tenants whose change bucket is < C.
  cccccccc-0000-4000-8000-000000000NNN  the customer list; their
        qualifications are the generic answer.
  c0dec0de-....                         GENERIC_OK; validation code 12345
                                        linked (GET .../validations)
  fa11....                              404 tenant not found
  any other GUID                        GENERIC_OK (or what POST created)
  (GET .../validationStatus: the status by the last hex digit, above)

Control API (never delayed, never auth-checked, never recorded):
  GET  /_emulator/health     -> 200 "ok"
  POST /_emulator/reset      -> (once the requests being answered are
                                answered, up to 10 s) clear log, attempt
                                counters, statistics,
                                created qualifications and validation code
                                links, MS-RequestId memory,
                                validation counts, customer overrides (back
                                to those of --fixtures), used refresh tokens
                                and assertion jti's; config back to the
                                defaults (those of --fixtures, then
                                --latency-ms); revoke all access tokens
  POST /_emulator/revoke     -> every access token issued so far is rejected
  GET|POST /_emulator/config?key=value&...  (or a JSON/form body); keys:
         latency_ms (>= 0, every API request), token_latency_ms (>= 0,
         every token-endpoint answer), throttle_inflight (429 above
         K requests in flight; 0 or "off" disables), throttle_retry_after,
         token_expires_in, refresh_rotation_strict (on/off),
         token_fault (off|crlf|no_token|non_json|unavailable),
         validations_shape (array|wrapped|empty), customers_page_latency_ms,
         sync_epoch (>= 0), change_percent, fail_percent (0..100),
         customer_count (0..100000, the length of the customer list),
         token_mfa (on: App+User tokens issued from now on have amr
         ["pwd","mfa"], the default; off: ["pwd"]), require_mfa (on/off),
         app_token_jwt (on/off: App-only tokens JWT-shaped), jwt_header
         (id|json: the first part of a JWT-shaped token), refresh_expired
         (on/off: AADSTS700082), require_contract_version (on/off); see
         above for each.  All or nothing: an unknown key or a bad value
         answers 400 {"error", and "settings" (the keys) or "expected" (what
         the key takes)} and changes nothing
  GET|POST /_emulator/customer?tenant=<uuid>
         POST a JSON body, one of:
           {"qualifications": [...]}  GET of that tenant answers 200 with
                                      that array (overrides fixtures and
                                      created state)
           {"validation_status": V}   GET .../validationStatus answers 200
                                      with the JSON value V (any; after the
                                      App-only and type checks)
           {"validations": V}         GET .../validations answers 200 with V
           {"fail": NNN}              the tenant's qualifications,
                                      validationStatus and validations
                                      endpoints answer status NNN (400..599)
                                      with a PC error body every time (429
                                      adds Retry-After: 1); an optional
                                      "description" replaces the error
                                      description (e.g. with control
                                      characters, to test sanitising) and
                                      an optional "code" the error code
                                      (default: the status); a failure
                                      override also answers POSTs to that
                                      tenant (after the token check)
           {"clear": true}            remove the tenant's overrides
         "fail" and "clear" take an optional "endpoint": "qualifications",
         "validationStatus" or "validations", to apply to that endpoint
         only.  Any other body: 400 {"error", "problem": "<key>: what is
         wrong"}.  Each POST changes only the endpoints it names (an answer
         names its own), the others keep theirs.
         GET shows them ({"tenant", "override": the qualifications one as
         {"status","body"} or null, "overrides": {endpoint: {"status",
         "body"}}}).  Reset clears all overrides.
  GET  /_emulator/requests   -> PostgreSQL COPY text format, columns:
         seq, method, path, kind, tenant, status, auth, correlation_id,
         request_id, application, user_agent, accept, content_type, body,
         continuation_token, query, contract_version
         kind: api, token, other, redirect-target.  auth: the bearer token
         (api), the grant label (token), the Authorization header
         (redirect-target).  body: API requests: the body as text (invalid
         UTF-8 replaced, cut at 65536 characters), NULL when empty; other
         kinds: the form key names only (see the token endpoint).
         continuation_token: the MS-ContinuationToken header.  query: the
         raw query string (NULL without "?").  contract_version: the
         MS-Contract-Version header.  NUL characters are written
         as the four characters \\x00.
       ?format=json          -> JSON array (adds "time")
       ?since=N              -> only records with seq > N
       ?kind=KIND            -> only records of that kind
  GET  /_emulator/stats      -> JSON counters: api_requests, token_requests,
         other_requests, status_counts, dropped, throttled, max_in_flight,
         in_flight, connections, tokens_valid, log_entries,
         customer_pages, validations_requests, qualifications_created,
         post_replays, redirect_target_requests, assertion_grants,
         refresh_grants, overrides (tenants with one),
         validation_status_requests, customer_validations_requests
"""

import _thread
import argparse
import base64
import collections
import email.utils
import functools
import hashlib
import hmac
import http
import http.server
import ipaddress
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qsl, unquote

# --------------------------------------------------------------------------
# constants

APP_CLIENT_ID = "pcqual-test-app"
APP_CLIENT_SECRET = "pcqual-test-secret"
REFRESH_TOKEN = "pcqual-test-refresh"
IDLE_REFRESH_TOKEN = "pcqual-test-refresh-idle"     # always AADSTS700082
STATIC_TOKEN = "pcqual-static-token"
API_AUDIENCE = "https://api.partnercenter.microsoft.com"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT_PARTNER = "redirect.onmicrosoft.com"

DEFAULT_PORT = 18765
PORT_BLOCK = 6                       # P, P+1..P+4 (TLS), P+5 (redirect target)
TLS_CERTS = ("server", "wrong-name", "expired", "self-signed")   # P+1..P+4
TLS_CLIENT_CERTS = ("client.crt", "client-expiring.crt")   # registered with --tls-dir
REDIRECT_OFFSET = 5
MAX_BODY = 16 * 1024 * 1024          # request bodies larger than this: 413
MAX_LOG = 500_000                    # recorded requests kept (oldest dropped)
MAX_LOG_BODY = 65536                 # characters of a request body recorded
IDLE_TIMEOUT = 120                   # seconds a keep-alive connection may idle
STREAM_LIMIT = 2 * 1024 ** 3         # the endless chunked stream stops here

JSON = "application/json"
HTML = "text/html"
TEXT = "text/plain; charset=utf-8"
TOKEN_JSON = "application/json; charset=utf-8"

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FORM_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")

REASONS = {s.value: s.phrase for s in http.HTTPStatus}

CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError,
                     ConnectionAbortedError, TimeoutError, socket.timeout)


def pc_error(code, description):
    """The usual Partner Center error body."""
    return json.dumps({"code": code, "description": description,
                       "data": [], "source": "PartnerFD"}).encode()


def throttle_body(seconds):
    return json.dumps({"statusCode": 429, "message":
                       "Rate limit is exceeded. Try again in %s seconds." % seconds}).encode()


def aad_error(error, code, text):
    """An Azure AD token endpoint error body."""
    return json.dumps({"error": error, "error_description": "AADSTS%d: %s" % (code, text),
                       "error_codes": [code]}).encode()


AAD_UNAVAILABLE = aad_error("temporarily_unavailable", 90033,
                            "A transient error has occurred. Please try again.")
AUTH_FAILED = pc_error(900420, "Authentication failed: the token is invalid or expired.")
INVALID_CUSTOMER = pc_error(2001, "Invalid customer id.")
TENANT_NOT_FOUND = pc_error(60003, "Tenant not found.")
NOT_FOUND = pc_error(404, "Resource not found.")
SERVICE_UNAVAILABLE = pc_error(503, "The service is temporarily unavailable.")
APP_ONLY_REFUSED = pc_error(900329, "This resource doesn't support application-only "
                                    "authentication.")
MFA_REQUIRED = pc_error(900421, "Multi-factor authentication is required: the access token's "
                                "amr claim does not include mfa.")
CONTRACT_VERSION_REQUIRED = pc_error(400, "The MS-Contract-Version header is required and must "
                                          "be v1.")
BAD_VALIDATION_TYPE = pc_error(400, "The type query parameter is required and must be account.")

AAD_INVALID_CLIENT = json.dumps({
    "error": "invalid_client",
    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                         "being sent in the request is the client secret value, not the "
                         "client secret ID.",
    "error_codes": [7000215]}).encode()
AAD_INVALID_GRANT = json.dumps({
    "error": "invalid_grant",
    "error_description": "AADSTS70000: Provided grant is invalid or malformed."}).encode()
AAD_REFRESH_USED = aad_error("invalid_grant", 70008,
                             "The refresh token has expired or was revoked. The refresh "
                             "token was already redeemed.")
AAD_REFRESH_IDLE = aad_error("invalid_grant", 700082,
                             "The refresh token has expired due to inactivity. The token was "
                             "issued on 2025-01-01T00:00:00.0000000Z and was inactive for "
                             "90.00:00:00.")
AAD_UNSUPPORTED_GRANT = json.dumps({
    "error": "unsupported_grant_type",
    "error_description": "AADSTS70003: The app requested an unsupported grant type. "
                         "Supported: client_credentials, refresh_token."}).encode()
AAD_NO_RESOURCE = json.dumps({
    "error": "invalid_request",
    "error_description": "AADSTS900144: The request body must contain the following "
                         "parameter: 'resource'.",
    "error_codes": [900144]}).encode()

TOKEN_FAULT_HTML = (b"<!DOCTYPE html><html><head><title>Sign in to your account</title>"
                    b"</head><body><p>Sign in to your account</p></body></html>")
TOKEN_FAULTS = ("", "crlf", "no_token", "non_json", "unavailable")
CRLF_INJECTION = "\r\nMS-CorrelationId: crlf-injected"
REDIRECTED = b'{"redirected": true}'

BAD_GATEWAY_HTML = (
    "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
    "<title>502 Bad Gateway</title>\n"
    "<style>body{font-family:Segoe UI,Helvetica,Arial,sans-serif;margin:40px;color:#333}"
    "h1{font-size:28px;font-weight:normal}p{font-size:14px;line-height:1.5}"
    "code{background:#f3f3f3;padding:2px 4px}</style>\n</head>\n<body>\n"
    "<h1>502 Bad Gateway</h1>\n"
    "<p>The server, while acting as a gateway or proxy, received an invalid response "
    "from the upstream server it accessed in attempting to fulfill the request.</p>\n"
    "<p>The Partner Center front door could not reach the qualifications service. "
    "This is usually temporary; retry the request after a short delay. If the "
    "problem persists, contact support and quote the correlation id and request id "
    "of the failed call.</p>\n"
    "<hr>\n<p><code>Microsoft-Azure-Application-Gateway/v2</code></p>\n"
    "<!-- a padding comment so the page is about one kilobyte long, like the pages "
    "gateways really send: 0123456789abcdef0123456789abcdef0123456789abcdef -->\n"
    "</body>\n</html>\n").encode()

# --------------------------------------------------------------------------
# fixtures: lower-case tenant id -> (status, body, content type, extra headers)

P1 = "11111111-0000-0000-0000-0000000000"
P2 = "22222222-0000-0000-0000-000000000"
P3 = "33333333-0000-0000-0000-00000000000"

SEED_APPROVED = b'[{"qualification":"Education","vettingStatus":"Approved"}]'
GENERIC_OK = (b'[{"qualification":"Education","vettingStatus":"Approved",'
              b'"vettingCreatedDate":"2021-01-01T00:00:00Z"}]')


def _big_array():
    item = (b'{"qualification":"Education","vettingStatus":"Approved",'
            b'"vettingCreatedDate":"2021-01-01T00:00:00Z"}')
    n = (5 * 1024 * 1024) // (len(item) + 1)
    return b"[" + b",".join([item] * n) + b"]"


def _big_strings():
    n = 100 * 1024
    return json.dumps([{"qualification": "Q" * n, "vettingStatus": "S" * n,
                        "vettingReason": "R" * n, "vettingCreatedDate": "D" * n}]).encode()


FIXTURES = {
    # success shapes
    P1 + "01": (200, SEED_APPROVED),
    P1 + "02": (200, b'[{"qualification":"Education","vettingStatus":"InReview",'
                     b'"vettingCreatedDate":"2020-12-03T10:37:38.885Z"}]'),
    P1 + "03": (200, b'[{"qualification":"Education","vettingStatus":"Denied",'
                     b'"vettingReason":"Not an Education Customer",'
                     b'"vettingCreatedDate":"2020-12-03T10:37:38.885Z"}]'),
    P1 + "04": (200, b'[{"qualification":"StateOwnedEntity"}]'),
    P1 + "05": (200, b'[{"qualification":"Education","vettingStatus":"Approved"},'
                     b'{"qualification":"StateOwnedEntity"}]'),
    P1 + "06": (200, b'[{"qualification":"GovernmentCommunityCloud","vettingStatus":"Approved",'
                     b'"vettingCreateDate":"2021-05-06T19:59:56.6832021+00:00"},'
                     b'{"qualification":"StateOwnedEntity"}]'),
    P1 + "07": (200, b'[]'),
    P1 + "08": (200, b'{"qualifications":[{"qualification":"Education","vettingStatus":"Approved",'
                     b'"vettingCreatedDate":"2021-01-15T08:00:00Z"}]}'),
    P1 + "09": (200, b'{"totalCount":1,"items":[{"qualification":"Nonprofit",'
                     b'"vettingStatus":"InReview",'
                     b'"vettingCreatedDate":"2022-03-01T12:30:00.1234567-05:00"}],'
                     b'"attributes":{"objectType":"Collection"}}'),
    P1 + "10": (200, b'{"qualification":"Education","vettingStatus":"Approved",'
                     b'"vettingCreatedDate":"2021-02-03T04:05:06+00:00"}'),
    P1 + "11": (200, b'[{"Qualification":"Education","VettingStatus":"Approved",'
                     b'"VettingCreatedDate":"07/09/2020: 00:00:00"}]'),
    P1 + "12": (200, b'[{"qualification":"FutureProgram","vettingStatus":null,'
                     b'"vettingReason":null,"vettingCreatedDate":null,'
                     b'"someNewField":{"x":[1,2]},"another":true},'
                     b'{"qualification":"Education","vettingStatus":"Escalated"}]'),
    P1 + "13": (200, b'[{"qualification":"Education","vettingStatus":"Approved",'
                     b'"vettingCreatedDate":"2023-07-01T09:15:00+05:30"}]'),
    P1 + "14": (200, b'{"totalCount":0,"items":[],"attributes":{"objectType":"Collection"}}'),
    P1 + "15": (200, b'[{"qualification":"Education","vettingStatus":"Denied",'
                     b'"vettingReason":"Not an Academic Domain",'
                     b'"vettingCreatedDate":"2020-01-01T00:00:00Z"},'
                     b'{"qualification":"Education","vettingStatus":"InReview",'
                     b'"vettingCreatedDate":"2020-02-01T00:00:00Z"},'
                     b'{"qualification":"Education","vettingStatus":"Approved",'
                     b'"vettingCreatedDate":"2020-03-01T00:00:00.5Z"}]'),
    P1 + "16": (200, b'[{"QUALIFICATION":"Education","vettingstatus":"Approved",'
                     b'"VettingReason":"ok","vettingCreatedDate":"2021-06-30T23:59:59.9999999Z"}]'),
    # errors
    P2 + "400": (400, INVALID_CUSTOMER),
    P2 + "401": (401, pc_error(900420, "Access token audience is invalid.")),
    P2 + "403": (403, pc_error("2002", "Partner is not authorized for this customer.")),
    P2 + "404": (404, TENANT_NOT_FOUND),
    P2 + "409": (409, b'"Customer tagging denied."'),
    P2 + "429": (429, throttle_body(7), JSON, (("Retry-After", "7"),)),
    P2 + "500": (500, pc_error(500, "Internal server error.")),
    P2 + "502": (502, BAD_GATEWAY_HTML, HTML),
    P2 + "503": (503, b"", None),
    P2 + "418": (418, b'{"message": "I\'m a teapot."}'),
    # faults answered with a plain body
    P2 + "600": (200, b'[{"qualification": "Education",]'),
    P2 + "601": (200, b'42'),
    P2 + "602": (200, b'[{"vettingStatus":"Approved"}]'),
    P2 + "603": (200, b'[{"qualification": 7}]'),
    P2 + "604": (200, b''),
    P2 + "605": (200, b'<html><body>Maintenance</body></html>', HTML),
    P2 + "606": (200, _big_array()),
    P2 + "608": (200, b"[" * 100_000 + b"]" * 100_000),
    P2 + "612": (200, _big_strings()),
}
# faults that need code, not a canned answer
STREAM_TENANT = P2 + "607"
DROP_TENANT = P2 + "609"
TRUNCATE_TENANT = P2 + "610"
SLOW_TENANT = P2 + "611"
SLOW_SECONDS = 10.0

# the error statuses a POST to the same tenants also gets
POST_ERRORS = {k: v for k, v in FIXTURES.items()
               if k.startswith(P2) and v[0] != 200}

# retry fixtures: tenant -> attempt number -> answer ("drop", or a tuple like
# FIXTURES, or a callable producing one); attempts past the list repeat the
# last entry
RETRY_429 = (429, throttle_body(1), JSON, (("Retry-After", "1"),))
RETRY_FIXTURES = {
    P3 + "1": [RETRY_429, (200, SEED_APPROVED)],
    P3 + "2": [(500, pc_error(500, "Internal server error.")), (200, SEED_APPROVED)],
    P3 + "3": [(503, b"", None)],
    P3 + "4": [(429, throttle_body(3600), JSON, (("Retry-After", "3600"),))],
    P3 + "5": [(429, json.dumps({"statusCode": 429, "message":
                                 "Rate limit is exceeded."}).encode()), (200, SEED_APPROVED)],
    P3 + "6": [lambda: (429, throttle_body(2), JSON, (
        ("Retry-After", email.utils.formatdate(math.ceil(time.time()) + 2, usegmt=True)),)),
        (200, SEED_APPROVED)],
    P3 + "7": ["drop", (200, SEED_APPROVED)],
    P3 + "8": [(502, BAD_GATEWAY_HTML, HTML), (200, SEED_APPROVED)],
}

REDIRECT_TENANT = P2 + "302"
RETRY_ONCE_TENANT = P3 + "9"          # POST: 503 the first time an MS-RequestId is seen
REST_SHAPE_PREFIX = "aaaaaaaa"        # POST answers 200 {"qualifications": [...]}
BULK_PREFIX = "44444444-"

QUALIFICATIONS = {"education": "Education",
                  "governmentcommunitycloud": "GovernmentCommunityCloud",
                  "stateownedentity": "StateOwnedEntity"}
POST_FIELDS = ("qualification", "educationSegment", "website", "validationCode")
EXTRA_FIELDS = {"Education": ("educationSegment", "website"),
                "GovernmentCommunityCloud": ("validationCode",),
                "StateOwnedEntity": ()}
EDUCATION_SEGMENTS = ("K12", "HigherEducation")
EXCLUSIVE = {"Education": "GovernmentCommunityCloud",
             "GovernmentCommunityCloud": "Education"}

def gcc_code(doc, query):
    """A GCC create's validation code: the body's, else the older ?code=."""
    code = doc.get("validationCode")
    if code is None:
        code = dict(parse_qsl(query or "", keep_blank_values=True)).get("code", "")
    return code.strip()


def find_validation(validations, code):
    for v in validations:
        if v["validationId"] == code:
            return v
    return None


# GCC validation codes (remainingCreates is per state, see State.reset)
PARTNER_ID = "9daaeb1c-4195-4db5-9f1d-509eb70c8c2d"
ETAG = "W/\"datetime'2018-10-10T18%3A49%3A58.727348Z'\""
VALIDATIONS = (
    {"partnerId": PARTNER_ID, "organizationName": "Contoso, Inc.", "validationId": "12345",
     "maxCreates": 5, "remainingCreates": 4, "eTag": ETAG},
    {"partnerId": PARTNER_ID, "organizationName": "Fabrikam Government",
     "validationId": "67890", "maxCreates": 3, "remainingCreates": 0, "eTag": ETAG},
    {"partnerId": PARTNER_ID, "organizationName": None, "validationId": "24680",
     "maxCreates": 10, "remainingCreates": 10, "eTag": ETAG},
)

# GET /v1/customers/{tenant}/validationStatus?type=account: the status by the
# tenant id's last hex digit mod 4 (0 4 8 c Allowed, 1 5 9 d UnderReview,
# 2 6 a e NotAllowed, 3 7 b f Unknown)
VALIDATION_STATUSES = ("Allowed", "UnderReview", "NotAllowed", "Unknown")
VALIDATION_STATUS_DATE = "2024-03-01T10:00:00Z"


def validation_status_body(key):
    status = VALIDATION_STATUSES[int(key[-1], 16) % 4]
    return json.dumps({"type": "account", "status": status,
                       "lastUpdateDateTime": VALIDATION_STATUS_DATE}).encode()


# GET /v1/customers/{tenant}/validations: tenants starting c0dec0de have
# 12345 linked; a successful GCC create links its code
LINKED_PREFIX = "c0dec0de"
LINKED_CODE = "12345"


def customer_validation(key, code, validations):
    v = find_validation(validations, code) or {}
    return {"customerId": key, "partnerId": PARTNER_ID,
            "organizationName": v.get("organizationName"), "validationId": code, "eTag": ETAG}


# the 22222222- faults with a plain body, as the two endpoints above answer
# them (the other faults are answered as the qualifications endpoint does)
def _endpoint_faults():
    n = 100 * 1024
    status_faults = {
        "600": b'{"type": "account", "status": }',
        "602": b'{"type":"account","lastUpdateDateTime":"2024-03-01T10:00:00Z"}',
        "603": b'{"type":"account","status":7}',
        "612": json.dumps({"type": "account", "status": "S" * n,
                           "lastUpdateDateTime": "D" * n}).encode(),
    }
    validations_faults = {
        "600": b'[{"validationId": "12345",]',
        "602": json.dumps([{"customerId": "x", "partnerId": PARTNER_ID,
                            "organizationName": "Contoso, Inc.", "eTag": ETAG}]).encode(),
        "603": b'[{"validationId": 7}]',
        "612": json.dumps([{"customerId": "C" * n, "partnerId": "P" * n,
                            "organizationName": "O" * n, "validationId": "V" * n,
                            "eTag": "E" * n}]).encode(),
    }
    out = {}
    for endpoint, own in (("validationStatus", status_faults), ("validations", validations_faults)):
        table = {}
        for k, fx in FIXTURES.items():
            if k.startswith(P2):
                nnn = k[len(P2):]
                table[k] = (fx[0], own[nnn]) if nnn in own else fx
        out[endpoint] = table
    return out


ENDPOINT_FAULTS = _endpoint_faults()

# bulk tenants 44444444-...: (change bucket, fail bucket) from a hash
BULK_DATE = "2024-01-15T10:00:00Z"
BULK_BODIES = {s: json.dumps([{"qualification": "Education", "vettingStatus": s,
                               "vettingCreatedDate": BULK_DATE}]).encode()
               for s in ("Approved", "InReview")}


def bulk_buckets(key):
    h = hashlib.sha256(key.encode("ascii", "replace")).digest()
    return int.from_bytes(h[0:4], "big") % 100, int.from_bytes(h[4:8], "big") % 100


def bulk_answer(key, cfg):
    change, fail = bulk_buckets(key)
    epoch = cfg["sync_epoch"]
    if fail < cfg["fail_percent"] and epoch >= 1:
        return (503, SERVICE_UNAVAILABLE)
    approved = change < cfg["change_percent"] and epoch % 2 == 1
    return (200, BULK_BODIES["Approved" if approved else "InReview"])


# the customer list: (casefolded name, casefolded domain, JSON of the item)
CUSTOMER_PREFIXES = ("Contoso School", "Fabrikam Bank", "Northwind Traders",
                     "Tailspin Toys", "Woodgrove Hospital")
DEFAULT_CUSTOMERS = 100
MAX_CUSTOMERS = 100_000
UNICODE_CUSTOMER = 42
NO_TENANT_ID_CUSTOMER = 77
DEFAULT_PAGE_SIZE = 40
MAX_PAGE_SIZE = 500


@functools.lru_cache(maxsize=4)
def customers(count):
    """The first count customers of the list."""
    out = []
    for i in range(1, count + 1):
        tid = "cccccccc-0000-4000-8000-%012d" % i
        name = "%s %03d" % (CUSTOMER_PREFIXES[(i - 1) % len(CUSTOMER_PREFIXES)], i)
        domain = name.lower().replace(" ", "-") + ".onmicrosoft.com"
        if i == UNICODE_CUSTOMER:
            name = "M\u00fcller Bildung GmbH \u2013 Z\u00fcrich \u65e5\u672c"
            domain = "muellerbildung.onmicrosoft.com"
        profile = {"tenantId": tid, "domain": domain, "companyName": name,
                   "attributes": {"objectType": "CustomerCompanyProfile"}}
        if i == NO_TENANT_ID_CUSTOMER:
            del profile["tenantId"]
        item = {"id": tid, "companyProfile": profile,
                "relationshipToPartner": "advisor" if i % 10 == 0 else "reseller",
                "attributes": {"objectType": "Customer"}}
        out.append((name.casefold(), domain.casefold(),
                    json.dumps(item, ensure_ascii=False).encode()))
    return tuple(out)


FILTER_FIELDS = {"CompanyName": 0, "Domain": 1}      # index into a customers() entry


def parse_customer_filter(raw):
    """The filter= JSON as (field index, casefolded prefix), or None if invalid."""
    try:
        f = json.loads(raw)
    except ValueError:
        return None
    if (not isinstance(f, dict) or f.get("Operator") != "starts_with"
            or f.get("Field") not in FILTER_FIELDS or not isinstance(f.get("Value"), str)):
        return None
    return FILTER_FIELDS[f["Field"]], f["Value"].casefold()


# continuation tokens: base64(MAGIC + HMAC + JSON); MAGIC encodes as "+/+/"
CONT_MAGIC = b"\xfb\xff\xbf"
CONT_KEY = os.urandom(32)
CONT_MAC = 12


def make_continuation(offset, size, flt):
    payload = json.dumps({"offset": offset, "size": size, "filter": flt,
                          "nonce": os.urandom(6).hex()}, separators=(",", ":")).encode()
    if (len(CONT_MAGIC) + CONT_MAC + len(payload)) % 3 == 0:
        payload += b" "                  # so the base64 always ends in "="
    mac = hmac.new(CONT_KEY, payload, "sha256").digest()[:CONT_MAC]
    return base64.b64encode(CONT_MAGIC + mac + payload).decode()


def read_continuation(token):
    """(offset, size, filter) from a token this process issued, else None."""
    try:
        raw = base64.b64decode(token or "", validate=True)
    except ValueError:
        return None
    n = len(CONT_MAGIC)
    mac, payload = raw[n:n + CONT_MAC], raw[n + CONT_MAC:]
    if (raw[:n] != CONT_MAGIC
            or not hmac.compare_digest(mac, hmac.new(CONT_KEY, payload, "sha256")
                                       .digest()[:CONT_MAC])):
        return None
    d = json.loads(payload)
    flt = tuple(d["filter"]) if d["filter"] else None
    return d["offset"], d["size"], flt


# the endpoints of a customer an override applies to
OVERRIDE_ENDPOINTS = ("qualifications", "validationStatus", "validations")
OVERRIDE_ANSWERS = {"qualifications": "qualifications", "validation_status": "validationStatus",
                    "validations": "validations"}


OVERRIDE_KEYS = tuple(OVERRIDE_ANSWERS) + ("fail", "description", "code", "clear", "endpoint")


class BadOverride(ValueError):
    """A /_emulator/customer body refused: where (the key at fault, "" for
    the body as a whole) and what is wrong."""

    def __init__(self, where, text):
        super().__init__(text)
        self.where, self.text = where, text


def override_from(doc):
    """A /_emulator/customer body as (endpoints, fixture tuple, or None to
    clear them); BadOverride if invalid.  --fixtures reads its customers'
    entries with this too."""
    if not isinstance(doc, dict) or not doc:
        raise BadOverride("", "expected a JSON object with one of qualifications, "
                              "validation_status, validations, fail, clear")
    for k in doc:
        if k not in OVERRIDE_KEYS:
            raise BadOverride(k, "unknown key (the keys: %s)" % ", ".join(OVERRIDE_KEYS))
    keys = set(doc) - {"endpoint"}
    endpoint = doc.get("endpoint")
    if "endpoint" in doc and endpoint not in OVERRIDE_ENDPOINTS:
        raise BadOverride("endpoint", "expected one of %s" % ", ".join(OVERRIDE_ENDPOINTS))
    answers = sorted(keys & set(OVERRIDE_ANSWERS))
    if answers:
        name = answers[0]
        others = sorted(keys - {name})
        if others:
            raise BadOverride(others[0], "not allowed with %s (one answer per body)" % name)
        target = OVERRIDE_ANSWERS[name]
        if endpoint not in (None, target):
            raise BadOverride("endpoint", "%s is the answer of %s, not of %s"
                              % (name, target, endpoint))
        if name == "qualifications" and not isinstance(doc[name], list):
            raise BadOverride(name, "expected an array (of qualification objects)")
        return (target,), (200, json.dumps(doc[name]).encode())
    endpoints = (endpoint,) if endpoint else OVERRIDE_ENDPOINTS
    if "clear" in keys:
        others = sorted(keys - {"clear"})
        if others:
            raise BadOverride(others[0], "not allowed with clear")
        if doc["clear"] is not True:
            raise BadOverride("clear", "expected true")
        return endpoints, None
    if "fail" not in keys:
        raise BadOverride("", "expected one of qualifications, validation_status, "
                              "validations, fail, clear")
    status = doc["fail"]
    if type(status) is not int or not 400 <= status <= 599:
        raise BadOverride("fail", "expected an HTTP status from 400 to 599 (a number)")
    description = doc.get("description", "Injected failure for this customer.")
    if not isinstance(description, str):
        raise BadOverride("description", "expected a string")
    code = doc.get("code", status)
    if type(code) not in (int, str):
        raise BadOverride("code", "expected a number or a string")
    body = pc_error(code, description)
    return endpoints, (status, body, JSON, (("Retry-After", "1"),) if status == 429 else ())


def with_override(overrides, key, endpoints, answer):
    """A new overrides dict ({tenant: {endpoint: fixture tuple}}), the given
    one left as it is: the tenant's endpoints set to answer, or cleared if
    answer is None; the tenant's other endpoints keep theirs."""
    overrides = dict(overrides)
    mine = dict(overrides.get(key, {}))
    for e in endpoints:
        if answer is None:
            mine.pop(e, None)
        else:
            mine[e] = answer
    if mine:
        overrides[key] = mine
    else:
        overrides.pop(key, None)
    return overrides


CONTROL_ENDPOINTS = ("health", "reset", "revoke", "config", "customer", "requests", "stats")


# --------------------------------------------------------------------------
# shared state

_date_cache = [0, ""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


COUNTERS = ("customer_pages", "validations_requests", "qualifications_created",
            "post_replays", "redirect_target_requests", "assertion_grants", "refresh_grants",
            "validation_status_requests", "customer_validations_requests")


class State:
    """Everything the handlers (of every listener) share.  Locks are held
    for a few bytecodes only."""

    def __init__(self, defaults, certs=None, overrides=None):
        self.defaults = dict(defaults)         # the config reset restores
        self.start_overrides = overrides or {} # the customer overrides reset restores (--fixtures)
        self.certs = certs or {}               # x5t -> ClientCert
        self.lock = threading.Lock()           # log, attempts, statistics, sets below
        self.flight_lock = threading.Lock()    # in-flight counter
        self.token_lock = threading.Lock()     # token and refresh token counters
        self.write_lock = threading.Lock()     # POST create + MS-RequestId memory
        self.token_seq = 0                     # global, never reset
        self.refresh_seq = 0                   # global, never reset
        self.refresh_issued = set()            # never reset
        self.in_flight = 0
        self.handling = 0                      # requests other than control ones being answered
        self.idle = threading.Condition()
        self.connections = 0                   # incremented by the accept threads
        self.url_host = "127.0.0.1"            # set by open_listeners()
        self.ports = {}
        self.reset()

    def reset(self):
        with self.lock:
            self.config = dict(self.defaults)  # replaced, never mutated
            self.log = collections.deque(maxlen=MAX_LOG)
            self.next_seq = 1
            self.attempts = {}
            self.tokens = {}                   # token -> (expiry (monotonic), App+User?, MFA?)
            self.api_requests = 0
            self.token_requests = 0
            self.other_requests = 0
            self.status_counts = {}
            self.dropped = 0
            self.throttled = 0
            self.max_in_flight = 0
            self.connections = 0
            self.counters = dict.fromkeys(COUNTERS, 0)
            self.created = {}                  # tenant -> [items created by POST]
            self.answers = {}                  # (tenant, MS-RequestId) -> (status, body)
            self.request_ids = set()           # (tenant, MS-RequestId) seen by RETRY_ONCE
            self.validations = [dict(v) for v in VALIDATIONS]
            self.overrides = self.start_overrides   # tenant -> {endpoint: fixture tuple}
            self.links = {}                    # tenant -> GCC validation code (created)
            self.refresh_used = set()
            self.jtis = set()

    def begin_request(self):
        with self.idle:
            self.handling += 1

    def end_request(self):
        with self.idle:
            self.handling -= 1
            if self.handling == 0:
                self.idle.notify_all()

    def wait_idle(self, timeout=10.0):
        """Wait until no request is being answered: a request its client gave
        up on (a cancel during a latency fixture) is still answered and
        logged, and must not land in the log of the test after a reset."""
        with self.idle:
            return self.idle.wait_for(lambda: self.handling == 0, timeout)

    def revoke(self):
        n = len(self.tokens)
        self.tokens = {}
        return n

    def issue(self, user, partner_tenant, audience, scope=None):
        """A new access token and its lifetime.  App+User tokens are JWT-shaped
        (see make_jwt), App-only ones with config app_token_jwt only."""
        prefix = "emu-user-" if user else "emu-app-"
        with self.token_lock:
            self.token_seq += 1
            ident = "%s%d" % (prefix, self.token_seq)
        cfg = self.config
        lifetime = cfg["token_expires_in"]
        mfa = user and cfg["token_mfa"]
        token = ident
        if user or cfg["app_token_jwt"]:
            now = int(time.time())
            claims = {"aud": audience or API_AUDIENCE,
                      "iss": "https://sts.windows.net/%s/" % partner_tenant,
                      "iat": now, "nbf": now, "exp": now + lifetime,
                      "appid": APP_CLIENT_ID, "tid": partner_tenant, "uti": ident, "ver": "1.0"}
            if user:
                claims.update(amr=["pwd", "mfa"] if mfa else ["pwd"],
                              scp=scope or "user_impersonation", upn="admin@partner.example")
            else:
                claims.update(idtyp="app", roles=[])
            token = make_jwt(ident, claims, cfg["jwt_header"] == "json")
        self.tokens[token] = (time.monotonic() + lifetime, user, mfa)
        return token, lifetime

    def token_info(self, token):
        """(App+User?, MFA?) of a valid access token, else None."""
        if token == STATIC_TOKEN:
            return False, False
        info = self.tokens.get(token)
        if info is None or time.monotonic() >= info[0]:
            return None
        return info[1], info[2]

    def token_ok(self, token):
        return self.token_info(token) is not None

    def is_user_token(self, token):
        info = self.token_info(token)
        return info is not None and info[0]

    def redeem_refresh(self, refresh_token):
        """(new refresh token, None), or (None, error body)."""
        strict = self.config["refresh_rotation_strict"]
        with self.token_lock:
            if refresh_token == IDLE_REFRESH_TOKEN:
                return None, AAD_REFRESH_IDLE
            if refresh_token != REFRESH_TOKEN and refresh_token not in self.refresh_issued:
                return None, AAD_INVALID_GRANT
            if self.config["refresh_expired"]:
                return None, AAD_REFRESH_IDLE
            if strict:
                if refresh_token in self.refresh_used:
                    return None, AAD_REFRESH_USED
                self.refresh_used.add(refresh_token)
            self.refresh_seq += 1
            new = "%s-rot-%d" % (REFRESH_TOKEN, self.refresh_seq)
            self.refresh_issued.add(new)
        return new, None

    def first_use(self, collection, key):
        """True (and key remembered) if key is not yet in the set."""
        with self.lock:
            if key in collection:
                return False
            collection.add(key)
            return True

    def count(self, name):
        with self.lock:
            self.counters[name] += 1

    def attempt(self, tenant):
        with self.lock:
            n = self.attempts.get(tenant, 0) + 1
            self.attempts[tenant] = n
        return n

    def record(self, entry, kind, status):
        with self.lock:
            self.log.append((self.next_seq,) + entry)
            self.next_seq += 1
            if kind == "api":
                self.api_requests += 1
            elif kind == "token":
                self.token_requests += 1
            else:
                self.other_requests += 1
            if status is None:
                self.dropped += 1
            else:
                self.status_counts[status] = self.status_counts.get(status, 0) + 1

    def redirect_url(self, path):
        return "http://%s:%d%s" % (self.url_host, self.ports["redirect"], path)

    def config_json(self):
        return dict(self.config)

    def stats(self):
        with self.lock:
            out = {
                "api_requests": self.api_requests,
                "token_requests": self.token_requests,
                "other_requests": self.other_requests,
                "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
                "dropped": self.dropped,
                "throttled": self.throttled,
                "max_in_flight": self.max_in_flight,
                "in_flight": self.in_flight,
                "connections": self.connections,
                "tokens_valid": len(self.tokens),
                "log_entries": len(self.log),
                "overrides": len(self.overrides),
            }
            out.update(self.counters)
            return out


# --------------------------------------------------------------------------
# settings (/_emulator/config)

OFF_WORDS = ("", "off", "none", "null", "false", "no", "0")
ON_WORDS = ("on", "true", "yes", "1")


def _expects(text):
    """Name what a setting's parser accepts (error messages quote it)."""
    def mark(parse):
        parse.expects = text
        return parse
    return mark


@_expects("a number >= 0")
def _number(raw):
    val = float(raw)
    if not math.isfinite(val) or val < 0:
        raise ValueError("negative")
    return int(val) if val == int(val) else val


@_expects("an integer >= 0")
def _count(raw):
    val = int(raw)
    if val < 0:
        raise ValueError("negative")
    return val


@_expects("an integer >= 0, or off")
def _inflight(raw):
    return 0 if raw.lower() in OFF_WORDS else _count(raw)


def _at_most(limit):
    @_expects("an integer from 0 to %d" % limit)
    def parse(raw):
        val = _count(raw)
        if val > limit:
            raise ValueError("over %d" % limit)
        return val
    return parse


@_expects("on or off")
def _flag(raw):
    low = raw.lower()
    if low in ON_WORDS or low in OFF_WORDS:
        return low in ON_WORDS
    raise ValueError("not a boolean")


def _choice(values):
    names = [v for v in values if v]
    @_expects("one of " + ", ".join(names) + (", or off" if "" in values else ""))
    def parse(raw):
        low = raw.lower()
        if "" in values and low in OFF_WORDS:
            return ""
        if low in values:
            return low
        raise ValueError("not one of %s" % ", ".join(values))
    return parse


CONFIG_KEYS = {
    "latency_ms": _number,
    "token_latency_ms": _number,
    "throttle_inflight": _inflight,
    "throttle_retry_after": _count,
    "token_expires_in": _count,
    "refresh_rotation_strict": _flag,
    "token_fault": _choice(TOKEN_FAULTS),
    "validations_shape": _choice(("array", "wrapped", "empty")),
    "customers_page_latency_ms": _number,
    "sync_epoch": _count,
    "change_percent": _at_most(100),
    "fail_percent": _at_most(100),
    "customer_count": _at_most(MAX_CUSTOMERS),
    "token_mfa": _flag,
    "require_mfa": _flag,
    "app_token_jwt": _flag,
    "jwt_header": _choice(("id", "json")),
    "refresh_expired": _flag,
    "require_contract_version": _flag,
}


def default_config(latency_ms=0):
    return {"latency_ms": latency_ms, "token_latency_ms": 0, "throttle_inflight": 0,
            "throttle_retry_after": 1, "token_expires_in": 3600,
            "refresh_rotation_strict": False, "token_fault": "",
            "validations_shape": "array", "customers_page_latency_ms": 0,
            "sync_epoch": 0, "change_percent": 0, "fail_percent": 0,
            "customer_count": DEFAULT_CUSTOMERS, "token_mfa": True, "require_mfa": False,
            "app_token_jwt": False, "jwt_header": "id", "refresh_expired": False,
            "require_contract_version": False}


def parse_config_value(key, raw):
    return CONFIG_KEYS[key](raw.strip())


class BadSetting(ValueError):
    """A setting /_emulator/config refuses (and so does --fixtures' "config"):
    key and value as given; known is False for a key that is not a setting."""

    def __init__(self, key, value, known):
        super().__init__(key)
        self.key, self.value, self.known = key, value, known

    def explain(self, shown=None):
        """What is wrong, quoting the value as shown (default: as text)."""
        if not self.known:
            return "unknown setting (the settings: %s)" % ", ".join(sorted(CONFIG_KEYS))
        return "bad value %s: expected %s" % (shown or json.dumps(self.value),
                                             CONFIG_KEYS[self.key].expects)


def apply_config(config, params):
    """A new config: config with params ({key: text}) applied, all or none
    (BadSetting for the first refused one).  /_emulator/config and
    --fixtures both set the config through this."""
    new = dict(config)
    for k, v in params.items():
        if k not in CONFIG_KEYS:
            raise BadSetting(k, v, False)
        try:
            new[k] = parse_config_value(k, v)
        except ValueError:
            raise BadSetting(k, v, True) from None
    return new


def config_params(doc):
    """A JSON object of settings as /_emulator/config reads one: each value as
    its text (JSON true is "True", which counts as on)."""
    return {k: str(v) for k, v in doc.items()}


# --------------------------------------------------------------------------
# --fixtures FILE, --secret-file, --pid-file, --print-settings

FIXTURE_FILE_KEYS = ("customers", "config", "comment")


class FixtureError(Exception):
    """What is wrong with a --fixtures file: the JSON path and the problem."""

    def __init__(self, where, text):
        super().__init__(text)
        self.where, self.text = where, text

    def __str__(self):
        return "%s: %s" % (self.where, self.text) if self.where else self.text


def _unique_keys(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise FixtureError("", "the key %s appears twice in one object" % json.dumps(k))
        seen.add(k)
    return dict(pairs)


def read_fixtures(data, defaults):
    """A --fixtures file's bytes as (config, customer overrides): its
    "config" applied to defaults as POST /_emulator/config applies it, its
    "customers" as POST /_emulator/customer bodies (an object, or an array of
    them applied in order).  FixtureError names the JSON path at fault."""
    try:
        doc = json.loads(data, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise FixtureError("", "not JSON: nested too deeply") from None
    except ValueError as e:
        raise FixtureError("", "not JSON: %s" % e) from None
    if not isinstance(doc, dict):
        raise FixtureError("", "expected a JSON object with \"customers\" and/or \"config\"")
    for k in doc:
        if k not in FIXTURE_FILE_KEYS:
            raise FixtureError(k, "unknown top-level key (the keys: %s)"
                               % ", ".join(FIXTURE_FILE_KEYS))
    config = dict(defaults)
    settings = doc.get("config", {})
    if not isinstance(settings, dict):
        raise FixtureError("config", "expected an object of /_emulator/config settings")
    try:
        config = apply_config(config, config_params(settings))
    except BadSetting as e:
        raise FixtureError("config." + e.key,
                           e.explain(json.dumps(settings[e.key]))) from None
    overrides = {}
    tenants = doc.get("customers", {})
    if not isinstance(tenants, dict):
        raise FixtureError("customers", "expected an object: customer tenant id -> "
                                        "/_emulator/customer body")
    spelt = {}
    for tenant, entry in tenants.items():
        where = "customers." + tenant
        key = tenant.lower()
        if not GUID_RE.match(key):
            raise FixtureError(where, "not a customer tenant id (a GUID such as "
                                      "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e01)")
        if key in spelt:
            raise FixtureError(where, "the same tenant as customers.%s" % spelt[key])
        spelt[key] = tenant
        bodies = entry if isinstance(entry, list) else [entry]
        if not bodies:
            raise FixtureError(where, "expected an object (a /_emulator/customer body) "
                                      "or a non-empty array of them")
        for i, body in enumerate(bodies):
            at = where + ("[%d]" % i if isinstance(entry, list) else "")
            try:
                endpoints, answer = override_from(body)
            except BadOverride as e:
                raise FixtureError(at + ("." + e.where if e.where else ""), e.text) from None
            overrides = with_override(overrides, key, endpoints, answer)
    return config, overrides


def write_private(path, text, mode=0o600):
    """Create or replace path with text, mode 0600 (or mode): a new file
    renamed over it (so a symbolic link there is replaced, never followed).
    Returns its (st_dev, st_ino)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pc_emulator-")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def remove_own(path, ident):
    """Remove path if it is still the file write_private made."""
    try:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == ident:
            os.unlink(path)
    except OSError:
        pass


SETTINGS_PARTNER = "pcqual-test-partner.onmicrosoft.com"


def sql_literal(text):
    return "'%s'" % text.replace("'", "''")


def sql_identifier(name):
    return '"%s"' % name.replace('"', '""')


def settings_lines(url, secret_path, fmt):
    """The SQL that points pcqual at this emulator: SET lines, or
    ALTER DATABASE ... SET lines for fmt "alter-database:DBNAME"."""
    prefix = "SET "
    if fmt.startswith("alter-database:"):
        prefix = "ALTER DATABASE %s SET " % sql_identifier(fmt.split(":", 1)[1])
    settings = (("pcqual.base_url", url), ("pcqual.authority", url),
                ("pcqual.allow_http", "on"), ("pcqual.partner_tenant", SETTINGS_PARTNER),
                ("pcqual.client_id", APP_CLIENT_ID),
                ("pcqual.client_secret_file", os.path.abspath(secret_path)))
    return ["%s%s = %s;" % (prefix, name, value if value == "on" else sql_literal(value))
            for name, value in settings]


# --------------------------------------------------------------------------
# COPY text format

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                               "\b": "\\b", "\f": "\\f", "\v": "\\v", "\0": "\\\\x00"})


def copy_field(v):
    if v is None:
        return "\\N"
    return str(v).translate(_COPY_ESCAPES)


LOG_FIELDS = ("seq", "time", "method", "path", "kind", "tenant", "status", "auth",
              "correlation_id", "request_id", "application", "user_agent", "accept",
              "content_type", "body", "continuation_token", "query", "contract_version")
COPY_COLUMNS = (0,) + tuple(range(2, len(LOG_FIELDS)))   # indexes into a log entry


def iso_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def body_text(body):
    """An API request body as recorded: text, cut at MAX_LOG_BODY characters."""
    if not body:
        return None
    return body[:MAX_LOG_BODY * 4].decode("utf-8", "replace")[:MAX_LOG_BODY]


def form_keys(body):
    """Only the key names of a form body, comma-separated: no value is ever recorded."""
    if not body:
        return None
    pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    return ",".join(k if FORM_KEY_RE.match(k) else "?" for k, _ in pairs)


# --------------------------------------------------------------------------
# client assertions (certificate credentials)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(ident, claims, json_header=False):
    """An access token shaped as a JWT: header.payload.signature, base64url
    without padding; the signature is an HMAC no client can check.  The
    header part is the token's id (emu-user-N, so that it still starts with
    its kind), or with json_header a real JSON header carrying the id as
    "kid"."""
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    if json_header:
        head = b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": ident},
                                 separators=(",", ":")).encode())
    else:
        head = ident
    sig = b64url(hmac.new(CONT_KEY, (head + "." + payload).encode(), "sha256").digest())
    return head + "." + payload + "." + sig


def b64url_decode(text):
    text = text.rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ClientCert:
    """The application's registered certificate: its x5t thumbprint, and its
    public key extracted once (with openssl) for signature checks."""

    def __init__(self, path, workdir):
        with open(path, "rb") as f:
            m = re.search(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----",
                          f.read(), re.S)
        if not m:
            raise ValueError("%s holds no PEM certificate" % path)
        der = base64.b64decode(b"".join(m.group(1).split()))
        self.x5t = b64url(hashlib.sha1(der).digest())
        self.workdir = workdir
        self.pubkey = os.path.join(workdir, "client-pubkey-%s.pem"
                                   % hashlib.sha256(self.x5t.encode()).hexdigest()[:16])
        out = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", path],
                             capture_output=True, timeout=30, check=True).stdout
        with open(self.pubkey, "wb") as f:
            f.write(out)

    def verify(self, data, signature):
        """True if signature is a good RS256 signature of data."""
        paths = []
        try:
            for blob in (data, signature):
                fd, path = tempfile.mkstemp(dir=self.workdir)
                paths.append(path)
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
            return subprocess.run(["openssl", "dgst", "-sha256", "-verify", self.pubkey,
                                   "-signature", paths[1], paths[0]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=30).returncode == 0
        finally:
            for path in paths:
                os.unlink(path)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_assertion(form, audience, certs, now):
    """Azure AD's checks of a client_credentials request with a client
    assertion.  Returns (None, jti) when it is good, else ((status, AADSTS
    code, description), None).  No description quotes the assertion."""
    if "client_secret" in form or form.get("client_assertion_type") != JWT_BEARER:
        return (400, 9002313, "Invalid request. Request is malformed or invalid: send "
                "client_assertion_type=%s and a client_assertion, and no client_secret."
                % JWT_BEARER), None
    if not certs:
        return (401, 700027, "Client assertion failed signature validation. No "
                "certificate is registered for the application."), None
    parts = form.get("client_assertion", "").split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three parts")
        header, claims = (json.loads(b64url_decode(p)) for p in parts[:2])
        signature = b64url_decode(parts[2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("not objects")
    except (ValueError, RecursionError):
        return (400, 50027, "JWT token is invalid or malformed."), None
    typ = header.get("typ")
    if typ is not None and not (isinstance(typ, str) and typ.upper() == "JWT"):
        return (400, 50027, "JWT token is invalid or malformed: typ must be JWT."), None
    if header.get("alg") != "RS256":
        return (401, 700027, "Client assertion failed signature validation. The signing "
                "algorithm must be RS256."), None
    cert = certs.get(header.get("x5t")) if isinstance(header.get("x5t"), str) else None
    if cert is None:
        return (401, 700027, "Client assertion failed signature validation. [Reason - The "
                "key was not found.] The certificate thumbprint (x5t) is not registered "
                "for the application."), None
    if not cert.verify((parts[0] + "." + parts[1]).encode(), signature):
        return (401, 700027, "Client assertion failed signature validation."), None
    if claims.get("iss") != APP_CLIENT_ID or claims.get("sub") != APP_CLIENT_ID:
        return (401, 700016, "The application named by the assertion's iss and sub claims "
                "was not found in the directory."), None
    if form.get("client_id", APP_CLIENT_ID) != APP_CLIENT_ID:
        return (401, 700021, "Client assertion application identifier doesn't match "
                "'client_id' parameter."), None
    if claims.get("aud") != audience:
        return (401, 700023, "Client assertion audience claim does not match Realm "
                "issuer: aud must be the token endpoint URL."), None
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if (not _is_number(exp) or not now < exp <= now + 86400
            or (nbf is not None and not (_is_number(nbf) and nbf <= now + 300))):
        return (401, 700024, "Client assertion is not within its valid time range."), None
    jti = claims.get("jti")
    if not (isinstance(jti, str) and jti):
        return (400, 50027, "JWT token is invalid or malformed: the jti claim is "
                "missing."), None
    return None, jti


# --------------------------------------------------------------------------
# HTTP


def _intern(v):
    return sys.intern(v) if v is not None and len(v) < 256 else v


class Headers(dict):
    """Request headers, keys stored lower-case; get() is case-insensitive."""

    def get(self, key, default=None):
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key):
        return dict.get(self, key.lower())

    def __contains__(self, key):
        return dict.__contains__(self, key.lower())


class Drop(Exception):
    """Close the connection without answering."""


def set_kernel_timeouts(sock):
    """Idle keep-alive connections, stuck TLS handshakes and stuck writes give
    up after IDLE_TIMEOUT seconds.  SO_RCVTIMEO/SO_SNDTIMEO on a blocking
    socket cost nothing per call, unlike socket.settimeout(), which adds a
    poll() before every recv() and send()."""
    tv = struct.pack("ll", IDLE_TIMEOUT, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pc-emulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = None        # see setup(): kernel timeouts instead of Python's
    state = None          # set on the class by open_listeners()
    scheme = "http"       # "https" on the TLS listeners (for a client assertion's aud)

    def setup(self):
        set_kernel_timeouts(self.request)
        super().setup()

    # -- quiet ------------------------------------------------------------
    def log_message(self, format, *args):
        pass

    def log_request(self, code="-", size="-"):
        pass

    def log_error(self, format, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except CONNECTION_ERRORS:
            self.close_connection = True
        except OSError:
            self.close_connection = True

    # -- request parsing (cheaper than the email-based default) -------------
    def parse_request(self):
        self.command = None
        self.request_version = "HTTP/1.1"      # for error answers
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) != 3:
            self.send_error(400, "Bad request syntax (%r)" % requestline)
            return False
        command, path, version = words
        if not version.startswith("HTTP/1.") or version not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(505 if version.startswith("HTTP/") else 400,
                            "Unsupported HTTP version (%r)" % version)
            return False
        self.command, self.path, self.request_version = command, path, version
        headers = Headers()
        rfile = self.rfile
        last = None
        for _ in range(101):
            line = rfile.readline(65537)
            if not line:
                return False                       # client went away
            if len(line) > 65536:
                self.send_error(431, "Line too long")
                return False
            if line == b"\r\n" or line == b"\n":
                break
            s = line.decode("iso-8859-1").rstrip("\r\n")
            if not s:
                break
            if s[0] in " \t" and last is not None:   # obsolete line folding
                headers[last] = headers[last] + " " + s.strip()
                continue
            name, sep, value = s.partition(":")
            if not sep or not name or name != name.strip():
                self.send_error(400, "Bad header line")
                return False
            name = name.lower()
            value = value.strip(" \t")
            if name in headers:
                headers[name] = dict.get(headers, name) + ", " + value
            else:
                headers[name] = value
            last = name
        else:
            self.send_error(431, "Too many headers")
            return False
        self.headers = headers
        conn = dict.get(headers, "connection", "").lower()
        if version == "HTTP/1.1":
            self.close_connection = "close" in conn
        else:
            self.close_connection = "keep-alive" not in conn
        if (dict.get(headers, "expect", "").lower() == "100-continue"
                and version == "HTTP/1.1"):
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    # -- responses ------------------------------------------------------------
    def send(self, status, body=b"", ctype=JSON, extra=(), echo_ids=False):
        self.leave_flight()
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown")),
                 "Date: " + http_date()]
        if ctype and (body or status < 300):
            lines.append("Content-Type: " + ctype)
        lines.append("Content-Length: %d" % len(body))
        for k, v in extra:
            lines.append("%s: %s" % (k, v))
        if echo_ids:
            h = self.headers
            for name, key in (("MS-CorrelationId", "ms-correlationid"),
                              ("MS-RequestId", "ms-requestid")):
                v = dict.get(h, key)
                if v is not None:
                    lines.append("%s: %s" % (name, v))
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            body = b""
        if len(body) <= 65536:
            self.wfile.write(head + body)
        else:
            self.wfile.write(head)
            self.wfile.write(body)

    def send_json(self, status, obj, **kw):
        self.send(status, json.dumps(obj).encode(), **kw)

    # -- body ------------------------------------------------------------
    def read_body(self):
        """Read the request body; None (and the connection marked for closing)
        when it is unreadable."""
        h = self.headers
        te = dict.get(h, "transfer-encoding", "").lower()
        if "chunked" in te:
            parts, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        cl = dict.get(h, "content-length")
        if cl is None:
            return b""
        try:
            n = int(cl)
        except ValueError:
            return None
        if n < 0 or n > MAX_BODY:
            return None
        if n == 0:
            return b""
        data = self.rfile.read(n)
        if len(data) != n:
            return None
        return data

    # -- dispatch ------------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def begin(self):
        """Start a request: time, query, body.  Returns (path, query, body),
        or None when the body was unreadable (and that has been answered)."""
        self.t0 = time.time()
        self.log_body = None
        path, sep, query = self.path.partition("?")
        self.query = query if sep else None
        body = self.read_body()
        if body is None:
            self.close_connection = True
            self.send(413 if dict.get(self.headers, "content-length", "0").isdigit() else 400,
                      pc_error(400, "Unreadable request body."))
            return None
        return path, query, body

    def dispatch(self):
        begun = self.begin()
        if begun is None:
            return
        path, query, body = begun
        control = path.startswith("/_emulator/") or path == "/_emulator"
        if not control:
            self.state.begin_request()
        try:
            if path.startswith("/v1/"):
                self.log_body = body_text(body)
                self.api(path, query, body)
            elif control:
                self.control(path, query, body)
            else:
                self.log_body = form_keys(body)
                parts = path.split("/")
                if (len(parts) == 4 and parts[1] and parts[2] == "oauth2"
                        and parts[3] == "token"):
                    self.token(unquote(parts[1]), path, body)
                else:
                    self.answer("other", None, None, 404, NOT_FOUND)
        except Drop:
            self.close_connection = True
        finally:
            if not control:
                self.state.end_request()

    def entry(self, kind, tenant, status, auth):
        h = self.headers
        # values that repeat from request to request are interned: the log
        # then costs about 500 bytes a request
        return (self.t0, _intern(self.command), self.path, kind, tenant, status,
                _intern(auth), dict.get(h, "ms-correlationid"), dict.get(h, "ms-requestid"),
                _intern(dict.get(h, "ms-partnercenter-application")),
                _intern(dict.get(h, "user-agent")), _intern(dict.get(h, "accept")),
                _intern(dict.get(h, "content-type")), self.log_body,
                dict.get(h, "ms-continuationtoken"), self.query,
                _intern(dict.get(h, "ms-contract-version")))

    def answer(self, kind, tenant, auth, status, body=b"", ctype=JSON, extra=(),
               echo_ids=False):
        """Record, then send (so the log is complete once the client has the answer)."""
        self.state.record(self.entry(kind, tenant, status, auth), kind, status)
        self.send(status, body, ctype, extra, echo_ids)

    def drop(self, kind, tenant, auth, status=None):
        """Record (status None: a dropped connection), then close without answering."""
        self.state.record(self.entry(kind, tenant, status, auth), kind, status)
        raise Drop()

    # -- token endpoint ------------------------------------------------------
    def token(self, partner_tenant, path, body):
        st = self.state
        latency = st.config["token_latency_ms"]
        if latency > 0:
            time.sleep(latency / 1000.0)
        if partner_tenant.lower() == REDIRECT_PARTNER:
            return self.answer("token", partner_tenant, None, 307, b"",
                               extra=(("Location", st.redirect_url("/stolen-token")),
                                      ("Cache-Control", "no-store, no-cache")))
        if self.command != "POST":
            return self.answer("token", partner_tenant, None, 405,
                               json.dumps({"error": "invalid_request", "error_description":
                                           "AADSTS900561: The endpoint only accepts POST "
                                           "requests."}).encode(),
                               extra=(("Allow", "POST"),))
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if "client_assertion" in form or "client_assertion_type" in form:
                return self.assertion_grant(partner_tenant, path, form)
            if (form.get("client_id") != APP_CLIENT_ID
                    or form.get("client_secret") != APP_CLIENT_SECRET):
                return self.token_reply(partner_tenant, grant, 401, AAD_INVALID_CLIENT)
            return self.app_token(partner_tenant, grant, form)
        if grant == "refresh_token":
            if "client_id" in form and form["client_id"] != APP_CLIENT_ID:
                return self.token_reply(partner_tenant, grant, 401, AAD_INVALID_CLIENT)
            if "client_secret" in form and form["client_secret"] != APP_CLIENT_SECRET:
                return self.token_reply(partner_tenant, grant, 401, AAD_INVALID_CLIENT)
            refresh, error = st.redeem_refresh(form.get("refresh_token"))
            if error is not None:
                return self.token_reply(partner_tenant, grant, 400, error)
            st.count("refresh_grants")
            token, life = st.issue(True, partner_tenant, form.get("resource"), form.get("scope"))
            return self.token_success(partner_tenant, grant, {
                "token_type": "Bearer", "expires_in": life, "access_token": token,
                "refresh_token": refresh, "scope": form.get("scope") or "user_impersonation"})
        return self.token_reply(partner_tenant, grant, 400, AAD_UNSUPPORTED_GRANT)

    def token_reply(self, partner_tenant, label, status, payload, ctype=TOKEN_JSON):
        self.answer("token", partner_tenant, label, status, payload, ctype,
                    extra=(("Cache-Control", "no-store, no-cache"),))

    def app_token(self, partner_tenant, label, form):
        if "resource" not in form:
            return self.token_reply(partner_tenant, label, 400, AAD_NO_RESOURCE)
        token, life = self.state.issue(False, partner_tenant, form["resource"])
        self.token_success(partner_tenant, label, {
            "token_type": "Bearer", "expires_in": str(life), "ext_expires_in": str(life),
            "access_token": token, "resource": form["resource"]})

    def token_success(self, partner_tenant, label, doc):
        """A 200 token answer, spoilt as config token_fault says."""
        fault = self.state.config["token_fault"]
        if fault == "unavailable":
            return self.token_reply(partner_tenant, label, 503, AAD_UNAVAILABLE)
        if fault == "non_json":
            return self.token_reply(partner_tenant, label, 200, TOKEN_FAULT_HTML, HTML)
        if fault == "no_token":
            del doc["access_token"]
        elif fault == "crlf":
            doc["access_token"] += CRLF_INJECTION
        self.token_reply(partner_tenant, label, 200, json.dumps(doc).encode())

    def assertion_grant(self, partner_tenant, path, form):
        st = self.state
        label = "client_credentials+assertion"
        host = dict.get(self.headers, "host") or "%s:%d" % (st.url_host,
                                                            self.server.server_port)
        audience = "%s://%s%s" % (self.scheme, host, path)
        error, jti = check_assertion(form, audience, st.certs, time.time())
        if error is None and not st.first_use(st.jtis, jti):
            error = (401, 50013, "Assertion is invalid: the assertion (jti) was already used.")
        if error is not None:
            status, code, text = error
            return self.token_reply(partner_tenant, label, status,
                                    aad_error("invalid_client", code, text))
        st.count("assertion_grants")
        self.app_token(partner_tenant, label, form)

    # -- Partner Center API -------------------------------------------------
    def api(self, path, query, body):
        st = self.state
        cfg = st.config
        limit = cfg["throttle_inflight"]
        parts = path.split("/")
        tenant = None
        if len(parts) >= 4 and parts[2] == "customers":
            tenant = parts[3]
            if "%" in tenant:
                tenant = unquote(tenant)
        authz = dict.get(self.headers, "authorization")
        token = None
        if authz is not None:
            scheme, _, rest = authz.partition(" ")
            token = rest.strip() if scheme.lower() == "bearer" else authz

        with st.flight_lock:
            st.in_flight += 1
            n = st.in_flight
            throttled = limit > 0 and n > limit
            if throttled:
                st.in_flight -= 1
            elif n > st.max_in_flight:
                st.max_in_flight = n
        if throttled:
            with st.lock:
                st.throttled += 1
            ra = cfg["throttle_retry_after"]
            self.answer("api", tenant, token, 429, throttle_body(ra),
                        extra=(("Retry-After", str(ra)),), echo_ids=True)
            return
        self.in_flight_counted = True
        try:
            latency = cfg["latency_ms"]
            if latency > 0:
                time.sleep(latency / 1000.0)
            self.api_inner(parts, query, body, tenant, token)
        finally:
            self.leave_flight()

    def leave_flight(self):
        """A request stops counting as in flight once its answer starts going
        out, so a client's next request never overlaps it in the counters."""
        if getattr(self, "in_flight_counted", False):
            self.in_flight_counted = False
            with self.state.flight_lock:
                self.state.in_flight -= 1

    def api_inner(self, parts, query, body, tenant, token):
        st = self.state
        info = st.token_info(token) if token is not None else None
        if info is None:
            self.answer("api", tenant, token, 401, AUTH_FAILED,
                        extra=(("WWW-Authenticate", 'Bearer error="invalid_token"'),),
                        echo_ids=True)
            return
        cfg = st.config
        if cfg["require_mfa"] and info[0] and not info[1]:
            self.answer("api", tenant, token, 401, MFA_REQUIRED,
                        extra=(("WWW-Authenticate", 'Bearer error="insufficient_claims"'),),
                        echo_ids=True)
            return
        if (cfg["require_contract_version"]
                and dict.get(self.headers, "ms-contract-version") != "v1"):
            return self.answer("api", tenant, token, 400, CONTRACT_VERSION_REQUIRED,
                               echo_ids=True)
        method = self.command
        get = method in ("GET", "HEAD")
        if len(parts) == 5 and parts[2] == "customers" and parts[3]:
            if parts[4] == "qualifications":
                if get:
                    return self.get_qualifications(tenant, token)
                if method == "POST":
                    return self.post_qualification(tenant, token, query, body)
                return self.not_allowed(tenant, token, "GET, POST")
            if parts[4] == "validations" and tenant.lower() == "all":
                if get:
                    return self.validations(tenant, token)
                return self.not_allowed(tenant, token, "GET")
            if parts[4] == "validations":
                if get:
                    return self.customer_validations(tenant, token)
                return self.not_allowed(tenant, token, "GET")
            if parts[4] == "validationStatus":
                if get:
                    return self.validation_status(tenant, token, query)
                return self.not_allowed(tenant, token, "GET")
        elif len(parts) == 3 and parts[2] == "customers":
            if get:
                return self.customer_list(token, query)
            return self.not_allowed(tenant, token, "GET")
        self.answer("api", tenant, token, 404, NOT_FOUND, echo_ids=True)

    def not_allowed(self, tenant, token, allow):
        self.answer("api", tenant, token, 405, pc_error(405, "Method not allowed."),
                    extra=(("Allow", allow),), echo_ids=True)

    def fixture_answer(self, tenant, token, fx):
        status, payload = fx[0], fx[1]
        ctype = fx[2] if len(fx) > 2 else JSON
        extra = fx[3] if len(fx) > 3 else ()
        self.answer("api", tenant, token, status, payload, ctype, extra, echo_ids=True)

    def api_error(self, tenant, token, status, code, description):
        self.answer("api", tenant, token, status, pc_error(code, description), echo_ids=True)

    def redirect(self, tenant, token):
        self.answer("api", tenant, token, 302, b"",
                    extra=(("Location", self.state.redirect_url("/stolen")),), echo_ids=True)

    def get_qualifications(self, tenant, token):
        key = tenant.lower()
        st = self.state
        if st.overrides:
            fx = st.overrides.get(key, {}).get("qualifications")
            if fx is not None:
                return self.fixture_answer(tenant, token, fx)
        fx = FIXTURES.get(key)
        if fx is not None:
            return self.fixture_answer(tenant, token, fx)
        steps = RETRY_FIXTURES.get(key)
        if steps is not None:
            n = st.attempt(key)
            step = steps[min(n, len(steps)) - 1]
            if step == "drop":
                self.drop("api", tenant, token)
            if callable(step):
                step = step()
            return self.fixture_answer(tenant, token, step)
        if key == STREAM_TENANT:
            return self.stream(tenant, token)
        if key == DROP_TENANT:
            self.drop("api", tenant, token)
        if key == TRUNCATE_TENANT:
            self.truncated(tenant, token)
        if key == SLOW_TENANT:
            self.wait_or_drop(SLOW_SECONDS, tenant, token)
            return self.fixture_answer(tenant, token, FIXTURES[P1 + "01"])
        if key == REDIRECT_TENANT:
            return self.redirect(tenant, token)
        if not GUID_RE.match(tenant):
            return self.answer("api", tenant, token, 400, INVALID_CUSTOMER, echo_ids=True)
        if key.startswith("fa11"):
            return self.answer("api", tenant, token, 404, TENANT_NOT_FOUND, echo_ids=True)
        if key.startswith(BULK_PREFIX):
            return self.fixture_answer(tenant, token, bulk_answer(key, st.config))
        created = st.created.get(key)
        if created:
            return self.answer("api", tenant, token, 200, json.dumps(created).encode(),
                               echo_ids=True)
        return self.answer("api", tenant, token, 200, GENERIC_OK, echo_ids=True)

    def truncated(self, tenant, token):
        """200 with Content-Length: 1000, 10 bytes of body, then the connection closes."""
        self.state.record(self.entry("api", tenant, 200, token), "api", 200)
        self.close_connection = True
        self.wfile.write(("HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: application/json\r\n"
                          "Content-Length: 1000\r\n\r\n" % http_date()).encode()
                         + b'[{"qualifi')     # 10 of the 1000 bytes
        raise Drop()

    def stream(self, tenant, token):
        """Chunked, endless (2 GB) array of Education items."""
        self.state.record(self.entry("api", tenant, 200, token), "api", 200)
        payload = b'{"qualification":"Education"},' * 2048
        chunk = b"%x\r\n" % len(payload) + payload + b"\r\n"
        w = self.wfile
        w.write(("HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n" % http_date()).encode())
        sent = 1
        while sent < STREAM_LIMIT:
            w.write(chunk)
            sent += len(payload)
        last = b'{"qualification":"Education"}]'
        w.write(b"%x\r\n" % len(last) + last + b"\r\n0\r\n\r\n")

    def wait_or_drop(self, seconds, tenant, token):
        """Wait; if the client leaves meanwhile, log 499 (nginx's "client
        closed request") and close without answering."""
        if not self.wait_unless_disconnected(seconds):
            self.drop("api", tenant, token, 499)

    def wait_unless_disconnected(self, seconds):
        """Sleep in 50 ms steps; False as soon as the peer has closed."""
        sock = self.connection
        tls = isinstance(sock, ssl.SSLSocket)
        hangup = select.POLLERR | select.POLLHUP
        if tls:
            hangup |= select.POLLRDHUP
        poller = select.poll()
        poller.register(sock, select.POLLIN | hangup)
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            step = min(0.05, left)
            events = poller.poll(step * 1000)
            if not events:
                continue
            if events[0][1] & hangup:
                return False
            if tls:                # TLS records (a pipelined request, an alert): wait on
                time.sleep(step)
                continue
            try:
                data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return False
            if not data:
                return False
            time.sleep(step)       # pipelined bytes: not a disconnect; keep waiting

    # -- create a qualification ------------------------------------------------
    def refuse_app_only(self, tenant, token):
        """An App-only token: answer 403 900329 and return True."""
        if self.state.is_user_token(token):
            return False
        self.answer("api", tenant, token, 403, APP_ONLY_REFUSED, echo_ids=True)
        return True

    def post_qualification(self, tenant, token, query, body):
        if self.refuse_app_only(tenant, token):
            return
        key = tenant.lower()
        if not GUID_RE.match(tenant):
            return self.answer("api", tenant, token, 400, INVALID_CUSTOMER, echo_ids=True)
        if key == REDIRECT_TENANT:
            return self.redirect(tenant, token)
        fx = POST_ERRORS.get(key)
        if fx is None:
            fx = self.state.overrides.get(key, {}).get("qualifications")
            fx = fx if fx is not None and fx[0] >= 400 else None
        if fx is not None:
            return self.fixture_answer(tenant, token, fx)
        if key.startswith("fa11"):
            return self.answer("api", tenant, token, 404, TENANT_NOT_FOUND, echo_ids=True)
        st = self.state
        rid = dict.get(self.headers, "ms-requestid")
        with st.write_lock:
            done = st.answers.get((key, rid)) if rid is not None else None
            if done is not None:
                st.count("post_replays")
            elif key == RETRY_ONCE_TENANT and (rid is None
                                               or st.first_use(st.request_ids, (key, rid))):
                done = (503, SERVICE_UNAVAILABLE)
            else:
                done = self.create(key, query, body)
                if rid is not None:
                    st.answers[(key, rid)] = done
        self.fixture_answer(tenant, token, done)

    def create(self, key, query, body):
        """Validate and create; returns the answer (status, body).  Called
        with the state's write_lock held."""
        ctype = dict.get(self.headers, "content-type", "")
        if ctype.partition(";")[0].strip().lower() != JSON:
            return 415, pc_error(600050, "Unsupported media type: the Content-Type must "
                                         "be application/json.")
        try:
            doc = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            return 400, pc_error(600010, "The request body is not a JSON object.")
        problem = self.body_problem(doc, query)
        if problem is not None:
            return 400, problem
        st = self.state
        canon = QUALIFICATIONS[doc["qualification"].lower()]
        held = [item["qualification"] for item in st.created.get(key, ())]
        if canon in held or EXCLUSIVE.get(canon) in held:
            return 409, pc_error(600040, "The customer already has the qualification %s%s." % (
                canon if canon in held else EXCLUSIVE[canon],
                "" if canon in held else ", which excludes " + canon))
        if canon == "GovernmentCommunityCloud":
            code = gcc_code(doc, query)
            find_validation(st.validations, code)["remainingCreates"] -= 1
            st.links[key] = code
        item = {"qualification": canon}
        if canon != "StateOwnedEntity":
            item["vettingStatus"] = "InReview"
            item["vettingCreatedDate"] = iso_time(time.time())
        st.created[key] = st.created.get(key, []) + [item]
        st.count("qualifications_created")
        if key.startswith(REST_SHAPE_PREFIX):
            return 200, json.dumps({"qualifications": st.created[key]}).encode()
        return 201, json.dumps(item).encode()

    def body_problem(self, doc, query):
        """What is wrong with a create request's JSON object: a PC error body
        (for a 400), or None."""
        for k, v in doc.items():
            if k not in POST_FIELDS:
                return pc_error(600014, "Unknown field '%s'. Allowed fields: %s."
                                % (k, ", ".join(POST_FIELDS)))
            if v is None:
                return pc_error(600015, "The field '%s' must not be null; omit it." % k)
            if not isinstance(v, str):
                return pc_error(600016, "The field '%s' must be a string." % k)
        q = doc.get("qualification")
        canon = QUALIFICATIONS.get(q.lower()) if q is not None else None
        if canon is None:
            return pc_error(600011, "Invalid qualification. Expected Education, "
                                    "GovernmentCommunityCloud or StateOwnedEntity.")
        for k in doc:
            if k != "qualification" and k not in EXTRA_FIELDS[canon]:
                return pc_error(600018, "The field '%s' is not allowed for %s." % (k, canon))
        if canon == "Education" and doc.get("educationSegment") not in EDUCATION_SEGMENTS:
            return pc_error(600017, "Education needs educationSegment K12 or "
                                    "HigherEducation.")
        if canon == "GovernmentCommunityCloud":
            code = gcc_code(doc, query)
            if not code:
                return pc_error(600013, "A validation code is required for "
                                        "GovernmentCommunityCloud.")
            v = find_validation(self.state.validations, code)
            if v is None:
                return pc_error(600019, "The validation code is not one of the partner's "
                                        "validation codes.")
            if v["remainingCreates"] <= 0:
                return pc_error(600020, "The validation code has no creates left.")
        return None

    # -- a customer's validation status and linked validation code ----------------
    def customer_endpoint(self, endpoint, tenant, token, normal):
        """A GET of a customer's validationStatus or validations: an override
        (/_emulator/customer), the 22222222- fault tenants, the 33333333-
        retry tenants (their 200 steps answer normal), not a GUID: 400,
        fa11...: 404, else normal(lower-case tenant) -> (status, body)."""
        key = tenant.lower()
        st = self.state
        fx = st.overrides.get(key, {}).get(endpoint) if st.overrides else None
        if fx is not None:
            return self.fixture_answer(tenant, token, fx)
        fx = ENDPOINT_FAULTS[endpoint].get(key)
        if fx is not None:
            return self.fixture_answer(tenant, token, fx)
        steps = RETRY_FIXTURES.get(key)
        if steps is not None:
            n = st.attempt((endpoint, key))
            step = steps[min(n, len(steps)) - 1]
            if step == "drop":
                self.drop("api", tenant, token)
            if callable(step):
                step = step()
            return self.fixture_answer(tenant, token, normal(key) if step[0] == 200 else step)
        if key == STREAM_TENANT:
            return self.stream(tenant, token)
        if key == DROP_TENANT:
            self.drop("api", tenant, token)
        if key == TRUNCATE_TENANT:
            self.truncated(tenant, token)
        if key == SLOW_TENANT:
            self.wait_or_drop(SLOW_SECONDS, tenant, token)
            return self.fixture_answer(tenant, token, normal(key))
        if key == REDIRECT_TENANT:
            return self.redirect(tenant, token)
        if not GUID_RE.match(tenant):
            return self.answer("api", tenant, token, 400, INVALID_CUSTOMER, echo_ids=True)
        if key.startswith("fa11"):
            return self.answer("api", tenant, token, 404, TENANT_NOT_FOUND, echo_ids=True)
        return self.fixture_answer(tenant, token, normal(key))

    def validation_status(self, tenant, token, query):
        self.state.count("validation_status_requests")
        if self.refuse_app_only(tenant, token):
            return
        if dict(parse_qsl(query or "", keep_blank_values=True)).get("type") != "account":
            return self.answer("api", tenant, token, 400, BAD_VALIDATION_TYPE, echo_ids=True)
        self.customer_endpoint("validationStatus", tenant, token,
                               lambda key: (200, validation_status_body(key)))

    def customer_validations(self, tenant, token):
        st = self.state
        st.count("customer_validations_requests")

        def linked(key):
            code = st.links.get(key) or (LINKED_CODE if key.startswith(LINKED_PREFIX) else None)
            with st.lock:
                validations = [dict(v) for v in st.validations]
            items = [customer_validation(key, code, validations)] if code else []
            return 200, json.dumps(items).encode()

        self.customer_endpoint("validations", tenant, token, linked)

    # -- validation codes and the customer list ---------------------------------
    def validations(self, tenant, token):
        st = self.state
        shape = st.config["validations_shape"]
        with st.lock:
            items = [dict(v) for v in st.validations]
        st.count("validations_requests")
        doc = {"array": items, "wrapped": {"totalCount": len(items), "items": items},
               "empty": []}[shape]
        self.answer("api", tenant, token, 200, json.dumps(doc).encode(), echo_ids=True)

    def customer_list(self, token, query):
        params = dict(parse_qsl(query, keep_blank_values=True))
        seek = params.get("seekOperation")
        if seek is not None:
            cont = None
            if seek.lower() == "next":
                cont = read_continuation(dict.get(self.headers, "ms-continuationtoken"))
            if cont is None:
                return self.api_error(None, token, 400, 400, "seekOperation=Next needs the "
                                      "MS-ContinuationToken of the previous page.")
            offset, size, flt = cont
        else:
            offset, size, flt = 0, DEFAULT_PAGE_SIZE, None
            if "filter" in params:
                flt = parse_customer_filter(params["filter"])
                if flt is None:
                    return self.api_error(None, token, 400, 400, "Invalid filter: expected "
                                          '{"Field": "CompanyName" or "Domain", "Value": '
                                          '"...", "Operator": "starts_with"}.')
        raw = params.get("size")
        if raw is not None:
            size = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 6 else 0
            if not 1 <= size <= MAX_PAGE_SIZE:
                return self.api_error(None, token, 400, 400, "size must be between 1 and %d."
                                      % MAX_PAGE_SIZE)
        if seek is not None:
            delay = self.state.config["customers_page_latency_ms"]
            if delay > 0:
                self.wait_or_drop(delay / 1000.0, None, token)
        everyone = customers(self.state.config["customer_count"])
        matches = everyone if flt is None else [
            c for c in everyone if c[flt[0]].startswith(flt[1])]
        page = matches[offset:offset + size]
        links = {"self": {"uri": self.path, "method": "GET", "headers": []}}
        if offset + size < len(matches):
            links["next"] = {"uri": "/v1/customers?size=%d&seekOperation=Next" % size,
                             "method": "GET", "headers": [
                                 {"key": "MS-ContinuationToken",
                                  "value": make_continuation(offset + size, size, flt)}]}
        body = b"".join((b'{"totalCount":%d,"items":[' % len(page),
                         b",".join(c[2] for c in page), b'],"links":', json.dumps(links).encode(),
                         b',"attributes":{"objectType":"Collection"}}'))
        self.state.count("customer_pages")
        self.answer("api", None, token, 200, body, echo_ids=True)

    # -- control API ------------------------------------------------------
    def control(self, path, query, body):
        st = self.state
        name = path[len("/_emulator/"):].rstrip("/")
        params = dict(parse_qsl(query, keep_blank_values=True))
        method = self.command
        if name == "health" and method in ("GET", "HEAD"):
            return self.send(200, b"ok", TEXT)
        if name == "reset" and method == "POST":
            st.wait_idle()
            st.reset()
            return self.send_json(200, {"reset": True, "config": st.config_json()})
        if name == "revoke" and method == "POST":
            return self.send_json(200, {"revoked": st.revoke()})
        if name == "config" and method in ("GET", "POST"):
            if method == "POST" and body:
                ctype = dict.get(self.headers, "content-type", "")
                try:
                    if "json" in ctype:
                        extra = config_params(json.loads(body))
                    else:
                        extra = dict(parse_qsl(body.decode(), keep_blank_values=True))
                except (ValueError, AttributeError, UnicodeDecodeError):
                    return self.send_json(400, {"error": "unreadable body"})
                params.update(extra)
            if params and method == "GET":
                return self.send_json(405, {"error": "use POST to change the config"},
                                      extra=(("Allow", "GET, POST"),))
            try:
                new = apply_config(st.config, params)
            except BadSetting as e:
                if not e.known:
                    return self.send_json(400, {"error": "unknown setting %r" % e.key,
                                                "settings": sorted(CONFIG_KEYS)})
                return self.send_json(400, {"error": "bad value for %s: %r" % (e.key, e.value),
                                            "expected": CONFIG_KEYS[e.key].expects})
            st.config = new
            return self.send_json(200, new)
        if name == "customer" and method in ("GET", "POST"):
            return self.customer_override(params.get("tenant", ""),
                                          body if method == "POST" else None)
        if name == "requests" and method == "GET":
            return self.send_requests(params)
        if name == "stats" and method == "GET":
            return self.send_json(200, st.stats())
        if name in CONTROL_ENDPOINTS:
            return self.send_json(405, {"error": "method not allowed"})
        return self.send_json(404, {"error": "unknown control endpoint",
                                    "endpoints": list(CONTROL_ENDPOINTS)})

    def customer_override(self, tenant, body):
        st = self.state
        key = tenant.lower()
        if not GUID_RE.match(key):
            return self.send_json(400, {"error": "tenant=<uuid> is required"})
        if body is not None:
            try:
                endpoints, answer = override_from(json.loads(body))
            except (ValueError, RecursionError) as e:
                problem = ("%s: %s" % (e.where or "body", e.text)
                           if isinstance(e, BadOverride) else "the body is not JSON")
                return self.send_json(400, {"error": 'expected {"qualifications": [...]}, '
                                                     '{"validation_status": ...}, '
                                                     '{"validations": ...}, '
                                                     '{"fail": 400..599} or {"clear": true}, '
                                                     'optionally with "endpoint"',
                                            "problem": problem})
            with st.lock:                               # replaced, never mutated
                st.overrides = with_override(st.overrides, key, endpoints, answer)
        mine = st.overrides.get(key, {})

        def shown(fx):
            return None if fx is None else {"status": fx[0],
                                            "body": fx[1].decode("utf-8", "replace")}

        return self.send_json(200, {"tenant": key, "override": shown(mine.get("qualifications")),
                                    "overrides": {e: shown(fx) for e, fx in mine.items()}})

    def send_requests(self, params):
        st = self.state
        with st.lock:
            entries = list(st.log)
        entries.sort(key=lambda e: e[0])
        try:
            since = int(params.get("since", "0") or 0)
        except ValueError:
            return self.send_json(400, {"error": "since must be an integer"})
        kind = params.get("kind")
        if since:
            entries = [e for e in entries if e[0] > since]
        if kind:
            entries = [e for e in entries if e[4] == kind]
        fmt = params.get("format", "copy")
        if fmt == "json":
            out = []
            for e in entries:
                d = dict(zip(LOG_FIELDS, e))
                d["time"] = iso_time(e[1])
                out.append(d)
            return self.send(200, json.dumps(out).encode())
        if fmt not in ("copy", "text"):
            return self.send_json(400, {"error": "format must be copy or json"})
        lines = ["\t".join(copy_field(e[i]) for i in COPY_COLUMNS) + "\n" for e in entries]
        self.send(200, "".join(lines).encode("utf-8"), TEXT)


class RedirectTargetHandler(Handler):
    """The redirect target (P+5): answers everything 200 and records it."""

    def dispatch(self):
        begun = self.begin()
        if begun is None:
            return
        self.log_body = form_keys(begun[2])
        self.state.count("redirect_target_requests")
        self.answer("redirect-target", None, dict.get(self.headers, "authorization"), 200,
                    REDIRECTED)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    quiet = False
    state = None
    ssl_context = None

    def server_bind(self):
        # skip HTTPServer.server_bind's getfqdn() (a DNS lookup)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address):
        self.state.connections += 1          # only the accept threads write this
        # One thread per connection, like ThreadingMixIn, but started with
        # _thread so the accept loop does not wait for the new thread to get
        # the GIL (threading.Thread.start() does, which makes a burst of 256
        # new connections take seconds to accept when the CPU is busy).
        # These threads are daemonic: nothing waits for them at exit.
        _thread.start_new_thread(self.process_request_thread, (request, client_address))

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.quiet:
            return
        super().handle_error(request, client_address)


class TLSServer(Server):
    """The same app over HTTPS.  The handshake runs in the connection's own
    thread, never in the accept loop."""

    def process_request_thread(self, request, client_address):
        try:
            set_kernel_timeouts(request)
            request = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            self.shutdown_request(request)    # a failed wrap has closed the socket already
            return
        super().process_request_thread(request, client_address)


def tls_context(tls_dir, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(tls_dir, name + ".crt"),
                        os.path.join(tls_dir, name + ".key"))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def listener_specs(state, tls_dir=None):
    """(port offset, server class, handler class, TLS context) of every listener."""
    plain = type("BoundHandler", (Handler,), {"state": state})
    specs = [(0, Server, plain, None)]
    if tls_dir:
        https = type("TLSHandler", (Handler,), {"state": state, "scheme": "https"})
        specs += [(i, TLSServer, https, tls_context(tls_dir, name))
                  for i, name in enumerate(TLS_CERTS, 1)]
    target = type("TargetHandler", (RedirectTargetHandler,), {"state": state})
    specs.append((REDIRECT_OFFSET, Server, target, None))
    return specs


def bind_block(host, port, specs, quiet):
    """Bind every listener at port + offset (port 0: the first picks)."""
    servers = []
    try:
        for offset, cls, handler, ctx in specs:
            p = servers[0].server_port + offset if servers else port
            if ":" in host:
                cls = type(cls.__name__ + "6", (cls,), {"address_family": socket.AF_INET6})
            try:
                srv = cls((host, p), handler)
            except (OSError, OverflowError) as e:
                raise OSError("cannot listen on %s:%d: %s" % (host, p, e)) from None
            srv.state, srv.quiet, srv.ssl_context = handler.state, quiet, ctx
            servers.append(srv)
    except OSError:
        for srv in servers:
            srv.server_close()
        raise
    return servers


def open_listeners(host, port, state, tls_dir=None, quiet=False):
    """All listeners, the main one first; with port 0 a free block of
    PORT_BLOCK consecutive ports."""
    specs = listener_specs(state, tls_dir)
    for attempt in range(50 if port == 0 else 1, 0, -1):
        try:
            servers = bind_block(host, port, specs, quiet)
            break
        except OSError:
            if attempt == 1:
                raise
    base = servers[0].server_port
    state.url_host = "[%s]" % host if ":" in host else host
    state.ports = {"http": base, "redirect": base + REDIRECT_OFFSET}
    return servers


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_error(text):
    """Exit with status 2 before listening: one line on stderr."""
    sys.stderr.write("pc_emulator: %s\n" % text)
    sys.stderr.flush()
    sys.exit(2)


def main(argv=None):
    env_port = os.environ.get("PCQUAL_EMULATOR_PORT")
    try:
        default_port = int(env_port) if env_port else DEFAULT_PORT
    except ValueError:
        sys.exit("pc_emulator: PCQUAL_EMULATOR_PORT is not a number: %r" % env_port)
    ap = argparse.ArgumentParser(description="Partner Center emulator for pcqual tests")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=default_port,
                    help="TCP port P, 0 = a free block of %d ports (default "
                         "$PCQUAL_EMULATOR_PORT or %d); P+5 is the redirect target"
                         % (PORT_BLOCK, DEFAULT_PORT))
    ap.add_argument("--latency-ms", type=float, default=None,
                    help="delay added to every API request (default 0, or the "
                         "--fixtures file's latency_ms)")
    ap.add_argument("--tls-dir", metavar="DIR",
                    help="test/make-certs.sh's output: HTTPS on P+1..P+4, and DIR/client.crt "
                         "as the application's certificate")
    ap.add_argument("--client-cert", metavar="FILE", action="append",
                    help="an application's certificate for client assertions, repeatable "
                         "(default with --tls-dir: DIR/client.crt and, if present, "
                         "DIR/client-expiring.crt)")
    ap.add_argument("--fixtures", metavar="FILE",
                    help="a JSON file of customers' answers and settings, the start state "
                         "(again after /_emulator/reset)")
    ap.add_argument("--secret-file", metavar="PATH",
                    help="write the client secret there (mode 0600, replacing the file) "
                         "for pcqual.client_secret_file; removed at exit")
    ap.add_argument("--print-settings", action="store_true",
                    help="once listening, print the SQL that points pcqual at this "
                         "emulator (after the listening lines; only it with --quiet); "
                         "needs --secret-file")
    ap.add_argument("--settings-format", default="sql", metavar="sql|alter-database:DBNAME",
                    help="--print-settings as SET lines (sql, the default) or as "
                         "ALTER DATABASE DBNAME SET lines")
    ap.add_argument("--pid-file", metavar="PATH",
                    help="once listening (and the settings printed), write the process id "
                         "there; removed at exit")
    ap.add_argument("--quiet", action="store_true",
                    help="print nothing (but the settings of --print-settings)")
    args = ap.parse_args(argv)
    if not is_loopback(args.host):
        ap.error("--host must be a loopback address, not %r" % args.host)
    if args.latency_ms is not None and not (math.isfinite(args.latency_ms)
                                            and args.latency_ms >= 0):
        ap.error("--latency-ms must be a number >= 0")
    if args.print_settings and not args.secret_file:
        ap.error("--print-settings needs --secret-file PATH: pcqual reads the client secret "
                 "only from a file")
    fmt = args.settings_format
    if fmt != "sql" and not (fmt.startswith("alter-database:") and len(fmt) > 15):
        ap.error("--settings-format must be sql or alter-database:DBNAME, not %r" % fmt)
    host = "127.0.0.1" if args.host == "localhost" else args.host
    cert_paths = args.client_cert or []
    if not cert_paths and args.tls_dir:
        cert_paths = [os.path.join(args.tls_dir, name) for name in TLS_CLIENT_CERTS
                      if name == TLS_CLIENT_CERTS[0]
                      or os.path.exists(os.path.join(args.tls_dir, name))]

    config, overrides = default_config(), {}
    if args.fixtures:
        try:
            with open(args.fixtures, "rb") as f:
                data = f.read()
        except OSError as e:
            start_error("--fixtures %s: cannot read it: %s" % (args.fixtures, e.strerror or e))
        try:
            config, overrides = read_fixtures(data, config)
        except FixtureError as e:
            start_error("--fixtures %s: %s" % (args.fixtures, e))
    if args.latency_ms is not None:
        lat = args.latency_ms
        config["latency_ms"] = int(lat) if lat == int(lat) else lat

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workdir = tempfile.mkdtemp(prefix="pc_emulator-")
    servers = []
    made = []                  # (path, (st_dev, st_ino)): removed at exit
    status = 0
    try:
        certs = {}
        for cert_path in cert_paths:
            try:
                cert = ClientCert(cert_path, workdir)
            except (OSError, ValueError, subprocess.SubprocessError) as e:
                sys.exit("pc_emulator: cannot read the client certificate %s: %s"
                         % (cert_path, e))
            certs[cert.x5t] = cert
        if args.secret_file:
            try:
                made.append((args.secret_file,
                             write_private(args.secret_file, APP_CLIENT_SECRET + "\n")))
            except OSError as e:
                start_error("--secret-file %s: cannot write it: %s"
                            % (args.secret_file, e.strerror or e))
        state = State(config, certs, overrides)
        try:
            servers = open_listeners(host, args.port, state, args.tls_dir, args.quiet)
        except OSError as e:
            sys.exit("pc_emulator: %s" % e)
        status = serve(servers, state, args, made)
    finally:
        for srv in servers:
            srv.server_close()
        for path, ident in made:
            remove_own(path, ident)
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.quiet:
        print("pc_emulator stopped", flush=True)
    sys.stdout.flush()
    # daemon handler threads may still sit in recv()/sleep(): do not wait for them
    os._exit(status)


def serve(servers, state, args, made):
    """Announce (the listening lines, the settings, the pid file), then serve
    until SIGTERM or SIGINT: the main listener in this thread.  Returns the
    exit status."""
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.5},
                         daemon=True).start()
    h, base = state.url_host, state.ports["http"]
    if not args.quiet:
        also = ["https://%s:%d (%s)" % (h, base + i, name)
                for i, name in enumerate(TLS_CERTS, 1)] if args.tls_dir else []
        also.append("http://%s:%d (redirect target)" % (h, base + REDIRECT_OFFSET))
        print("pc_emulator listening on http://%s:%d" % (h, base), flush=True)
        print("pc_emulator also on " + " ".join(also), flush=True)
    if args.print_settings:
        print("\n".join(settings_lines("http://%s:%d" % (h, base), args.secret_file,
                                       args.settings_format)), flush=True)
    if args.pid_file:
        try:
            made.append((args.pid_file,
                         write_private(args.pid_file, "%d\n" % os.getpid(), 0o644)))
        except OSError as e:
            sys.stderr.write("pc_emulator: --pid-file %s: cannot write it: %s\n"
                             % (args.pid_file, e.strerror or e))
            return 2
    try:
        servers[0].serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    return 0


if __name__ == "__main__":
    main()
