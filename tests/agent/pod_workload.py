"""What the test "pods" run (inside their network namespace and cgroup): a TCP server or client
that prints what it did as one JSON line, so tests can check the agent's counts exactly.

Usage:
  python pod_workload.py serve IP PORT N [abort|drop]
                                                   accept N connections: read the request, reply,
                                                   close (abort: reset instead of replying; drop:
                                                   close at once, no read or write, like a server
                                                   at its connection limit); IP "::" listens
                                                   dual-stack
  python pod_workload.py connect IP PORT N         N request/reply connections
  python pod_workload.py refused IP PORT           one connect that must be refused

``serve`` prints ``{"listening": PORT}`` once it listens, so the test can wait for it instead of
sleeping.
"""

from __future__ import annotations

import json
import socket
import struct
import sys

REQUEST = b"q" * 1000
REPLY = b"r" * 37


def _read(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def serve(ip: str, port: int, n: int, mode: str = "") -> dict:
    # "::" listens dual-stack, as Go and Java servers do: IPv4 clients then appear to the kernel
    # as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d).
    srv = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    if ":" in ip:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, port))
    srv.listen(64)
    print(json.dumps({"listening": port}), flush=True)
    served = 0
    for _ in range(n):
        conn, _ = srv.accept()
        if mode == "drop":
            conn.close()
            served += 1
            continue
        _read(conn, len(REQUEST))
        if mode == "abort":
            # SO_LINGER with a zero timeout: close() aborts the connection with a RST.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.sendall(REPLY)
        conn.close()
        served += 1
    srv.close()
    return {"served": served}


def connect(ip: str, port: int, n: int) -> dict:
    ok = resets = 0
    for _ in range(n):
        c = socket.create_connection((ip, port), timeout=10)
        try:
            c.sendall(REQUEST)
            if _read(c, len(REPLY)) == REPLY:
                ok += 1
        except ConnectionResetError:
            resets += 1
        finally:
            c.close()
    return {"ok": ok, "reset": resets, "sent": len(REQUEST), "received": len(REPLY)}


def refused(ip: str, port: int) -> dict:
    try:
        socket.create_connection((ip, port), timeout=10).close()
    except ConnectionRefusedError:
        return {"refused": True}
    return {"refused": False}


def main(argv: list[str]) -> int:
    what, ip, port = argv[0], argv[1], int(argv[2])
    if what == "serve":
        out = serve(ip, port, int(argv[3]), *argv[4:5])
    elif what == "connect":
        out = connect(ip, port, int(argv[3]))
    elif what == "refused":
        out = refused(ip, port)
    else:
        raise SystemExit(f"unknown workload {what}; use serve, connect or refused")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
