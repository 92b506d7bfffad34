"""Identity is the runtime's to build (Agent.start), not the CLI's: with AgentParts.enricher None the
agent builds the pod identity its config asks for, waits for the first pod list at most
pod_list_wait_s, stops it with itself, and turns an IdentityError into AgentStartError, which
`bcgov agent run` prints as one line (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.config import AgentConfig
from agent.identity.enricher import Enricher
from agent.identity.errors import CgroupRootError
from agent.identity.pod_enricher import IdentityEnricher
from agent.runtime import Agent, AgentParts, AgentStartError


def _config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    cfg = AgentConfig(metrics_addr="off", spans_file=str(tmp_path / "spans.jsonl"), log_file=str(tmp_path / "e.jsonl"),
                      probes=[], **overrides)
    cfg.validate()
    return cfg


class _Watching(Enricher):
    """Stands in for IdentityEnricher: a pod watch that never lists, and knows whether it was stopped."""

    pods = object()

    def __init__(self) -> None:
        self.waited: list[float] = []
        self.stopped = False

    def wait_synced(self, timeout: float) -> bool:
        self.waited.append(timeout)
        return False

    def stop(self) -> None:
        self.stopped = True


def test_the_agent_builds_identity_from_its_config_waits_and_stops_it(tmp_path: Path, monkeypatch, caplog) -> None:
    built: list[_Watching] = []
    asked: list[tuple[Any, ...]] = []

    def for_node(registry: CollectorRegistry, node: str | None, kubeconfig: str | None, tiers: Any) -> _Watching:
        asked.append((node, kubeconfig, tiers))
        built.append(_Watching())
        return built[-1]

    monkeypatch.setattr(IdentityEnricher, "for_node", staticmethod(for_node))
    cfg = _config(tmp_path, node_name="node-a", kubeconfig=str(tmp_path / "kubeconfig"))
    agent = Agent(cfg, tracefs=None, parts=AgentParts(registry=CollectorRegistry(), specs=(), enricher=None,  # type: ignore[arg-type]
                                                      pod_list_wait_s=0.25))
    with caplog.at_level("WARNING", logger="bcgov.agent"):
        agent.start()
    try:
        (enricher,) = built
        assert asked == [("node-a", str(tmp_path / "kubeconfig"), cfg.tiers)]
        assert agent.parts.enricher is enricher and enricher.waited == [0.25]
        assert "no pod list from the Kubernetes API within 0.25s; starting anyway" in caplog.text
    finally:
        agent.stop()
    assert enricher.stopped


def test_identity_off_needs_no_kubernetes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(IdentityEnricher, "for_node", staticmethod(lambda *a: pytest.fail("identity is off")))
    agent = Agent(_config(tmp_path, identity=False), tracefs=None,  # type: ignore[arg-type]
                  parts=AgentParts(registry=CollectorRegistry(), specs=(), enricher=None))
    agent.start()
    agent.stop()
    assert type(agent.parts.enricher) is Enricher


def test_an_identity_error_is_an_agent_start_error_with_its_message(tmp_path: Path, monkeypatch) -> None:
    def for_node(*_: Any) -> None:
        raise CgroupRootError("no cgroup2 file system at /sys/fs/cgroup; mount it (cgroup_no_v1=all)")

    monkeypatch.setattr(IdentityEnricher, "for_node", staticmethod(for_node))
    agent = Agent(_config(tmp_path), tracefs=None,  # type: ignore[arg-type]
                  parts=AgentParts(registry=CollectorRegistry(), specs=(), enricher=None))
    with pytest.raises(AgentStartError, match=r"^no cgroup2 file system at /sys/fs/cgroup; mount it") as caught:
        agent.start()
    assert isinstance(caught.value.__cause__, CgroupRootError)
    agent.stop()  # as the CLI does after a failed start
