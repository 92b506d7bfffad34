"""Known block I/O and CPU workloads for the latency probe tests, run inside a test cgroup.

Usage: python latency_workload.py dio DEVICE COUNT   (O_DIRECT 4 KiB writes then reads on DEVICE)
       python latency_workload.py contend SECONDS    (two busy processes pinned to one CPU)
Prints what it did as JSON.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import os
import sys
import time

BLOCK = 4096


def dio(device: str, count: int) -> dict:
    """Write then read `count` blocks with O_DIRECT, so every one is a block request and fsync
    is not needed: the page cache is bypassed both ways."""
    buf = mmap.mmap(-1, BLOCK)  # page aligned, as O_DIRECT requires
    buf.write(b"b" * BLOCK)
    fd = os.open(device, os.O_RDWR | os.O_DIRECT)
    try:
        for i in range(count):
            assert os.pwritev(fd, [buf], i * BLOCK) == BLOCK
        for i in range(count):
            assert os.preadv(fd, [buf], i * BLOCK) == BLOCK
    finally:
        os.close(fd)
    return {"device": device, "writes": count, "reads": count}


def _spin(until: float) -> None:
    x = 0
    while time.monotonic() < until:
        x += 1


def contend(seconds: float) -> dict:
    """Two CPU-bound processes on one CPU: each waits in the run queue while the other runs."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # children inherit the pinning
    until = time.monotonic() + seconds
    procs = [multiprocessing.Process(target=_spin, args=(until,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return {"cpu": cpu, "pids": [p.pid for p in procs]}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "dio":
        print(json.dumps(dio(sys.argv[2], int(sys.argv[3]))))
    elif mode == "contend":
        print(json.dumps(contend(float(sys.argv[2]))))
    else:
        raise SystemExit(f"unknown mode {mode!r}; use dio or contend")
