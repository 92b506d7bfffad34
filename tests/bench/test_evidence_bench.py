"""The evidence benchmark's plumbing (the benchmark itself runs with `make bench`, never here): the
files it writes are the agent's formats, read line for line by the export; its table and target row
say met/not met from the figures, never typed."""

from __future__ import annotations

import time
from pathlib import Path

from bench import evidence_bench, report
from governor.evidence import telemetry, timeline
from governor.evidence.scope import Scope
from governor.evidence.timewindow import Window


class Count:
    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> None:
        self.n += data.count(b"\n")


def test_written_files_are_the_agents_formats_and_all_in_the_window(tmp_path: Path) -> None:
    t0 = time.time() - 600
    spans, logs = evidence_bench.write_files(tmp_path, 2 * 1024 * 1024, t0, 300)
    size = spans.stat().st_size + logs.stat().st_size
    assert 2 * 1024 * 1024 <= size < 4 * 1024 * 1024
    window = Window(t0 - 1, t0 + 301, 1)
    tl = timeline.Timeline()
    out = Count()
    st = telemetry.read_logs(logs, window, Scope(), out, tl.log, parse_bodies=timeline.BODIES)
    assert st.skipped_bad_lines == 0 and st.kept == st.read == out.n
    kinds = {g.kind for g in tl.groups()}
    assert {"exec", "exit", "reset"} <= kinds
    sp = telemetry.read_spans(spans, window, Scope(), Count(), lambda _s: None)
    assert sp.skipped_bad_lines == 0 and sp.kept == 512 * sp.read
    scoped = telemetry.read_logs(logs, window, Scope(namespace="payments"), Count(), lambda _r, _t: None)
    assert 0 < scoped.kept < st.kept  # one namespace of four


def _doc(wall: list[float], rss: list[float]) -> dict:
    s = lambda v: {"n": len(v), "median": sorted(v)[len(v) // 2], "min": min(v), "max": max(v)}  # noqa: E731
    return {"params": {"input_mb": 1074.0, "spans_mb": 700.0, "logs_mb": 374.0, "target_s": 60.0, "target_rss_mb": 500.0},
            "summary": {"all-dir": {"s": s(wall), "cpu_s": s(wall), "rss_mb": s(rss), "out_mb": s([1074.0]),
                                    "timeline_kb": s([99.9]), "postmortem_kb": s([7.5])}}}


def test_target_row_is_computed_from_the_median_wall_time_and_the_peak_rss() -> None:
    met = report.targets_table(None, None, None, evidence=_doc([30.0, 35.0, 90.0], [50.0, 50.0, 50.0]))
    assert met[-1].endswith("| yes |")
    slow = report.targets_table(None, None, None, evidence=_doc([61.0, 70.0, 40.0], [50.0, 50.0, 50.0]))
    assert slow[-1].endswith("| **no** |")
    fat = report.targets_table(None, None, None, evidence=_doc([30.0, 30.0, 30.0], [50.0, 501.0, 50.0]))
    assert fat[-1].endswith("| **no** |")
    table = report.evidence_table(_doc([30.0, 35.0, 90.0], [50.0, 50.0, 50.0]))
    assert table[0].startswith("Input: 1074 MB") and table[-1].startswith("| all-dir | 35.0 (30.0-90.0) |")
