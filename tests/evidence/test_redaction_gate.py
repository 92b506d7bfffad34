"""The export copies a line byte for byte only when no redaction rule can apply to it
(telemetry.may_hold_secret). Held against the agent's own redaction case corpus
(tests/agent/redaction/cases.yaml, one case or more per rule of agent/redaction/redact.py) and the planted
secrets of the evidence fixtures: whatever path a line takes, what lands in the bundle equals the
full structural redaction of it."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.export.event_log import EventLog  # noqa: E402
from agent.export.span_model import KIND_CLIENT, SpanData  # noqa: E402
from agent.export.spans import JsonlFileExporter  # noqa: E402
from governor.evidence import redaction, telemetry  # noqa: E402
from governor.evidence.scope import Scope  # noqa: E402
from governor.evidence.timewindow import Window  # noqa: E402

CASES_FILE = ROOT / "tests" / "agent" / "redaction" / "cases.yaml"
T0 = 1_800_000_000.0
OWN_CASES = [
    ["ledger", "--db-password=hunter2"], ["psql", "postgres://u:pw@db/x"], ["curl", "-H", "Authorization: Bearer abcdefgh"],
    ["env", "API_KEY=zz"], ["app", "--password", "sekrit"], ["echo", "nothing to hide"],
]


def argvs() -> list[list[str]]:
    cases = yaml.safe_load(CASES_FILE.read_text()) if CASES_FILE.is_file() else []
    return [list(map(str, c["argv"])) for c in cases] + OWN_CASES


class Sink:
    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.buf.write(data)

    def records(self) -> list[Any]:
        return [json.loads(l) for l in self.buf.getvalue().splitlines()]


def test_the_corpus_is_there() -> None:
    assert len(argvs()) > len(OWN_CASES)


@pytest.mark.parametrize("argv", argvs(), ids=lambda a: " ".join(a)[:40])
def test_every_log_line_lands_fully_redacted(tmp_path: Path, argv: list[str]) -> None:
    buf = io.StringIO()
    log = EventLog(buf)
    ns = int(T0 * 1e9)
    log.write(ns, "process exec", {"process.pid": 1, "process.command_args": argv})
    log.write(ns, "process exec", {"process.pid": 1, "bcgov.note": " ".join(argv)})  # text rules alone
    for i, a in enumerate(argv):
        log.write(ns, "note", {f"bcgov.arg{i}": a})
    path = tmp_path / "events.jsonl"
    path.write_text(buf.getvalue())
    sink = Sink()
    telemetry.read_logs(path, Window(T0 - 1, T0 + 1, 1), Scope(), sink, lambda _r, _t: None)
    want = [redaction.redact_value(json.loads(l)) for l in buf.getvalue().splitlines()]
    assert sink.records() == want


@pytest.mark.parametrize("argv", argvs(), ids=lambda a: " ".join(a)[:40])
def test_every_span_lands_fully_redacted(tmp_path: Path, argv: list[str]) -> None:
    path = tmp_path / "spans.jsonl"
    exp = JsonlFileExporter(str(path), {"service.name": "bcgov-agent"}, "0.1.0")
    ns = int(T0 * 1e9)
    exp.export([SpanData(trace_id=1, span_id=2, name="tcp connect", kind=KIND_CLIENT, start_ns=ns, end_ns=ns + 1,
                         attributes={f"bcgov.arg{i}": a for i, a in enumerate(argv)})])
    exp.shutdown()
    sink = Sink()
    telemetry.read_spans(path, Window(T0 - 1, T0 + 1, 1), Scope(), sink, lambda _s: None)
    (got,) = [sp for r in sink.records() for rs in r["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    (orig,) = [sp for rs in json.loads(path.read_text())["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]
    assert got["attributes"] == redaction.redact_otlp_attributes(orig["attributes"])


@pytest.mark.parametrize("line,otlp,want", [
    (b'{"time":"x","body":"tcp close","attributes":{"k8s.pod.name":"a"}}', False, False),
    (b'{"attributes":[{"key":"k8s.pod.name","value":{"stringValue":"a"}}]}', True, False),
    (b'{"attributes":[{"key":"monkey","value":{"stringValue":"a"}}]}', True, True),
    (b'{"attributes":{"x":"p\\u0061ss=1"}}', False, True),  # an escape could spell a word
    (b'{"attributes":{"process.command_args":["redis-cli","-a","x"]}}', False, True),
    (b'{"attributes":{"u":"http://h/"}}', False, True),
])
def test_may_hold_secret(line: bytes, otlp: bool, want: bool) -> None:
    assert telemetry.may_hold_secret(line, otlp) is want


def test_progress_is_reported_while_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export tells a terminal how far it got (bytes of the file, lines kept)."""
    monkeypatch.setattr(telemetry, "_PROGRESS_EVERY_S", 0.0)
    buf = io.StringIO()
    log = EventLog(buf)
    for i in range(3 * 4096 + 1):
        log.write(int(T0 * 1e9) + i, "tcp connection closed", {"k8s.namespace.name": "payments" if i % 2 else "other"})
    path = tmp_path / "events.jsonl"
    path.write_text(buf.getvalue())
    seen: list[str] = []
    stats = telemetry.read_logs(path, Window(T0 - 1, T0 + 1, 1), Scope(namespace="payments"), Sink(), lambda _r, _t: None, seen.append)
    assert stats.kept == 3 * 2048
    assert len(seen) == 3 and all(m.startswith("logs: ") and " MB (" in m and "%), " in m for m in seen)
    assert seen[-1].endswith(f"{3 * 2048 - 1} kept") or seen[-1].endswith(f"{3 * 2048} kept")


def test_rotated_backups_are_read_oldest_first(tmp_path: Path) -> None:
    """The agent rotates its files by size (agent/export/rotating_file.py): an incident window spans
    `events.jsonl.N ... .1` and `events.jsonl`; the export reads them all, in the order written."""
    from agent.export.rotating_file import RotatingFile

    path = tmp_path / "events.jsonl"
    rf = RotatingFile(str(path), 4096, 3, name="events")
    log = EventLog(rf)
    n = 97
    for i in range(n):
        log.write(int(T0 * 1e9) + i * 1000, "tcp connection closed", {"bcgov.i": i, "k8s.pod.name": "p" * 40})
    log.close()
    assert [p.name for p in telemetry.rotated(path)][-1] == "events.jsonl" and len(telemetry.rotated(path)) == 4
    sink = Sink()
    stats = telemetry.read_logs(path, Window(T0 - 1, T0 + 1, 1), Scope(), sink, lambda _r, _t: None)
    got = [r["attributes"]["bcgov.i"] for r in sink.records()]
    assert got == sorted(got) and got[-1] == n - 1 and len(got) == stats.kept  # oldest first, nothing out of order
    assert stats.files == [str(p) for p in telemetry.rotated(path)]


def test_a_scoped_span_read_skips_lines_without_the_scope_and_keeps_the_same_spans(tmp_path: Path) -> None:
    """Lines are skipped unparsed only when no span in them can be in scope: the kept spans equal
    those of parsing every line."""
    from governor.evidence.telemetry import _filter_request

    path = tmp_path / "spans.jsonl"
    exp = JsonlFileExporter(str(path), {"service.name": "bcgov-agent"}, "0.1.0")
    ns = int(T0 * 1e9)
    for batch in range(6):
        spaces = ["payments", "other"] if batch % 3 == 0 else ["other"]
        exp.export([SpanData(trace_id=batch * 10 + i + 1, span_id=i + 1, name="tcp connect", kind=KIND_CLIENT, start_ns=ns,
                             end_ns=ns + 1, attributes={"k8s.namespace.name": sp, "k8s.pod.name": f"p{i}"})
                    for i, sp in enumerate(spaces)])
    exp.shutdown()
    scope = Scope(namespace="payments")
    got: list = []
    stats = telemetry.read_spans(path, Window(T0 - 1, T0 + 1, 1), scope, Sink(), got.append)
    want: list = []
    for line in path.read_bytes().splitlines():
        _filter_request(json.loads(line), line, Window(T0 - 1, T0 + 1, 1), scope, Sink(), want.append, telemetry.Stats())
    assert [s.trace_id for s in got] == [s.trace_id for s in want] and len(got) == 2 == stats.kept
