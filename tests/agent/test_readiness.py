"""Readiness tells the truth: which probes it requires (ready_requires), why one is down, in the
/readyz body of the real HTTP server and in bcgov_agent_probe_down{probe,reason}."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from agent.config import AgentConfig, ConfigError
from agent.metrics.readiness import ProbeState, Readiness
from agent.metrics.server import MetricsServer

STATES = [
    ProbeState("tcp_lifecycle", True),
    ProbeState("oom", False, "missing_tracepoint", "kernel lacks tracepoint oom:mark_victim (see oom.bpf.c)"),
    ProbeState("block_io", False, "load_failed", "probe block_io failed to compile or load: verifier said no"),
]


@pytest.mark.parametrize(("requires", "ready"), [
    ("all", False),
    (["tcp_lifecycle"], True),
    (["tcp_lifecycle", "oom"], False),
])
def test_ready_is_what_ready_requires_says(requires: object, ready: bool) -> None:
    assert Readiness(STATES, requires).ready() is ready  # type: ignore[arg-type]


def test_no_probe_at_all_is_never_ready() -> None:
    assert not Readiness([], "all").ready()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(("requires", "code"), [("all", 503), (["tcp_lifecycle"], 200)])
def test_readyz_and_metrics_name_each_down_probe_and_why(requires: object, code: int) -> None:
    readiness = Readiness(STATES, requires)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    registry.register(readiness)
    server = MetricsServer("127.0.0.1", 0, registry, ready=lambda: (readiness.ready(), readiness.body()))
    server.start()
    try:
        host, port = server.address
        base = f"http://{host}:{port}"
        status, body = _get(base + "/readyz")
        assert status == code
        assert "oom: down" in body and "missing_tracepoint: kernel lacks tracepoint oom:mark_victim" in body
        assert "block_io: down" in body and "load_failed: probe block_io failed to compile or load" in body
        assert "tcp_lifecycle: up (required)" in body
        metrics = _get(base + "/metrics")[1]
    finally:
        server.stop()
    assert 'bcgov_agent_probe_down{probe="oom",reason="missing_tracepoint"} 1.0' in metrics
    assert 'bcgov_agent_probe_down{probe="block_io",reason="load_failed"} 1.0' in metrics
    assert 'probe="tcp_lifecycle"' not in metrics
    assert f"bcgov_agent_ready {1.0 if code == 200 else 0.0}" in metrics


def test_ready_requires_is_checked_against_the_configured_probes() -> None:
    AgentConfig(probes=["tcp_lifecycle", "oom"], ready_requires=["oom"]).validate()
    with pytest.raises(ConfigError, match="ready_requires names probe.* not loaded: runqueue"):
        AgentConfig(probes=["tcp_lifecycle"], ready_requires=["runqueue"]).validate()
    with pytest.raises(ConfigError, match="ready_requires must be 'all' or a non-empty list"):
        AgentConfig(ready_requires="some").validate()


def test_ready_requires_loads_from_yaml_as_all_or_a_list(tmp_path) -> None:
    from agent import config

    f = tmp_path / "agent.yaml"
    f.write_text("ready_requires: [tcp_lifecycle, process]\n")
    assert config.load(str(f), {}).ready_requires == ["tcp_lifecycle", "process"]
    f.write_text("ready_requires: all\n")
    assert config.load(str(f), {}).ready_requires == "all"
