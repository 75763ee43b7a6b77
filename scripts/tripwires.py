#!/usr/bin/env python3
"""The test suite's tripwires for the host's Redis and syslog (scripts/test.sh runs it).

Inside the suite's private mount and network namespaces it owns what a test must never touch:
127.0.0.1:6379 (and [::1]:6379), where a host's Redis listens, and /dev/log, where its syslog
listens. Every connection and datagram is written to the record file, one line each; a Redis
client gets an error at once, so that a stray test fails fast instead of waiting on a timeout.

    tripwires.py RECORD_FILE READY_FILE
"""

import os
import selectors
import socket
import sys
import time

record_path, ready_path = sys.argv[1], sys.argv[2]


def record(what):
    with open(record_path, "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {what}\n")


sel = selectors.DefaultSelector()
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, 6379))
        s.listen(64)
    except OSError as e:
        if family == socket.AF_INET:
            sys.exit(f"tripwires: cannot listen on {host}:6379: {e}")
        continue  # no IPv6 in this namespace: nothing can connect there either
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, ("accept", host))

if os.path.lexists("/dev/log"):
    os.unlink("/dev/log")  # our own /dev (a tmpfs of this mount namespace)
log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
log.bind("/dev/log")
os.chmod("/dev/log", 0o666)
log.setblocking(False)
sel.register(log, selectors.EVENT_READ, ("syslog", None))

with open(ready_path, "w", encoding="utf-8") as f:
    f.write(str(os.getpid()))

while True:
    for key, _ in sel.select():
        kind, host = key.data
        if kind == "accept":
            conn, peer = key.fileobj.accept()
            conn.settimeout(0.2)
            try:
                first = conn.recv(200)
            except OSError:
                first = b""
            record(f"redis {host}:6379 from {peer[0]}: {first[:120]!r}")
            try:
                conn.sendall(b"-ERR tripwire: this is not a Redis for tests (scripts/test.sh)\r\n")
            except OSError:
                pass
            conn.close()
        else:
            data = key.fileobj.recv(65536)
            record(f"syslog /dev/log: {data[:200]!r}")
