"""Series as CSV: `# promql:` header comments (the exact query, window and step), then
`timestamp,time,series,value` rows in long form so any label set fits one file."""

from __future__ import annotations

import csv
import io

from governor.evidence.promrange import Series
from governor.evidence.timewindow import Window, rfc3339

COLUMNS = ("timestamp", "time", "series", "value")


def render(promql: str, window: Window, series: list[Series]) -> str:
    """The CSV text; values are written with repr() so they round-trip to the exact float."""
    buf = io.StringIO()
    buf.write(f"# promql: {' '.join(promql.split())}\n")
    buf.write(f"# start: {rfc3339(window.start)} end: {rfc3339(window.end)} step: {window.step}s\n")
    if not series:
        buf.write("# no data: the query returned no series in the window\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for s in sorted(series, key=lambda s: s.legend()):
        for t, v in s.points:
            w.writerow((f"{t:.3f}", rfc3339(t), s.legend(), repr(v)))
    return buf.getvalue()


def parse(text: str) -> tuple[str, dict[str, list[tuple[float, float]]]]:
    """(promql, legend -> points) from a CSV written by `render` (used by tests and tools)."""
    promql = ""
    rows = []
    for line in text.splitlines():
        if line.startswith("# promql: "):
            promql = line[len("# promql: "):]
        elif not line.startswith("#"):
            rows.append(line)
    out: dict[str, list[tuple[float, float]]] = {}
    for r in csv.DictReader(rows):
        out.setdefault(r["series"], []).append((float(r["timestamp"]), float(r["value"])))
    return promql, out
