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

from governor import rules
from governor.analysis import OVER, WARN, LabelCount, MetricReport, Recommendation, Report, TierReport

JSON_SCHEMA = "bcgov.budget-report/v1"
_STATUS_STYLE = {"ok": "green", "warn": "yellow", "over": "bold red", "unbudgeted": "dim"}


def to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able data."""
    d = dataclasses.asdict(report)
    d["schema"] = JSON_SCHEMA
    d["status"] = report.worst_status()
    for t in d["tiers"]:
        t["series_exact"] = t["estimated_series"] == 0
        for m in t["top_metrics"]:
            m["exact"] = m["estimated_from"] is None
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
    """e.g. "+120/day, budget reached in 3.5 d"; "over budget now"; "not growing"."""
    g = t.growth
    if g is None:
        return "-"
    rate = f"{g.series_per_day:+.0f}/day"
    eta = g.hours_to_budget
    if eta == 0:
        return f"{rate}, over budget now"
    if g.series_per_day <= 0:
        return f"{rate}, not growing"
    if eta is None:
        return f"{rate}, no budget to reach"
    return f"{rate}, budget reached in {eta:.1f} h" if eta < 48 else f"{rate}, budget reached in {eta / 24:.1f} d"


def _churn(m: MetricReport) -> str:
    c = m.churn
    if c is None:
        return "-"
    return f"+{c.created}/-{c.gone}" + (f" (new {c.churn_label} values)" if c.churn_label else "")


def _unit(r: Recommendation) -> str:
    """The metric, or a family with the suffixes of its stored names: `foo{_bucket,_count,_sum}`."""
    suffixes = [m[len(r.metric):] for m in r.metrics if m.startswith(r.metric)]
    if len(r.metrics) > 1 and len(suffixes) == len(r.metrics):
        return f"{r.metric}{{{','.join(x or '<quantiles>' for x in suffixes)}}}"
    return r.metric


def recommendation_text(r: Recommendation, md: bool = False) -> str:
    """One line: what to drop, from what, what it saves, and why it is safe or not."""
    q = "`" if md else ""
    disk = f", {human_bytes(r.disk_bytes_per_day_saved)}/day on disk" if md else ""
    saved = f"**{r.saved}**" if md else str(r.saved)
    arrow = "→" if md else "->"
    return (f"drop {q}{r.label}{q} from {q}{_unit(r)}{q}: {r.series_before} {arrow} {r.series_after} series, "
            f"saves {saved} ({human_bytes(r.memory_bytes_saved)} head memory{disk}); {r.reason}")


def explosion_text(c: LabelCount, md: bool = False) -> str:
    """One line naming the exploded label, its metric, and what removing it saves."""
    q = "`" if md else ""
    family = " (the whole family)" if c.unit else ""
    head = f"label {q}{c.label}{q} of {q}{c.unit or c.metric}{q}{family} has {c.distinct_values} values (cap {c.cap})"
    if c.saved:
        return f"{head}: dropping or aggregating it away saves {c.saved} series"
    return f"{head}: not a label bcgov drops (protected, or a histogram's le/quantile); raise its cap or reduce it at the source"


def savings_summary(t: TierReport) -> str | None:
    """What the tier's fixes add up to against its budget, in one line."""
    if not t.recommendations:
        return None
    line = f"{t.name}: the fixes above save up to {t.projected_savings} of {t.series} series"
    if t.budget is not None and t.series > t.budget:
        enough = "enough" if t.projected_savings >= t.series - t.budget else "not enough: raise the budget or fix more"
        line += f"; the tier is {t.series - t.budget} over its budget of {t.budget} ({enough})"
    return line


def runbook_lines(report: Report, md: bool = False) -> list[str]:
    """Runbook links for what the report found, and how to make them absolute when they are not."""
    base = report.runbook_base_url or "runbooks"
    out = []
    for t in report.tiers:
        if t.budget is None:
            continue  # unclassified and governor have no budget, so no alerts and no runbook
        alerts = {OVER: ["BcgovTierBudgetExceeded"], WARN: ["BcgovTierBudgetWarning"]}.get(t.status, [])
        if t.label_explosions:
            alerts.append("BcgovLabelValueExplosion")
        for a in alerts:
            url = rules.runbook_url(base, a)
            out.append(f"{t.name}: {a}: " + (f"<{url}>" if md and "://" in url else url))
    if out and "://" not in base:
        out.append(f"runbook links are relative to the bcgov repository ({base}/); set defaults.runbook_base_url in the "
                   "budgets file (or --runbook-base-url for 'budget rules') to where your runbooks are served, "
                   "e.g. https://github.com/ORG/REPO/blob/main/runbooks")
    return out


def _count(n: int, estimated: bool) -> str:
    """A series count as shown: `~n` when it is (or includes) an estimate."""
    return f"~{n}" if estimated else str(n)


def inventory_lines(report: Report) -> list[str]:
    """How the counts were obtained: which statistics, what was enumerated, what is estimated."""
    p = report.phases
    if p is None:
        return []
    out = []
    if p.statistics:
        out.append(f"phase 1: {p.statistics} ({p.backend}) in {p.statistics_seconds:.2f} s")
    counted = f"; {p.counted_series} series of {p.counted_metrics} more metrics counted exactly (PromQL count by (__name__))" if p.counted_metrics else ""
    out.append(f"phase 2: {p.enumerated_series} series of {p.enumerated_metrics} metrics enumerated, exact{counted}, "
               f"in {p.enumeration_seconds:.2f} s")
    if p.estimated_metrics:
        out.append(f"~ marks estimates: {p.estimated_metrics} metrics (~{p.estimated_series} series) counted by {p.statistics}, "
                   f"which counts {p.meaning}; every other count, and every saving shown, is exact")
    if p.note:
        out.append(p.note)
    return out


def _header(report: Report) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.generated_at))
    head = f", TSDB head {int(report.head['numSeries'])} series" if report.head and "numSeries" in report.head else ""
    estimated = report.phases is not None and report.phases.estimated_metrics > 0
    return f"{report.source} at {when}: {_count(report.total_series, estimated)} series{head}"


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
        tiers.add_row(t.name, _count(t.series, t.estimated_series > 0), "-" if t.budget is None else str(t.budget), _usage(t),
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
            mt.add_row(escape(m.name) + (" [truncated]" if m.truncated else ""), _count(m.series, m.estimated_from is not None),
                       escape(top), escape(_churn(m)))
        console.print(mt)
        # soft_wrap: one line per finding however wide the terminal (it wraps them, we do not).
        for p in t.problems:
            console.print(f"[red]cap exceeded:[/] {escape(p)}", soft_wrap=True)
        for c in _shown_explosions(t):
            console.print(f"[red]explosion:[/] {escape(c)}", soft_wrap=True)
        for r in t.recommendations:
            console.print(f"  {escape(recommendation_text(r))}", soft_wrap=True)
        if (total := savings_summary(t)) is not None:
            console.print(escape(total), soft_wrap=True)
    if report.truncated_metrics:
        console.print(f"truncated (counted, not analysed): {escape(', '.join(report.truncated_metrics))}; raise --max-series-per-metric",
                      soft_wrap=True)
    for line in runbook_lines(report):
        console.print(f"runbook: {escape(line)}", soft_wrap=True)
    for line in inventory_lines(report):
        console.print(f"inventory: {escape(line)}", soft_wrap=True)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    return buf.getvalue()


def _shown_explosions(t: TierReport, md: bool = False, limit: int = 10) -> list[str]:
    seen: set[tuple[str, str]] = set()
    ranked = []
    for c in sorted(t.label_explosions, key=lambda c: (-c.distinct_values, c.unit or c.metric, c.label)):
        if (c.unit or c.metric, c.label) not in seen:  # a family's members explode together: say it once
            seen.add((c.unit or c.metric, c.label))
            ranked.append(c)
    lines = [explosion_text(c, md) for c in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more labels over their cap (see --format json)")
    return lines


def render_markdown(report: Report) -> str:
    """GitHub-flavoured markdown for a pull request comment."""
    lines = [f"### bcgov budget report: {report.worst_status()}", "", _header(report), ""]
    lines += [f"> :warning: {w}" for w in report.warnings] + ([""] if report.warnings else [])
    lines += ["| tier | series | budget | usage | status | memory | trend |", "|---|---:|---:|---:|---|---:|---|"]
    for t in report.tiers:
        mark = {OVER: " :red_circle:", WARN: " :warning:"}.get(t.status, "")
        lines.append(f"| {t.name} | {_count(t.series, t.estimated_series > 0)} | {'-' if t.budget is None else t.budget} | {_usage(t)} | "
                     f"{t.status}{mark} | {human_bytes(t.memory_bytes)} | {_trend(t)} |")
    for t in report.tiers:
        if not t.recommendations and not t.problems and not t.label_explosions:
            continue
        lines += ["", f"#### {t.name}", ""]
        lines += [f"- cap exceeded: {p}" for p in t.problems]
        lines += [f"- explosion: {e}" for e in _shown_explosions(t, md=True)]
        lines += [f"- {recommendation_text(r, md=True)}" for r in t.recommendations]
        if (total := savings_summary(t)) is not None:
            lines += ["", total]
    inventory = inventory_lines(report)
    if inventory:
        lines += ["", "#### inventory", ""] + [f"- {ln}" for ln in inventory]
    runbooks = runbook_lines(report, md=True)
    if runbooks:
        lines += ["", "#### runbooks", ""] + [f"- {ln}" for ln in runbooks]
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str, color: bool = False, width: int = 120) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    return render_table(report, width=width, color=color)
