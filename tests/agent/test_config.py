"""Agent config: defaults, YAML with line-numbered errors, CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, load


def test_defaults_listen_on_loopback_only() -> None:
    cfg = load(None, {})
    assert cfg.metrics_host_port() == ("127.0.0.1", 9464)
    assert cfg.spans_file == "var/spans.jsonl" and cfg.otlp_endpoint is None
    assert cfg.probes == ["tcp_lifecycle", "tcp_retransmit", "tcp_reset", "process", "oom", "block_io", "runqueue"]


def test_file_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("agent:\n  metrics_addr: 0.0.0.0:9555\n  probes: [process, oom]\n  duration: 5\n")
    cfg = load(str(f), {"duration": 9.0, "spans_file": None})
    assert cfg.metrics_host_port() == ("0.0.0.0", 9555)
    assert cfg.probes == ["process", "oom"] and cfg.duration == 9.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("metrics_adr: 1.2.3.4:5\n", r"line 1: unknown field 'metrics_adr'"),
        ("spans_file: x\nring_buffer_pages: 100\n", r"ring_buffer_pages must be a power of two"),
        ("duration: soon\n", r"line 1: field 'duration': must be a number"),
        ("probes: [tcp_lifecycle, kprobe_magic]\n", r"unknown probe\(s\) kprobe_magic"),
        ("metrics_addr: nowhere\n", r"not HOST:PORT"),
        ("a: [1, 2\n", r"line \d+: not valid YAML"),
        ("otlp_protocol: udp\n", r"'grpc' or 'http'"),
        ("span_budget_per_second: -5\n", r"span_budget_per_second must be >= 0 \(0: every connection a span\)"),
        ("span_budget_per_second: lots\n", r"field 'span_budget_per_second': must be a number"),
        ("span_budget_burst: 0\n", r"span_budget_burst must be >= 1"),
        ("span_budget_per_workload_per_second: -1\n", r"span_budget_per_workload_per_second must be >= 0"),
    ],
)
def test_bad_config_names_file_line_and_fix(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load(str(f), {})
    assert "\n" not in str(err.value)


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*nope.yaml: No such file"):
        load(str(tmp_path / "nope.yaml"), {})


def test_metrics_can_be_switched_off() -> None:
    assert AgentConfig(metrics_addr="off").metrics_host_port() is None


def test_span_budget_ships_on_and_every_connection_a_span_is_one_line_away(tmp_path: Path) -> None:
    assert load(None, {}).span_budget_per_second == 1000.0
    f = tmp_path / "agent.yaml"
    f.write_text("span_budget_per_second: 0\n")
    assert load(str(f), {}).span_budget_per_second == 0.0
