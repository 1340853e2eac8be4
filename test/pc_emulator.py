#!/usr/bin/env python3
"""Microsoft Partner Center emulator for the pcqual test suite.

Serves, on loopback only:

  POST /{partner_tenant}/oauth2/token           Azure AD v1 token endpoint
  GET  /v1/customers/{tenant}/qualifications    fixtures (see FIXTURES below)
  POST /v1/customers/{tenant}/qualifications    App+User only, answers 201
  /_emulator/...                                control and recording API

Standard library only (Python 3.11).  Usage:

  python3 test/pc_emulator.py [--host 127.0.0.1] [--port 18765]
                              [--latency-ms 0] [--quiet]

The default port may also come from the environment variable
PCQUAL_EMULATOR_PORT.  --port 0 picks a free port.  Unless --quiet is given,
the first line written to stdout is
  pc_emulator listening on http://HOST:PORT
so a harness can learn the port.

Control API (never delayed, never auth-checked, never recorded):
  GET  /_emulator/health     -> 200 "ok"
  POST /_emulator/reset      -> clear log, attempt counters and statistics,
                                config back to CLI defaults, revoke all tokens
  POST /_emulator/revoke     -> every token issued so far is rejected
  GET|POST /_emulator/config?latency_ms=&throttle_inflight=&
                             throttle_retry_after=&token_expires_in=
                             (throttle_inflight=0 or "off" disables throttling)
  GET  /_emulator/requests   -> PostgreSQL COPY text format, columns:
         seq, method, path, kind, tenant, status, auth, correlation_id,
         request_id, application, user_agent, accept
       ?format=json          -> JSON array (adds "time")
       ?since=N              -> only records with seq > N
       ?kind=api|token|other -> only records of that kind
  GET  /_emulator/stats      -> JSON counters
"""

import _thread
import argparse
import collections
import email.utils
import http
import http.server
import ipaddress
import json
import math
import os
import re
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from urllib.parse import parse_qsl, unquote

# --------------------------------------------------------------------------
# constants

APP_CLIENT_ID = "pcqual-test-app"
APP_CLIENT_SECRET = "pcqual-test-secret"
REFRESH_TOKEN = "pcqual-test-refresh"
STATIC_TOKEN = "pcqual-static-token"

DEFAULT_PORT = 18765
MAX_BODY = 16 * 1024 * 1024          # request bodies larger than this: 413
MAX_LOG = 500_000                    # recorded requests kept (oldest dropped)
IDLE_TIMEOUT = 120                   # seconds a keep-alive connection may idle
STREAM_LIMIT = 2 * 1024 ** 3         # the endless chunked stream stops here

JSON = "application/json"
HTML = "text/html"
TEXT = "text/plain; charset=utf-8"

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

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


AUTH_FAILED = pc_error(900420, "Authentication failed: the token is invalid or expired.")
INVALID_CUSTOMER = pc_error(2001, "Invalid customer id.")
TENANT_NOT_FOUND = pc_error(60003, "Tenant not found.")
NOT_FOUND = pc_error(404, "Resource not found.")
APP_USER_REQUIRED = json.dumps({"code": 600012, "description":
                                "This operation requires App+User authentication."}).encode()

AAD_INVALID_CLIENT = json.dumps({
    "error": "invalid_client",
    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                         "being sent in the request is the client secret value, not the "
                         "client secret ID.",
    "error_codes": [7000215]}).encode()
AAD_INVALID_GRANT = json.dumps({
    "error": "invalid_grant",
    "error_description": "AADSTS70000: Provided grant is invalid or malformed."}).encode()
AAD_UNSUPPORTED_GRANT = json.dumps({
    "error": "unsupported_grant_type",
    "error_description": "AADSTS70003: The app requested an unsupported grant type. "
                         "Supported: client_credentials, refresh_token."}).encode()
AAD_NO_RESOURCE = json.dumps({
    "error": "invalid_request",
    "error_description": "AADSTS900144: The request body must contain the following "
                         "parameter: 'resource'.",
    "error_codes": [900144]}).encode()

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

QUALIFICATIONS = {"education": "Education",
                  "governmentcommunitycloud": "GovernmentCommunityCloud",
                  "stateownedentity": "StateOwnedEntity"}

# --------------------------------------------------------------------------
# shared state

_date_cache = [0, ""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


class State:
    """Everything the handlers share.  Locks are held for a few bytecodes only."""

    def __init__(self, defaults):
        self.defaults = dict(defaults)
        self.lock = threading.Lock()           # log, attempts, statistics
        self.flight_lock = threading.Lock()    # in-flight counter
        self.token_lock = threading.Lock()
        self.token_seq = 0                     # global, never reset
        self.in_flight = 0
        self.connections = 0                   # incremented by the accept thread
        self.reset()

    def reset(self):
        with self.lock:
            self.config = dict(self.defaults)  # replaced, never mutated
            self.log = collections.deque(maxlen=MAX_LOG)
            self.next_seq = 1
            self.attempts = {}
            self.tokens = {}                   # token -> expiry (monotonic)
            self.api_requests = 0
            self.token_requests = 0
            self.other_requests = 0
            self.status_counts = {}
            self.dropped = 0
            self.throttled = 0
            self.max_in_flight = 0
            self.connections = 0

    def revoke(self):
        n = len(self.tokens)
        self.tokens = {}
        return n

    def issue(self, prefix):
        with self.token_lock:
            self.token_seq += 1
            token = "%s%d" % (prefix, self.token_seq)
        lifetime = self.config["token_expires_in"]
        self.tokens[token] = time.monotonic() + lifetime
        return token, lifetime

    def token_ok(self, token):
        if token == STATIC_TOKEN:
            return True
        exp = self.tokens.get(token)
        return exp is not None and time.monotonic() < exp

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

    def config_json(self):
        return dict(self.config)

    def stats(self):
        with self.lock:
            return {
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
            }


CONFIG_KEYS = {
    "latency_ms": float,
    "throttle_inflight": int,
    "throttle_retry_after": int,
    "token_expires_in": int,
}


def parse_config_value(key, raw):
    raw = raw.strip()
    if key == "throttle_inflight" and raw.lower() in ("", "off", "none", "null", "false"):
        return 0
    val = CONFIG_KEYS[key](raw)
    if not math.isfinite(val) or val < 0:
        raise ValueError("negative")
    if key == "latency_ms" and val == int(val):
        val = int(val)
    return val


# --------------------------------------------------------------------------
# COPY text format

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                               "\b": "\\b", "\f": "\\f", "\v": "\\v"})


def copy_field(v):
    if v is None:
        return "\\N"
    return str(v).translate(_COPY_ESCAPES)


LOG_FIELDS = ("seq", "time", "method", "path", "kind", "tenant", "status", "auth",
              "correlation_id", "request_id", "application", "user_agent", "accept")
COPY_COLUMNS = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)   # indexes into a log entry


def iso_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pc-emulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = None        # see setup(): kernel timeouts instead of Python's
    state = None          # set on the class by make_server()

    def setup(self):
        # Idle keep-alive connections and stuck writes give up after
        # IDLE_TIMEOUT seconds.  SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket
        # cost nothing per call, unlike socket.settimeout(), which adds a
        # poll() before every recv() and send().
        tv = struct.pack("ll", IDLE_TIMEOUT, 0)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
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

    def dispatch(self):
        self.t0 = time.time()
        body = self.read_body()
        if body is None:
            self.close_connection = True
            self.send(413 if dict.get(self.headers, "content-length", "0").isdigit() else 400,
                      pc_error(400, "Unreadable request body."))
            return
        path, _, query = self.path.partition("?")
        try:
            if path.startswith("/v1/"):
                self.api(path, query, body)
            elif path.startswith("/_emulator/") or path == "/_emulator":
                self.control(path, query, body)
            else:
                parts = path.split("/")
                if (len(parts) == 4 and parts[1] and parts[2] == "oauth2"
                        and parts[3] == "token"):
                    self.token(unquote(parts[1]), body)
                else:
                    self.answer("other", None, None, 404, NOT_FOUND)
        except Drop:
            self.close_connection = True

    def entry(self, kind, tenant, status, auth):
        h = self.headers
        # values that repeat from request to request are interned: the log
        # then costs about 500 bytes a request
        return (self.t0, _intern(self.command), self.path, kind, tenant, status,
                _intern(auth), dict.get(h, "ms-correlationid"), dict.get(h, "ms-requestid"),
                _intern(dict.get(h, "ms-partnercenter-application")),
                _intern(dict.get(h, "user-agent")), _intern(dict.get(h, "accept")))

    def answer(self, kind, tenant, auth, status, body=b"", ctype=JSON, extra=(),
               echo_ids=False):
        """Record, then send (so the log is complete once the client has the answer)."""
        self.state.record(self.entry(kind, tenant, status, auth), kind, status)
        self.send(status, body, ctype, extra, echo_ids)

    # -- token endpoint ------------------------------------------------------
    def token(self, partner_tenant, body):
        if self.command != "POST":
            self.answer("token", partner_tenant, None, 405,
                        json.dumps({"error": "invalid_request", "error_description":
                                    "AADSTS900561: The endpoint only accepts POST requests."}
                                   ).encode(), extra=(("Allow", "POST"),))
            return
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type")
        ctype = "application/json; charset=utf-8"

        def reply(status, payload):
            self.answer("token", partner_tenant, grant, status, payload, ctype,
                        extra=(("Cache-Control", "no-store, no-cache"),))

        if grant == "client_credentials":
            if (form.get("client_id") != APP_CLIENT_ID
                    or form.get("client_secret") != APP_CLIENT_SECRET):
                return reply(401, AAD_INVALID_CLIENT)
            if "resource" not in form:
                return reply(400, AAD_NO_RESOURCE)
            token, life = self.state.issue("emu-app-")
            return reply(200, json.dumps({
                "token_type": "Bearer", "expires_in": str(life), "ext_expires_in": str(life),
                "access_token": token, "resource": form["resource"]}).encode())
        if grant == "refresh_token":
            if "client_id" in form and form["client_id"] != APP_CLIENT_ID:
                return reply(401, AAD_INVALID_CLIENT)
            if "client_secret" in form and form["client_secret"] != APP_CLIENT_SECRET:
                return reply(401, AAD_INVALID_CLIENT)
            if form.get("refresh_token") != REFRESH_TOKEN:
                return reply(400, AAD_INVALID_GRANT)
            token, life = self.state.issue("emu-user-")
            return reply(200, json.dumps({
                "token_type": "Bearer", "expires_in": life, "access_token": token,
                "refresh_token": REFRESH_TOKEN,
                "scope": form.get("scope") or "user_impersonation"}).encode())
        return reply(400, AAD_UNSUPPORTED_GRANT)

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
        try:
            latency = cfg["latency_ms"]
            if latency > 0:
                time.sleep(latency / 1000.0)
            self.api_inner(parts, query, body, tenant, token)
        finally:
            with st.flight_lock:
                st.in_flight -= 1

    def api_inner(self, parts, query, body, tenant, token):
        st = self.state
        if token is None or not st.token_ok(token):
            self.answer("api", tenant, token, 401, AUTH_FAILED,
                        extra=(("WWW-Authenticate", 'Bearer error="invalid_token"'),),
                        echo_ids=True)
            return
        if len(parts) != 5 or parts[1] != "v1" or parts[2] != "customers" \
                or parts[4] != "qualifications" or not parts[3]:
            self.answer("api", tenant, token, 404, NOT_FOUND, echo_ids=True)
            return
        if self.command in ("GET", "HEAD"):
            self.get_qualifications(tenant, token)
        elif self.command == "POST":
            self.post_qualification(tenant, token, query, body)
        else:
            self.answer("api", tenant, token, 405,
                        pc_error(405, "Method not allowed."),
                        extra=(("Allow", "GET, POST"),), echo_ids=True)

    def fixture_answer(self, tenant, token, fx):
        status, payload = fx[0], fx[1]
        ctype = fx[2] if len(fx) > 2 else JSON
        extra = fx[3] if len(fx) > 3 else ()
        self.answer("api", tenant, token, status, payload, ctype, extra, echo_ids=True)

    def get_qualifications(self, tenant, token):
        key = tenant.lower()
        fx = FIXTURES.get(key)
        if fx is not None:
            return self.fixture_answer(tenant, token, fx)
        steps = RETRY_FIXTURES.get(key)
        if steps is not None:
            n = self.state.attempt(key)
            step = steps[min(n, len(steps)) - 1]
            if step == "drop":
                self.state.record(self.entry("api", tenant, None, token), "api", None)
                raise Drop()
            if callable(step):
                step = step()
            return self.fixture_answer(tenant, token, step)
        if key == STREAM_TENANT:
            return self.stream(tenant, token)
        if key == DROP_TENANT:
            self.state.record(self.entry("api", tenant, None, token), "api", None)
            raise Drop()
        if key == TRUNCATE_TENANT:
            self.state.record(self.entry("api", tenant, 200, token), "api", 200)
            self.close_connection = True
            self.wfile.write(("HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: 1000\r\n\r\n" % http_date()).encode()
                             + b'[{"qualifi')     # 10 of the 1000 bytes
            raise Drop()
        if key == SLOW_TENANT:
            if not self.wait_unless_disconnected(SLOW_SECONDS):
                # 499: nginx's "client closed request"; nothing is sent
                self.state.record(self.entry("api", tenant, 499, token), "api", 499)
                raise Drop()
            return self.fixture_answer(tenant, token, FIXTURES[P1 + "01"])
        if not GUID_RE.match(tenant):
            return self.answer("api", tenant, token, 400, INVALID_CUSTOMER, echo_ids=True)
        if key.startswith("fa11"):
            return self.answer("api", tenant, token, 404, TENANT_NOT_FOUND, echo_ids=True)
        return self.answer("api", tenant, token, 200, GENERIC_OK, echo_ids=True)

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

    def wait_unless_disconnected(self, seconds):
        """Sleep in 50 ms steps; False as soon as the peer has closed."""
        sock = self.connection
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            step = min(0.05, left)
            events = poller.poll(step * 1000)
            if not events:
                continue
            if events[0][1] & (select.POLLERR | select.POLLHUP):
                return False
            try:
                data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return False
            if not data:
                return False
            time.sleep(step)       # pipelined bytes: not a disconnect; keep waiting

    def post_qualification(self, tenant, token, query, body):
        if not token.startswith("emu-user-"):
            return self.answer("api", tenant, token, 403, APP_USER_REQUIRED, echo_ids=True)
        key = tenant.lower()
        if not GUID_RE.match(tenant):
            return self.answer("api", tenant, token, 400, INVALID_CUSTOMER, echo_ids=True)
        fx = POST_ERRORS.get(key)
        if fx is not None:
            return self.fixture_answer(tenant, token, fx)
        if key.startswith("fa11"):
            return self.answer("api", tenant, token, 404, TENANT_NOT_FOUND, echo_ids=True)
        try:
            doc = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            return self.answer("api", tenant, token, 400,
                               pc_error(600010, "The request body is not a JSON object."),
                               echo_ids=True)
        q = doc.get("qualification")
        canon = QUALIFICATIONS.get(q.lower()) if isinstance(q, str) else None
        if canon is None:
            return self.answer("api", tenant, token, 400,
                               pc_error(600011, "Invalid qualification. Expected Education, "
                                                "GovernmentCommunityCloud or StateOwnedEntity."),
                               echo_ids=True)
        if canon == "GovernmentCommunityCloud":
            code = doc.get("validationCode")
            if not (isinstance(code, str) and code.strip()):
                code = dict(parse_qsl(query, keep_blank_values=True)).get("code", "").strip()
            if not code:
                return self.answer("api", tenant, token, 400,
                                   pc_error(600013, "A validation code is required for "
                                                    "GovernmentCommunityCloud."),
                                   echo_ids=True)
        result = {"qualification": canon}
        if canon != "StateOwnedEntity":
            result["vettingStatus"] = "InReview"
            result["vettingCreatedDate"] = iso_time(time.time())
        self.answer("api", tenant, token, 201, json.dumps(result).encode(), echo_ids=True)

    # -- control API ------------------------------------------------------
    def control(self, path, query, body):
        st = self.state
        name = path[len("/_emulator/"):].rstrip("/")
        params = dict(parse_qsl(query, keep_blank_values=True))
        method = self.command
        if name == "health" and method in ("GET", "HEAD"):
            return self.send(200, b"ok", TEXT)
        if name == "reset" and method == "POST":
            st.reset()
            return self.send_json(200, {"reset": True, "config": st.config_json()})
        if name == "revoke" and method == "POST":
            return self.send_json(200, {"revoked": st.revoke()})
        if name == "config" and method in ("GET", "POST"):
            if method == "POST" and body:
                ctype = dict.get(self.headers, "content-type", "")
                try:
                    if "json" in ctype:
                        extra = {k: str(v) for k, v in json.loads(body).items()}
                    else:
                        extra = dict(parse_qsl(body.decode(), keep_blank_values=True))
                except (ValueError, AttributeError, UnicodeDecodeError):
                    return self.send_json(400, {"error": "unreadable body"})
                params.update(extra)
            if params and method == "GET":
                return self.send_json(405, {"error": "use POST to change the config"},
                                      extra=(("Allow", "GET, POST"),))
            new = dict(st.config)
            for k, v in params.items():
                if k not in CONFIG_KEYS:
                    return self.send_json(400, {"error": "unknown setting %r" % k,
                                                "settings": sorted(CONFIG_KEYS)})
                try:
                    new[k] = parse_config_value(k, v)
                except ValueError:
                    return self.send_json(400, {"error": "bad value for %s: %r" % (k, v)})
            st.config = new
            return self.send_json(200, new)
        if name == "requests" and method == "GET":
            return self.send_requests(params)
        if name == "stats" and method == "GET":
            return self.send_json(200, st.stats())
        if name in ("health", "reset", "revoke", "config", "requests", "stats"):
            return self.send_json(405, {"error": "method not allowed"})
        return self.send_json(404, {"error": "unknown control endpoint",
                                    "endpoints": ["health", "reset", "revoke", "config",
                                                  "requests", "stats"]})

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


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    quiet = False

    def server_bind(self):
        # skip HTTPServer.server_bind's getfqdn() (a DNS lookup)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address):
        self.state.connections += 1          # only the accept thread writes this
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


class Server6(Server):
    address_family = socket.AF_INET6


def make_server(host, port, latency_ms=0, quiet=False):
    defaults = {"latency_ms": latency_ms, "throttle_inflight": 0,
                "throttle_retry_after": 1, "token_expires_in": 3600}
    state = State(defaults)
    handler = type("BoundHandler", (Handler,), {"state": state})
    cls = Server6 if ":" in host else Server
    server = cls((host, port), handler)
    server.state = state
    server.quiet = quiet
    return server


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None):
    env_port = os.environ.get("PCQUAL_EMULATOR_PORT")
    try:
        default_port = int(env_port) if env_port else DEFAULT_PORT
    except ValueError:
        sys.exit("pc_emulator: PCQUAL_EMULATOR_PORT is not a number: %r" % env_port)
    ap = argparse.ArgumentParser(description="Partner Center emulator for pcqual tests")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=default_port,
                    help="TCP port, 0 = any free port (default $PCQUAL_EMULATOR_PORT or %d)"
                         % DEFAULT_PORT)
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="delay added to every API request (default 0)")
    ap.add_argument("--quiet", action="store_true", help="print nothing")
    args = ap.parse_args(argv)
    if not is_loopback(args.host):
        ap.error("--host must be a loopback address, not %r" % args.host)
    if args.latency_ms < 0:
        ap.error("--latency-ms must be >= 0")
    latency = int(args.latency_ms) if args.latency_ms == int(args.latency_ms) else args.latency_ms
    host = "127.0.0.1" if args.host == "localhost" else args.host

    try:
        server = make_server(host, args.port, latency, args.quiet)
    except OSError as e:
        sys.exit("pc_emulator: cannot listen on %s:%d: %s" % (host, args.port, e))

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not args.quiet:
        h = "[%s]" % host if ":" in host else host
        print("pc_emulator listening on http://%s:%d" % (h, server.server_port), flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    finally:
        server.server_close()
    if not args.quiet:
        print("pc_emulator stopped", flush=True)
    sys.stdout.flush()
    # daemon handler threads may still sit in recv()/sleep(): do not wait for them
    os._exit(0)


if __name__ == "__main__":
    main()
