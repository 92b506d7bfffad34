"""An open-loop paced HTTP/1.0 client: new TCP connection per request at a fixed rate.

`ab` and `wrk` cannot pace; wrk2 is not in Debian. Each worker process owns every P-th slot of one
schedule (slot i starts at t0 + i/rate) and measures latency from the slot's *scheduled* start, so
a client that falls behind shows it as latency (no coordinated omission) and as `late` slots.

Usage: python -m bench.paced_client HOST PORT RATE SECONDS WORKERS  -> one JSON line on stdout
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
LATE_S = 0.001  # a slot started more than 1 ms after its schedule counts as late


def _worker(host: str, port: int, rate: float, seconds: float, workers: int, index: int, t0: float,
            out: multiprocessing.Queue[dict]) -> None:
    lat: list[float] = []
    errors = late = 0
    n = int(rate * seconds)
    for i in range(index, n, workers):
        due = t0 + i / rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > LATE_S:
            late += 1
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(REQUEST)
                while s.recv(4096):
                    pass
            lat.append(time.monotonic() - due)
        except OSError:
            errors += 1
    out.put({"latencies": lat, "errors": errors, "late": late, "end": time.monotonic()})


def run(host: str, port: int, rate: float, seconds: float, workers: int) -> dict:
    """Run the schedule; return completed count, achieved rate, latency percentiles (s), errors."""
    out: multiprocessing.Queue[dict] = multiprocessing.Queue()
    t0 = time.monotonic() + 0.2
    procs = [multiprocessing.Process(target=_worker, args=(host, port, rate, seconds, workers, i, t0, out)) for i in range(workers)]
    for p in procs:
        p.start()
    parts = [out.get() for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for part in parts for x in part["latencies"])
    elapsed = max(part["end"] for part in parts) - t0
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None  # noqa: E731
    return {
        "target_rate": rate, "seconds": seconds, "workers": workers, "completed": len(lat),
        "errors": sum(p["errors"] for p in parts), "late": sum(p["late"] for p in parts),
        "achieved_rate": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_s": pct(0.50), "p99_s": pct(0.99), "max_s": lat[-1] if lat else None,
    }


if __name__ == "__main__":
    host, port, rate, seconds, workers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    print(json.dumps(run(host, port, rate, seconds, workers)))
