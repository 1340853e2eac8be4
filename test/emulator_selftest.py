#!/usr/bin/env python3
"""Self-test of test/pc_emulator.py (standard library only).

    python3 test/emulator_selftest.py [-v]

Makes test certificates with test/make-certs.sh, starts the emulator with
--tls-dir on a free block of ports (--port 0) in a subprocess (plus a second
instance for the 10-second slow fixture, so that request does not disturb
the in-flight counters of the first) and checks its rules with http.client,
ssl and raw sockets; client assertions are signed with the openssl command.
Covers tokens (JWT-shaped App+User tokens with and without MFA, require_mfa,
refresh tokens expired by disuse), MS-Contract-Version, a customer's
validationStatus and linked validation code, the certificates
test/make-certs.sh makes (client-expiring.crt included), and what users'
own tests rely on: --fixtures (answers and config as written, again after
a reset; every kind of bad file ends it with status 2 and its message,
before it listens; the docstring's example file loads), --print-settings
(parsed: the real port, the --secret-file path, mode 0600), --pid-file,
and the command run as pcqual-emulator (a symbolic link on PATH) from
another directory.
Runs in about 17 seconds (the slow fixture and the bad files set the pace).
"""

import base64
import email.utils
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "pc_emulator.py")
MAKE_CERTS = os.path.join(HERE, "make-certs.sh")

P1 = "11111111-0000-0000-0000-0000000000"
P2 = "22222222-0000-0000-0000-000000000"
P3 = "33333333-0000-0000-0000-00000000000"
GENERIC = "8a4c2e10-5b7d-4f3e-9c21-0123456789ab"

APP_FORM = {"grant_type": "client_credentials", "client_id": "pcqual-test-app",
            "client_secret": "pcqual-test-secret",
            "resource": "https://api.partnercenter.microsoft.com"}
USER_FORM = {"grant_type": "refresh_token", "refresh_token": "pcqual-test-refresh",
             "client_id": "pcqual-test-app", "client_secret": "pcqual-test-secret",
             "resource": "https://api.partnercenter.microsoft.com", "scope": "openid"}

SEED_APPROVED = [{"qualification": "Education", "vettingStatus": "Approved"}]
GENERIC_OK = [{"qualification": "Education", "vettingStatus": "Approved",
               "vettingCreatedDate": "2021-01-01T00:00:00Z"}]
AUTH_FAILED = {"code": 900420, "description":
               "Authentication failed: the token is invalid or expired.",
               "data": [], "source": "PartnerFD"}
INVALID_CUSTOMER = {"code": 2001, "description": "Invalid customer id.", "data": [],
                    "source": "PartnerFD"}
NOT_FOUND = {"code": 60003, "description": "Tenant not found.", "data": [],
             "source": "PartnerFD"}
DEFAULT_CONFIG = {"latency_ms": 0, "token_latency_ms": 0, "throttle_inflight": 0,
                  "throttle_retry_after": 1,
                  "token_expires_in": 3600, "refresh_rotation_strict": False,
                  "token_fault": "", "validations_shape": "array",
                  "customers_page_latency_ms": 0, "sync_epoch": 0, "change_percent": 0,
                  "fail_percent": 0, "customer_count": 100, "token_mfa": True,
                  "require_mfa": False, "app_token_jwt": False, "jwt_header": "id",
                  "refresh_expired": False, "require_contract_version": False}
LOG_COLUMNS = 17
USER_TOKEN_RE = r"^emu-user-\d+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"


def free_port():
    """P such that P..P+5 (the emulator's block) are free: picked below the
    kernel's ephemeral range, which this test's own client sockets use."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(low - 10, 10100))
        try:
            for p in range(port, port + 6):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise RuntimeError("no free block of 6 ports")


def start_emulator(*args):
    """Start the emulator on port 0; returns (process, port, stderr file).
    The second line of its output (the other listeners) is proc.also."""
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, EMULATOR, "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=err)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline().decode() if ready else ""
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)$", line.strip())
    if not m:
        proc.kill()
        err.seek(0)
        raise RuntimeError("emulator did not start: %r %r" % (line, err.read()))
    proc.also = proc.stdout.readline().decode().strip()
    return proc, int(m.group(1)), err


def stop_emulator(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def copy_unescape(field):
    if field == "\\N":
        return None
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\",
                                       "b": "\b", "f": "\f", "v": "\v"}[m.group(1)], field)


def raw_exchange(port, request, read_limit=None, timeout=10):
    """Send raw bytes; read until EOF (or read_limit bytes); return the bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        out = b""
        while read_limit is None or len(out) < read_limit:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


class EmulatorTest(unittest.TestCase):
    CLI_LATENCY = 1     # the main instance starts with --latency-ms 1

    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="emulator-selftest-")
        subprocess.run(["bash", MAKE_CERTS, cls.certs], check=True, capture_output=True,
                       timeout=30)
        cls.proc, cls.port, cls.stderr = start_emulator(
            "--latency-ms", str(cls.CLI_LATENCY), "--tls-dir", cls.certs)
        # the slow fixture takes 10 s: start it now on its own instance and
        # check the result in test_zz_slow_fixture_full_wait
        cls.slow_proc, cls.slow_port, cls.slow_stderr = start_emulator()
        cls.slow_result = {}

        def slow():
            t = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", cls.slow_port, timeout=30)
            c.request("GET", "/v1/customers/%s611/qualifications" % P2,
                      headers={"Authorization": "Bearer pcqual-static-token"})
            r = c.getresponse()
            cls.slow_result.update(status=r.status, body=r.read(),
                                   elapsed=time.monotonic() - t)
            c.close()

        cls.slow_thread = threading.Thread(target=slow, daemon=True)
        cls.slow_thread.start()

    @classmethod
    def tearDownClass(cls):
        for proc in (cls.proc, cls.slow_proc):
            stop_emulator(proc)
            proc.stdout.close()
        cls.stderr.close()
        cls.slow_stderr.close()
        shutil.rmtree(cls.certs, ignore_errors=True)

    # -- helpers ------------------------------------------------------------
    def conn(self, port=None):
        return http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)

    def req(self, method, path, body=None, headers=None, token=None, conn=None):
        own = conn is None
        c = conn or self.conn()
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if isinstance(body, dict):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
        finally:
            if own:
                c.close()
        return r.status, r, data

    def get_q(self, tenant, token=None, **kw):
        return self.req("GET", "/v1/customers/%s/qualifications" % tenant,
                        token=self.token if token is None else token, **kw)

    def post_token(self, form, tenant="partner-tenant", conn=None):
        return self.req("POST", "/%s/oauth2/token" % tenant, body=urlencode(form),
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                        conn=conn)

    def new_token(self, form=APP_FORM):
        status, _, data = self.post_token(form)
        self.assertEqual(status, 200, data)
        return json.loads(data)["access_token"]

    def control(self, method, name, conn=None, port=None):
        c = conn or self.conn(port)
        c.request(method, "/_emulator/" + name)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        self.assertEqual(r.status, 200, data)
        return data

    def config(self, **settings):
        return json.loads(self.control("POST", "config?" + urlencode(settings)))

    def stats(self, conn=None):
        return json.loads(self.control("GET", "stats", conn=conn))

    def log_lines(self, query=""):
        text = self.control("GET", "requests" + query).decode()
        self.assertTrue(text == "" or text.endswith("\n"))
        return [line.split("\t") for line in text.splitlines()]

    def assertJson(self, r, data, expected):
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertEqual(int(r.getheader("Content-Length")), len(data))
        self.assertEqual(json.loads(data), expected)

    def setUp(self):
        self.control("POST", "reset")
        self.token = self.new_token()

    # -- control ---------------------------------------------------------------
    def test_health(self):
        status, r, data = self.req("GET", "/_emulator/health")
        self.assertEqual((status, data), (200, b"ok"))

    def test_config_subset_and_reset_to_cli_defaults(self):
        cfg = self.config(latency_ms=20, throttle_inflight=8)
        self.assertEqual(cfg, dict(DEFAULT_CONFIG, latency_ms=20, throttle_inflight=8))
        cfg = self.config(throttle_retry_after=2, token_expires_in=60)
        self.assertEqual(cfg, dict(DEFAULT_CONFIG, latency_ms=20, throttle_inflight=8,
                                   throttle_retry_after=2, token_expires_in=60))
        new = {"refresh_rotation_strict": True, "token_fault": "crlf",
               "validations_shape": "wrapped", "customers_page_latency_ms": 2.5,
               "sync_epoch": 3, "change_percent": 100, "fail_percent": 0}
        self.assertEqual(self.config(refresh_rotation_strict="on", token_fault="CRLF",
                                     validations_shape="wrapped", customers_page_latency_ms=2.5,
                                     sync_epoch=3, change_percent=100, fail_percent=0),
                         dict(DEFAULT_CONFIG, latency_ms=20, throttle_inflight=8,
                              throttle_retry_after=2, token_expires_in=60, **new))
        self.assertEqual(self.config(token_fault="off", refresh_rotation_strict="false")
                         ["token_fault"], "")
        for bad in ("config?nope=1", "config?latency_ms=-5", "config?throttle_inflight=x",
                    "config?refresh_rotation_strict=maybe", "config?token_fault=boom",
                    "config?validations_shape=off", "config?change_percent=101",
                    "config?fail_percent=-1", "config?sync_epoch=1.5",
                    "config?customers_page_latency_ms=nan", "config?customer_count=100001",
                    "config?token_latency_ms=-1", "config?token_latency_ms=x"):
            status, _, _ = self.req("POST", "/_emulator/" + bad)
            self.assertEqual(status, 400, bad)
        self.control("POST", "reset")
        self.assertEqual(json.loads(self.control("GET", "config")),
                         dict(DEFAULT_CONFIG, latency_ms=self.CLI_LATENCY))

    def test_unknown_control_endpoint(self):
        self.assertEqual(self.req("GET", "/_emulator/nope")[0], 404)
        self.assertEqual(self.req("GET", "/_emulator/reset")[0], 405)

    # -- tokens ------------------------------------------------------------------
    def test_token_client_credentials(self):
        status, r, data = self.post_token(APP_FORM, tenant="contoso.onmicrosoft.com")
        self.assertEqual(status, 200)
        body = json.loads(data)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], "3600")          # a string here
        self.assertEqual(body["ext_expires_in"], "3600")
        self.assertEqual(body["resource"], APP_FORM["resource"])
        self.assertRegex(body["access_token"], r"^emu-app-\d+$")

    def test_token_refresh(self):
        issued = set()
        for form in (USER_FORM, {"grant_type": "refresh_token",
                                 "refresh_token": "pcqual-test-refresh"}):
            status, _, data = self.post_token(form)
            self.assertEqual(status, 200, data)
            body = json.loads(data)
            self.assertEqual(body["token_type"], "Bearer")
            self.assertIs(type(body["expires_in"]), int)    # a number here
            self.assertEqual(body["expires_in"], 3600)
            self.assertRegex(body["refresh_token"], r"^pcqual-test-refresh-rot-\d+$")
            issued.add(body["refresh_token"])
            self.assertIn("scope", body)
            self.assertRegex(body["access_token"], USER_TOKEN_RE)
        self.assertEqual(len(issued), 2)          # a new refresh token every time

    def test_token_counter_is_global(self):
        n = [int(self.new_token(f).split(".")[0].rsplit("-", 1)[1])
             for f in (APP_FORM, USER_FORM, APP_FORM)]
        self.assertEqual(n, sorted(n))
        self.assertEqual(len(set(n)), 3)

    def test_token_errors(self):
        invalid_client = {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
                                 "secret being sent in the request is the client secret "
                                 "value, not the client secret ID.",
            "error_codes": [7000215]}
        for form in (dict(APP_FORM, client_secret="wrong"),
                     dict(APP_FORM, client_id="someone-else"),
                     {k: v for k, v in APP_FORM.items() if k != "client_secret"}):
            status, _, data = self.post_token(form)
            self.assertEqual(status, 401)
            self.assertEqual(json.loads(data), invalid_client)
        status, _, data = self.post_token(dict(USER_FORM, refresh_token="stale"))
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data), {
            "error": "invalid_grant",
            "error_description": "AADSTS70000: Provided grant is invalid or malformed."})
        for form in ({"grant_type": "password"}, {}):
            status, _, data = self.post_token(form)
            self.assertEqual(status, 400)
            body = json.loads(data)
            self.assertEqual(body["error"], "unsupported_grant_type")
            self.assertTrue(body["error_description"].startswith("AADSTS70003: "))
        status, _, data = self.post_token({k: v for k, v in APP_FORM.items() if k != "resource"})
        self.assertEqual(status, 400)
        self.assertEqual(self.req("GET", "/t/oauth2/token")[0], 405)

    def test_token_lifetime_config_and_expiry(self):
        self.config(token_expires_in=60)
        self.assertEqual(json.loads(self.post_token(APP_FORM)[2])["expires_in"], "60")
        self.assertEqual(json.loads(self.post_token(USER_FORM)[2])["expires_in"], 60)
        self.config(token_expires_in=1)
        short = self.new_token()
        self.assertEqual(self.get_q(GENERIC, short)[0], 200)
        time.sleep(1.1)
        status, _, data = self.get_q(GENERIC, short)
        self.assertEqual((status, json.loads(data)), (401, AUTH_FAILED))

    # -- API auth ------------------------------------------------------------
    def test_auth_rules(self):
        path = "/v1/customers/%s/qualifications" % GENERIC
        status, r, data = self.req("GET", path)                       # no header
        self.assertEqual(status, 401)
        self.assertJson(r, data, AUTH_FAILED)
        for bad in ("emu-app-999999", "garbage"):
            status, r, data = self.get_q(GENERIC, bad)
            self.assertEqual((status, json.loads(data)), (401, AUTH_FAILED))
        status, _, _ = self.req("GET", path, headers={"Authorization": "Basic " + self.token})
        self.assertEqual(status, 401)
        self.assertEqual(self.get_q(GENERIC, "pcqual-static-token")[0], 200)
        self.assertEqual(self.get_q(GENERIC)[0], 200)
        # auth is checked before any fixture: no drop, no special status
        for tenant in (P2 + "609", P2 + "404", P3 + "1", "not-a-guid"):
            self.assertEqual(self.get_q(tenant, "nope")[0], 401, tenant)
        # revoke: old tokens die, new ones and the static one work
        old_user = self.new_token(USER_FORM)
        self.control("POST", "revoke")
        self.assertEqual(self.get_q(GENERIC)[0], 401)
        self.assertEqual(self.get_q(GENERIC, old_user)[0], 401)
        self.assertEqual(self.get_q(GENERIC, "pcqual-static-token")[0], 200)
        fresh = self.new_token()
        self.assertEqual(self.get_q(GENERIC, fresh)[0], 200)
        # reset revokes too
        self.control("POST", "reset")
        self.assertEqual(self.get_q(GENERIC, fresh)[0], 401)
        self.assertEqual(self.get_q(GENERIC, "pcqual-static-token")[0], 200)

    # -- GET fixtures ------------------------------------------------------------
    def test_success_fixtures(self):
        ed = "Education"
        expected = {
            "01": SEED_APPROVED,
            "02": [{"qualification": ed, "vettingStatus": "InReview",
                    "vettingCreatedDate": "2020-12-03T10:37:38.885Z"}],
            "03": [{"qualification": ed, "vettingStatus": "Denied",
                    "vettingReason": "Not an Education Customer",
                    "vettingCreatedDate": "2020-12-03T10:37:38.885Z"}],
            "04": [{"qualification": "StateOwnedEntity"}],
            "05": [{"qualification": ed, "vettingStatus": "Approved"},
                   {"qualification": "StateOwnedEntity"}],
            "06": [{"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved",
                    "vettingCreateDate": "2021-05-06T19:59:56.6832021+00:00"},
                   {"qualification": "StateOwnedEntity"}],
            "07": [],
            "08": {"qualifications": [{"qualification": ed, "vettingStatus": "Approved",
                                       "vettingCreatedDate": "2021-01-15T08:00:00Z"}]},
            "09": {"totalCount": 1, "items": [
                {"qualification": "Nonprofit", "vettingStatus": "InReview",
                 "vettingCreatedDate": "2022-03-01T12:30:00.1234567-05:00"}],
                "attributes": {"objectType": "Collection"}},
            "10": {"qualification": ed, "vettingStatus": "Approved",
                   "vettingCreatedDate": "2021-02-03T04:05:06+00:00"},
            "11": [{"Qualification": ed, "VettingStatus": "Approved",
                    "VettingCreatedDate": "07/09/2020: 00:00:00"}],
            "12": [{"qualification": "FutureProgram", "vettingStatus": None,
                    "vettingReason": None, "vettingCreatedDate": None,
                    "someNewField": {"x": [1, 2]}, "another": True},
                   {"qualification": ed, "vettingStatus": "Escalated"}],
            "13": [{"qualification": ed, "vettingStatus": "Approved",
                    "vettingCreatedDate": "2023-07-01T09:15:00+05:30"}],
            "14": {"totalCount": 0, "items": [], "attributes": {"objectType": "Collection"}},
            "15": [{"qualification": ed, "vettingStatus": "Denied",
                    "vettingReason": "Not an Academic Domain",
                    "vettingCreatedDate": "2020-01-01T00:00:00Z"},
                   {"qualification": ed, "vettingStatus": "InReview",
                    "vettingCreatedDate": "2020-02-01T00:00:00Z"},
                   {"qualification": ed, "vettingStatus": "Approved",
                    "vettingCreatedDate": "2020-03-01T00:00:00.5Z"}],
            "16": [{"QUALIFICATION": ed, "vettingstatus": "Approved", "VettingReason": "ok",
                    "vettingCreatedDate": "2021-06-30T23:59:59.9999999Z"}],
        }
        c = self.conn()
        for suffix, want in expected.items():
            for tenant in (P1 + suffix, (P1 + suffix).upper()):
                status, r, data = self.get_q(tenant, conn=c)
                self.assertEqual(status, 200, tenant)
                self.assertJson(r, data, want)
        c.close()
        # the 0006 date spelling is kept byte for byte
        self.assertIn(b'"vettingCreateDate":"2021-05-06T19:59:56.6832021+00:00"',
                      self.get_q(P1 + "06")[2])

    def test_ids_are_echoed(self):
        _, r, _ = self.get_q(P1 + "01", headers={"MS-CorrelationId": "c-1",
                                                 "MS-RequestId": "r-1"})
        self.assertEqual(r.getheader("MS-CorrelationId"), "c-1")
        self.assertEqual(r.getheader("MS-RequestId"), "r-1")

    def test_error_fixtures(self):
        def pc(code, desc):
            return {"code": code, "description": desc, "data": [], "source": "PartnerFD"}
        json_cases = {
            "400": (400, INVALID_CUSTOMER),
            "401": (401, pc(900420, "Access token audience is invalid.")),
            "403": (403, pc("2002", "Partner is not authorized for this customer.")),
            "404": (404, NOT_FOUND),
            "409": (409, "Customer tagging denied."),
            "429": (429, {"statusCode": 429,
                          "message": "Rate limit is exceeded. Try again in 7 seconds."}),
            "500": (500, pc(500, "Internal server error.")),
            "418": (418, {"message": "I'm a teapot."}),
        }
        c = self.conn()
        for suffix, (code, want) in json_cases.items():
            status, r, data = self.get_q(P2 + suffix, conn=c)
            self.assertEqual(status, code, suffix)
            self.assertJson(r, data, want)
        self.assertEqual(self.get_q(P2 + "409")[2], b'"Customer tagging denied."')
        self.assertEqual(self.get_q(P2 + "403")[2].count(b'"2002"'), 1)
        self.assertEqual(self.get_q(P2 + "429")[1].getheader("Retry-After"), "7")
        self.assertIsNone(self.get_q(P2 + "500")[1].getheader("Retry-After"))
        # 0401 even with a perfectly valid token
        self.assertEqual(self.get_q(P2 + "401", "pcqual-static-token")[0], 401)
        status, r, data = self.get_q(P2 + "502", conn=c)
        self.assertEqual(status, 502)
        self.assertEqual(r.getheader("Content-Type"), "text/html")
        self.assertIn(b"502 Bad Gateway", data)
        self.assertTrue(800 <= len(data) <= 1500, len(data))
        status, r, data = self.get_q(P2 + "503", conn=c)
        self.assertEqual((status, data, r.getheader("Content-Length")), (503, b"", "0"))
        c.close()

    def test_bad_body_faults(self):
        status, r, data = self.get_q(P2 + "600")
        self.assertEqual(status, 200)
        self.assertEqual(data, b'[{"qualification": "Education",]')
        self.assertRaises(ValueError, json.loads, data)
        self.assertEqual(json.loads(self.get_q(P2 + "601")[2]), 42)
        self.assertEqual(json.loads(self.get_q(P2 + "602")[2]), [{"vettingStatus": "Approved"}])
        self.assertEqual(json.loads(self.get_q(P2 + "603")[2]), [{"qualification": 7}])
        status, r, data = self.get_q(P2 + "604")
        self.assertEqual((status, data, r.getheader("Content-Length")), (200, b"", "0"))
        status, r, data = self.get_q(P2 + "605")
        self.assertEqual((status, data), (200, b"<html><body>Maintenance</body></html>"))
        self.assertEqual(r.getheader("Content-Type"), "text/html")

    def test_big_body_0606(self):
        status, r, data = self.get_q(P2 + "606")
        self.assertEqual(status, 200)
        self.assertEqual(int(r.getheader("Content-Length")), len(data))
        self.assertTrue(4.5e6 < len(data) < 5.5e6, len(data))
        items = json.loads(data)
        self.assertGreater(len(items), 40000)
        self.assertTrue(all(i["qualification"] == "Education" for i in items))

    def test_endless_chunked_stream_0607(self):
        req = ("GET /v1/customers/%s607/qualifications HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (P2, self.token)).encode()
        data = raw_exchange(self.port, req, read_limit=2 * 1024 * 1024)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
        self.assertNotIn(b"Content-Length", head)
        self.assertTrue(body.startswith(b"1\r\n[\r\n"), body[:40])
        self.assertIn(b'{"qualification":"Education"},{"qualification":"Education"},', body)
        self.assertGreater(len(body), 2 * 1000 * 1000)
        # the client went away: the handler must notice and stop
        self.wait_for(lambda: self.stats()["in_flight"] == 0, "stream handler to stop")
        self.assertEqual(self.get_q(GENERIC)[0], 200)

    def test_deep_nesting_0608(self):
        status, _, data = self.get_q(P2 + "608")
        self.assertEqual((status, data), (200, b"[" * 100000 + b"]" * 100000))

    def test_dropped_connection_0609(self):
        with self.assertRaises(http.client.RemoteDisconnected):
            self.get_q(P2 + "609")
        req = ("GET /v1/customers/%s609/qualifications HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (P2, self.token)).encode()
        self.assertEqual(raw_exchange(self.port, req), b"")

    def test_truncated_body_0610(self):
        req = ("GET /v1/customers/%s610/qualifications HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (P2, self.token)).encode()
        head, _, body = raw_exchange(self.port, req).partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertIn(b"\r\nContent-Length: 1000", head)
        self.assertEqual(len(body), 10)
        with self.assertRaises(http.client.IncompleteRead):
            self.get_q(P2 + "610")

    def test_slow_0611_stops_when_client_leaves(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(("GET /v1/customers/%s611/qualifications HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\n\r\n" % (P2, self.token)).encode())
        time.sleep(0.3)
        t = time.monotonic()
        s.close()
        self.wait_for(lambda: any(line[5] == "499" for line in self.log_lines()),
                      "the slow handler to notice the disconnect")
        self.assertLess(time.monotonic() - t, 2)
        self.wait_for(lambda: self.stats()["in_flight"] == 0, "in_flight 0")

    def test_long_strings_0612(self):
        status, r, data = self.get_q(P2 + "612")
        self.assertEqual(status, 200)
        item = json.loads(data)[0]
        self.assertEqual(set(item), {"qualification", "vettingStatus", "vettingReason",
                                     "vettingCreatedDate"})
        for v in item.values():
            self.assertEqual(len(v), 100 * 1024)

    def test_generic_tenants(self):
        for tenant in (GENERIC, GENERIC.upper(), "e4404000-0000-0000-0000-000000000000",
                       "11111111-0000-0000-0000-000000000099"):
            status, r, data = self.get_q(tenant)
            self.assertEqual(status, 200, tenant)
            self.assertJson(r, data, GENERIC_OK)
        for tenant in ("fa11aaaa-0000-0000-0000-000000000000", "FA11BBBB-1111-2222-3333-444455556666"):
            status, r, data = self.get_q(tenant)
            self.assertEqual(status, 404, tenant)
            self.assertJson(r, data, NOT_FOUND)
        for tenant in ("not-a-guid", "12345", "8a4c2e10-5b7d-4f3e-9c21-0123456789abc",
                       "%7B8a4c2e10-5b7d-4f3e-9c21-0123456789ab%7D"):
            status, r, data = self.get_q(tenant)
            self.assertEqual(status, 400, tenant)
            self.assertJson(r, data, INVALID_CUSTOMER)

    def test_unknown_paths(self):
        self.assertEqual(self.req("GET", "/nowhere")[0], 404)
        self.assertEqual(self.req("GET", "/v1/customers/%s" % GENERIC)[0], 401)
        self.assertEqual(self.req("GET", "/v1/customers/%s" % GENERIC, token=self.token)[0], 404)
        status, r, _ = self.req("DELETE", "/v1/customers/%s/qualifications" % GENERIC,
                                token=self.token)
        self.assertEqual(status, 405)
        kinds = [line[3] for line in self.log_lines()]
        self.assertEqual(kinds, ["token", "other", "api", "api", "api"])

    # -- retries ---------------------------------------------------------------
    def test_retry_fixtures(self):
        def seq(tenant, n):
            out = []
            for _ in range(n):
                try:
                    status, r, data = self.get_q(tenant)
                    out.append((status, r.getheader("Retry-After"), data))
                except http.client.RemoteDisconnected:
                    out.append(("drop", None, None))
            return out

        ok = json.dumps(SEED_APPROVED, separators=(",", ":")).encode()
        a = seq(P3 + "1", 3)
        self.assertEqual([(s, h) for s, h, _ in a], [(429, "1"), (200, None), (200, None)])
        self.assertEqual(a[1][2], ok)
        self.assertEqual([s for s, _, _ in seq(P3 + "2", 3)], [500, 200, 200])
        self.assertEqual([s for s, _, _ in seq(P3 + "3", 3)], [503, 503, 503])
        self.assertEqual([(s, h) for s, h, _ in seq(P3 + "4", 3)], [(429, "3600")] * 3)
        self.assertEqual([(s, h) for s, h, _ in seq(P3 + "5", 2)], [(429, None), (200, None)])
        b = seq(P3 + "6", 2)
        self.assertEqual([s for s, _, _ in b], [429, 200])
        when = email.utils.parsedate_to_datetime(b[0][1])
        delta = (when - datetime.now(timezone.utc)).total_seconds()
        self.assertTrue(1.0 <= delta <= 3.5, (b[0][1], delta))
        self.assertEqual([s for s, _, _ in seq(P3 + "7", 3)], ["drop", 200, 200])
        c = seq(P3 + "8", 2)
        self.assertEqual([s for s, _, _ in c], [502, 200])
        self.assertIn(b"502 Bad Gateway", c[0][2])
        # case-insensitive tenant shares the counter; reset clears it
        self.assertEqual(self.get_q((P3 + "2").upper())[0], 200)
        self.control("POST", "reset")
        self.token = self.new_token()
        self.assertEqual([s for s, _, _ in seq(P3 + "1", 2)], [429, 200])
        self.assertEqual([s for s, _, _ in seq((P3 + "7").upper(), 2)], ["drop", 200])

    # -- POST ----------------------------------------------------------------
    def test_post_qualification(self):
        path = "/v1/customers/%s/qualifications" % GENERIC
        app_only = {"code": 900329, "description": "This resource doesn't support "
                    "application-only authentication.", "data": [], "source": "PartnerFD"}
        for token in (self.token, "pcqual-static-token"):
            status, _, data = self.req("POST", path, {"qualification": "Education"}, token=token)
            self.assertEqual((status, json.loads(data)), (403, app_only))
        self.assertEqual(self.req("POST", path, {"qualification": "Education"},
                                  token="bogus")[0], 401)
        user = self.new_token(USER_FORM)
        status, r, data = self.req("POST", path, {"qualification": "Education",
                                                  "educationSegment": "K12"}, token=user)
        self.assertEqual(status, 201, data)
        body = json.loads(data)
        self.assertEqual((body["qualification"], body["vettingStatus"]), ("Education", "InReview"))
        self.assertTrue(body["vettingCreatedDate"].endswith("Z"))
        created = datetime.fromisoformat(body["vettingCreatedDate"].replace("Z", "+00:00"))
        self.assertLess(abs((datetime.now(timezone.utc) - created).total_seconds()), 10)
        status, _, data = self.req("POST", path, {"qualification": "StateOwnedEntity"},
                                   token=user)
        self.assertEqual((status, json.loads(data)), (201, {"qualification": "StateOwnedEntity"}))
        self.assertEqual(self.req("POST", "/v1/customers/nope/qualifications",
                                  {"qualification": "Education"}, token=user)[0], 400)

    def post_q(self, tenant, body, token, ctype="application/json", request_id=None):
        h = {"Content-Type": ctype} if ctype else {}
        if request_id:
            h["MS-RequestId"] = request_id
        if not isinstance(body, (str, bytes)) and body is not None:
            body = json.dumps(body)
        status, _, data = self.req("POST", "/v1/customers/%s/qualifications" % tenant,
                                   body, headers=h, token=token)
        return status, json.loads(data) if data else None

    def test_post_validation_rules(self):
        user = self.new_token(USER_FORM)
        t = str(uuid.uuid4())
        soe = {"qualification": "StateOwnedEntity"}
        for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
            status, err = self.post_q(t, soe, user, ctype)
            self.assertEqual((status, err["code"]), (415, 600050), ctype)
        cases = [  # (body, status, code)
            ("[1]", 400, 600010),
            ("{nope", 400, 600010),
            (None, 400, 600010),
            ({"qualification": "Education", "extra": "x"}, 400, 600014),
            ({"qualification": "Education", "educationSegment": None}, 400, 600015),
            ({"qualification": 7}, 400, 600016),
            ({}, 400, 600011),
            ({"qualification": "Nonprofit"}, 400, 600011),
            ({"qualification": "Education"}, 400, 600017),
            ({"qualification": "Education", "educationSegment": "k12"}, 400, 600017),
            ({"qualification": "Education", "educationSegment": "K12",
              "validationCode": "12345"}, 400, 600018),
            ({"qualification": "GovernmentCommunityCloud"}, 400, 600013),
            ({"qualification": "GovernmentCommunityCloud", "validationCode": "123"},
             400, 600019),
            ({"qualification": "GovernmentCommunityCloud", "validationCode": "67890"},
             400, 600020),                                        # no creates left
            ({"qualification": "GovernmentCommunityCloud", "validationCode": "12345",
              "website": "x"}, 400, 600018),
            ({"qualification": "StateOwnedEntity", "website": "x"}, 400, 600018),
        ]
        for body, status, code in cases:
            got = self.post_q(t, body, user)
            self.assertEqual((got[0], got[1]["code"]), (status, code), body)
            self.assertEqual(set(got[1]), {"code", "description", "data", "source"})
        # nothing was created; parameters of the media type are fine
        self.assertEqual(json.loads(self.get_q(t)[2]), GENERIC_OK)
        self.assertEqual(self.post_q(t, {"qualification": "education",
                                         "educationSegment": "HigherEducation",
                                         "website": "https://school.example"}, user,
                                     "Application/JSON; charset=utf-8")[0], 201)

    def test_post_state_conflicts_and_validation_counts(self):
        user = self.new_token(USER_FORM)
        a, b = str(uuid.uuid4()), str(uuid.uuid4())

        def remaining():
            status, _, data = self.req("GET", "/v1/customers/all/validations", token=self.token)
            return {v["validationId"]: v["remainingCreates"] for v in json.loads(data)}

        self.assertEqual(remaining(), {"12345": 4, "67890": 0, "24680": 10})
        soe = {"qualification": "StateOwnedEntity"}
        edu = {"qualification": "Education", "educationSegment": "K12"}
        gcc = {"qualification": "GovernmentCommunityCloud", "validationCode": "12345"}
        self.assertEqual(self.post_q(a, edu, user)[0], 201)
        self.assertEqual(self.post_q(a, soe, user)[0], 201)     # Education + SOE is fine
        for body in (edu, soe, gcc):
            status, err = self.post_q(a, body, user)
            self.assertEqual((status, err["code"]), (409, 600040), body)
            self.assertTrue(err["description"].startswith(
                "The customer already has the qualification"))
        status, doc = self.post_q(b, gcc, user)
        self.assertEqual((status, doc["qualification"]), (201, "GovernmentCommunityCloud"))
        self.assertEqual(self.post_q(b, edu, user)[0], 409)
        self.assertEqual(remaining()["12345"], 3)
        # the older ?code= spelling
        c = str(uuid.uuid4())
        status, _, data = self.req("POST", "/v1/customers/%s/qualifications?code=24680" % c,
                                   {"qualification": "GovernmentCommunityCloud"}, token=user)
        self.assertEqual(status, 201, data)
        self.assertEqual(remaining()["24680"], 9)
        # GET shows what was created; fixture tenants keep their fixture
        got = json.loads(self.get_q(a)[2])
        self.assertEqual([i["qualification"] for i in got], ["Education", "StateOwnedEntity"])
        self.assertEqual(got[0]["vettingStatus"], "InReview")
        self.assertEqual(self.post_q(P1 + "07", soe, user)[0], 201)
        self.assertEqual(json.loads(self.get_q(P1 + "07")[2]), [])
        # the REST reference's shape for aaaaaaaa... tenants
        rest = "aaaaaaaa-1111-2222-3333-444444444444"
        status, doc = self.post_q(rest, edu, user)
        self.assertEqual(status, 200)
        self.assertEqual([i["qualification"] for i in doc["qualifications"]], ["Education"])
        status, doc = self.post_q(rest, soe, user)
        self.assertEqual([i["qualification"] for i in doc["qualifications"]],
                         ["Education", "StateOwnedEntity"])
        self.assertEqual(self.stats()["qualifications_created"], 7)
        # reset forgets everything
        self.control("POST", "reset")
        self.token = self.new_token()
        self.assertEqual(json.loads(self.get_q(a)[2]), GENERIC_OK)
        self.assertEqual(remaining(), {"12345": 4, "67890": 0, "24680": 10})

    def test_post_idempotency(self):
        user = self.new_token(USER_FORM)
        soe = {"qualification": "StateOwnedEntity"}
        once = P3 + "9"
        status, err = self.post_q(once, soe, user, request_id="rid-1")
        self.assertEqual((status, err["code"]), (503, 503))
        self.assertEqual(self.post_q(once, soe, user, request_id="rid-1"), (201, soe))
        # a retry after success replays the answer instead of a 409
        self.assertEqual(self.post_q(once, soe, user, request_id="rid-1"), (201, soe))
        status, err = self.post_q(once, soe, user, request_id="rid-2")
        self.assertEqual(status, 503)
        self.assertEqual((self.post_q(once, soe, user, request_id="rid-2")[1]["code"]), 600040)
        self.assertEqual(self.post_q(once, soe, user)[0], 503)       # no MS-RequestId
        self.assertEqual(self.post_q(once, soe, user)[0], 503)
        # any tenant: replays even a body that differs; 22222222...503 always fails
        t = str(uuid.uuid4())
        self.assertEqual(self.post_q(t, soe, user, request_id="r")[0], 201)
        self.assertEqual(self.post_q(t, {"qualification": "Nonprofit"}, user,
                                     request_id="r"), (201, soe))
        self.assertEqual(self.post_q(t, soe, user, request_id="r2")[0], 409)
        for _ in range(2):
            self.assertEqual(self.post_q(P2 + "503", soe, user, request_id="x")[0], 503)
        s = self.stats()
        self.assertEqual((s["qualifications_created"], s["post_replays"]), (2, 2))
        self.control("POST", "reset")
        user = self.new_token(USER_FORM)
        self.assertEqual(self.post_q(once, soe, user, request_id="rid-1")[0], 503)

    # -- recording -------------------------------------------------------------
    def test_request_log_copy_format(self):
        tenant = P1 + "01"
        self.get_q(tenant, headers={"MS-CorrelationId": "corr-1", "MS-RequestId": "req-1",
                                    "MS-PartnerCenter-Application": "pcqual tests",
                                    "User-Agent": "ua\\with\ttab", "Accept": "application/json"})
        self.get_q(P2 + "404")
        self.post_token(USER_FORM, tenant="partner.example")
        self.post_token(dict(APP_FORM, client_secret="wrong-secret-value"))
        try:
            self.get_q(P2 + "609")
        except http.client.RemoteDisconnected:
            pass
        self.stats()                    # control requests are not recorded
        self.control("GET", "health")
        rows = self.log_lines()
        self.assertEqual(len(rows), 6)
        for row in rows:
            self.assertEqual(len(row), LOG_COLUMNS, row)
        self.assertEqual([r[0] for r in rows], ["1", "2", "3", "4", "5", "6"])
        self.assertEqual(rows[0], ["1", "POST", "/partner-tenant/oauth2/token", "token",
                                   "partner-tenant", "200", "client_credentials",
                                   "\\N", "\\N", "\\N", "\\N", "\\N",
                                   "application/x-www-form-urlencoded",
                                   "grant_type,client_id,client_secret,resource",
                                   "\\N", "\\N", "\\N"])
        self.assertEqual(rows[1][:8], ["2", "GET", "/v1/customers/%s/qualifications" % tenant,
                                       "api", tenant, "200", self.token, "corr-1"])
        self.assertEqual(rows[1][8:11], ["req-1", "pcqual tests", "ua\\\\with\\ttab"])
        self.assertEqual(copy_unescape(rows[1][10]), "ua\\with\ttab")
        self.assertEqual(rows[1][11], "application/json")
        self.assertEqual(rows[2][3:8], ["api", P2 + "404", "404", self.token, "\\N"])
        self.assertEqual(rows[3][3:7], ["token", "partner.example", "200", "refresh_token"])
        self.assertEqual(rows[4][3:7], ["token", "partner-tenant", "401", "client_credentials"])
        self.assertEqual(rows[5][5], "\\N")                  # dropped: no status
        text = self.control("GET", "requests") + self.control("GET", "requests?format=json")
        for secret in (b"pcqual-test-secret", b"pcqual-test-refresh", b"wrong-secret-value"):
            self.assertNotIn(secret, text)
        self.assertEqual([r[0] for r in self.log_lines("?since=4")], ["5", "6"])
        self.assertEqual([r[0] for r in self.log_lines("?kind=token")], ["1", "4", "5"])
        # reset empties the log and restarts seq
        self.control("POST", "reset")
        self.assertEqual(self.log_lines(), [])
        self.post_token(APP_FORM)
        self.assertEqual(self.log_lines()[0][0], "1")

    def test_request_log_json(self):
        self.get_q(GENERIC, headers={"MS-CorrelationId": "c", "MS-RequestId": "r"})
        entries = json.loads(self.control("GET", "requests?format=json"))
        self.assertEqual(len(entries), 2)
        e = entries[1]
        self.assertEqual({k: e[k] for k in ("seq", "method", "kind", "tenant", "status", "auth",
                                            "correlation_id", "request_id", "application")},
                         {"seq": 2, "method": "GET", "kind": "api", "tenant": GENERIC,
                          "status": 200, "auth": self.token, "correlation_id": "c",
                          "request_id": "r", "application": None})
        self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(entries[0]["auth"], "client_credentials")

    def test_stats(self):
        for _ in range(3):
            self.get_q(GENERIC)
        self.get_q(P2 + "404")
        self.get_q(GENERIC, "bad")
        s = self.stats()
        self.assertEqual(s["api_requests"], 5)
        self.assertEqual(s["token_requests"], 1)
        self.assertEqual(s["status_counts"], {"200": 4, "401": 1, "404": 1})
        self.assertEqual(s["throttled"], 0)
        self.assertEqual(s["max_in_flight"], 1)

    # -- keep-alive ------------------------------------------------------------
    def test_keep_alive_on_one_connection(self):
        c = self.conn()
        status, _, data = self.post_token(APP_FORM, conn=c)
        token = json.loads(data)["access_token"]
        sock = c.sock
        plan = [(P1 + "01", 200), (P2 + "404", 404), (P2 + "429", 429), (P2 + "503", 503),
                (P2 + "604", 200), (P2 + "502", 502), (P2 + "409", 409), (P2 + "600", 200),
                (P3 + "1", 429), (P3 + "1", 200), ("fa11aaaa-0000-0000-0000-000000000000", 404),
                ("not-a-guid", 400), (GENERIC, 200), (P2 + "606", 200)]
        second = [(t, 200 if t == P3 + "1" else code) for t, code in plan]
        for tenant, code in plan + second:
            status, r, _ = self.get_q(tenant, token, conn=c)
            self.assertEqual(status, code, tenant)
            self.assertIs(c.sock, sock, "connection was replaced after " + tenant)
            self.assertIsNone(r.getheader("Connection"))
        self.assertEqual(self.get_q(GENERIC, "bad", conn=c)[0], 401)
        self.assertIs(c.sock, sock)
        s = self.stats(conn=c)
        self.assertIs(c.sock, sock)
        c.close()
        # setUp's token request used one connection before this one
        self.assertEqual(s["connections"], 2)
        self.assertEqual(s["api_requests"], 2 * len(plan) + 1)

    def test_http10_and_connection_close(self):
        req = ("GET /v1/customers/%s/qualifications HTTP/1.0\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (GENERIC, self.token)).encode()
        head, _, body = raw_exchange(self.port, req).partition(b"\r\n\r\n")
        self.assertEqual(json.loads(body), GENERIC_OK)
        req = ("GET /v1/customers/%s/qualifications HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (GENERIC, self.token)).encode()
        head, _, body = raw_exchange(self.port, req).partition(b"\r\n\r\n")
        self.assertIn(b"\r\nConnection: close", head)
        self.assertEqual(json.loads(body), GENERIC_OK)

    # -- latency and throttling ------------------------------------------------
    def test_latency(self):
        self.config(latency_ms=250)
        t = time.monotonic()
        self.assertEqual(self.get_q(GENERIC)[0], 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.24)
        t = time.monotonic()
        self.assertEqual(self.get_q(P2 + "404")[0], 404)
        self.assertGreaterEqual(time.monotonic() - t, 0.24)
        t = time.monotonic()
        self.new_token()
        self.stats()
        self.control("GET", "health")
        self.assertLess(time.monotonic() - t, 0.2)

    def test_token_latency(self):
        # latency_ms leaves the token endpoint alone; token_latency_ms delays
        # every one of its answers (success, failure, redirect) and nothing else
        self.config(latency_ms=0)
        t = time.monotonic()
        self.new_token()
        self.assertLess(time.monotonic() - t, 0.2)
        self.assertEqual(self.config(token_latency_ms=250)["token_latency_ms"], 250)
        for form, tenant, status in ((APP_FORM, "partner-tenant", 200),
                                     (USER_FORM, "partner-tenant", 200),
                                     (dict(APP_FORM, client_secret="wrong"), "partner-tenant", 401),
                                     (APP_FORM, "redirect.onmicrosoft.com", 307)):
            t = time.monotonic()
            self.assertEqual(self.post_token(form, tenant)[0], status)
            self.assertGreaterEqual(time.monotonic() - t, 0.24, (form, tenant))
        t = time.monotonic()
        self.assertEqual(self.get_q(GENERIC)[0], 200)
        self.stats()
        self.assertLess(time.monotonic() - t, 0.2)
        # concurrent token requests are delayed together, not one after another
        results = [None] * 4

        def work(i):
            results[i] = self.post_token(APP_FORM)[0]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        self.assertEqual(results, [200] * 4)
        self.assertLess(time.monotonic() - t, 0.9)
        self.control("POST", "reset")
        self.assertEqual(json.loads(self.control("GET", "config"))["token_latency_ms"], 0)

    def run_concurrently(self, n, tenant=GENERIC):
        conns = [self.conn() for _ in range(n)]
        for c in conns:
            c.connect()
        barrier = threading.Barrier(n)
        results = [None] * n

        def work(i):
            barrier.wait()
            t = time.monotonic()
            status, r, data = self.get_q(tenant, conn=conns[i])
            results[i] = (status, r.getheader("Retry-After"), data, time.monotonic() - t)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        elapsed = time.monotonic() - t
        for c in conns:
            c.close()
        return results, elapsed

    def test_concurrent_requests_overlap(self):
        self.config(latency_ms=300)
        results, elapsed = self.run_concurrently(32)
        self.assertEqual([r[0] for r in results], [200] * 32)
        self.assertLess(elapsed, 1.5)                   # 32 x 0.3 s serially would be 9.6 s
        self.assertGreaterEqual(self.stats()["max_in_flight"], 16)

    def test_throttle_mode(self):
        cfg = self.config(latency_ms=400, throttle_inflight=2, throttle_retry_after=5)
        self.assertEqual(cfg["throttle_inflight"], 2)
        results, _ = self.run_concurrently(6)
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses, [200, 200, 429, 429, 429, 429], results)
        for status, retry_after, data, elapsed in results:
            if status == 429:
                self.assertEqual(retry_after, "5")
                self.assertEqual(json.loads(data), {
                    "statusCode": 429,
                    "message": "Rate limit is exceeded. Try again in 5 seconds."})
                self.assertLess(elapsed, 0.3)           # no latency for throttled answers
            else:
                self.assertGreaterEqual(elapsed, 0.39)
        s = self.stats()
        self.assertEqual(s["throttled"], 4)
        self.assertEqual(s["max_in_flight"], 2)
        self.assertEqual(s["status_counts"], {"200": 3, "429": 4})   # + setUp's token
        self.assertEqual(sum(1 for line in self.log_lines() if line[5] == "429"), 4)
        # sequential requests stay under the limit; 0 turns throttling off
        self.assertEqual(self.get_q(GENERIC)[0], 200)
        self.config(throttle_inflight=0, latency_ms=200)
        results, _ = self.run_concurrently(6)
        self.assertEqual([r[0] for r in results], [200] * 6)

    # -- CLI -----------------------------------------------------------------
    def test_cli_env_port_quiet_and_signals(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            port = free_port()
            env = dict(os.environ, PCQUAL_EMULATOR_PORT=str(port))
            proc = subprocess.Popen([sys.executable, EMULATOR, "--quiet"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                self.wait_for(lambda: self.try_health(port), "emulator on env port")
                # an idle keep-alive connection must not hold up the exit
                idle = self.conn(port)
                idle.request("GET", "/_emulator/health")
                idle.getresponse().read()
                proc.send_signal(sig)
                out, err = proc.communicate(timeout=5)
            finally:
                if proc.poll() is None:
                    proc.kill()
            self.assertEqual(proc.returncode, 0)
            self.assertEqual((out, err), (b"", b""))
            idle.close()
        proc = subprocess.run([sys.executable, EMULATOR, "--host", "0.0.0.0", "--port", "0"],
                              capture_output=True, timeout=20)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"loopback", proc.stderr)

    def try_health(self, port):
        try:
            c = self.conn(port)
            c.request("GET", "/_emulator/health")
            ok = c.getresponse().read() == b"ok"
            c.close()
            return ok
        except OSError:
            return False

    def wait_for(self, predicate, what, timeout=5):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    # -- TLS listeners and certificates ------------------------------------------
    def tls_conn(self, offset=1, host="127.0.0.1"):
        ctx = ssl.create_default_context(cafile=os.path.join(self.certs, "ca.crt"))
        return http.client.HTTPSConnection(host, self.port + offset, timeout=30, context=ctx)

    def test_make_certs(self):
        d = tempfile.mkdtemp(prefix="emulator-certs-")
        try:
            for _ in range(2):                          # idempotent: overwrites
                t = time.monotonic()
                subprocess.run(["bash", MAKE_CERTS, d], check=True, capture_output=True,
                               timeout=30)
                self.assertLess(time.monotonic() - t, 5)
            names = ("ca", "server", "wrong-name", "expired", "self-signed", "client",
                     "client-expiring")
            self.assertEqual(sorted(os.listdir(d)),
                             sorted(n + ext for n in names for ext in (".crt", ".key")))
            for n in names:
                self.assertEqual(os.stat(os.path.join(d, n + ".crt")).st_mode & 0o777, 0o644)
                self.assertEqual(os.stat(os.path.join(d, n + ".key")).st_mode & 0o777, 0o600)

            def openssl(*args):
                return subprocess.run(["openssl", *args], capture_output=True, text=True,
                                      cwd=d, timeout=30)

            for n, ok in (("server", True), ("wrong-name", True), ("expired", False),
                          ("self-signed", False)):
                r = openssl("verify", "-x509_strict", "-CAfile", "ca.crt", n + ".crt")
                self.assertEqual(r.returncode == 0, ok, (n, r.stdout, r.stderr))
            r = openssl("verify", "-CAfile", "ca.crt", "expired.crt")
            self.assertIn("certificate has expired", r.stdout + r.stderr)
            for n, san in (("server", "IP Address:127.0.0.1, DNS:localhost"),
                           ("wrong-name", "DNS:other.example"),
                           ("expired", "IP Address:127.0.0.1, DNS:localhost"),
                           ("self-signed", "IP Address:127.0.0.1")):
                self.assertIn(san, openssl("x509", "-in", n + ".crt", "-noout", "-ext",
                                           "subjectAltName").stdout, n)
            dates = openssl("x509", "-in", "expired.crt", "-noout", "-dates").stdout
            self.assertIn("notAfter=Jan  2 00:00:00 2020 GMT", dates)
            for n, days in (("client", 3650), ("client-expiring", 10)):
                text = openssl("x509", "-in", n + ".crt", "-noout", "-text").stdout
                self.assertIn("rsaEncryption", text)
                self.assertIn("Public-Key: (2048 bit)", text)
                # OpenSSL 3.0 prints "CN = x", 3.5 (Debian 13+) "CN=x"
                self.assertRegex(text, r"Subject: CN ?= ?pcqual-test-app\n")
                end = openssl("x509", "-in", n + ".crt", "-noout", "-enddate").stdout
                end = datetime.strptime(end.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
                left = (end.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).days
                self.assertIn(left, (days - 1, days), n)
            # valid now, expiring within 30 days; the long one is not
            self.assertEqual(openssl("x509", "-in", "client-expiring.crt", "-noout",
                                     "-checkend", str(30 * 86400)).returncode, 1)
            self.assertEqual(openssl("x509", "-in", "client-expiring.crt", "-noout",
                                     "-checkend", "0").returncode, 0)
            self.assertEqual(openssl("x509", "-in", "client.crt", "-noout",
                                     "-checkend", str(30 * 86400)).returncode, 0)
        finally:
            shutil.rmtree(d)

    def test_tls_listeners(self):
        self.assertEqual(self.proc.also, "pc_emulator also on " + " ".join(
            ["https://127.0.0.1:%d (%s)" % (self.port + i, n) for i, n in
             enumerate(("server", "wrong-name", "expired", "self-signed"), 1)]
            + ["http://127.0.0.1:%d (redirect target)" % (self.port + 5)]))
        for host in ("127.0.0.1", "localhost"):
            c = self.tls_conn(host=host)
            self.assertEqual(self.req("GET", "/_emulator/health", conn=c)[2], b"ok")
            sock = c.sock
            # keep-alive; the same app and state as the plain listener
            status, _, data = self.post_token(APP_FORM, conn=c)
            token = json.loads(data)["access_token"]
            for tenant in (P1 + "01", P2 + "404", GENERIC):
                self.get_q(tenant, token, conn=c)
                self.assertIs(c.sock, sock)
            self.assertEqual(self.get_q(P1 + "01", token)[0], 200)     # token valid on P too
            c.close()
        self.assertEqual(self.get_q(P2 + "604", conn=self.tls_conn())[0], 200)
        self.assertEqual(len(self.log_lines()), 12)       # all in the one log
        for offset, reason in ((2, "match"), (3, "expired"), (4, "self-signed")):
            with self.assertRaises(ssl.SSLCertVerificationError) as cm:
                self.tls_conn(offset).request("GET", "/_emulator/health")
            self.assertIn(reason, str(cm.exception), offset)
        # without verification the other three serve the app too
        for offset in (2, 3, 4):
            c = http.client.HTTPSConnection("127.0.0.1", self.port + offset, timeout=30,
                                            context=ssl._create_unverified_context())
            self.assertEqual(self.req("GET", "/_emulator/health", conn=c)[2], b"ok")
            c.close()
        self.assertTrue(self.try_health(self.port))

    def test_tls_slow_client_leaving(self):
        c = self.tls_conn()
        c.connect()
        c.sock.sendall(("GET /v1/customers/%s611/qualifications HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer %s\r\n\r\n" % (P2, self.token)).encode())
        time.sleep(0.2)
        c.close()
        self.wait_for(lambda: any(line[5] == "499" for line in self.log_lines()),
                      "the slow handler to notice the TLS client left")

    # -- redirects ---------------------------------------------------------------
    def test_redirects_and_target(self):
        target = "http://127.0.0.1:%d" % (self.port + 5)
        user = self.new_token(USER_FORM)
        for method, token in (("GET", self.token), ("POST", user)):
            status, r, _ = self.req(method, "/v1/customers/%s302/qualifications" % P2,
                                    {"qualification": "StateOwnedEntity"}, token=token)
            self.assertEqual((status, r.getheader("Location")), (302, target + "/stolen"))
        status, r, data = self.post_token(APP_FORM, tenant="Redirect.onmicrosoft.com")
        self.assertEqual((status, r.getheader("Location"), data),
                         (307, target + "/stolen-token", b""))
        self.assertNotIn("redirect-target", [row[3] for row in self.log_lines()])
        self.assertEqual(self.stats()["redirect_target_requests"], 0)
        # what reaching the target looks like
        status, _, data = self.req("POST", "/stolen-token", urlencode(APP_FORM),
                                   headers={"Content-Type":
                                            "application/x-www-form-urlencoded"},
                                   conn=self.conn(self.port + 5))
        self.assertEqual((status, json.loads(data)), (200, {"redirected": True}))
        status, _, data = self.req("GET", "/stolen", token="emu-app-1",
                                   conn=self.conn(self.port + 5))
        self.assertEqual(status, 200)
        rows = self.log_lines("?kind=redirect-target")
        self.assertEqual([(r[1], r[2], r[6], r[13]) for r in rows],
                         [("POST", "/stolen-token", "\\N",
                           "grant_type,client_id,client_secret,resource"),
                          ("GET", "/stolen", "Bearer emu-app-1", "\\N")])
        self.assertNotIn(b"pcqual-test-secret", self.control("GET", "requests"))
        self.assertEqual(self.stats()["redirect_target_requests"], 2)

    # -- client assertions ---------------------------------------------------------
    def b64url(self, data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def x5t(self, cert="client.crt"):
        der = subprocess.run(["openssl", "x509", "-in", os.path.join(self.certs, cert),
                              "-outform", "DER"], capture_output=True, check=True).stdout
        return self.b64url(hashlib.sha1(der).digest())

    def assertion(self, aud=None, header=(), claims=(), key="client.key", tamper=False,
                  cert="client.crt"):
        now = int(time.time())
        h = {"alg": "RS256", "typ": "JWT", "x5t": self.x5t(cert)}
        c = {"aud": aud or "http://127.0.0.1:%d/partner-tenant/oauth2/token" % self.port,
             "iss": "pcqual-test-app", "sub": "pcqual-test-app", "jti": str(uuid.uuid4()),
             "nbf": now, "exp": now + 600}
        h.update(header)
        c.update(claims)

        def signing_input():
            return ".".join(self.b64url(json.dumps({k: v for k, v in d.items()
                                                    if v is not None}).encode())
                            for d in (h, c))

        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign",
                              os.path.join(self.certs, key)], input=signing_input().encode(),
                             capture_output=True, check=True).stdout
        if tamper:
            c["exp"] += 1              # the signature no longer matches the claims
        return signing_input() + "." + self.b64url(sig)

    def assertion_form(self, jwt, **extra):
        return dict({"grant_type": "client_credentials", "client_id": "pcqual-test-app",
                     "client_assertion_type":
                         "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                     "client_assertion": jwt,
                     "resource": "https://api.partnercenter.microsoft.com"}, **extra)

    def test_client_assertion_success(self):
        jwt = self.assertion()
        status, _, data = self.post_token(self.assertion_form(jwt))
        self.assertEqual(status, 200, data)
        body = json.loads(data)
        self.assertRegex(body["access_token"], r"^emu-app-\d+$")
        self.assertEqual(body["expires_in"], "3600")
        self.assertEqual(self.get_q(P1 + "01", body["access_token"])[0], 200)
        # over TLS the audience is the https URL; no client_id field is fine
        form = self.assertion_form(self.assertion(
            "https://127.0.0.1:%d/partner-tenant/oauth2/token" % (self.port + 1)))
        del form["client_id"]
        self.assertEqual(self.post_token(form, conn=self.tls_conn())[0], 200)
        # replay
        status, _, data = self.post_token(self.assertion_form(jwt))
        self.assertEqual((status, json.loads(data)["error_codes"]), (401, [50013]))
        row = self.log_lines("?kind=token")[1]
        self.assertEqual((row[5], row[6], row[13]), (
            "200", "client_credentials+assertion",
            "grant_type,client_id,client_assertion_type,client_assertion,resource"))
        self.assertNotIn(jwt.encode(), self.control("GET", "requests?format=json"))
        self.assertEqual(self.stats()["assertion_grants"], 2)
        # --tls-dir registers client-expiring.crt too; its key does not sign
        # for client.crt's thumbprint
        status, _, data = self.post_token(self.assertion_form(self.assertion(
            cert="client-expiring.crt", key="client-expiring.key")))
        self.assertEqual(status, 200, data)
        status, _, data = self.post_token(self.assertion_form(self.assertion(
            key="client-expiring.key")))
        self.assertEqual((status, json.loads(data)["error_codes"]), (401, [700027]))

    def test_client_assertion_failures(self):
        now = int(time.time())
        other_aud = "http://localhost:%d/partner-tenant/oauth2/token" % self.port
        cases = [  # (form, status, AADSTS code)
            (self.assertion_form(self.assertion(), client_secret="pcqual-test-secret"),
             400, 9002313),
            (self.assertion_form(self.assertion(), client_assertion_type="jwt"), 400, 9002313),
            (self.assertion_form("a.b"), 400, 50027),
            (self.assertion_form("!!.??.**"), 400, 50027),
            (self.assertion_form(self.b64url(b"[1]") + ".e30.c2ln"), 400, 50027),
            (self.assertion_form(self.assertion(header={"typ": "JOSE"})), 400, 50027),
            (self.assertion_form(self.assertion(claims={"jti": None})), 400, 50027),
            (self.assertion_form(self.assertion(header={"alg": "HS256"})), 401, 700027),
            (self.assertion_form(self.assertion(header={"x5t": self.b64url(b"x" * 20)})),
             401, 700027),
            (self.assertion_form(self.assertion(header={"x5t": None})), 401, 700027),
            (self.assertion_form(self.assertion(key="server.key")), 401, 700027),
            (self.assertion_form(self.assertion(tamper=True)), 401, 700027),
            (self.assertion_form(self.assertion(claims={"iss": "someone"})), 401, 700016),
            (self.assertion_form(self.assertion(claims={"sub": "someone"})), 401, 700016),
            (self.assertion_form(self.assertion(), client_id="other-app"), 401, 700021),
            (self.assertion_form(self.assertion(other_aud)), 401, 700023),
            (self.assertion_form(self.assertion(
                "https://127.0.0.1:%d/partner-tenant/oauth2/token" % self.port)), 401, 700023),
            (self.assertion_form(self.assertion(claims={"exp": now - 10})), 401, 700024),
            (self.assertion_form(self.assertion(claims={"exp": now + 90000})), 401, 700024),
            (self.assertion_form(self.assertion(claims={"exp": None})), 401, 700024),
            (self.assertion_form(self.assertion(claims={"nbf": now + 600})), 401, 700024),
        ]
        for form, status, code in cases:
            got, _, data = self.post_token(form)
            body = json.loads(data)
            self.assertEqual((got, body["error"], body["error_codes"]),
                             (status, "invalid_client", [code]), form)
            self.assertTrue(body["error_description"].startswith("AADSTS%d: " % code))
            for part in form["client_assertion"].split("."):
                if len(part) > 8:
                    self.assertNotIn(part, data.decode())
            self.assertNotIn(b"pcqual-test-secret", data)
        # an assertion whose aud uses the Host header the client sent
        status, _, data = self.req("POST", "/partner-tenant/oauth2/token",
                                   urlencode(self.assertion_form(self.assertion(other_aud))),
                                   headers={"Content-Type": "application/x-www-form-urlencoded",
                                            "Host": "localhost:%d" % self.port})
        self.assertEqual(status, 200, data)
        self.assertNotIn(b"client_assertion=", self.control("GET", "requests"))

    def test_client_assertion_without_certificate(self):
        # the slow instance has no --tls-dir: no certificate registered
        c = self.conn(self.slow_port)
        status, _, data = self.post_token(self.assertion_form(self.assertion()), conn=c)
        c.close()
        self.assertEqual((status, json.loads(data)["error_codes"]), (401, [700027]))

    # -- refresh rotation and token faults ------------------------------------------
    def refresh(self, refresh_token):
        status, _, data = self.post_token(dict(USER_FORM, refresh_token=refresh_token))
        body = json.loads(data)
        self.assertNotIn(refresh_token.encode(), data if status != 200 else b"")
        return status, body.get("refresh_token") or body.get("error_codes", [None])[0] \
            or body["error_description"][:12]

    def test_refresh_rotation(self):
        s1, r1 = self.refresh("pcqual-test-refresh")
        s2, r2 = self.refresh("pcqual-test-refresh")
        self.assertEqual((s1, s2), (200, 200))
        self.assertNotEqual(r1, r2)
        self.assertEqual(self.refresh(r1)[0], 200)
        self.assertEqual(self.refresh(r1)[0], 200)          # not strict: reusable
        self.assertEqual(self.refresh("pcqual-test-refresh-rot-999999"),
                         (400, "AADSTS70000:"))
        self.config(refresh_rotation_strict="on")
        s, r3 = self.refresh("pcqual-test-refresh")
        self.assertEqual(s, 200)
        self.assertEqual(self.refresh("pcqual-test-refresh"), (400, 70008))
        s, r4 = self.refresh(r3)
        self.assertEqual(s, 200)
        self.assertEqual(self.refresh(r3), (400, 70008))
        self.assertEqual(self.refresh(r4)[0], 200)
        self.assertEqual(self.stats()["refresh_grants"], 7)
        self.control("POST", "reset")
        self.config(refresh_rotation_strict="on")
        self.assertEqual(self.refresh("pcqual-test-refresh")[0], 200)
        self.assertEqual(self.refresh(r3)[0], 200)           # issued ones survive reset
        self.assertNotIn(b"pcqual-test-refresh", self.control("GET", "requests"))

    def test_token_faults(self):
        fresh_forms = (lambda: APP_FORM, lambda: USER_FORM,
                       lambda: self.assertion_form(self.assertion()))
        for form in fresh_forms:
            self.config(token_fault="crlf")
            status, _, data = self.post_token(form())
            self.assertEqual(status, 200)
            self.assertIn("\r\n", json.loads(data)["access_token"])
            self.config(token_fault="no_token")
            status, _, data = self.post_token(form())
            self.assertEqual(status, 200)
            self.assertNotIn("access_token", json.loads(data))
            self.config(token_fault="non_json")
            status, r, data = self.post_token(form())
            self.assertEqual((status, r.getheader("Content-Type")), (200, "text/html"))
            self.assertRaises(ValueError, json.loads, data)
            self.config(token_fault="unavailable")
            status, _, data = self.post_token(form())
            self.assertEqual((status, json.loads(data)["error"]), (503, "temporarily_unavailable"))
        # errors are not affected
        self.assertEqual(self.post_token(dict(APP_FORM, client_secret="x"))[0], 401)
        self.config(token_fault="off")
        self.assertIn("access_token", json.loads(self.post_token(APP_FORM)[2]))

    # -- validation codes ------------------------------------------------------------
    def test_validations(self):
        path = "/v1/customers/all/validations"
        user = self.new_token(USER_FORM)
        status, r, data = self.req("GET", path, token=user)
        self.assertEqual(status, 200)
        items = json.loads(data)
        self.assertEqual(items[0], {
            "partnerId": "9daaeb1c-4195-4db5-9f1d-509eb70c8c2d",
            "organizationName": "Contoso, Inc.", "validationId": "12345", "maxCreates": 5,
            "remainingCreates": 4, "eTag": "W/\"datetime'2018-10-10T18%3A49%3A58.727348Z'\""})
        self.assertEqual(len(items), 3)
        self.assertEqual([i["remainingCreates"] for i in items], [4, 0, 10])
        self.assertIsNone(items[2]["organizationName"])
        self.assertTrue(all(isinstance(i["validationId"], str) for i in items))
        self.config(validations_shape="wrapped")
        self.assertEqual(json.loads(self.req("GET", path, token=self.token)[2]),
                         {"totalCount": 3, "items": items})
        self.config(validations_shape="empty")
        self.assertEqual(self.req("GET", path, token=self.token)[2], b"[]")
        self.assertEqual(self.req("POST", path, {}, token=user)[0], 405)
        self.assertEqual(self.req("GET", path, token="bogus")[0], 401)
        self.assertEqual(self.stats()["validations_requests"], 3)

    # -- JWT-shaped tokens, MFA, idle refresh tokens, MS-Contract-Version -----------
    def claims_of(self, token):
        parts = token.split(".")
        self.assertEqual(len(parts), 3, token)
        for p in parts:
            self.assertRegex(p, r"^[A-Za-z0-9_-]+$")
        raw = parts[1]
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))

    def test_user_tokens_are_jwts(self):
        t0 = int(time.time())
        status, _, data = self.post_token(USER_FORM, tenant="partner.example")
        token = json.loads(data)["access_token"]
        self.assertRegex(token, USER_TOKEN_RE)
        claims = self.claims_of(token)
        self.assertEqual(claims["amr"], ["pwd", "mfa"])
        self.assertEqual(claims["aud"], "https://api.partnercenter.microsoft.com")
        self.assertEqual(claims["tid"], "partner.example")
        self.assertEqual(claims["uti"], token.split(".")[0])
        self.assertEqual(claims["scp"], "openid")
        self.assertTrue(t0 + 3600 <= claims["exp"] <= int(time.time()) + 3600, claims)
        self.assertEqual(self.get_q(GENERIC, token)[0], 200)
        # a token the emulator did not issue is refused, even JWT-shaped
        forged = token.split(".")
        forged[1] = self.b64url(json.dumps(dict(claims, exp=claims["exp"] + 1)).encode())
        self.assertEqual(self.get_q(GENERIC, ".".join(forged))[0], 401)
        self.config(token_mfa="off", token_expires_in=120)
        plain = self.new_token(USER_FORM)
        claims = self.claims_of(plain)
        self.assertEqual(claims["amr"], ["pwd"])
        self.assertLessEqual(claims["exp"], int(time.time()) + 120)
        self.assertEqual(self.get_q(GENERIC, plain)[0], 200)
        # the header part: the id, or a real JSON header
        self.config(jwt_header="json")
        token = self.new_token(USER_FORM)
        head = token.split(".")[0]
        self.assertEqual(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))),
                         {"typ": "JWT", "alg": "RS256", "kid": self.claims_of(token)["uti"]})
        self.assertEqual(self.get_q(GENERIC, token)[0], 200)
        # App-only: opaque unless app_token_jwt=on; then no amr
        self.assertRegex(self.new_token(APP_FORM), r"^emu-app-\d+$")
        self.config(app_token_jwt="on", jwt_header="id")
        app = self.new_token(APP_FORM)
        self.assertRegex(app, r"^emu-app-\d+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
        claims = self.claims_of(app)
        self.assertNotIn("amr", claims)
        self.assertEqual(claims["idtyp"], "app")
        self.assertEqual(self.get_q(GENERIC, app)[0], 200)
        # still App-only for the endpoints that refuse it
        status, _, data = self.req("POST", "/v1/customers/%s/qualifications" % GENERIC,
                                   {"qualification": "StateOwnedEntity"}, token=app)
        self.assertEqual((status, json.loads(data)["code"]), (403, 900329))

    def test_require_mfa(self):
        with_mfa = self.new_token(USER_FORM)
        self.config(token_mfa="off")
        without = self.new_token(USER_FORM)
        for token in (with_mfa, without, self.token, "pcqual-static-token"):
            self.assertEqual(self.get_q(GENERIC, token)[0], 200)
        self.config(require_mfa="on")
        status, r, data = self.get_q(GENERIC, without)
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(data)["code"], 900421)
        self.assertEqual(r.getheader("WWW-Authenticate"), 'Bearer error="insufficient_claims"')
        status, _, data = self.req("POST", "/v1/customers/%s/qualifications" % GENERIC,
                                   {"qualification": "StateOwnedEntity"}, token=without)
        self.assertEqual((status, json.loads(data)["code"]), (401, 900421))
        for token in (with_mfa, self.token, "pcqual-static-token"):
            self.assertEqual(self.get_q(GENERIC, token)[0], 200)
        self.assertEqual(self.get_q(GENERIC, "garbage")[0], 401)
        self.assertEqual(json.loads(self.get_q(GENERIC, "garbage")[2])["code"], 900420)
        self.config(require_mfa="off")
        self.assertEqual(self.get_q(GENERIC, without)[0], 200)

    def test_refresh_token_expired_by_disuse(self):
        status, _, data = self.post_token(dict(USER_FORM, refresh_token="pcqual-test-refresh-idle"))
        body = json.loads(data)
        self.assertEqual((status, body["error"], body["error_codes"]),
                         (400, "invalid_grant", [700082]))
        self.assertTrue(body["error_description"].startswith(
            "AADSTS700082: The refresh token has expired due to inactivity."))
        s, r1 = self.refresh("pcqual-test-refresh")
        self.assertEqual(s, 200)
        self.config(refresh_expired="on", refresh_rotation_strict="on")
        for rt in ("pcqual-test-refresh", r1):
            self.assertEqual(self.refresh(rt), (400, 700082))
        self.assertEqual(self.refresh("unknown-token"), (400, "AADSTS70000:"))
        self.config(refresh_expired="off")
        self.assertEqual(self.refresh(r1)[0], 200)      # the refusals were no use
        self.assertEqual(self.refresh("pcqual-test-refresh-idle"), (400, 700082))

    def test_contract_version(self):
        self.get_q(GENERIC, headers={"MS-Contract-Version": "v1"})
        self.get_q(GENERIC)
        rows = self.log_lines("?kind=api")
        self.assertEqual([r[16] for r in rows], ["v1", "\\N"])
        self.assertEqual(json.loads(self.control("GET", "requests?format=json"))[1]
                         ["contract_version"], "v1")
        self.config(require_contract_version="on")
        for value in (None, "v2", "V1", ""):
            h = {} if value is None else {"MS-Contract-Version": value}
            status, _, data = self.get_q(GENERIC, headers=h)
            self.assertEqual((status, json.loads(data)["code"]), (400, 400), value)
        self.assertEqual(self.get_q(GENERIC, headers={"MS-Contract-Version": "v1"})[0], 200)
        self.assertEqual(self.get_q(GENERIC, "bad")[0], 401)         # the token first
        self.assertEqual(self.new_token()[:8], "emu-app-")            # not the token endpoint
        self.config(require_contract_version="off")
        self.assertEqual(self.get_q(GENERIC)[0], 200)

    # -- a customer's validation status and linked validation code -----------------
    def vstatus(self, tenant, token, query="?type=account", **kw):
        status, r, data = self.req("GET", "/v1/customers/%s/validationStatus%s" % (tenant, query),
                                   token=token, **kw)
        return status, r, data

    def test_validation_status(self):
        user = self.new_token(USER_FORM)
        app_only = {"code": 900329, "description": "This resource doesn't support "
                    "application-only authentication.", "data": [], "source": "PartnerFD"}
        for token in (self.token, "pcqual-static-token"):
            status, _, data = self.vstatus(GENERIC, token)
            self.assertEqual((status, json.loads(data)), (403, app_only))
        self.assertEqual(self.vstatus(GENERIC, "bogus")[0], 401)
        expected = {"0": "Allowed", "1": "UnderReview", "2": "NotAllowed", "3": "Unknown",
                    "4": "Allowed", "9": "UnderReview", "a": "NotAllowed", "F": "Unknown"}
        for digit, want in expected.items():
            tenant = "8a4c2e10-5b7d-4f3e-9c21-01234567890" + digit
            status, r, data = self.vstatus(tenant, user)
            self.assertEqual(status, 200)
            self.assertJson(r, data, {"type": "account", "status": want,
                                      "lastUpdateDateTime": "2024-03-01T10:00:00Z"})
        for query in ("", "?type=Account", "?type=", "?kind=account", "?type=customer"):
            status, _, data = self.vstatus(GENERIC, user, query)
            self.assertEqual((status, json.loads(data)["code"]), (400, 400), query)
        self.assertEqual(self.vstatus("not-a-guid", user)[0], 400)
        self.assertEqual(self.vstatus("all", user)[0], 400)
        status, _, data = self.vstatus("fa110000-0000-0000-0000-000000000000", user)
        self.assertEqual((status, json.loads(data)), (404, NOT_FOUND))
        # the fault tenants
        self.assertEqual(self.vstatus(P2 + "404", user)[0], 404)
        self.assertEqual(self.vstatus(P2 + "429", user)[1].getheader("Retry-After"), "7")
        self.assertEqual(self.vstatus(P2 + "503", user)[0], 503)
        self.assertIn(b"502 Bad Gateway", self.vstatus(P2 + "502", user)[2])
        self.assertRaises(ValueError, json.loads, self.vstatus(P2 + "600", user)[2])
        self.assertEqual(self.vstatus(P2 + "601", user)[2], b"42")
        self.assertNotIn("status", json.loads(self.vstatus(P2 + "602", user)[2]))
        self.assertEqual(json.loads(self.vstatus(P2 + "603", user)[2])["status"], 7)
        self.assertEqual(self.vstatus(P2 + "604", user)[2], b"")
        self.assertEqual(len(json.loads(self.vstatus(P2 + "612", user)[2])["status"]), 102400)
        self.assertEqual(self.vstatus(P2 + "302", user)[1].getheader("Location"),
                         "http://127.0.0.1:%d/stolen" % (self.port + 5))
        self.assertRaises(http.client.RemoteDisconnected, self.vstatus, P2 + "609", user)
        self.assertRaises(http.client.IncompleteRead, self.vstatus, P2 + "610", user)
        # the retry tenants: counted apart from the qualifications endpoint
        self.assertEqual([self.vstatus(P3 + "1", user)[0] for _ in range(2)], [429, 200])
        self.assertEqual(json.loads(self.vstatus(P3 + "1", user)[2])["status"], "UnderReview")
        self.assertEqual(self.get_q(P3 + "1")[0], 429)
        self.assertEqual(self.req("POST", "/v1/customers/%s/validationStatus?type=account"
                                  % GENERIC, {}, token=user)[0], 405)
        self.assertEqual(self.stats()["validation_status_requests"], 34)

    def test_customer_validations(self):
        user = self.new_token(USER_FORM)

        def linked(tenant, token=None):
            status, r, data = self.req("GET", "/v1/customers/%s/validations" % tenant,
                                       token=token or self.token)
            self.assertEqual(status, 200, data)
            return json.loads(data)

        for token in (self.token, user, "pcqual-static-token"):
            self.assertEqual(linked(GENERIC, token), [])
        fixture = "c0dec0de-0000-4000-8000-000000000001"
        self.assertEqual(linked(fixture.upper()), [{
            "customerId": fixture, "partnerId": "9daaeb1c-4195-4db5-9f1d-509eb70c8c2d",
            "organizationName": "Contoso, Inc.", "validationId": "12345",
            "eTag": "W/\"datetime'2018-10-10T18%3A49%3A58.727348Z'\""}])
        # a GCC create links its code; Education does not
        t, e = str(uuid.uuid4()), str(uuid.uuid4())
        gcc = {"qualification": "GovernmentCommunityCloud", "validationCode": "24680"}
        self.assertEqual(self.post_q(t, gcc, user)[0], 201)
        self.assertEqual(self.post_q(e, {"qualification": "Education",
                                         "educationSegment": "K12"}, user)[0], 201)
        got = linked(t)
        self.assertEqual([(g["customerId"], g["validationId"], g["organizationName"])
                          for g in got], [(t, "24680", None)])
        self.assertEqual(linked(e), [])
        # a failed create links nothing
        f = str(uuid.uuid4())
        self.assertEqual(self.post_q(f, dict(gcc, validationCode="67890"), user)[0], 400)
        self.assertEqual(linked(f), [])
        # errors and faults
        status, _, data = self.req("GET", "/v1/customers/nope/validations", token=self.token)
        self.assertEqual((status, json.loads(data)), (400, INVALID_CUSTOMER))
        self.assertEqual(self.req("GET", "/v1/customers/fa11aaaa-0000-0000-0000-000000000000"
                                  "/validations", token=self.token)[0], 404)
        self.assertEqual(self.req("GET", "/v1/customers/%s503/validations" % P2,
                                  token=self.token)[0], 503)
        status, _, data = self.req("GET", "/v1/customers/%s603/validations" % P2,
                                   token=self.token)
        self.assertEqual(json.loads(data), [{"validationId": 7}])
        self.assertEqual(self.req("DELETE", "/v1/customers/%s/validations" % GENERIC,
                                  token=self.token)[0], 405)
        self.assertEqual(self.stats()["customer_validations_requests"], 11)
        # "all" is still the partner's list
        self.assertEqual(len(linked("all")), 3)
        self.control("POST", "reset")
        self.token = self.new_token()
        self.assertEqual(linked(t), [])

    def test_overrides_of_the_validation_endpoints(self):
        user = self.new_token(USER_FORM)
        vs = {"type": "account", "status": "NotAllowed", "lastUpdateDateTime": None}
        self.override(GENERIC, {"validation_status": vs})
        self.override(GENERIC, {"validations": [{"validationId": "x"}]})
        self.assertEqual(json.loads(self.vstatus(GENERIC, user)[2]), vs)
        self.assertEqual(json.loads(self.req("GET", "/v1/customers/%s/validations" % GENERIC,
                                             token=self.token)[2]), [{"validationId": "x"}])
        self.assertEqual(json.loads(self.get_q(GENERIC)[2]), GENERIC_OK)   # untouched
        # the App-only and type checks come first
        self.assertEqual(self.vstatus(GENERIC, self.token)[0], 403)
        self.assertEqual(self.vstatus(GENERIC, user, "")[0], 400)
        shown = self.override(GENERIC, {"fail": 503, "endpoint": "validationStatus"})
        self.assertIsNone(shown["override"])
        self.assertEqual(sorted(shown["overrides"]), ["validationStatus", "validations"])
        self.assertEqual(shown["overrides"]["validationStatus"]["status"], 503)
        self.assertEqual(self.vstatus(GENERIC, user)[0], 503)
        self.assertEqual(self.get_q(GENERIC)[0], 200)
        # a fail without endpoint: all three; clear with an endpoint: that one
        self.override(GENERIC, {"fail": 429})
        self.assertEqual(self.vstatus(GENERIC, user)[0], 429)
        self.assertEqual(self.req("GET", "/v1/customers/%s/validations" % GENERIC,
                                  token=self.token)[0], 429)
        self.assertEqual(self.get_q(GENERIC)[0], 429)
        self.override(GENERIC, {"clear": True, "endpoint": "qualifications"})
        self.assertEqual(self.get_q(GENERIC)[0], 200)
        self.assertEqual(self.vstatus(GENERIC, user)[0], 429)
        self.assertEqual(self.stats()["overrides"], 1)
        shown = self.override(GENERIC, {"clear": True})
        self.assertEqual((shown["override"], shown["overrides"]), (None, {}))
        self.assertEqual(self.stats()["overrides"], 0)
        self.assertEqual(json.loads(self.vstatus(GENERIC, user)[2])["status"], "Unknown")
        for bad in ({"validation_status": vs, "endpoint": "validations"},
                    {"fail": 503, "endpoint": "nope"}, {"validations": [], "fail": 503},
                    {"clear": True, "endpoint": None}):
            self.override(GENERIC, bad, 400)

    # -- customer list -----------------------------------------------------------------
    def customers(self, query="", token_header=None, conn=None):
        h = {"MS-ContinuationToken": token_header} if token_header is not None else {}
        status, _, data = self.req("GET", "/v1/customers" + query, headers=h,
                                   token=self.token, conn=conn)
        return status, json.loads(data)

    def all_pages(self, query):
        status, page = self.customers(query)
        pages = [page]
        c = self.conn()
        while "next" in pages[-1]["links"]:
            self.assertEqual(status, 200, pages[-1])
            nxt = pages[-1]["links"]["next"]
            self.assertEqual((nxt["method"], nxt["headers"][0]["key"]),
                             ("GET", "MS-ContinuationToken"))
            status, page = self.customers(nxt["uri"][len("/v1/customers"):],
                                          nxt["headers"][0]["value"], conn=c)
            pages.append(page)
        c.close()
        return pages

    def test_customer_list_paging(self):
        pages = self.all_pages("")
        self.assertEqual([len(p["items"]) for p in pages], [40, 40, 20])
        self.assertEqual([p["totalCount"] for p in pages], [40, 40, 20])
        items = [i for p in pages for i in p["items"]]
        ids = [i["id"] for i in items]
        self.assertEqual(ids, ["cccccccc-0000-4000-8000-%012d" % n for n in range(1, 101)])
        first = items[0]
        self.assertEqual(first, {
            "id": ids[0], "companyProfile": {
                "tenantId": ids[0], "domain": "contoso-school-001.onmicrosoft.com",
                "companyName": "Contoso School 001",
                "attributes": {"objectType": "CustomerCompanyProfile"}},
            "relationshipToPartner": "reseller", "attributes": {"objectType": "Customer"}})
        self.assertEqual(items[1]["companyProfile"]["companyName"], "Fabrikam Bank 002")
        self.assertEqual(items[41]["companyProfile"]["companyName"],
                         "M\u00fcller Bildung GmbH \u2013 Z\u00fcrich \u65e5\u672c")
        self.assertNotIn("tenantId", items[76]["companyProfile"])
        self.assertEqual(sum(i["relationshipToPartner"] == "advisor" for i in items), 10)
        self.assertEqual(pages[0]["attributes"], {"objectType": "Collection"})
        self.assertEqual(pages[0]["links"]["next"]["uri"],
                         "/v1/customers?size=40&seekOperation=Next")
        tokens = [p["links"]["next"]["headers"][0]["value"] for p in pages[:2]]
        for t in tokens:
            self.assertTrue(set("+/=") <= set(t), t)
        self.assertNotIn("next", pages[-1]["links"])
        self.assertEqual(self.stats()["customer_pages"], 3)
        rows = self.log_lines("?kind=api")
        self.assertEqual([(r[4], r[14], r[15]) for r in rows],
                         [("\\N", "\\N", "\\N"), ("\\N", tokens[0], "size=40&seekOperation=Next"),
                          ("\\N", tokens[1], "size=40&seekOperation=Next")])
        # sizes
        self.assertEqual([len(p["items"]) for p in self.all_pages("?size=500")], [100])
        self.assertEqual([len(p["items"]) for p in self.all_pages("?size=33")], [33, 33, 33, 1])
        for bad in ("0", "501", "abc", "-1", ""):
            self.assertEqual(self.customers("?size=" + bad)[0], 400, bad)
        # broken continuation tokens
        t = tokens[0]
        altered = t[:10] + ("A" if t[10] != "A" else "B") + t[11:]
        for bad in (None, "", t.replace("+", " "), t[:-4], altered,
                    base64.b64encode(b'{"offset":0}').decode()):
            self.assertEqual(self.customers("?seekOperation=Next", bad)[0], 400, bad)
        self.assertEqual(self.customers("?seekOperation=Previous", t)[0], 400)
        # a token may be used again; size= on Next wins over the token's
        status, page = self.customers("?size=5&seekOperation=next", t)
        self.assertEqual((status, page["items"][0]["id"], len(page["items"])), (200, ids[40], 5))
        self.assertEqual(self.req("POST", "/v1/customers", {}, token=self.token)[0], 405)
        # config customer_count
        self.config(customer_count=1250)
        pages = self.all_pages("?size=500")
        self.assertEqual([len(p["items"]) for p in pages], [500, 500, 250])
        last = pages[-1]["items"][-1]
        self.assertEqual((last["id"], last["companyProfile"]["companyName"],
                          last["relationshipToPartner"]),
                         ("cccccccc-0000-4000-8000-000000001250", "Woodgrove Hospital 1250",
                          "advisor"))
        self.config(customer_count=0)
        status, page = self.customers()
        self.assertEqual((status, page["totalCount"], page["items"]), (200, 0, []))
        self.assertNotIn("next", page["links"])

    def test_customer_list_filter(self):
        def names(field, value, size=40):
            q = "?size=%d&filter=%s" % (size, quote(json.dumps(
                {"Field": field, "Value": value, "Operator": "starts_with"})))
            return [i["companyProfile"]["companyName"] for p in self.all_pages(q)
                    for i in p["items"]]

        contoso = names("CompanyName", "contoso", size=7)
        self.assertEqual(len(contoso), 20)
        self.assertTrue(all(n.startswith("Contoso School") for n in contoso))
        self.assertEqual(names("Domain", "FAB"), ["Fabrikam Bank %03d" % n
                                                  for n in range(2, 101, 5) if n != 42])
        self.assertEqual(names("CompanyName", "m\u00dcller"),
                         ["M\u00fcller Bildung GmbH \u2013 Z\u00fcrich \u65e5\u672c"])
        self.assertEqual(names("Domain", "nobody"), [])
        self.assertEqual(len(names("CompanyName", "")), 100)
        for bad in ('{"Field": "Name", "Value": "c", "Operator": "starts_with"}',
                    '{"Field": "Domain", "Value": "c", "Operator": "contains"}',
                    '{"Field": "Domain", "Value": 1, "Operator": "starts_with"}',
                    '{"Field": "Domain"', '[]'):
            self.assertEqual(self.customers("?filter=" + quote(bad))[0], 400, bad)

    def test_customer_page_latency(self):
        self.config(customers_page_latency_ms=300)
        t = time.monotonic()
        status, page = self.customers("?size=60")
        self.assertLess(time.monotonic() - t, 0.25)
        t = time.monotonic()
        status, page = self.customers("?seekOperation=Next",
                                      page["links"]["next"]["headers"][0]["value"])
        self.assertGreaterEqual(time.monotonic() - t, 0.29)
        self.assertEqual((status, len(page["items"])), (200, 40))

    # -- overrides and the bulk population -------------------------------------------------
    def override(self, tenant, body, expect=200):
        status, _, data = self.req("POST", "/_emulator/customer?tenant=" + tenant, body)
        self.assertEqual(status, expect, data)
        return json.loads(data)

    def test_customer_overrides(self):
        items = [{"qualification": "Education", "vettingStatus": "Denied",
                  "vettingReason": "Not an Education Customer"}]
        for tenant in (GENERIC, P1 + "01"):
            self.override(tenant, {"qualifications": items})
            self.assertEqual(json.loads(self.get_q(tenant)[2]), items)
        self.override(GENERIC, {"fail": 503})
        for _ in range(2):
            status, _, data = self.get_q(GENERIC)
            self.assertEqual((status, json.loads(data)["code"]), (503, 503))
        self.override(GENERIC, {"fail": 400, "description": "bad\u001b[31m\r\nX"})
        status, _, data = self.get_q(GENERIC)
        self.assertEqual((status, json.loads(data)["description"]), (400, "bad\u001b[31m\r\nX"))
        self.override(GENERIC, {"fail": 403, "code": 900329, "description": "App-only"})
        status, _, data = self.get_q(GENERIC)
        self.assertEqual((status, json.loads(data)["code"]), (403, 900329))
        self.override(GENERIC, {"fail": 429})
        self.assertEqual(self.get_q(GENERIC)[1].getheader("Retry-After"), "1")
        status, _, data = self.req("GET", "/_emulator/customer?tenant=" + GENERIC.upper())
        self.assertEqual(json.loads(data)["override"]["status"], 429)
        self.assertEqual(self.stats()["overrides"], 2)
        self.assertEqual(self.override(GENERIC, {"clear": True})["override"], None)
        self.assertEqual(json.loads(self.get_q(GENERIC)[2]), GENERIC_OK)
        for bad in ({"fail": 200}, {"fail": "503"}, {"qualifications": {}}, {"clear": 1}, [],
                    {"fail": 503, "clear": True}, {"fail": 503, "description": 7}, "nope"):
            self.override(GENERIC, bad, 400)
        self.assertEqual(self.req("POST", "/_emulator/customer?tenant=x",
                                  {"clear": True})[0], 400)
        self.control("POST", "reset")
        self.token = self.new_token()
        self.assertEqual(json.loads(self.get_q(P1 + "01")[2]), SEED_APPROVED)

    def test_bulk_tenants(self):
        tenants = ["44444444-%04x-0000-0000-%012x" % (i, i * 7919) for i in range(100)]

        def buckets(t):
            h = hashlib.sha256(t.encode()).digest()
            return int.from_bytes(h[:4], "big") % 100, int.from_bytes(h[4:8], "big") % 100

        c = self.conn()

        def answers():
            out = {}
            for t in tenants:
                status, _, data = self.get_q(t, conn=c)
                out[t] = "503" if status == 503 else json.loads(data)[0]["vettingStatus"]
            return out

        self.config(change_percent=30, fail_percent=10)
        self.assertEqual(set(answers().values()), {"InReview"})      # epoch 0
        self.config(sync_epoch=1)
        got = answers()
        want = {t: "503" if buckets(t)[1] < 10 else
                "Approved" if buckets(t)[0] < 30 else "InReview" for t in tenants}
        self.assertEqual(got, want)
        self.assertTrue(10 < sum(v == "Approved" for v in got.values()) < 50)
        self.config(sync_epoch=2)
        self.assertEqual(set(answers().values()), {"InReview", "503"})
        self.config(fail_percent=0, change_percent=100, sync_epoch=3)
        self.assertEqual(set(answers().values()), {"Approved"})
        c.close()
        item = json.loads(self.get_q(tenants[0])[2])[0]
        self.assertEqual(item["vettingCreatedDate"], "2024-01-15T10:00:00Z")

    # -- request log: the new columns ------------------------------------------------------
    def test_request_log_bodies(self):
        user = self.new_token(USER_FORM)
        body = '{"qualification": "StateOwnedEntity", "website": "a\tb\nc\\\\d\x00"}'
        self.req("POST", "/v1/customers/%s/qualifications?x=1&y=%%20" % GENERIC, body,
                 headers={"Content-Type": "application/json; charset=utf-8"}, token=user)
        self.req("POST", "/somewhere", "client_secret=pcqual-test-secret&{\"json\":1}=2",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        rows = self.log_lines()
        post, other = rows[2], rows[3]
        self.assertEqual(len(post), LOG_COLUMNS)
        self.assertEqual(post[12], "application/json; charset=utf-8")
        self.assertEqual(copy_unescape(post[13]), body.replace("\x00", "\\x00"))
        self.assertEqual(post[15], "x=1&y=%20")
        self.assertEqual((other[3], other[13]), ("other", "client_secret,?"))
        self.assertEqual(rows[1][13], "grant_type,refresh_token,client_id,client_secret,"
                                      "resource,scope")
        entries = json.loads(self.control("GET", "requests?format=json"))
        self.assertEqual(entries[2]["body"], body)
        self.assertEqual(entries[2]["query"], "x=1&y=%20")
        self.assertIsNone(entries[0]["continuation_token"])
        text = self.control("GET", "requests") + self.control("GET", "requests?format=json")
        self.assertNotIn(b"pcqual-test-secret", text)
        self.assertNotIn(b"pcqual-test-refresh", text)

    def test_busy_redirect_port_is_an_error(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1] - 5
            proc = subprocess.run([sys.executable, EMULATOR, "--port", str(port), "--quiet"],
                                  capture_output=True, timeout=20)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"cannot listen on 127.0.0.1:", proc.stderr)

    # -- your own tests: --fixtures, --secret-file, --print-settings, --pid-file ----
    def own_emulator(self, args, cmd=None, cwd=None, env=None, pid_file=None):
        """Start an emulator with args, stdout to a file; wait until pid_file
        exists.  Returns (process, stdout path)."""
        d = tempfile.mkdtemp(prefix="emulator-own-")
        self.addCleanup(shutil.rmtree, d, True)
        out_path = os.path.join(d, "stdout")
        with open(out_path, "wb") as out:
            proc = subprocess.Popen((cmd or [sys.executable, EMULATOR]) + list(args),
                                    stdout=out, stderr=subprocess.PIPE, cwd=cwd, env=env)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        self.addCleanup(proc.stderr.close)
        self.wait_for(lambda: os.path.exists(pid_file) or proc.poll() is not None,
                      "the pid file", timeout=20)
        if proc.poll() is not None:
            self.fail("the emulator exited: %r" % proc.stderr.read())
        return proc, out_path

    def req_at(self, port, method, path, body=None, **kw):
        """req() on a new connection to port, closed afterwards."""
        c = self.conn(port)
        try:
            return self.req(method, path, body, conn=c, **kw)
        finally:
            c.close()

    def get_at(self, port, tenant, token):
        return self.req_at(port, "GET", "/v1/customers/%s/qualifications" % tenant,
                           token=token)

    SETTING_RE = r"^%sSET (pcqual\.[a-z_]+) = ('(?:[^']|'')*'|on);$"

    def parse_settings(self, lines, prefix=""):
        settings = {}
        for line in lines:
            m = re.match(self.SETTING_RE % re.escape(prefix), line)
            self.assertIsNotNone(m, line)
            v = m.group(2)
            settings[m.group(1)] = v if v == "on" else v[1:-1].replace("''", "'")
        self.assertEqual(len(settings), len(lines))
        return settings

    def check_settings(self, settings, port, secret):
        url = "http://127.0.0.1:%d" % port
        self.assertEqual(settings, {
            "pcqual.base_url": url, "pcqual.authority": url, "pcqual.allow_http": "on",
            "pcqual.partner_tenant": "pcqual-test-partner.onmicrosoft.com",
            "pcqual.client_id": "pcqual-test-app",
            "pcqual.client_secret_file": settings["pcqual.client_secret_file"]})
        path = settings["pcqual.client_secret_file"]
        self.assertTrue(os.path.isabs(path), path)
        self.assertEqual(os.path.realpath(path), os.path.realpath(secret))
        st = os.lstat(path)
        self.assertTrue(stat.S_ISREG(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        with open(path) as f:
            secret_value = f.read()
        self.assertEqual(secret_value, "pcqual-test-secret\n")
        # what pcqual does with these settings: a token, then a request
        form = dict(APP_FORM, client_id=settings["pcqual.client_id"],
                    client_secret=secret_value.strip())
        status, _, data = self.req_at(port, "POST", "/%s/oauth2/token"
                                      % settings["pcqual.partner_tenant"], urlencode(form),
                                      headers={"Content-Type":
                                               "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, data)
        return json.loads(data)["access_token"]

    def test_fixtures_file(self):
        d = tempfile.mkdtemp(prefix="emulator-fixtures-")
        self.addCleanup(shutil.rmtree, d, True)
        approved = "0E5B0A4C-8D3F-4A51-9A6E-3F1C2B7D9E01"
        none, gone, mixed = (approved[:-2].lower() + n for n in ("02", "04", "05"))
        items = [{"qualification": "Education", "vettingStatus": "Approved",
                  "vettingCreatedDate": "2024-01-01T00:00:00Z", "extra": [1, {"x": None}]},
                 {"qualification": "StateOwnedEntity"}]
        status_doc = {"type": "account", "status": "Allowed", "lastUpdateDateTime": None}
        fixtures = {"comment": ["ignored"], "customers": {
            approved: {"qualifications": items},
            none: {"qualifications": []},
            gone: {"fail": 404, "description": "Tenant not found.", "code": 60003},
            mixed: [{"validation_status": status_doc},
                    {"fail": 503, "endpoint": "qualifications"}]},
            "config": {"latency_ms": 20, "customer_count": 3, "require_mfa": True,
                       "token_fault": "off", "customers_page_latency_ms": 2.5}}
        path = os.path.join(d, "fixtures.json")
        with open(path, "w") as f:
            json.dump(fixtures, f)
        secret, pid = os.path.join(d, "secret"), os.path.join(d, "pid")
        proc, out = self.own_emulator(["--port", "0", "--fixtures", path, "--latency-ms", "1",
                                       "--secret-file", secret, "--print-settings",
                                       "--pid-file", pid], pid_file=pid)
        # ready: the listening lines (unchanged), then the settings, then the pid file
        with open(out) as f:
            lines = f.read().splitlines()
        m = re.fullmatch(r"pc_emulator listening on http://127\.0\.0\.1:(\d+)", lines[0])
        self.assertIsNotNone(m, lines)
        port = int(m.group(1))
        self.assertEqual(lines[1], "pc_emulator also on http://127.0.0.1:%d (redirect target)"
                         % (port + 5))
        self.assertEqual(len(lines), 8, lines)
        token = self.check_settings(self.parse_settings(lines[2:]), port, secret)
        with open(pid) as f:
            self.assertEqual(f.read(), "%d\n" % proc.pid)
        want_config = dict(DEFAULT_CONFIG, latency_ms=1, customer_count=3, require_mfa=True,
                           customers_page_latency_ms=2.5)

        def check_start_state():
            for tenant in (approved, approved.lower()):
                status, r, data = self.get_at(port, tenant, token)
                self.assertEqual(status, 200)
                self.assertJson(r, data, items)
            status, r, data = self.get_at(port, none, token)
            self.assertEqual((status, json.loads(data)), (200, []))
            status, _, data = self.get_at(port, gone, token)
            self.assertEqual((status, json.loads(data)), (404, dict(
                NOT_FOUND, description="Tenant not found.")))
            self.assertEqual(self.get_at(port, mixed, token)[0], 503)
            status, _, data = self.get_at(port, GENERIC, token)
            self.assertEqual((status, json.loads(data)), (200, GENERIC_OK))
            self.assertEqual(json.loads(self.control("GET", "config", port=port)), want_config)
            self.assertEqual(json.loads(self.control("GET", "stats", port=port))["overrides"], 4)

        check_start_state()
        user = json.loads(self.req_at(port, "POST", "/t/oauth2/token", urlencode(USER_FORM),
                                      headers={"Content-Type":
                                               "application/x-www-form-urlencoded"})[2])
        status, _, data = self.req_at(port, "GET", "/v1/customers/%s/validationStatus"
                                      "?type=account" % mixed, token=user["access_token"])
        self.assertEqual((status, json.loads(data)), (200, status_doc))
        # a test changes things; reset goes back to the file's start state
        self.req_at(port, "POST", "/_emulator/customer?tenant=" + approved, {"fail": 500})
        self.req_at(port, "POST", "/_emulator/customer?tenant=" + gone, {"clear": True})
        self.req_at(port, "POST", "/_emulator/config?customer_count=50&require_mfa=off")
        self.assertEqual(self.get_at(port, approved, token)[0], 500)
        self.assertEqual(self.get_at(port, gone, token)[0], 200)
        self.control("POST", "reset", port=port)
        token = self.check_settings(self.parse_settings(lines[2:]), port, secret)
        check_start_state()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.assertEqual(proc.stderr.read(), b"")
        with open(out) as f:
            self.assertEqual(f.read().splitlines()[8:], ["pc_emulator stopped"])
        self.assertFalse(os.path.exists(secret))
        self.assertFalse(os.path.exists(pid))

    def test_fixtures_bad_files(self):
        d = tempfile.mkdtemp(prefix="emulator-bad-fixtures-")
        self.addCleanup(shutil.rmtree, d, True)
        t = "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e01"
        cases = [
            ('{"customers": {', "not JSON: "),
            ("[]", 'expected a JSON object with "customers"'),
            ('{"customers": {}, "settings": {}}', "settings: unknown top-level key"),
            ('{"customers": []}', "customers: expected an object"),
            ('{"customers": {"not-a-guid": {"fail": 404}}}', "customers.not-a-guid: not a "
                                                             "customer tenant id"),
            ('{"customers": {"%s": {"fail": 404}, "%s": {"fail": 500}}}' % (t, t.upper()),
             "customers.%s: the same tenant as customers.%s" % (t.upper(), t)),
            ('{"customers": {"%s": {"fail": 404, "fail": 500}}}' % t,
             'the key "fail" appears twice'),
            ('{"customers": {"%s": {"fail": 200}}}' % t,
             "customers.%s.fail: expected an HTTP status from 400 to 599" % t),
            ('{"customers": {"%s": {"qualifications": {}}}}' % t,
             "customers.%s.qualifications: expected an array" % t),
            ('{"customers": {"%s": {"qualification": []}}}' % t,
             "customers.%s.qualification: unknown key" % t),
            ('{"customers": {"%s": [{"fail": 503}, {"clear": 1}]}}' % t,
             "customers.%s[1].clear: expected true" % t),
            ('{"customers": {"%s": []}}' % t, "customers.%s: expected an object" % t),
            ('{"customers": {"%s": "Approved"}}' % t, "customers.%s: expected a JSON object" % t),
            ('{"config": {"latency": 20}}', "config.latency: unknown setting (the settings: "),
            ('{"config": {"latency_ms": -5}}',
             "config.latency_ms: bad value -5: expected a number >= 0"),
            ('{"config": {"require_mfa": "maybe"}}',
             'config.require_mfa: bad value "maybe": expected on or off'),
            ('{"config": [["latency_ms", 1]]}', "config: expected an object"),
        ]
        procs = []
        for i, (content, want) in enumerate(cases):
            path = os.path.join(d, "f%d.json" % i)
            with open(path, "wb") as f:
                f.write(content if isinstance(content, bytes) else content.encode())
            procs.append((path, want, subprocess.Popen(
                [sys.executable, EMULATOR, "--port", "0", "--fixtures", path,
                 "--secret-file", os.path.join(d, "s%d" % i), "--pid-file",
                 os.path.join(d, "p%d" % i)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        missing = os.path.join(d, "missing.json")
        others = [
            (["--fixtures", missing], "pc_emulator: --fixtures %s: cannot read it: No such "
                                      "file or directory" % missing),
            (["--print-settings"], "--print-settings needs --secret-file"),
            (["--secret-file", os.path.join(d, "s"), "--print-settings", "--settings-format",
              "alter-database:"], "--settings-format must be sql or alter-database:DBNAME"),
            (["--secret-file", os.path.join(d, "nodir", "s")],
             "pc_emulator: --secret-file %s: cannot write it: No such file or directory"
             % os.path.join(d, "nodir", "s")),
        ]
        for args, want in others:
            procs.append((None, want, subprocess.Popen(
                [sys.executable, EMULATOR, "--port", "0"] + args,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        for path, want, proc in procs:
            out, err = proc.communicate(timeout=20)
            err = err.decode()
            with self.subTest(want=want):
                self.assertEqual(proc.returncode, 2, err)
                self.assertEqual(out, b"")             # it never listened
                self.assertIn(want, err)
                if path:
                    self.assertEqual(err.count("\n"), 1, err)
                    self.assertTrue(err.startswith("pc_emulator: --fixtures %s: " % path), err)
        self.assertEqual(sorted(os.listdir(d)), sorted("f%d.json" % i for i in range(len(cases))))

    def test_docstring_fixtures_example(self):
        with open(EMULATOR) as f:
            doc = f.read()
        m = re.search(r"--fixtures FILE   a JSON file.*?\n(\s+\{\n.*?\n          \})\n", doc, re.S)
        example = json.loads(m.group(1))
        d = tempfile.mkdtemp(prefix="emulator-doc-fixtures-")
        self.addCleanup(shutil.rmtree, d, True)
        path, pid = os.path.join(d, "f.json"), os.path.join(d, "pid")
        with open(path, "w") as f:
            json.dump(example, f)
        proc, _ = self.own_emulator(["--port", "0", "--quiet", "--fixtures", path,
                                     "--pid-file", pid], pid_file=pid)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.assertEqual(proc.stderr.read(), b"")

    def test_installed_command_from_another_directory(self):
        """pcqual-emulator, a symbolic link on PATH as Debian's package installs
        it, run from another directory with relative paths; --quiet with
        --print-settings prints only the settings, here as ALTER DATABASE."""
        d = tempfile.mkdtemp(prefix="emulator-installed-")
        self.addCleanup(shutil.rmtree, d, True)
        bindir, work = os.path.join(d, "bin"), os.path.join(d, "work")
        os.mkdir(bindir)
        os.mkdir(work)
        os.symlink(EMULATOR, os.path.join(bindir, "pcqual-emulator"))
        tenant = "0e5b0a4c-8d3f-4a51-9a6e-3f1c2b7d9e01"
        items = [{"qualification": "Education", "vettingStatus": "Denied",
                  "vettingReason": "Not an Education Customer"}]
        with open(os.path.join(work, "fixtures.json"), "w") as f:
            json.dump({"customers": {tenant: {"qualifications": items}}}, f)
        # a symbolic link (and a world-readable file behind it) where the
        # secret goes: replaced, never written through
        target = os.path.join(d, "target")
        with open(target, "w") as f:
            f.write("keep")
        os.chmod(target, 0o644)
        os.symlink(target, os.path.join(work, "secret"))
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        proc, out = self.own_emulator(
            ["--port", "0", "--quiet", "--print-settings", "--settings-format",
             'alter-database:my "db"', "--fixtures", "fixtures.json", "--secret-file", "secret",
             "--pid-file", "pid"],
            cmd=["pcqual-emulator"], cwd=work, env=env, pid_file=os.path.join(work, "pid"))
        with open(out) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 6, lines)
        settings = self.parse_settings(lines, 'ALTER DATABASE "my ""db""" ')
        port = int(settings["pcqual.base_url"].rsplit(":", 1)[1])
        token = self.check_settings(settings, port, os.path.join(work, "secret"))
        with open(target) as f:
            self.assertEqual(f.read(), "keep")
        status, _, data = self.get_at(port, tenant, token)
        self.assertEqual((status, json.loads(data)), (200, items))
        with open(os.path.join(work, "pid")) as f:
            self.assertEqual(int(f.read()), proc.pid)
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(10), 0)
        self.assertEqual(proc.stderr.read(), b"")
        with open(out) as f:
            self.assertEqual(f.read().splitlines(), lines)       # quiet: no "stopped"
        self.assertEqual(sorted(os.listdir(work)), ["fixtures.json"])
        self.assertTrue(os.path.exists(target))

    def test_control_errors_say_what_is_wrong(self):
        status, _, data = self.req("POST", "/_emulator/customer?tenant=" + GENERIC,
                                   {"fail": 404, "description": 7})
        self.assertEqual((status, json.loads(data)["problem"]),
                         (400, "description: expected a string"))
        status, _, data = self.req("POST", "/_emulator/customer?tenant=" + GENERIC, "[1")
        self.assertEqual((status, json.loads(data)["problem"]), (400, "the body is not JSON"))
        status, _, data = self.req("POST", "/_emulator/config?sync_epoch=1.5")
        self.assertEqual((status, json.loads(data)), (400, {
            "error": "bad value for sync_epoch: '1.5'", "expected": "an integer >= 0"}))
        status, _, data = self.req("POST", "/_emulator/config", {"latency_ms": 7, "nope": 1})
        self.assertEqual((status, json.loads(data)["error"]), (400, "unknown setting 'nope'"))
        self.assertEqual(json.loads(self.control("GET", "config"))["latency_ms"],
                         self.CLI_LATENCY)                      # all or nothing

    # -- last: results of the background slow request, and a clean stderr ------
    def test_zz_slow_fixture_full_wait(self):
        self.slow_thread.join(20)
        r = self.slow_result
        self.assertEqual(r.get("status"), 200, r)
        self.assertEqual(json.loads(r["body"]), SEED_APPROVED)
        self.assertGreaterEqual(r["elapsed"], 9.9)
        self.assertLess(r["elapsed"], 12)

    def test_zz_stderr_is_clean(self):
        self.assertTrue(self.try_health(self.port))
        self.stderr.seek(0)
        self.assertEqual(self.stderr.read().decode(errors="replace"), "")


if __name__ == "__main__":
    unittest.main()
