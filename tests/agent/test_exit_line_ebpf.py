"""`bcgov agent run` as its own process, stderr a pipe (not a terminal): every line on stderr is
JSON, also those of Python's root logger (the trial report saw the plain-text "no Kubernetes
config" line among them), and spans the agent could not write are named in the exit line (the
trial saw 8704 spans dropped and "lost records: 0"). Spans go to /dev/full, so every export
fails with ENOSPC, on the real kernel with real loopback connections."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import agent_process
from servers import free_port, poll

pytestmark = pytest.mark.ebpf

REPO = Path(__file__).resolve().parents[2]


def test_dropped_spans_are_in_the_json_exit_line(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"metrics_addr: 127.0.0.1:{port}\nspans_file: /dev/full\nlog_file: {tmp_path / 'events.jsonl'}\n"
                   "probes: [tcp_lifecycle]\nspan_budget_per_second: 0\n")  # identity on, no Kubernetes config
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(PYTHONUNBUFFERED="1", HOME=str(tmp_path))  # no ~/.kube/config either
    stderr = tmp_path / "agent.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bcgov.cli", "agent", "run", "--config", str(cfg)],
                                cwd=REPO, stdout=err, stderr=err, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        agent_process.wait_ready(base, lambda: proc.poll() is None, stderr.read_text)
        agent_process.make_connections()

        def failed_exports() -> float:
            text = agent_process.get(base + "/metrics")[1]
            m = re.search(r'^bcgov_agent_spans_dropped_total\{reason="export_failed"\} (\S+)$', text, re.M)
            return float(m.group(1)) if m and float(m.group(1)) > 0 else 0.0

        poll(failed_exports, 60, "spans counted as export_failed", stderr.read_text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = stderr.read_text().splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a plain-text line among the JSON lines on stderr: {line!r}")
    bodies = [r["body"] for r in records]
    assert any(b.startswith("no Kubernetes config") for b in bodies), bodies
    exit_line = bodies[-1]
    assert exit_line.startswith("agent stopped after "), exit_line
    m = re.search(r"spans dropped: (\d+) \(export_failed (\d+)", exit_line)
    assert m and int(m.group(1)) == int(m.group(2)) > 0, exit_line


def test_the_otel_sdks_export_failures_are_json_lines(tmp_path: Path) -> None:
    """The OTel SDK's own warnings (an exporter retrying a collector that refuses) log through
    Python's root logger: JSON too, with their logger's name."""
    port, dead = free_port(), free_port()  # nothing listens on `dead`: every export is refused
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"metrics_addr: 127.0.0.1:{port}\notlp_endpoint: http://127.0.0.1:{dead}\notlp_timeout_seconds: 1\n"
                   f"log_file: {tmp_path / 'events.jsonl'}\nlogs: local\nprobes: [tcp_lifecycle]\nidentity: false\n"
                   "span_budget_per_second: 0\n")
    stderr = tmp_path / "agent.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bcgov.cli", "agent", "run", "--config", str(cfg)],
                                cwd=REPO, stdout=err, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        agent_process.wait_ready(f"http://127.0.0.1:{port}", lambda: proc.poll() is None, stderr.read_text)
        agent_process.make_connections()
        poll(lambda: "opentelemetry" in stderr.read_text(), 60, "an OTel SDK log line", stderr.read_text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = []
    for line in stderr.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a plain-text line among the JSON lines on stderr: {line!r}")
    assert any(r["logger"].startswith("opentelemetry.") for r in records), records
