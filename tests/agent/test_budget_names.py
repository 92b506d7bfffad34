"""series_budgets naming a family the agent does not export (the trial's
`{nonexistent_metric: 5}`) is said at start-up; a real family, with or without `_total`, is not.
The families are those of a real agent's registry (probes not loaded, every collector in place)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.config import AgentConfig
from agent.runtime import Agent, AgentParts
from bcgov.cli_agent import _budgets_for_nothing


def test_a_budget_for_no_family_is_named_and_a_real_one_is_not(tmp_path: Path) -> None:
    cfg = AgentConfig(metrics_addr="off", spans_file=str(tmp_path / "s.jsonl"), log_file=str(tmp_path / "e.jsonl"),
                      probes=[], series_budgets={"nonexistent_metric": 5, "bcgov_agent_spans_dropped_total": 10,
                                                 "bcgov_agent_spans_droped": 3})
    registry = CollectorRegistry()
    agent = Agent(cfg, tracefs=None, parts=AgentParts(registry=registry, specs=()))  # type: ignore[arg-type]
    agent.start()
    try:
        problems = _budgets_for_nothing(cfg.series_budgets, registry)
    finally:
        agent.stop()
    assert len(problems) == 2, problems
    assert problems[0].startswith("series_budgets names nonexistent_metric, which this agent does not export")
    assert "did you mean bcgov_agent_spans_dropped?" in problems[1]
