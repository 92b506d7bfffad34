"""A blameless postmortem skeleton with the timeline filled in and links to the evidence."""

from __future__ import annotations

from governor.evidence import markdown, timeline
from governor.evidence.scope import Scope
from governor.evidence.timewindow import Window, rfc3339

TIMELINE_ROWS = 30  # the full (capped) table is timeline.md


def render(window: Window, scope: Scope, groups: list[timeline.Group], files: list[str], missing: dict[str, str]) -> str:
    kinds: dict[str, int] = {}
    for g in groups:
        kinds[g.kind] = kinds.get(g.kind, 0) + g.count
    counts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no events recorded"
    lines = [
        f"# Postmortem: <title> ({rfc3339(window.start)} to {rfc3339(window.end)})",
        "",
        "_Blameless: this document is about systems and conditions, not people. Write what happened,",
        "why it made sense at the time, and what will make it less likely or less harmful._",
        "",
        "## Summary",
        "",
        f"Scope: {markdown.cell(scope.describe())}. Evidence in the window: {counts}.",
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
        *timeline.table(groups, TIMELINE_ROWS, "[timeline.md](timeline.md)"),
    ]
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
    lines += [f"- {markdown.link(f)}" for f in files]
    if missing:
        lines += ["", "Missing from this bundle (see MANIFEST.json):", ""]
        lines += [f"- {markdown.cell(src)}: {markdown.cell(why)}" for src, why in sorted(missing.items())]
    return "\n".join(lines) + "\n"
