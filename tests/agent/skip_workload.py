"""The workload of the skipped-runs test, run inside a test cgroup: prints what it did as JSON.

Usage: python skip_workload.py NORMAL TIMEOUTS | hold SECONDS

While it runs, one spinner process per CPU makes syscalls in a loop, so a neighbour tracer that
is busy on every syscall of this cgroup keeps each CPU inside a BPF program nearly all the time.
It makes NORMAL loopback connections (both ends here, with I/O) and TIMEOUTS connects to a
listener whose accept queue is full: their SYNs are dropped and each ends in the retransmit
timer (TCP_SYNCNT 1: about 3 s), a state change in timer softirq context, which on a CPU busy
in a BPF program is exactly the run the kernel skips.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import socket
import sys
import time

from workload import tcp


def _spin(stop: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(1000):
            os.getppid()


def timeouts(n: int) -> dict:
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)  # never accepted: one connection fills the queue, later SYNs are dropped
    port = full.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
        s.setblocking(False)
        rc = s.connect_ex(("127.0.0.1", port))
        assert rc in (errno.EINPROGRESS, 0), rc
        socks.append(s)
    failed = 0
    deadline = time.monotonic() + 30
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        still = []
        for s in pending:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == errno.ETIMEDOUT:
                failed += 1
            elif err == 0:
                still.append(s)
            else:
                raise AssertionError(f"connect ended with {errno.errorcode.get(err, err)}")
        pending = still
    for s in socks:
        s.close()
    first.close()
    full.close()
    return {"timed_out": failed, "full_port": port}


def hold_both(seconds: float) -> None:
    """One loopback connection whose two ends both stay open for `seconds` (workload.py's hold
    closes its server end at once, which the kernel then finishes as a time-wait socket)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    c.sendall(b"h")
    conn.recv(1)  # the accepting end's first read names its owner
    print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
    time.sleep(seconds)
    c.close()
    conn.close()
    srv.close()


def main() -> None:
    if sys.argv[1] == "hold":
        hold_both(float(sys.argv[2]))
        return
    normal, n_timeouts = int(sys.argv[1]), int(sys.argv[2])
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(os.cpu_count() or 1)]
    for p in spinners:
        p.start()
    try:
        out = timeouts(n_timeouts) if n_timeouts else {"timed_out": 0}
        out.update(tcp(normal) if normal else {"connections": 0})
    finally:
        stop.set()
        for p in spinners:
            p.join()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
