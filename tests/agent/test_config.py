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
        ("span_budget_per_second: -5\n", r"span_budget_per_second must be >= 0 \(0: every connection a span\), not -5$"),
        ("span_budget_per_second: lots\n", r"field 'span_budget_per_second': must be a number"),
        ("span_budget_burst: 0\n", r"span_budget_burst must be >= 1"),
        ("span_budget_per_workload_per_second: -1\n", r"span_budget_per_workload_per_second must be >= 0 .*, not -1$"),
        ("span_sample_ratio: 1.5\n", r"span_sample_ratio must be within 0..1, not 1.5$"),
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


# The trial report (defects 3-6): inputs that gave a traceback, were accepted and lost data, or
# gave a misleading message. Each was accepted or crashed before the fix.
@pytest.mark.parametrize(
    "text, message",
    [
        ("1: 2\n", r"agent.yaml line 1: key 1 is not a setting name"),
        ("metrics_addr: 127.0.0.1:1\nyes: 2\n", r"line 2: key True is not a setting name.*quote a key"),
        ("span_queue_size: 0\n", r"span_queue_size must be >= 1"),
        ("span_queue_size: -5\n", r"span_queue_size must be >= 1"),
        ("spans_file_max_bytes: 4096\n", r"spans_file_max_bytes must be >= 4194304 \(one line is a batch of up to 512"),
        ("otlp_endpoint: not a url\n", r"otlp_endpoint must be an http\(s\) URL with a host.*'not a url'"),
        ("otlp_endpoint: http://\n", r"otlp_endpoint must be an http\(s\) URL with a host"),
        ("otlp_endpoint: ftp://collector:4317\n", r"otlp_endpoint must be an http\(s\) URL"),
        ("otlp_endpoint: http://collector:99999\n", r"otlp_endpoint is not a usable URL"),
        ("otlp_endpoint: 'ftp://u:S3cret@collector'\n", r"a URL with credentials, not repeated here"),
        ("summary_interval: -1\n", r"summary_interval must be > 0 seconds"),
        ("slow_connection_seconds: -1\n", r"slow_connection_seconds must be >= 0 seconds"),
        ("span_budget_per_second: .inf\n", r"line 1: field 'span_budget_per_second': must be a finite number"),
        ("span_sample_ratio: .nan\n", r"field 'span_sample_ratio': must be a finite number"),
        ("agent:\n  metrics_addr: 127.0.0.1:1\nspans_file: /tmp/x.jsonl\nbogus_key: 1\n",
         r"line 3: top-level key 'spans_file' beside the 'agent:' section is not read; move it under agent:"),
        ("agent:\n  metrics_addr: 127.0.0.1:1\nagent:\n  metrics_addr: 127.0.0.1:2\n",
         r"line 3: key 'agent' appears twice in one mapping"),
        ("agent:\n  duration: 1\n  duration: 2\n", r"line 3: key 'duration' appears twice"),
        ("agent: [1, 2]\n", r"line 1: the agent: section must be a mapping of settings \(key: value\), not a list"),
        ("ring_buffer_pages: 1048576\n", r"ring_buffer_pages must be a power of two .* fits the kernel's u32 map size: "
                                         r"at most 524288, not 1048576"),
        ("probes: []\n", r"line 1: probes is empty: name at least one probe"),
        ("probes: [tcp_lifecycle]\nready_requires: [tcp_lifecycle, dns]\n", r"ready_requires names unknown probe\(s\) dns"),
        ("probes: [tcp_lifecycle]\nready_requires: [process]\n", r"ready_requires names probe\(s\) not loaded: process"),
        ("agent:\n  tiers: {foo: 5}\n", r"agent.yaml line 2: tiers: unknown keys \['foo'\]; known keys: namespaces"),
        ("tiers: {namespaces: {db: gold}}\n", r"agent.yaml line 1: tiers.namespaces\[db\]: tier 'gold' is not one of"),
        ("series_budgets: {'bad name': 5}\n", r"agent.yaml line 1: series_budgets: 'bad name' is not a Prometheus"),
    ],
)
def test_trial_inputs_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load(str(f), {})
    assert "\n" not in str(err.value)
    assert "S3cret" not in str(err.value)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_bytes(b"metrics_addr: 127.0.0.1:1\n\xff\xfe bad")
    with pytest.raises(ConfigError, match=r"agent.yaml line 2: not UTF-8 text \(byte 0xff\); save the config as UTF-8"):
        load(str(f), {})


def test_an_empty_agent_section_means_defaults(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("agent:\n")
    assert load(str(f), {}) == AgentConfig()


def test_a_command_line_number_must_be_finite_too() -> None:
    with pytest.raises(ConfigError, match=r"duration must be a finite number, not inf"):
        load(None, {"duration": float("inf")})


def test_the_largest_ring_buffer_that_fits_u32_is_accepted(tmp_path: Path) -> None:
    import os

    f = tmp_path / "agent.yaml"
    f.write_text(f"ring_buffer_pages: {2**31 // os.sysconf('SC_PAGE_SIZE')}\n")
    assert load(str(f), {}).ring_buffer_pages * os.sysconf("SC_PAGE_SIZE") == 2**31
