#!/usr/bin/env python3
"""client_proxy.py - a small forwarding HTTP proxy for the client tests (8NN_*.sh); not a test itself.

  client_proxy.py TARGET_PORT PORT_FILE COUNT_FILE MODE [N [FIFO]]

Listens on 127.0.0.1 port 0 (the port goes to PORT_FILE) and forwards every request to 127.0.0.1:TARGET_PORT.
Blob bodies larger than 64 KiB (weights, not bundles or configs) are counted; COUNT_FILE holds the running total.
MODE: pass   forward unchanged
      flip   flip one byte (offset N of each such body) - tampering in transit
      drop   after N counted bytes, cut the connection mid-body and refuse every later request
      droppatch  forward N PATCH requests, then refuse every later request (an upload cut halfway)
      shift  ask the daemon for each blob Range one byte later than the client asked (bytes=A-B -> A+1-B), and
             pass its honest 206 and Content-Range back: the client must notice the bytes are not the ones asked for
      stall  after N counted bytes, hold every blob response open without sending more, and write a line to FIFO
             (once): the test reads it to know the transfer is stuck mid-way (e.g. to interrupt the client then)
Request bodies over 64 KiB (upload chunks) are counted too. Each blob GET's Range and If-Range headers are appended
to COUNT_FILE.req as "RANGE|IF-RANGE" lines.
"""
import http.client
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

target, port_file, count_file, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
at = int(sys.argv[5]) if len(sys.argv) > 5 else 0
fifo = sys.argv[6] if len(sys.argv) > 6 else None
lock = threading.Lock()
stalled = threading.Event()
state = {"count": 0, "dead": False, "patches": 0}
BIG = 64 * 1024


def save():
    with open(count_file + ".tmp", "w") as f:
        f.write(str(state["count"]))
    import os
    os.replace(count_file + ".tmp", count_file)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def cut(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def forward(self):
        if state["dead"]:
            return self.cut()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if mode == "droppatch" and self.command == "PATCH":
            with lock:
                if state["patches"] >= at:
                    state["dead"] = True
                state["patches"] += 1
            if state["dead"]:
                return self.cut()
        if body and len(body) > BIG:
            with lock:
                state["count"] += len(body)
                save()
        if self.command == "GET" and "/blobs/sha256:" in self.path:
            with lock:
                with open(count_file + ".req", "a") as f:
                    f.write("%s|%s\n" % (self.headers.get("Range", ""), self.headers.get("If-Range", "")))
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        if mode == "shift" and self.command == "GET" and hdrs.get("Range", "").startswith("bytes="):
            a, b = hdrs["Range"][6:].split("-")
            hdrs["Range"] = "bytes=%d-%s" % (int(a) + 1, b)
        conn = http.client.HTTPConnection("127.0.0.1", target, timeout=60)
        conn.request(self.command, self.path, body=body, headers=hdrs)
        r = conn.getresponse()
        length = r.getheader("Content-Length")
        big = "/blobs/sha256:" in self.path and self.command == "GET" and length and int(length) > BIG
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                self.send_header(k, v)
        self.end_headers()
        off = 0
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            if big and mode == "flip" and off <= at < off + len(chunk):
                b = bytearray(chunk)
                b[at - off] ^= 0x01
                chunk = bytes(b)
            if big and mode == "stall":
                with lock:
                    room = at - state["count"]
                    first = room <= len(chunk) and not stalled.is_set()
                    if room <= len(chunk):
                        stalled.set()
                if stalled.is_set():
                    part = chunk[:max(room, 0)]
                    self.wfile.write(part)
                    with lock:
                        state["count"] += len(part)
                        save()
                    if first and fifo:
                        with open(fifo, "w") as f:
                            f.write("stalled\n")
                    threading.Event().wait()  # hold the connection until the proxy is killed
            if big and mode == "drop":
                with lock:
                    room = at - state["count"]
                    if room <= len(chunk):
                        state["dead"] = True
                if state["dead"]:
                    part = chunk[:max(room, 0)]
                    self.wfile.write(part)
                    with lock:
                        state["count"] += len(part)
                        save()
                    conn.close()
                    return self.cut()
            self.wfile.write(chunk)
            off += len(chunk)
            if big:
                with lock:
                    state["count"] += len(chunk)
        conn.close()
        if big:
            with lock:
                save()

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
with open(count_file, "w") as f:
    f.write("0")
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.replace(port_file + ".tmp", port_file)
srv.serve_forever()
