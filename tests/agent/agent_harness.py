"""Helpers for the end-to-end agent tests: polling and reading the agent's real outputs."""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.identity.enricher import Enricher
from probes.events import TcpConnection

TEST_RESOURCE = {"service.name": "bcgov-agent", "host.name": "test"}

def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class RunningAgent:
    """Handles on the session agent and its real outputs."""

    agent: Any
    spans_path: Path
    log_path: Path
    metrics_url: str

    def spans(self) -> list[dict[str, Any]]:
        """Every span written so far, flattened out of the OTLP JSON requests."""
        out = []
        for line in _complete_lines(self.spans_path):
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        span["attrs"] = {a["key"]: _value(a["value"]) for a in span["attributes"]}
                        span["resource"] = {a["key"]: _value(a["value"]) for a in rs["resource"]["attributes"]}
                        out.append(span)
        return out

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in _complete_lines(self.log_path)]

    def scrape(self, openmetrics: bool = True) -> str:
        req = urllib.request.Request(self.metrics_url)
        if openmetrics:
            req.add_header("Accept", "application/openmetrics-text; version=1.0.0")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read().decode()

    def __post_init__(self) -> None:
        # Scrapes drain the kernel's counter maps: remember what they took, so a test can still
        # count its own cgroup's entries exactly.
        self._drained: list[tuple[str, Any, int]] = []
        self.agent.kernel_metrics.taps.append(lambda table, key, n: self._drained.append((table, key, n)))

    def kernel_count(self, probe: str, table: str, match: Callable[[Any], bool]) -> int:
        """Sum of a probe's in-kernel counter entries whose key matches: still in the map, or
        drained by a scrape since this handle was made. Not for use while another thread scrapes."""
        bpf = self.agent.probes[probe].bpf
        drained = sum(n for t, k, n in list(self._drained) if t == table and match(k))
        return drained + sum(int(v.value) for k, v in bpf[table].items() if match(k))


def _complete_lines(path: Path) -> list[str]:
    """Lines a writer has finished: the agent may be mid-line while a test reads."""
    text = path.read_text()
    return [line for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def _value(v: dict[str, Any]) -> Any:
    if "intValue" in v:
        return int(v["intValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return next(iter(v.values()))


def connection(**overrides: object) -> TcpConnection:
    """A decoded TCP connection record (a psql client's, with two retransmits), fields overridable."""
    base = dict(
        direction="active", outcome="normal", start_ns=1_000, established_ns=1_100, end_ns=3_000, family=2,
        local_addr="10.0.0.1", local_port=40000, remote_addr="10.0.0.2", remote_port=5432, pid=42, tid=42,
        comm="psql", cgroup_id=7, owner_source="connect", bytes_sent=10, bytes_received=20, retransmits=2,
        retransmit_ns=(1_500, 1_700), reset_ns=0, reset_received=False, reset_sent=False, sock=1,
    )
    base.update(overrides)
    return TcpConnection(**base)  # type: ignore[arg-type]


class CgroupIdentity(Enricher):
    """Identity that labels a workload by its cgroup id, so a test's cgroup has its own series."""

    label_names = ("cgroup",)

    def labels_for_cgroup(self, cgroup_id: int) -> tuple[str, ...]:
        return (str(cgroup_id),)

    def labels_for_endpoint(self, addr: str, port: int) -> tuple[str, ...]:
        return ("",)

    def attributes_for(self, cgroup_id: int, pid: int) -> dict[str, Any]:
        return {"bcgov.cgroup.id": cgroup_id}


@contextlib.contextmanager
def started_agent(tmp: Path, parts: Any = None, **config: Any) -> Iterator[RunningAgent]:
    """A real agent started with `config` (AgentConfig fields) and `parts`: metrics on an
    ephemeral loopback port, spans (JSONL) and event lines under `tmp`. Stopped on exit, also
    when the test fails."""
    from agent.config import AgentConfig
    from agent.export.spans import JsonlFileExporter
    from agent.kernel import preflight
    from agent.kernel.tracefs import Tracefs
    from agent.runtime import Agent, AgentParts

    # Tests count every connection's span unless they test the span budget itself (test_span_budget_ebpf.py).
    config.setdefault("span_budget_per_second", 0.0)
    cfg = AgentConfig(metrics_addr="127.0.0.1:0", spans_file=str(tmp / "spans.jsonl"), **config)
    cfg.validate()
    log_path = tmp / "events.jsonl"
    stream = io.TextIOWrapper(open(log_path, "ab", buffering=0), encoding="utf-8", line_buffering=True)  # noqa: SIM115 (the agent's event log: closed with the agent)
    parts = parts or AgentParts()
    parts.event_stream = stream
    parts.span_exporter = parts.span_exporter or JsonlFileExporter(cfg.spans_file, TEST_RESOURCE, "test")
    agent = Agent(cfg, Tracefs(preflight.check()), parts)
    try:
        agent.start()
        assert agent._server is not None
        host, port = agent._server.address
        yield RunningAgent(agent, Path(cfg.spans_file), log_path, f"http://{host}:{port}/metrics")
    finally:
        agent.stop()
        stream.close()
