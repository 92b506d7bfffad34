"""--duration and the exit line's "stopped after": the time the agent ran, from run() (after the
probes compiled) to stop(), not growing while stop() drains (the trial saw --duration 15 reported
as "stopped after 17s")."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.config import AgentConfig
from agent.runtime import Agent, AgentParts


def test_elapsed_is_the_run_and_stops_growing_at_stop(tmp_path: Path) -> None:
    cfg = AgentConfig(metrics_addr="off", spans_file=str(tmp_path / "spans.jsonl"), log_file=str(tmp_path / "e.jsonl"),
                      probes=[], duration=0.05)
    cfg.validate()
    agent = Agent(cfg, tracefs=None, parts=AgentParts(registry=CollectorRegistry(), specs=()))  # type: ignore[arg-type]
    agent.start()
    try:
        agent.run(threading.Event())
    finally:
        agent.stop()
    first = agent.elapsed()
    agent.stop()  # a second stop (the CLI's finally after an error path) keeps the first end
    assert first >= 0.05
    assert agent.elapsed() == first
