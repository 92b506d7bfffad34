"""One real agent per test session: compiling BCC programs takes seconds, so load them once."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agent_harness import RunningAgent  # noqa: E402


@pytest.fixture(scope="session")
def running_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    from agent import preflight
    from agent.config import AgentConfig
    from agent.runtime import Agent, AgentParts
    from agent.spans import JsonlFileExporter
    from agent.tracefs import Tracefs

    tmp = tmp_path_factory.mktemp("agent")
    cfg = AgentConfig(metrics_addr="127.0.0.1:0", spans_file=str(tmp / "spans.jsonl"))
    cfg.validate()
    log_path = tmp / "events.jsonl"
    stream = io.TextIOWrapper(open(log_path, "ab", buffering=0), encoding="utf-8", line_buffering=True)
    resource = {"service.name": "bcgov-agent", "host.name": "test"}
    parts = AgentParts(event_stream=stream, span_exporter=JsonlFileExporter(cfg.spans_file, resource, "test"))
    agent = Agent(cfg, Tracefs(preflight.check()), parts)
    try:
        agent.start()
        assert agent._server is not None
        host, port = agent._server.address
        yield RunningAgent(agent, Path(cfg.spans_file), log_path, f"http://{host}:{port}/metrics")
    finally:
        agent.stop()


@pytest.fixture
def cgroup() -> Iterator[Any]:
    from cgroups import test_cgroup

    with test_cgroup() as cg:
        yield cg
