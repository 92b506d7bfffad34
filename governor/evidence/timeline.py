"""A merged, time-ordered timeline: alerts, OOM kills, resets, exec/exit and budget breaches."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from governor.evidence.alerts import Alert
from governor.evidence.promrange import Series
from governor.evidence.telemetry import Logs, Spans, log_time
from governor.evidence.timewindow import rfc3339

_WHO_KEYS = ("k8s.namespace.name", "k8s.pod.name", "bcgov.workload.name", "bcgov.tier")


@dataclasses.dataclass(frozen=True, order=True)
class Entry:
    """One line of the timeline; `ref` points at the bundle file holding the evidence."""

    ts: float
    kind: str
    text: str
    ref: str = ""


def _who(attrs: dict[str, Any]) -> str:
    parts = [str(attrs[k]) for k in _WHO_KEYS if attrs.get(k)]
    proc = attrs.get("process.executable.name")
    pid = attrs.get("process.pid")
    if proc or pid:
        parts.append(f"{proc or '?'}[{pid or '?'}]")
    return " ".join(parts) or "unknown workload"


def from_alerts(alerts: Iterable[Alert]) -> list[Entry]:
    out = []
    for a in alerts:
        book = f" (runbook: {a.runbook_url})" if a.runbook_url else ""
        out.append(Entry(a.starts, "alert", f"{a.name} firing [{a.source}]{book}", "alerts.json"))
        if a.ends is not None:
            out.append(Entry(a.ends, "alert", f"{a.name} resolved [{a.source}]", "alerts.json"))
    return out


def from_logs(logs: Logs) -> list[Entry]:
    out = []
    for rec in logs.records:
        body, attrs = rec.get("body", ""), rec.get("attributes") or {}
        ts = log_time(rec)
        if body == "oom kill":
            out.append(Entry(ts, "oom kill", f"OOM kill of {_who(attrs)} (anon RSS {attrs.get('bcgov.oom.anon_rss_kb', '?')} kB)", "logs.jsonl"))
        elif body == "process exec":
            args = " ".join(str(a) for a in attrs.get("process.command_args") or [])
            out.append(Entry(ts, "exec", f"exec {_who(attrs)}: {args}", "logs.jsonl"))
        elif body == "process exit":
            how = attrs.get("bcgov.process.exit_kind", "exited")
            code = attrs.get("process.exit.code", attrs.get("bcgov.process.signal", ""))
            out.append(Entry(ts, "exit", f"exit {_who(attrs)}: {how} {code}".rstrip(), "logs.jsonl"))
        elif body == "tcp connection reset":
            peer = f"{attrs.get('network.peer.address', '?')}:{attrs.get('network.peer.port', '?')}"
            out.append(Entry(ts, "reset", f"connection reset, {_who(attrs)} <-> {peer} (trace {rec.get('trace_id', '-')})", "logs.jsonl"))
    return out


def from_spans(spans: Spans, logged_traces: set[str]) -> list[Entry]:
    """Resets seen on spans whose log line was not exported (the log already made an entry)."""
    out = []
    for s in spans.flat:
        if s["trace_id"] in logged_traces:
            continue
        for ts, name, attrs in s["events"]:
            if name == "tcp.reset":
                out.append(Entry(ts, "reset", f"connection reset ({attrs.get('bcgov.tcp.reset.direction', '?')}), "
                                 f"{_who(s['attributes'])} (trace {s['trace_id']})", "spans.jsonl"))
    return out


def budget_breaches(series: list[Series]) -> list[Entry]:
    """The first point of each run where a tier's series went above its budget."""
    by_tier: dict[str, dict[str, dict[float, float]]] = {}
    for s in series:
        by_tier.setdefault(s.labels.get("tier", "?"), {})[s.labels.get("kind", "")] = dict(s.points)
    out = []
    for tier, kinds in sorted(by_tier.items()):
        used, budget = kinds.get("series", {}), kinds.get("budget", {})
        over = False
        for t in sorted(used):
            now_over = t in budget and used[t] > budget[t]
            if now_over and not over:
                out.append(Entry(t, "budget breach", f"tier {tier}: {used[t]:.0f} series over budget {budget[t]:.0f}",
                                 "series/tier_series_vs_budget.csv"))
            over = now_over
    return out


def merge(*parts: Iterable[Entry]) -> list[Entry]:
    return sorted(e for p in parts for e in p)


def render(entries: list[Entry], title: str) -> str:
    """Markdown table, oldest first."""
    lines = [f"# {title}", "", "| time (UTC) | kind | what | evidence |", "|---|---|---|---|"]
    for e in entries:
        text = e.text.replace("|", "\\|")
        lines.append(f"| {rfc3339(e.ts)} | {e.kind} | {text} | [{e.ref}]({e.ref}) |" if e.ref else f"| {rfc3339(e.ts)} | {e.kind} | {text} | |")
    if not entries:
        lines.append("| | | nothing recorded in the window | |")
    return "\n".join(lines) + "\n"
