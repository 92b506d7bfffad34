"""Evidence export at volume: `bcgov evidence export` over a window of agent files of a given size.

The files are written by the agent's own encoders (agent/export/spans.py JsonlFileExporter, agent/
event_log.py EventLog) in the shape 21 minutes of pgbench traffic gave in the field (about 65 %
spans, 35 % event lines): spans in batches of 512 per line, connection lines with trace ids, execs
and exits of a handful of commands, an OOM kill, resets, and exec lines with secrets in argv (so
the redacting path runs too), over four namespaces. Each export runs in a fresh wrapper process so
its peak RSS (ru_maxrss of the wrapper's children) is its own; `--until` is the window's end, so
everything written is in the window.

Runs: `all` (no scope: every line kept and written, the worst case) to a directory and to a
.tar.gz, and `scoped` (one namespace of four: filtered while reading). Target: the 1 GB window in
<= 60 s and <= 500 MB RSS.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agent_proc import REPO
from bench.common import say, summary

TARGET_S, TARGET_RSS_MB = 60.0, 500.0
SPAN_SHARE = 829 / (829 + 444)  # the field report's spans : event lines
NAMESPACES = ("payments", "orders", "search", "batch")
REPEATS = 3

MEASURE = """\
import resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.monotonic() - t, r.returncode, u.ru_maxrss, u.ru_utime + u.ru_stime, repr(r.stderr[-300:]))
"""


def _ident(ns: str, i: int) -> dict[str, Any]:
    return {"k8s.namespace.name": ns, "k8s.pod.name": f"{ns}-db-{i % 3}", "bcgov.workload.name": f"{ns}-db",
            "bcgov.tier": "oltp", "container.id": f"{hash((ns, i % 3)) & (2**64 - 1):016x}" * 4}


def write_files(dir_: Path, total_bytes: int, t0: float, seconds: float) -> tuple[Path, Path]:
    """spans.jsonl and events.jsonl together about `total_bytes`, times spread over [t0, t0+seconds]."""
    sys.path.insert(0, str(REPO))
    from agent.export.event_log import EventLog
    from agent.export.span_model import KIND_CLIENT, KIND_SERVER, SpanData, SpanEvent
    from agent.export.spans import otlp_json_line

    rnd = random.Random(23)
    spans_path, logs_path = dir_ / "spans.jsonl", dir_ / "events.jsonl"
    resource = {"service.name": "bcgov-agent", "host.name": "node-1", "k8s.node.name": "node-1"}
    # The exporter's own line encoder, into one file (the agent's file exporter rotates by size).
    spanf = spans_path.open("w", buffering=1 << 20)
    logf = logs_path.open("w", buffering=1 << 20)
    log = EventLog(logf, batched=True)
    span_budget, log_budget = total_bytes * SPAN_SHARE, total_bytes * (1 - SPAN_SHARE)
    written_spans = written_logs = 0
    n = 0
    commands = [["pgbench", "-c", "8", "-T", "1260", "bench"], ["psql", "-c", "select 1"], ["perl", "-e", "print 1;\nprint 2;\n"],
                ["sh", "-c", "pg_isready -h db"], ["app", "--db-password=S3cret", "--dsn=postgres://u:S3cret@db/x"]]
    while written_spans < span_budget or written_logs < log_budget:
        batch = []
        for _ in range(512):
            n += 1
            ns = NAMESPACES[n % len(NAMESPACES)]
            start = int((t0 + seconds * (written_spans + written_logs) / total_bytes) * 1e9) + n % 1000
            end = start + rnd.randrange(100_000, 50_000_000)
            attrs = {**_ident(ns, n), "network.peer.address": f"10.0.{n % 7}.{n % 250}", "network.peer.port": 5432,
                     "network.transport": "tcp", "bcgov.tcp.outcome": "normal", "bcgov.tcp.bytes_sent": rnd.randrange(1000),
                     "bcgov.tcp.bytes_received": rnd.randrange(5000), "process.pid": 1000 + n % 50,
                     "process.executable.name": "pgbench"}
            events = []
            if n % 997 == 0:
                attrs["bcgov.tcp.outcome"] = "reset"
                events.append(SpanEvent("tcp.reset", end, {"bcgov.tcp.reset.direction": "received"}))
            s = SpanData(trace_id=rnd.getrandbits(128) | 1, span_id=rnd.getrandbits(64) | 1, name="tcp connect",
                         kind=KIND_CLIENT if n % 2 else KIND_SERVER, start_ns=start, end_ns=end, attributes=attrs, events=events)
            batch.append(s)
            if written_logs < log_budget:
                line_attrs = {k: v for k, v in attrs.items() if not k.startswith("bcgov.tcp.bytes")}
                body = "tcp connection reset" if events else "tcp connection closed"
                log.write(end, body, line_attrs, trace_id=s.trace_id_hex, span_id=s.span_id_hex)
                if n % 5 == 0:
                    cmd = commands[n % len(commands)]
                    pattrs = {**_ident(ns, n), "process.pid": 20000 + n, "process.executable.name": cmd[0]}
                    log.write(end, "process exec", {**pattrs, "process.command_args": cmd})
                    log.write(end + 1000, "process exit", {**pattrs, "bcgov.process.exit_kind": "exited", "process.exit.code": 0})
                if n % 200_003 == 0:
                    log.write(end, "oom kill", {**_ident(ns, n), "process.pid": 1, "bcgov.oom.anon_rss_kb": 262144}, severity="ERROR")
        spanf.write(otlp_json_line(batch, resource, "0.1.0") + "\n")
        log.flush()
        written_spans = spanf.tell()
        written_logs = logf.tell()
    spanf.close()
    log.close()
    return spans_path, logs_path


def _measure(cmd: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, timeout=1800)
    secs, rc, rss_kb, cpu, err = out.stdout.strip().split(" ", 4)
    if int(rc) != 0:
        raise RuntimeError(f"export failed (rc {rc}): {err}")
    return {"s": float(secs), "rss_mb": int(rss_kb) / 1024, "cpu_s": float(cpu)}


def run(total_mb: int = 1024, repeats: int = REPEATS) -> dict[str, Any]:
    bcgov = str(REPO / ".venv" / "bin" / "bcgov")
    work = Path(tempfile.mkdtemp(prefix="bcgov-evidence-bench-"))
    try:
        seconds = 21 * 60.0
        t0 = time.time() - seconds - 120
        say(f"writing {total_mb} MB of agent files")
        spans, logs = write_files(work, total_mb * 1024 * 1024, t0, seconds)
        in_bytes = spans.stat().st_size + logs.stat().st_size
        win = ["--since", _rfc(t0 - 1), "--until", _rfc(t0 + seconds + 1)]
        variants = {"all-dir": ([], "b"), "all-tar.gz": ([], "b.tar.gz"), "scoped-dir": (["--namespace", "payments"], "s")}
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
        for r in range(repeats):
            for name, (extra, out) in variants.items():
                dest = work / f"{r}-{out}"
                m = _measure([bcgov, "evidence", "export", *win, "--spans-file", str(spans), "--logs", str(logs),
                              *extra, "--out", str(dest)])
                size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) if dest.is_dir() else dest.stat().st_size
                m["out_mb"] = size / 1e6
                if dest.is_dir():
                    tl = (dest / "timeline.md").stat().st_size
                    pm = (dest / "postmortem.md").stat().st_size
                    m["timeline_kb"], m["postmortem_kb"] = tl / 1024, pm / 1024
                say(f"{name} #{r + 1}: {m['s']:.1f} s ({m['cpu_s']:.1f} s CPU), peak {m['rss_mb']:.0f} MB, out {m['out_mb']:.0f} MB")
                runs[name].append(m)
                shutil.rmtree(dest, ignore_errors=True) if dest.is_dir() else dest.unlink()
        return {"params": {"input_mb": in_bytes / 1e6, "spans_mb": spans.stat().st_size / 1e6,
                           "logs_mb": logs.stat().st_size / 1e6, "repeats": repeats,
                           "target_s": TARGET_S, "target_rss_mb": TARGET_RSS_MB},
                "runs": runs,
                "summary": {k: {"s": summary([m["s"] for m in v]), "cpu_s": summary([m["cpu_s"] for m in v]),
                                "rss_mb": summary([m["rss_mb"] for m in v]),
                                "out_mb": summary([m["out_mb"] for m in v]),
                                "timeline_kb": summary([m.get("timeline_kb") for m in v]),
                                "postmortem_kb": summary([m.get("postmortem_kb") for m in v])}
                            for k, v in runs.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rfc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1024, 1), indent=1))
