"""Rendering a `Report`: a rich table for people, markdown for pull requests, stable JSON for tools.

The JSON shape is versioned (`schema`); fields are only ever added within a version.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from governor.analysis import OVER, WARN, Report, TierReport

JSON_SCHEMA = "bcgov.budget-report/v1"
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "over": "bold red", "unbudgeted": "dim"}


def to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able data."""
    d = dataclasses.asdict(report)
    d["schema"] = JSON_SCHEMA
    d["status"] = report.worst_status()
    for t in d["tiers"]:
        for m in t["top_metrics"]:
            for ls in m["labels"]:
                ls["top_values"] = [{"value": v, "series": n} for v, n in ls["top_values"]]
    return d


def render_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, sort_keys=True) + "\n"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _usage(t: TierReport) -> str:
    return "-" if t.usage is None else f"{t.usage * 100:.1f}%"


def _trend(t: TierReport) -> str:
    g = t.growth
    if g is None:
        return "-"
    eta = g.hours_to_budget
    when = "over" if eta == 0 else ("never" if eta is None else (f"{eta:.1f} h" if eta < 48 else f"{eta / 24:.1f} d"))
    return f"{g.series_per_day:+.0f}/day, budget in {when}"


def _header(report: Report) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.generated_at))
    head = f", TSDB head {int(report.head['numSeries'])} series" if report.head and "numSeries" in report.head else ""
    return f"{report.source} at {when}: {report.total_series} series{head}"


def render_table(report: Report, width: int = 120, color: bool = False) -> str:
    """Rich tables rendered to text (the CLI prints them to the terminal with colour)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None)
    console.print(_header(report))
    tiers = Table(title="Series budget per tier")
    for col, just in (("tier", "left"), ("series", "right"), ("budget", "right"), ("usage", "right"),
                      ("status", "left"), ("memory", "right"), ("trend", "left")):
        tiers.add_column(col, justify=just)  # type: ignore[arg-type]
    for t in report.tiers:
        tiers.add_row(t.name, str(t.series), "-" if t.budget is None else str(t.budget), _usage(t),
                      f"[{_STATUS_STYLE[t.status]}]{t.status}[/]", human_bytes(t.memory_bytes), _trend(t))
    console.print(tiers)
    for t in report.tiers:
        if not t.top_metrics:
            continue
        mt = Table(title=f"{t.name}: top metrics")
        for col in ("metric", "series", "top label (distinct values)", "churn"):
            mt.add_column(col)
        for m in t.top_metrics:
            top = f"{m.labels[0].label} ({m.labels[0].distinct_values})" if m.labels else "-"
            churn = f"+{m.churn.created}/-{m.churn.gone} ({m.churn.churn_label})" if m.churn else "-"
            mt.add_row(m.name + (" [truncated]" if m.truncated else ""), str(m.series), top, churn)
        console.print(mt)
        for p in t.problems:
            console.print(f"[red]cap exceeded:[/] {p}")
        for r in t.recommendations:
            console.print(f"  drop [bold]{r.label}[/] from {r.metric}: {r.series_before} -> {r.series_after} series, "
                          f"saves {r.saved} ({human_bytes(r.memory_bytes_saved)} head memory); {r.reason}")
    if report.truncated_metrics:
        console.print(f"truncated (counted, not analysed): {', '.join(report.truncated_metrics)}; raise --max-series-per-metric")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    return buf.getvalue()


def render_markdown(report: Report) -> str:
    """GitHub-flavoured markdown for a pull request comment."""
    lines = [f"### bcgov budget report: {report.worst_status()}", "", _header(report), ""]
    lines += [f"> :warning: {w}" for w in report.warnings] + ([""] if report.warnings else [])
    lines += ["| tier | series | budget | usage | status | memory | trend |", "|---|---:|---:|---:|---|---:|---|"]
    for t in report.tiers:
        mark = {OVER: " :red_circle:", WARN: " :warning:"}.get(t.status, "")
        lines.append(f"| {t.name} | {t.series} | {'-' if t.budget is None else t.budget} | {_usage(t)} | "
                     f"{t.status}{mark} | {human_bytes(t.memory_bytes)} | {_trend(t)} |")
    for t in report.tiers:
        if not t.recommendations and not t.problems:
            continue
        lines += ["", f"#### {t.name}", ""]
        lines += [f"- cap exceeded: {p}" for p in t.problems]
        for r in t.recommendations:
            lines.append(f"- drop `{r.label}` from `{r.metric}`: {r.series_before} → {r.series_after} series, "
                         f"saves **{r.saved}** ({human_bytes(r.memory_bytes_saved)} head memory, "
                         f"{human_bytes(r.disk_bytes_per_day_saved)}/day on disk); {r.reason}")
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str, color: bool = False, width: int = 120) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    return render_table(report, width=width, color=color)
