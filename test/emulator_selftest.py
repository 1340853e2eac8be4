#!/usr/bin/env python3
"""Self-test of test/pc_emulator.py (standard library only).

    python3 test/emulator_selftest.py [-v]

Starts the emulator on a free port in a subprocess (plus a second instance
for the 10-second slow fixture, so that request does not disturb the
in-flight counters of the first) and checks its rules with http.client and
raw sockets.  Runs in about 10 seconds (the slow fixture sets the pace).
"""

import email.utils
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "pc_emulator.py")

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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(*args):
    """Start the emulator on port 0; returns (process, port, stderr file)."""
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
        cls.proc, cls.port, cls.stderr = start_emulator("--latency-ms", str(cls.CLI_LATENCY))
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
        self.assertEqual(cfg, {"latency_ms": 20, "throttle_inflight": 8,
                               "throttle_retry_after": 1, "token_expires_in": 3600})
        cfg = self.config(throttle_retry_after=2, token_expires_in=60)
        self.assertEqual(cfg, {"latency_ms": 20, "throttle_inflight": 8,
                               "throttle_retry_after": 2, "token_expires_in": 60})
        for bad in ("config?nope=1", "config?latency_ms=-5", "config?throttle_inflight=x"):
            status, _, _ = self.req("POST", "/_emulator/" + bad)
            self.assertEqual(status, 400, bad)
        self.control("POST", "reset")
        self.assertEqual(json.loads(self.control("GET", "config")),
                         {"latency_ms": self.CLI_LATENCY, "throttle_inflight": 0,
                          "throttle_retry_after": 1, "token_expires_in": 3600})

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
        for form in (USER_FORM, {"grant_type": "refresh_token",
                                 "refresh_token": "pcqual-test-refresh"}):
            status, _, data = self.post_token(form)
            self.assertEqual(status, 200, data)
            body = json.loads(data)
            self.assertEqual(body["token_type"], "Bearer")
            self.assertIs(type(body["expires_in"]), int)    # a number here
            self.assertEqual(body["expires_in"], 3600)
            self.assertEqual(body["refresh_token"], "pcqual-test-refresh")
            self.assertIn("scope", body)
            self.assertRegex(body["access_token"], r"^emu-user-\d+$")

    def test_token_counter_is_global(self):
        n = [int(self.new_token(f).rsplit("-", 1)[1]) for f in (APP_FORM, USER_FORM, APP_FORM)]
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
        need_user = {"code": 600012,
                     "description": "This operation requires App+User authentication."}
        for token in (self.token, "pcqual-static-token"):
            status, _, data = self.req("POST", path, {"qualification": "Education"}, token=token)
            self.assertEqual((status, json.loads(data)), (403, need_user))
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
        # GCC needs a validation code, in the body or in ?code=
        self.assertEqual(self.req("POST", path, {"qualification": "GovernmentCommunityCloud"},
                                  token=user)[0], 400)
        status, _, data = self.req("POST", path, {"qualification": "GovernmentCommunityCloud",
                                                  "validationCode": "123"}, token=user)
        self.assertEqual((status, json.loads(data)["vettingStatus"]), (201, "InReview"))
        status, _, data = self.req("POST", path + "?code=123",
                                   {"qualification": "GovernmentCommunityCloud"}, token=user)
        self.assertEqual((status, json.loads(data)["qualification"]),
                         (201, "GovernmentCommunityCloud"))
        for bad in ({"qualification": "Nonprofit"}, {"qualification": 7}, {}, "[1]", "{nope",
                    None):
            self.assertEqual(self.req("POST", path, bad, token=user)[0], 400, bad)
        self.assertEqual(self.req("POST", "/v1/customers/nope/qualifications",
                                  {"qualification": "Education"}, token=user)[0], 400)

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
            self.assertEqual(len(row), 12, row)
        self.assertEqual([r[0] for r in rows], ["1", "2", "3", "4", "5", "6"])
        self.assertEqual(rows[0], ["1", "POST", "/partner-tenant/oauth2/token", "token",
                                   "partner-tenant", "200", "client_credentials",
                                   "\\N", "\\N", "\\N", "\\N", "\\N"])
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
