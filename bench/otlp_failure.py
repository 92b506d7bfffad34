"""`python -m bench.otlp_failure`: how long a dead collector holds up the agent's span export.

For each OTLP protocol and exporter timeout, one batch is exported to (a) a closed port (connection
refused: the SDK retries UNAVAILABLE / connection errors with backoff 1 s, 2 s, ... while it fits in
the timeout) and (b) a black hole (a socket that accepts and never answers: one attempt runs into the
deadline). Then a full queue (16384 spans) is shut down with the collector dead: the flush time is the
timeout, after which the exporter is shut down and what is left is counted as dropped (shutdown).
Writes bench/results/<date>-otlp-failure.json. About a minute; no root needed.
"""

from __future__ import annotations

import logging
import socket
import statistics
import time
from typing import Any

from bench.common import say, write_result

RUNS = 3


def _closed_port() -> tuple[None, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return None, port


def _black_hole() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, s.getsockname()[1]


def _collector(kind: str) -> tuple[socket.socket | None, int]:
    return _closed_port() if kind == "refused" else _black_hole()


def run() -> dict[str, Any]:
    from agent.export.queue import SpanQueue
    from agent.export.span_model import SpanData
    from agent.export.spans import OtlpExporter

    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)  # one warning per retry otherwise
    span = SpanData(1, 2, "tcp connect", 3, 10, 20, {"bcgov.tcp.bytes_sent": 1})
    rows: list[dict[str, Any]] = []
    for protocol in ("grpc", "http"):
        for timeout in (2.0, 5.0):
            for kind in ("refused", "black_hole"):
                times = []
                for _ in range(RUNS):
                    hole, port = _collector(kind)
                    ex = OtlpExporter(f"http://127.0.0.1:{port}", protocol, {"service.name": "bench"}, "bench", timeout)
                    t = time.monotonic()
                    ok = ex.export([span])
                    times.append(time.monotonic() - t)
                    ex.shutdown()
                    if hole is not None:
                        hole.close()
                    if ok:
                        raise RuntimeError("an export to a dead collector succeeded")
                row: dict[str, Any] = {"what": "failing_export", "protocol": protocol, "timeout_s": timeout, "collector": kind,
                       "blocked_s_median": round(statistics.median(times), 3), "blocked_s_max": round(max(times), 3)}
                say(str(row))
                rows.append(row)
        for kind in ("refused", "black_hole"):
            hole, port = _collector(kind)
            ex = OtlpExporter(f"http://127.0.0.1:{port}", protocol, {"service.name": "bench"}, "bench", 5.0)
            q = SpanQueue(ex, on_drop=lambda reason, n: None, max_queue=16384, flush_timeout_s=5.0)
            for _ in range(16384):
                q.submit(span)
            t = time.monotonic()
            q.shutdown()
            took = time.monotonic() - t
            st = q.stats()
            if hole is not None:
                hole.close()
            row = {"what": "shutdown_full_queue", "protocol": protocol, "timeout_s": 5.0, "collector": kind,
                   "took_s": round(took, 3), "submitted": st.submitted, "exported": st.exported,
                   "dropped": st.dropped, "queued": st.queued}
            say(str(row))
            rows.append(row)
    return {"runs_per_row": RUNS, "rows": rows}


if __name__ == "__main__":
    print(write_result("otlp-failure", run()))
