"""A known workload, run as a child process inside a test cgroup: prints what it did as JSON.

Usage: python workload.py tcp N | refused | reset | hold SECONDS | exit CODE [ARGS...] | oom MB
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading


def serve(n: int, payload: bytes, reply: bytes) -> tuple[int, threading.Thread]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]

    def loop() -> None:
        for _ in range(n):
            conn, _ = srv.accept()
            got = b""
            while len(got) < len(payload):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += chunk
            conn.sendall(reply)
            conn.close()
        srv.close()

    t = threading.Thread(target=loop)
    t.start()
    return port, t


def tcp(n: int) -> dict:
    payload, reply = b"x" * 1000, b"y" * 37
    port, t = serve(n, payload, reply)
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(payload)
        got = b""
        while len(got) < len(reply):
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        c.close()
    t.join()
    return {"port": port, "connections": n, "sent": len(payload), "received": len(reply)}


def refused() -> dict:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound, never listening: a connect gets a RST
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionRefusedError:
        return {"port": port, "refused": True}
    return {"port": port, "refused": False}


def reset() -> dict:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    c = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.recv(10) if False else None
    # SO_LINGER with a zero timeout makes close() abort the connection with a RST.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    srv.close()
    error = ""
    try:
        c.recv(10)
    except ConnectionResetError as exc:
        error = type(exc).__name__
    c.close()
    return {"port": port, "error": error}


def hold(seconds: float) -> dict:
    import time

    port, t = serve(1, b"h", b"i")
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"h")
    c.recv(1)
    time.sleep(seconds)  # the point of this workload is a connection of known length
    c.close()
    t.join()
    return {"port": port}


def oom(mb: int) -> None:
    chunks = []
    for _ in range(mb):
        chunks.append(bytearray(1 << 20))  # touched pages: bytearray zero-fills


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "tcp":
        out = tcp(int(argv[1]))
    elif what == "refused":
        out = refused()
    elif what == "reset":
        out = reset()
    elif what == "hold":
        out = hold(float(argv[1]))
    elif what == "exit":
        print(json.dumps({"exiting": int(argv[1])}), flush=True)
        return int(argv[1])
    elif what == "oom":
        oom(int(argv[1]))
        return 0
    else:
        raise SystemExit(f"unknown workload {what}")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
