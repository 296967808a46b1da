#!/usr/bin/env python3
"""mirror_proxy.py - an upstream that lies about freshness, for the mirror tests (71x_*.sh); not a test itself.

  mirror_proxy.py TARGET_PORT PORT_FILE TS_FILE

Forwards every request to the daemon on 127.0.0.1:TARGET_PORT (the log over git smart HTTP, the OCI API), except
GET /v1/log/timestamp: while TS_FILE is non-empty, its bytes are served instead (a genuine timestamp the daemon
signed for an earlier state), so the log of one state is paired with the tag map of another (mix and match).
"""
import http.client
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

target, port_file, ts_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if self.command == "GET" and self.path == "/v1/log/timestamp" and os.path.exists(ts_file) \
                and os.path.getsize(ts_file) > 0:
            data = open(ts_file, "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        conn = http.client.HTTPConnection("127.0.0.1", target, timeout=60)
        conn.request(self.command, self.path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "keep-alive", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_HEAD = do_POST = forward


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
