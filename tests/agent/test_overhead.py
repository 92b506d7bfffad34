"""The CPU budget controller with an injected CPU reading (deterministic, no timing), the BPF stats
switch against a sysctl file in a temp dir, fdinfo parsing, and the config checks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.config import AgentConfig, ConfigError
from agent.pipeline.sampling import SpanSampler
from agent.selfcost.overhead import BpfStats, CpuBudget, read_fdinfo
from probes.events import TcpConnection


def _conn(sock: int, outcome: str = "normal", end_ns: int = 3_000) -> TcpConnection:
    return TcpConnection(
        direction="active", outcome=outcome, start_ns=1_000, established_ns=1_100, end_ns=end_ns, family=2,
        local_addr="10.0.0.1", local_port=40000, remote_addr="10.0.0.2", remote_port=5432, pid=42, tid=42,
        comm="psql", cgroup_id=7, owner_source="connect", bytes_sent=10, bytes_received=20, retransmits=0,
        retransmit_ns=(), reset_ns=0, reset_received=False, reset_sent=False, sock=sock,
    )


class FakeProcess:
    """A process whose CPU use per window the test dictates: `run(seconds, cores)`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0

    def run(self, seconds: float, cores: float) -> None:
        self.now += seconds
        self.cpu += seconds * cores


def _budget(budget: float = 0.05) -> tuple[CpuBudget, SpanSampler, FakeProcess, CollectorRegistry]:
    proc, sampler, reg = FakeProcess(), SpanSampler(), CollectorRegistry()
    ctl = CpuBudget(budget, sampler, read_cpu_seconds=lambda: proc.cpu, monotonic=lambda: proc.now, registry=reg)
    return ctl, sampler, proc, reg


def _gauge(reg: CollectorRegistry, name: str) -> float:
    value = reg.get_sample_value(name)
    assert value is not None, f"{name} not exported"
    return value


def test_under_budget_keeps_every_span() -> None:
    ctl, sampler, proc, reg = _budget(0.05)
    for _ in range(5):
        proc.run(5.0, 0.04)
        ctl.tick()
    assert sampler.shed_keep == 1.0 and not ctl.shedding
    assert _gauge(reg, "bcgov_agent_span_shedding") == 0.0
    assert _gauge(reg, "bcgov_agent_span_keep_ratio") == 1.0
    assert _gauge(reg, "bcgov_agent_cpu_usage_cores") == pytest.approx(0.04)
    assert _gauge(reg, "bcgov_agent_cpu_budget_cores") == 0.05


def test_over_budget_sheds_in_proportion_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    ctl, sampler, proc, reg = _budget(0.05)
    caplog.set_level(logging.INFO, logger="bcgov.agent.selfcost.overhead")
    proc.run(5.0, 0.10)  # twice the budget: keep half
    ctl.tick()
    assert sampler.shed_keep == pytest.approx(0.5)
    assert ctl.shedding and _gauge(reg, "bcgov_agent_span_shedding") == 1.0
    proc.run(5.0, 1.0)  # twenty times: the cut is bounded at 90 % per window
    ctl.tick()
    assert sampler.shed_keep == pytest.approx(0.05)
    proc.run(5.0, 0.045)  # between 70 % and 100 % of budget: hold
    ctl.tick()
    assert sampler.shed_keep == pytest.approx(0.05)
    for _ in range(5):  # well under: doubles back to 1
        proc.run(5.0, 0.01)
        ctl.tick()
    assert sampler.shed_keep == 1.0 and not ctl.shedding
    assert _gauge(reg, "bcgov_agent_span_shedding") == 0.0
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "shedding span work" in m]) == 1
    assert len([m for m in lines if "span shedding stopped" in m]) == 1


def test_far_over_budget_keeps_no_normal_span_but_every_failed_one() -> None:
    ctl, sampler, proc, _ = _budget(0.001)
    for _ in range(10):
        proc.run(1.0, 0.5)
        ctl.tick()
    assert sampler.shed_keep == 0.0
    assert not any(sampler.keep(_conn(i)) for i in range(1000))
    assert sampler.keep(_conn(1, outcome="refused"))
    assert sampler.keep(_conn(2, end_ns=5_000_000_000))  # slow: kept


def test_shedding_composes_with_the_configured_ratio() -> None:
    sampler = SpanSampler(ratio=0.5)
    sampler.shed_keep = 0.5
    kept = sum(sampler.keep(_conn(i)) for i in range(4000))
    assert 800 < kept < 1200  # 0.5 x 0.5 of 4000


def test_a_window_without_elapsed_time_changes_nothing() -> None:
    ctl, sampler, proc, _ = _budget(0.05)
    proc.cpu += 10.0
    ctl.tick()
    assert sampler.shed_keep == 1.0 and not ctl.shedding


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cpu_budget must be > 0"):
        CpuBudget(0.0, SpanSampler())


def test_sysctl_fallback_enables_and_restores_the_previous_value(tmp_path: Path) -> None:
    sysctl = tmp_path / "bpf_stats_enabled"
    sysctl.write_text("0\n")
    stats = BpfStats(str(sysctl), use_syscall=False)
    assert stats.enable() and stats.how == "sysctl"
    assert sysctl.read_text().strip() == "1"
    stats.restore()
    assert sysctl.read_text().strip() == "0"
    stats.restore()  # twice is harmless
    assert sysctl.read_text().strip() == "0" and stats.how == ""


def test_sysctl_already_on_stays_on(tmp_path: Path) -> None:
    sysctl = tmp_path / "bpf_stats_enabled"
    sysctl.write_text("1\n")
    stats = BpfStats(str(sysctl), use_syscall=False)
    assert stats.enable()
    stats.restore()
    assert sysctl.read_text().strip() == "1"


def test_unwritable_sysctl_is_one_warning_not_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stats = BpfStats(str(tmp_path / "absent" / "bpf_stats_enabled"), use_syscall=False)
    assert not stats.enable()
    assert any("set bpf_stats: false" in r.getMessage() for r in caplog.records)


def test_fdinfo_lines_are_parsed(tmp_path: Path) -> None:
    (tmp_path / "7").write_text("pos:\t0\nflags:\t02000002\nprog_type:\t5\nrun_time_ns:\t12345\nrun_cnt:\t67\n")
    info = read_fdinfo(7, str(tmp_path))
    assert info["run_time_ns"] == "12345" and info["run_cnt"] == "67" and info["prog_type"] == "5"


@pytest.mark.parametrize(
    "field,value,message",
    [("cpu_budget", 0.0, "cpu_budget must be > 0"), ("cpu_budget", -1.0, "cpu_budget must be > 0"),
     ("cpu_budget_window", 0.0, "cpu_budget_window must be > 0")],
)
def test_config_rejects_bad_budgets(field: str, value: float, message: str) -> None:
    cfg = AgentConfig()
    setattr(cfg, field, value)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_config_file_reads_budget_and_stats(tmp_path: Path) -> None:
    from agent import config

    path = tmp_path / "agent.yaml"
    path.write_text("agent:\n  cpu_budget: 0.05\n  bpf_stats: true\n")
    cfg = config.load(str(path), {})
    assert cfg.cpu_budget == 0.05 and cfg.bpf_stats is True
    assert AgentConfig().cpu_budget is None and AgentConfig().bpf_stats is False


def test_generated_metrics_are_well_formed() -> None:
    ctl, _, proc, reg = _budget(0.05)
    proc.run(1.0, 0.2)
    ctl.tick()
    text = generate_latest(reg).decode()
    assert "bcgov_agent_span_shedding 1.0" in text
    assert "bcgov_agent_span_keep_ratio 0.25" in text
