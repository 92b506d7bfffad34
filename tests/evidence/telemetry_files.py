"""Spans and log lines in the agent's exact formats (agent/export/spans.py, agent/export/event_log.py), written
by the agent's own encoders so a format change there shows up here."""

from __future__ import annotations

import io
from pathlib import Path

from agent.export.event_log import EventLog
from agent.export.span_model import KIND_CLIENT, STATUS_ERROR, SpanData, SpanEvent
from agent.export.spans import JsonlFileExporter

SECRET_ARGV = "PLANTED-argv-s3cr3t"
SECRET_URL = "PLANTED-url-s3cr3t"
SECRET_PROM = "PLANTED-prom-s3cr3t"
SECRETS = (SECRET_ARGV, SECRET_URL, SECRET_PROM)
OUT_OF_SCOPE_MARK = "other-namespace-process"

IDENTITY = {"k8s.namespace.name": "payments", "k8s.pod.name": "ledger-0", "bcgov.workload.name": "ledger",
            "bcgov.tier": "gold"}


def write(dir_: Path, t0: float) -> tuple[Path, Path]:
    """spans.jsonl and events.jsonl around `t0`: exec with secrets at t0+0.5, a reset connection at
    t0+2, an OOM kill at t0+3, the exit at t0+3.1, and one out-of-scope exec."""
    ns = lambda t: int(t * 1e9)  # noqa: E731
    spans_path = dir_ / "spans.jsonl"
    exp = JsonlFileExporter(str(spans_path), {"service.name": "bcgov-agent", "host.name": "node-1"}, "0.1.0")
    span = SpanData(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7, name="tcp connect", kind=KIND_CLIENT,
        start_ns=ns(t0 + 1.5), end_ns=ns(t0 + 2), status_code=STATUS_ERROR, status_message="connection reset",
        attributes={**IDENTITY, "network.peer.address": "10.0.0.9", "network.peer.port": 5432, "bcgov.tcp.outcome": "reset",
                    "url.full": f"postgres://ledger:{SECRET_URL}@10.0.0.9:5432/ledger"},
        events=[SpanEvent("tcp.reset", ns(t0 + 2), {"bcgov.tcp.reset.direction": "received"})],
    )
    exp.export([span])
    exp.shutdown()

    logs_path = dir_ / "events.jsonl"
    buf = io.StringIO()
    log = EventLog(buf)
    log.write(ns(t0 + 0.5), "process exec", {
        **IDENTITY, "process.pid": 4242, "process.executable.name": "ledger",
        "process.command_args": ["ledger", f"--db-password={SECRET_ARGV}", f"--dsn=postgres://ledger:{SECRET_URL}@db/x"]})
    log.write(span.end_ns, "tcp connection reset", {**IDENTITY, "network.peer.address": "10.0.0.9", "network.peer.port": 5432},
              severity="WARN", trace_id=span.trace_id_hex, span_id=span.span_id_hex)
    log.write(ns(t0 + 3), "oom kill", {**IDENTITY, "process.pid": 4242, "process.executable.name": "ledger",
                                       "bcgov.oom.anon_rss_kb": 262144}, severity="ERROR")
    log.write(ns(t0 + 3.1), "process exit", {**IDENTITY, "process.pid": 4242, "process.executable.name": "ledger",
                                             "bcgov.process.exit_kind": "signaled", "bcgov.process.signal": 9}, severity="WARN")
    log.write(ns(t0 + 1), "process exec", {"k8s.namespace.name": "other", "process.pid": 7,
                                           "process.executable.name": OUT_OF_SCOPE_MARK, "process.command_args": ["x"]})
    logs_path.write_text(buf.getvalue())
    return spans_path, logs_path
