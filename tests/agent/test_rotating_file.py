"""Bounded disk: the spans file and the event log rotate by size and never hold more than
max_bytes * (backups + 1) on disk; lines are never cut; rotations and dropped lines are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.config import SPANS_FILE_MIN_BYTES, AgentConfig, ConfigError
from agent.export.rotating_file import RotatingFile, RotationCollector
from agent.export.span_model import SpanData
from agent.export.spans import JsonlFileExporter

MAX = 8192


def _on_disk(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name == path.name or p.name.startswith(path.name + "."))


def _lines(files: list[Path]) -> list[str]:
    return [ln for f in files for ln in f.read_text(encoding="utf-8").splitlines(keepends=True)]


@pytest.mark.parametrize("backups", [0, 1, 3])
def test_more_than_the_limit_stays_within_it_in_whole_json_lines(tmp_path: Path, backups: int) -> None:
    path = tmp_path / "events.jsonl"
    f = RotatingFile(str(path), MAX, backups, name="events")
    written = 0
    for i in range(400):  # ~60 kB in chunks of 1-7 lines, several times the limit
        chunk = "".join(json.dumps({"i": i, "j": j, "pad": "x" * (i % 97)}) + "\n" for j in range(i % 7 + 1))
        f.write(chunk)
        written += len(chunk.encode())
        assert sum(p.stat().st_size for p in _on_disk(path)) <= MAX * (backups + 1)
        assert len(_on_disk(path)) <= backups + 1
    f.close()
    assert written > 3 * MAX * (backups + 1)
    assert f.rotations > 0 and f.lines_dropped == 0
    lines = _lines(list(reversed(_on_disk(path)[1:])) + [path])  # oldest backup first
    assert all(ln.endswith("\n") for ln in lines)
    records = [json.loads(ln) for ln in lines]
    # the newest lines are the ones kept, in order, ending with the last one written
    assert records[-1] == {"i": 399, "j": 399 % 7, "pad": "x" * (399 % 97)}
    keys = [(r["i"], r["j"]) for r in records]
    assert keys == sorted(keys)


def test_a_line_larger_than_a_file_is_dropped_whole_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    f = RotatingFile(str(path), MAX, 1, name="spans")
    f.write('{"a":1}\n' + json.dumps({"big": "y" * MAX}) + "\n" + '{"b":2}\n')
    f.close()
    assert f.lines_dropped == 1
    assert [json.loads(ln) for ln in _lines(_on_disk(path))] == [{"a": 1}, {"b": 2}]
    registry = CollectorRegistry()
    registry.register(RotationCollector([f]))
    text = generate_latest(registry).decode()
    assert 'bcgov_agent_file_lines_dropped_total{file="spans"} 1.0' in text
    assert 'bcgov_agent_file_rotations_total{file="spans"} 0.0' in text


def test_reopening_counts_what_is_already_there(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"old":1}\n' * 800)  # 8000 bytes from a previous run
    f = RotatingFile(str(path), MAX, 1, name="events")
    f.write('{"new":1}\n' * 50)
    f.close()
    assert f.rotations == 1
    assert sum(p.stat().st_size for p in _on_disk(path)) <= 2 * MAX


def test_spans_exporter_rotates_and_stays_within_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    exporter = JsonlFileExporter(str(path), {"service.name": "bcgov-agent"}, "test", max_bytes=MAX, backups=2)
    for batch in range(200):
        spans = [SpanData(batch * 10 + k + 1, k + 1, "tcp connect", 3, 1000, 2000, {"server.port": 5432, "n": k})
                 for k in range(5)]
        assert exporter.export(spans)
        assert sum(p.stat().st_size for p in _on_disk(path)) <= 3 * MAX
    exporter.shutdown()
    assert exporter.file.rotations > 0
    for line in _lines(_on_disk(path)):
        assert json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]


def test_agent_rotates_its_event_log_and_exports_the_counts(tmp_path: Path) -> None:
    """The agent's own wiring: log_file_* keys reach the event log, /metrics shows the counters."""
    from agent.runtime import Agent, AgentParts

    registry = CollectorRegistry()
    cfg = AgentConfig(metrics_addr="off", spans_file=str(tmp_path / "spans.jsonl"), log_file=str(tmp_path / "events.jsonl"),
                      log_file_max_bytes=MAX, log_file_backups=1, spans_file_max_bytes=SPANS_FILE_MIN_BYTES,
                      spans_file_backups=1, probes=[])
    cfg.validate()
    agent = Agent(cfg, tracefs=None, parts=AgentParts(registry=registry, specs=()))  # type: ignore[arg-type]
    agent.start()
    try:
        for i in range(500):
            agent._event_log.write(i * 1000, "process exec", {"i": i, "argv": "x" * 40})
        agent._event_log.flush()
        on_disk = _on_disk(tmp_path / "events.jsonl")
        assert sum(p.stat().st_size for p in on_disk) <= 2 * MAX
        text = generate_latest(registry).decode()
        rotations = float(text.split('bcgov_agent_file_rotations_total{file="events"} ')[1].split()[0])
        assert rotations > 0
        assert 'bcgov_agent_file_rotations_total{file="spans"} 0.0' in text
    finally:
        agent.stop()
    for line in _lines(_on_disk(tmp_path / "events.jsonl")):
        assert json.loads(line)["body"] == "process exec"


def test_a_batch_too_large_for_a_file_is_a_failed_export_not_a_silent_loss(tmp_path: Path) -> None:
    """made = exported + dropped must hold: a batch line the file cannot take is reported failed,
    so the span queue counts its spans as dropped (export_failed)."""
    exporter = JsonlFileExporter(str(tmp_path / "spans.jsonl"), {"service.name": "bcgov-agent"}, "test",
                                 max_bytes=MAX, backups=1)
    small = [SpanData(1, 1, "tcp connect", 3, 1000, 2000, {"n": 1})]
    big = [SpanData(k + 2, k + 1, "tcp connect", 3, 1000, 2000, {"pad": "z" * 200}) for k in range(60)]
    assert exporter.export(small) is True
    assert exporter.export(big) is False
    assert exporter.file.lines_dropped == 1
    exporter.shutdown()


@pytest.mark.parametrize(("override", "message"), [
    ({"spans_file_max_bytes": 100}, r"spans_file_max_bytes must be >= 4194304 \(one line is a batch"),
    ({"log_file_max_bytes": 100}, "log_file_max_bytes must be >= 4096"),
    ({"log_file_backups": -1}, "log_file_backups must be >= 0"),
])
def test_limits_are_validated(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AgentConfig(**override).validate()
