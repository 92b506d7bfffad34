"""The agent under test as a real subprocess (`bcgov agent run`), and what the kernel says it costs:
CPU from /proc/<pid>/stat, memory from /proc/<pid>/status, its own /metrics."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.common import BenchError, free_port, wait_until

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(line.split()[1])
    return out


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value for every sample of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(metrics: dict, name: str, **match: str) -> float:
    """Sum of the samples of `name` whose labels include `match`."""
    return sum(v for (n, labels), v in metrics.items() if n == name and all((k, val) in labels for k, val in match.items()))


def _seen(snap: dict[str, Any]) -> float:
    m = snap["metrics"]
    return total(m, "bcgov_agent_events_total") + total(m, "bcgov_agent_events_lost_total")


@dataclass
class AgentProcess:
    """A running `bcgov agent run`."""

    proc: subprocess.Popen[bytes]
    url: str
    workdir: Path
    started_s: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def scrape(self) -> dict:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            return parse_metrics(resp.read().decode())

    def snapshot(self) -> dict[str, Any]:
        """CPU, memory and metrics at one moment."""
        return {"t": time.monotonic(), "cpu_s": cpu_seconds(self.pid), **memory_kb(self.pid), "metrics": self.scrape()}

    def drained(self, quiet_per_s: float = 500.0, timeout: float = 20.0) -> dict[str, Any]:
        """Snapshot once the agent has caught up: records (received + lost) grow slower than
        `quiet_per_s` (other traffic on a shared machine never stops completely). After `timeout`
        the last snapshot is returned with `drained: False`."""
        prev = self.snapshot()
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(0.3)
            snap = self.snapshot()
            rate = (_seen(snap) - _seen(prev)) / (snap["t"] - prev["t"])
            if rate < quiet_per_s or time.monotonic() > deadline:
                snap["drained"] = rate < quiet_per_s
                return snap
            prev = snap

    def stop(self) -> None:
        """Stop the agent and remove its work directory (spans and logs of a storm run are 100+ MB)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_agent(config_yaml: str) -> AgentProcess:
    """Start the agent with all probes and `config_yaml`; return once /readyz says probes are attached."""
    workdir = Path(tempfile.mkdtemp(prefix="bcgov-bench-agent-"))
    (workdir / "agent.yaml").write_text(config_yaml)
    port = free_port()  # never 9464: a test or a real agent may be using it
    argv = [sys.executable, "-m", "bcgov.cli", "agent", "run", "--config", str(workdir / "agent.yaml"),
            "--metrics-addr", f"127.0.0.1:{port}", "--spans-file", str(workdir / "spans.jsonl"),
            "--log-file", str(workdir / "events.jsonl")]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(workdir / "agent.log", "wb"))  # noqa: SIM115 (the agent writes it until it stops)
    agent = AgentProcess(proc, f"http://127.0.0.1:{port}", workdir, 0.0)

    def ready() -> bool:
        if proc.poll() is not None:
            raise BenchError(f"agent exited with {proc.returncode}: {(workdir / 'agent.log').read_text()[-500:]}")
        try:
            with urllib.request.urlopen(agent.url + "/readyz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_until(ready, 180, "the agent to attach its probes", interval=0.2)
    except BaseException:
        agent.stop()
        raise
    agent.started_s = time.monotonic() - t0
    return agent
