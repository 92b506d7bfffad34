"""The real stack's workload, run as a child process inside the pod's cgroups: prints what it did.

Usage: python realstack_workload.py tcp HOST N | reset HOST | refused HOST | oom MB

Both ends of every connection bind HOST (a loopback address given to the stand-in pod as its IP),
so the agent attributes resets, which it labels by address, to the pod as well.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading


def _listener(host: str) -> socket.socket:
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(64)
    return srv


def _client(host: str, port: int) -> socket.socket:
    c = socket.socket()
    c.bind((host, 0))
    c.connect((host, port))
    return c


def tcp(host: str, n: int) -> dict:
    """`n` request/response connections, closed normally."""
    srv = _listener(host)
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(n):
            conn, _ = srv.accept()
            conn.recv(100)
            conn.sendall(b"pong")
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    for _ in range(n):
        c = _client(host, port)
        c.sendall(b"ping")
        c.recv(100)
        c.close()
    t.join()
    srv.close()
    return {"port": port, "connections": n}


def reset(host: str) -> dict:
    """One connection the server aborts with a RST (SO_LINGER 0)."""
    srv = _listener(host)
    port = srv.getsockname()[1]
    c = _client(host, port)
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    srv.close()
    try:
        c.recv(10)
        error = ""
    except ConnectionResetError as exc:
        error = type(exc).__name__
    c.close()
    return {"port": port, "error": error}


def refused(host: str) -> dict:
    """A connect to a bound port nobody listens on: the kernel answers with a RST."""
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    try:
        _client(host, port)
    except ConnectionRefusedError:
        return {"port": port, "refused": True}
    finally:
        s.close()
    return {"port": port, "refused": False}


def oom(mb: int) -> None:
    """Touch `mb` MiB; under a smaller memory limit the kernel's OOM killer ends this process."""
    chunks = [bytearray(1 << 20) for _ in range(mb)]  # bytearray zero-fills: every page touched
    print(len(chunks))


def main(argv: list[str]) -> int:
    what = argv[0]
    if what == "tcp":
        print(json.dumps(tcp(argv[1], int(argv[2]))), flush=True)
    elif what == "reset":
        print(json.dumps(reset(argv[1])), flush=True)
    elif what == "refused":
        print(json.dumps(refused(argv[1])), flush=True)
    elif what == "oom":
        oom(int(argv[1]))
    else:
        raise SystemExit(f"unknown workload {what!r}; see the module docstring")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
