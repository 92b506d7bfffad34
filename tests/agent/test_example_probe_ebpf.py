"""A probe added in its own files only: tests/probes/example_probe/ (fork_count.bpf.c and its spec)
loaded by the real agent next to bcgov's own probes, its declared counter in /metrics with the
exact count of one cgroup's forks and its handler's log line for each of them. Nothing in agent/
names it; the test adds the registry line a new probe adds (probes/registry.py ALL)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import cgroups
import pytest
from agent_harness import CgroupIdentity, started_agent, wait_for

from probes import registry

pytestmark = pytest.mark.ebpf

EXAMPLE = Path(__file__).resolve().parents[1] / "probes" / "example_probe" / "fork_count.py"
FORKS = 23  # prime: a count no other fork pattern of the test makes by accident
FORK = f"""
import os
for _ in range({FORKS}):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fork_count", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_an_example_probe_in_its_own_files_counts_one_cgroups_forks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.runtime import AgentParts

    spec = example().SPEC
    assert spec.source_path == EXAMPLE.with_suffix(".bpf.c")
    monkeypatch.setattr(registry, "ALL", (*registry.ALL, spec))  # the one line a new probe adds
    parts = AgentParts(enricher=CgroupIdentity(), specs=registry.ALL)
    with cgroups.test_cgroup() as cg, started_agent(tmp_path, parts, probes=registry.names()) as agent:
        assert "fork_count" in agent.agent.probes, [r.reason for r in agent.agent.reports if not r.up]
        # -S: no site import, so the interpreter itself starts no thread (a clone fires the tracepoint too)
        run = cg.run_argv([sys.executable, "-S", "-c", FORK])
        assert run.returncode == 0, run.stderr
        text = agent.scrape(openmetrics=False)
        assert 'bcgov_agent_probe_up{probe="fork_count"} 1.0' in text
        assert 'bcgov_agent_map_full_total{probe="fork_count"} 0.0' in text
        m = re.search(rf'^bcgov_example_forks_total{{cgroup="{cg.id}"}} (\S+)$', text, re.M)
        assert m and float(m.group(1)) == FORKS, m and m.group(0)
        # drained by that scrape: the next one still says 23 (cumulative), the map holds nothing of it
        assert m.group(0) in agent.scrape(openmetrics=False)
        assert not [k for k in agent.agent.probes["fork_count"].bpf["fork_counts"] if int(k.value) == cg.id]
        # the handler's lines: one per fork, with the parent's cgroup and the child's pid
        def lines() -> list[dict]:
            return [r for r in agent.logs() if r.get("body") == "process forked"
                    and r.get("attributes", {}).get("bcgov.cgroup.id") == cg.id]
        wait_for(lambda: len(lines()) >= FORKS, 10, "the fork lines")
        assert len(lines()) == FORKS and len({r["attributes"]["bcgov.fork.child_pid"] for r in lines()}) == FORKS
        assert re.search(r'^bcgov_agent_events_total{probe="fork_count"} (\S+)$', agent.scrape(openmetrics=False), re.M)
