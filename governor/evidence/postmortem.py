"""A blameless postmortem skeleton with the timeline filled in and links to the evidence."""

from __future__ import annotations

from governor.evidence.scope import Scope
from governor.evidence.timeline import Entry
from governor.evidence.timewindow import Window, rfc3339


def render(window: Window, scope: Scope, entries: list[Entry], files: list[str], missing: dict[str, str]) -> str:
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no events recorded"
    lines = [
        f"# Postmortem: <title> ({rfc3339(window.start)} to {rfc3339(window.end)})",
        "",
        "_Blameless: this document is about systems and conditions, not people. Write what happened,",
        "why it made sense at the time, and what will make it less likely or less harmful._",
        "",
        "## Summary",
        "",
        f"Scope: {scope.describe()}. Evidence in the window: {counts}.",
        "",
        "<!-- Two or three sentences: what broke, for whom, for how long, how it was resolved. -->",
        "",
        "## Impact",
        "",
        "<!-- Users and workloads affected, duration, error budget spent. See [series/](series/) and "
        "[plots/](plots/). -->",
        "",
        "## Timeline (UTC, from the evidence; add detection, escalation and mitigation steps)",
        "",
        "| time (UTC) | kind | what | evidence |",
        "|---|---|---|---|",
    ]
    for e in entries:
        text = e.text.replace("|", "\\|")
        lines.append(f"| {rfc3339(e.ts)} | {e.kind} | {text} | [{e.ref}]({e.ref}) |")
    lines += [
        "",
        "## Root cause",
        "",
        "<!-- The technical chain of causes. Link spans by trace_id in [spans.jsonl](spans.jsonl) and "
        "log lines in [logs.jsonl](logs.jsonl). -->",
        "",
        "## The pattern it rode in on",
        "",
        "<!-- The recurring condition that let this happen (a missing limit, an unbounded label, a "
        "retry storm). Has it happened before? See [budget-report.json](budget-report.json). -->",
        "",
        "## What went well / what was hard",
        "",
        "## Action items",
        "",
        "| action | kind | owner | tracking |",
        "|---|---|---|---|",
        "| Add a test that reproduces this failure | new test | | |",
        "| Add or tune an alert that would have caught it earlier (with a runbook) | new alert | | |",
        "",
        "## Evidence",
        "",
    ]
    lines += [f"- [{f}]({f})" for f in files]
    if missing:
        lines += ["", "Missing from this bundle (see MANIFEST.json):", ""]
        lines += [f"- {src}: {why}" for src, why in sorted(missing.items())]
    return "\n".join(lines) + "\n"
