"""A probe whose tracepoint this kernel lacks is reported, and the others still run."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.config import AgentConfig
from agent.kernel import preflight
from agent.kernel.tracefs import Tracefs
from agent.runtime import Agent, AgentParts
from bcgov.cli import cli
from probes import registry
from probes.spec import ProbeSpec

pytestmark = pytest.mark.ebpf


@contextlib.contextmanager
def _running(tmp_path: Path, specs: tuple[ProbeSpec, ...]) -> Iterator[tuple[Agent, str, str]]:
    """An agent of `specs` (all configured), started: (agent, /metrics text, /readyz body, which
    must answer 503: a down probe is required by default, ready_requires: all)."""
    cfg = AgentConfig(metrics_addr="127.0.0.1:0", spans_file=str(tmp_path / "spans.jsonl"), probes=[s.name for s in specs])
    agent = Agent(cfg, Tracefs(preflight.check()), AgentParts(event_stream=io.StringIO(), specs=specs))
    try:
        agent.start()
        host, port = agent._server.address
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=10)
        assert not_ready.value.code == 503
        yield agent, text, not_ready.value.read().decode()
    finally:
        agent.stop()


def test_missing_tracepoint_degrades_one_probe_only(tmp_path: Path) -> None:
    real = registry.get("tcp_retransmit")
    # a copy under another name declares no families: two probes may not both declare one name
    ghost = dataclasses.replace(real, name="ghost", required=("tcp:no_such_tracepoint_in_any_kernel",), metrics=())
    with _running(tmp_path, (real, ghost)) as (agent, text, body):
        reports = {r.name: r for r in agent.reports}
        assert reports["tcp_retransmit"].up
        assert not reports["ghost"].up
        assert "tcp:no_such_tracepoint_in_any_kernel" in reports["ghost"].reason
        assert 'bcgov_agent_probe_up{probe="ghost"} 0.0' in text
        assert 'bcgov_agent_probe_up{probe="tcp_retransmit"} 1.0' in text
        assert 'bcgov_agent_probe_down{probe="ghost",reason="missing_tracepoint"} 1.0' in text
        assert "bcgov_agent_ready 0.0" in text
        assert "ghost: down (required): missing_tracepoint: kernel lacks tracepoint tcp:no_such_tracepoint_in_any_kernel" in body
        assert "tcp_retransmit: up (required)" in body


def test_a_wrong_declaration_downs_its_probe_only_and_says_why(tmp_path: Path) -> None:
    oom = registry.get("oom")
    # a family naming a map the C does not have: refused when it loads, not on every scrape
    typo = dataclasses.replace(oom, metrics=(dataclasses.replace(oom.metrics[0], table="oom_kill"),))
    with _running(tmp_path, (typo, registry.get("process"))) as (agent, text, body):
        assert sorted(agent.probes) == ["process"]
        assert 'bcgov_agent_probe_up{probe="oom"} 0.0' in text
        assert 'bcgov_agent_probe_down{probe="oom",reason="layout_mismatch"} 1.0' in text
        assert 'bcgov_agent_probe_up{probe="process"} 1.0' in text
        assert "# TYPE bcgov_process_execs_total counter" in text
        assert ("oom: down (required): layout_mismatch: probe oom: family bcgov_oom_kills reads map oom_kill, "
                "which oom.bpf.c does not declare") in body


def test_probes_command_lists_every_probe_ready() -> None:
    result = CliRunner().invoke(cli, ["agent", "probes", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["probe"]: r["ready"] for r in rows} == {n: True for n in registry.names()}
    # what each probe attaches to and which families it feeds, from its declaration
    by_name = {r["probe"]: r for r in rows}
    assert by_name["tcp_lifecycle"]["tracepoints"][0] == "sock:inet_sock_set_state"
    assert "bcgov_tcp_connection_duration_seconds" in by_name["tcp_lifecycle"]["families"]
    assert by_name["oom"]["families"] == ["bcgov_oom_kills"]


def test_run_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("probes: [tcp_lifecycle]\nmetrics_adr: x\n")
    result = CliRunner().invoke(cli, ["agent", "run", "--config", str(f), "--duration", "1"])
    assert result.exit_code == 2
    assert re.fullmatch(r"bcgov: .*agent.yaml line 2: unknown field 'metrics_adr'.*\n", result.output)


def test_run_for_a_duration_exits_0_and_flushes(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    result = CliRunner().invoke(cli, [
        "agent", "run", "--duration", "1", "--metrics-addr", "off", "--spans-file", str(spans),
        "--log-file", str(tmp_path / "events.jsonl"), "--probe", "process",
    ])
    assert result.exit_code == 0, result.output
    assert "agent stopped after" in result.output and "lost records: 0" in result.output
