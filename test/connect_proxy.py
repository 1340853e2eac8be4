#!/usr/bin/env python3
"""A forwarding proxy for the pcqual tests (standard library only).

It proxies what libcurl sends to an HTTP proxy:
  CONNECT host:port          a tunnel (https:// URLs through the proxy)
  GET/POST http://host/...   a plain HTTP request in absolute form, forwarded
and logs each request as one line, "CONNECT 127.0.0.1:18766" or
"GET http://127.0.0.1:18765/v1/...", never a header or a body (they may
hold a Bearer token or a client secret).  Its own control requests, sent to
it directly (origin form):
  GET  /_proxy/log     the log since the last reset, one line per request
  POST /_proxy/reset   empty the log
  GET  /_proxy/health  200
Every client connection is served by its own thread.  Listens on 127.0.0.1
only.  Usage: connect_proxy.py --port 18771 [--quiet]
"""
import argparse
import http.client
import select
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# headers that concern one connection, not the request (RFC 9110, 7.6.1)
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authorization",
    "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade",
}
TUNNEL_IDLE_SECONDS = 60


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.lines = []

    def add(self, line):
        with self.lock:
            self.lines.append(line)

    def text(self):
        with self.lock:
            return "".join(line + "\n" for line in self.lines)

    def reset(self):
        with self.lock:
            self.lines.clear()


LOG = Log()


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    quiet = False

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("connect_proxy: " + (fmt % args) + "\n")

    # ---- the proxy's own control requests ----

    def answer(self, status, text=""):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def control(self):
        if self.command == "GET" and self.path == "/_proxy/log":
            self.answer(200, LOG.text())
        elif self.command == "POST" and self.path == "/_proxy/reset":
            self.read_body()
            LOG.reset()
            self.answer(200)
        elif self.command == "GET" and self.path == "/_proxy/health":
            self.answer(200, "ok\n")
        else:
            self.answer(404, "unknown control request\n")

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ---- CONNECT: a tunnel ----

    def do_CONNECT(self):
        LOG.add("CONNECT " + self.path)
        host, sep, port = self.path.rpartition(":")
        if not sep or not port.isdigit():
            self.answer(400, "CONNECT needs host:port\n")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError as e:
            self.answer(502, "cannot reach %s: %s\n" % (self.path, e))
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        self.tunnel(self.connection, upstream)

    def tunnel(self, client, upstream):
        sockets = [client, upstream]
        try:
            while True:
                ready, _, _ = select.select(sockets, [], [], TUNNEL_IDLE_SECONDS)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    # ---- GET/POST in absolute form: forwarded ----

    def forward(self):
        if not self.path.startswith("http://"):
            if self.path.startswith("/_proxy/"):
                self.control()
            else:
                self.answer(400, "a proxy request needs an absolute http:// URL\n")
            return
        LOG.add("%s %s" % (self.command, self.path))
        url = urllib.parse.urlsplit(self.path)
        target = url.path or "/"
        if url.query:
            target += "?" + url.query
        body = self.read_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
            conn.request(self.command, target, body=body or None, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
        except OSError as e:
            self.answer(502, "cannot reach %s: %s\n" % (url.netloc, e))
            return
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        conn.close()

    do_GET = forward
    do_POST = forward
    do_PUT = forward
    do_PATCH = forward
    do_DELETE = forward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18771)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    ProxyHandler.quiet = args.quiet
    server = ThreadingHTTPServer(("127.0.0.1", args.port), ProxyHandler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
