"""Every value error in an agent config file names the line of its key (the trial report's
'file and line'), under a top-level mapping and under an agent: section alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load


@pytest.mark.parametrize("key, value, message", [
    ("summary_interval", "-1", "summary_interval must be > 0"),
    ("span_queue_size", "0", "span_queue_size must be >= 1"),
    ("ring_buffer_pages", "1048576", "ring_buffer_pages must be a power of two"),
    ("metrics_addr", "nowhere", "not HOST:PORT"),
    ("otlp_endpoint", "'not a url'", "otlp_endpoint must be an http(s) URL"),
    ("spans_file_max_bytes", "4096", "spans_file_max_bytes must be >= 4194304"),
    ("log_file_backups", "-1", "log_file_backups must be >= 0"),
    ("ready_requires", "[dns]", "ready_requires names unknown probe(s) dns"),
    ("span_sample_ratio", "2", "span_sample_ratio must be within 0..1"),
])
@pytest.mark.parametrize("nested", [False, True], ids=["top", "agent"])
def test_a_bad_value_names_its_line(tmp_path: Path, key: str, value: str, message: str, nested: bool) -> None:
    indent = "  " if nested else ""
    text = ("agent:\n" if nested else "") + f"{indent}identity: false\n{indent}duration: 1\n{indent}{key}: {value}\n"
    f = tmp_path / "agent.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(str(f), {})
    line = 4 if nested else 3
    assert str(err.value).startswith(f"{f} line {line}: "), str(err.value)
    assert message in str(err.value)


def test_a_command_line_value_has_no_line(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("identity: false\n")
    with pytest.raises(ConfigError, match=rf"^{f}: duration must be >= 0 seconds"):
        load(str(f), {"duration": -1.0})


def test_a_command_line_value_over_a_file_value_names_no_file_line(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("identity: false\nduration: 5\n")
    with pytest.raises(ConfigError, match=rf"^{f}: duration must be >= 0 seconds"):
        load(str(f), {"duration": -1.0})


def test_an_unknown_probe_names_the_probes_line(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("identity: false\nprobes: [tcp_lifecycle, kprobe_magic]\n")
    with pytest.raises(ConfigError, match=rf"^{f} line 2: unknown probe\(s\) kprobe_magic"):
        load(str(f), {})
