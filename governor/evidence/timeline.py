"""A merged, time-ordered timeline of groups: alerts, OOM kills, resets, refused and timed-out
connections, exec/exit, budget breaches.

Repeated events are grouped so a busy window stays readable: execs by workload and executable,
exits by workload, executable and how they ended, resets by workload and peer (or direction),
refused and timed-out connections by workload and peer host, each
group with its count, first and last time and, for execs, the most frequent command lines. Alerts,
OOM kills and budget breaches are rare and each matters, so each is its own row. The number of
groups is bounded (MAX_GROUPS; later new keys fold into one "other" group per kind), and so is
the number of command lines counted per group, so memory does not grow with the input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from governor.evidence import markdown
from governor.evidence.alerts import Alert
from governor.evidence.promrange import Series
from governor.evidence.telemetry import FlatSpan
from governor.evidence.timewindow import rfc3339

_WHO_KEYS = ("k8s.namespace.name", "k8s.pod.name", "bcgov.workload.name", "bcgov.tier")
MAX_GROUPS = 20_000
MAX_COMMANDS = 64  # distinct command lines counted per group; more are counted as "other"
MAX_PENDING_RESETS = 200_000
TOP_COMMANDS = 3
# Which rows a capped table keeps first (then it shows them in time order).
PRIORITY = {"alert": 0, "oom kill": 1, "budget breach": 2, "reset": 3, "refused": 3, "timeout": 3, "exit": 4, "exec": 5}
# Connection outcomes listed besides resets (the agent's `bcgov.tcp.outcome`, probes/tcp_lifecycle.py),
# from the log line `tcp connection <outcome>` or, without one, the span.
FAILED_OUTCOMES = ("refused", "timeout")
_FAILED_BODIES = {f"tcp connection {o}": o for o in FAILED_OUTCOMES}
# Event-line bodies the timeline reads (Timeline.log); telemetry.read_logs parses only these in full.
BODIES = frozenset({"oom kill", "process exec", "process exit", "tcp connection reset", *_FAILED_BODIES})


@dataclasses.dataclass
class Group:
    """Events of one kind and key: `text` names the first one, `group_text` the group."""

    first: float
    kind: str
    text: str
    ref: str
    group_text: str = ""
    last: float = 0.0
    count: int = 1
    commands: dict[str, int] = dataclasses.field(default_factory=dict)
    other_commands: int = 0

    def add_command(self, cmd: str) -> None:
        if cmd in self.commands or len(self.commands) < MAX_COMMANDS:
            self.commands[cmd] = self.commands.get(cmd, 0) + 1
        else:
            self.other_commands += 1

    def what(self) -> str:
        if self.count == 1:
            return self.text
        out = self.group_text or self.text
        if self.commands:
            top = sorted(self.commands.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_COMMANDS]
            out += "; top commands: " + "; ".join(f"{c} (x{n})" for c, n in top)
        return out


def _who(attrs: dict[str, Any], pid: bool = True) -> str:
    parts = [str(attrs[k]) for k in _WHO_KEYS if attrs.get(k)]
    proc = attrs.get("process.executable.name")
    p = attrs.get("process.pid")
    if pid and (proc or p):
        parts.append(f"{proc or '?'}[{p or '?'}]")
    elif proc:
        parts.append(str(proc))
    return " ".join(parts) or "unknown workload"


class Timeline:
    """Collects groups from every source; `groups()` lists them oldest first."""

    def __init__(self) -> None:
        self._groups: dict[tuple[Any, ...], Group] = {}
        self._single = 0
        self.logged_resets: set[str] = set()  # trace ids whose reset, refusal or timeout came from a log line
        # Resets seen on spans, listed once the log lines are all read (logs and spans may be read
        # at the same time, in two processes); bounded, the rest are listed without the check.
        self._span_resets: list[tuple[str, float, str, str, str]] = []
        self._span_failed: list[tuple[str, str, float, str, str, str, str]] = []  # refused/timed-out, likewise

    def _add(self, key: tuple[Any, ...], ts: float, kind: str, text: str, ref: str, group_text: str = "",
             command: str | None = None) -> None:
        g = self._groups.get(key)
        if g is None and len(self._groups) >= MAX_GROUPS:
            key = ("other", kind)
            g = self._groups.get(key)
            text = group_text = f"{kind} events of further workloads (more than {MAX_GROUPS} groups)"
        if g is None:
            g = self._groups[key] = Group(ts, kind, text, ref, group_text, ts)
            if command is not None:
                g.add_command(command)
            return
        g.count += 1
        g.first, g.last = min(g.first, ts), max(g.last, ts)
        if command is not None:
            g.add_command(command)

    def single(self, ts: float, kind: str, text: str, ref: str) -> None:
        self._single += 1
        self._add(("single", self._single), ts, kind, text, ref)

    def alerts(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            book = f" (runbook: {a.runbook_url})" if a.runbook_url else ""
            self.single(a.starts, "alert", f"{a.name} firing [{a.source}]{book}", "alerts.json")
            if a.ends is not None:
                self.single(a.ends, "alert", f"{a.name} resolved [{a.source}]", "alerts.json")

    def log(self, rec: dict[str, Any], ts: float) -> None:
        """One kept event line (telemetry.read_logs' observer)."""
        body, attrs = rec.get("body", ""), rec.get("attributes") or {}
        if body == "oom kill":
            self.single(ts, "oom kill", f"OOM kill of {_who(attrs)} (anon RSS {attrs.get('bcgov.oom.anon_rss_kb', '?')} kB)", "logs.jsonl")
        elif body == "process exec":
            args = " ".join(str(a) for a in attrs.get("process.command_args") or [])
            who = _who(attrs, pid=False)
            self._add(("exec", who), ts, "exec", f"exec {_who(attrs)}: {args}", "logs.jsonl", f"exec {who}", command=args)
        elif body == "process exit":
            how = attrs.get("bcgov.process.exit_kind", "exited")
            code = attrs.get("process.exit.code", attrs.get("bcgov.process.signal", ""))
            who = _who(attrs, pid=False)
            self._add(("exit", who, how, code), ts, "exit", f"exit {_who(attrs)}: {how} {code}".rstrip(), "logs.jsonl",
                      f"exit {who}: {how} {code}".rstrip())
        elif body == "tcp connection reset":
            addr = attrs.get("network.peer.address", "?")
            peer = f"{addr}:{attrs.get('network.peer.port', '?')}"
            trace = rec.get("trace_id", "-")
            if rec.get("trace_id"):
                self.logged_resets.add(rec["trace_id"])
            # grouped by workload and peer host: pids and a server's ephemeral peer ports differ per connection
            who = _who(attrs, pid=False)
            self._add(("reset-log", who, addr), ts, "reset", f"connection reset, {_who(attrs)} <-> {peer} (trace {trace})",
                      "logs.jsonl", f"connection reset, {who} <-> {addr} (first trace {trace})")
        elif body in _FAILED_BODIES:
            trace = rec.get("trace_id", "-")
            if rec.get("trace_id"):
                self.logged_resets.add(rec["trace_id"])
            self._failed(_FAILED_BODIES[body], trace, ts, _who(attrs), _who(attrs, pid=False),
                         str(attrs.get("network.peer.address", "?")), str(attrs.get("network.peer.port", "?")), "logs.jsonl")

    def _failed(self, outcome: str, trace: str, ts: float, who: str, group_who: str, addr: str, port: str, ref: str) -> None:
        """A refused or timed-out connection, grouped by workload and peer host (a client's pid and
        ephemeral port differ per attempt)."""
        self._add((outcome, group_who, addr), ts, outcome, f"connection {outcome}, {who} -> {addr}:{port} (trace {trace})",
                  ref, f"connection {outcome}, {group_who} -> {addr} (first trace {trace})")

    def span(self, s: FlatSpan) -> None:
        """Resets, refused and timed-out connections seen on spans; listed (by `groups()`) unless a
        log line of the same trace made an entry already."""
        outcome = s.attributes.get("bcgov.tcp.outcome")
        if outcome in FAILED_OUTCOMES:
            item = (str(outcome), s.trace_id, s.start, _who(s.attributes), _who(s.attributes, pid=False),
                    str(s.attributes.get("network.peer.address", "?")), str(s.attributes.get("network.peer.port", "?")))
            if len(self._span_failed) < MAX_PENDING_RESETS:
                self._span_failed.append(item)
            else:
                self._span_failed_row(*item)
        for ts, name, attrs in s.events:
            if name == "tcp.reset":
                reset = (s.trace_id, ts, _who(s.attributes), str(attrs.get("bcgov.tcp.reset.direction", "?")),
                         _who(s.attributes, pid=False))
                if len(self._span_resets) < MAX_PENDING_RESETS:
                    self._span_resets.append(reset)
                else:
                    self._span_reset(*reset)

    def _span_failed_row(self, outcome: str, trace: str, ts: float, who: str, group_who: str, addr: str, port: str) -> None:
        self._failed(outcome, trace, ts, who, group_who, addr, port, "spans.jsonl")

    def _span_reset(self, trace: str, ts: float, who: str, d: str, group_who: str) -> None:
        self._add(("reset-span", group_who, d), ts, "reset", f"connection reset ({d}), {who} (trace {trace})",
                  "spans.jsonl", f"connection reset ({d}), {group_who} (first trace {trace})")

    def merge(self, other: Timeline) -> None:
        """Add `other`'s groups (read in another process) to these."""
        for key, g in other._groups.items():
            if key[0] == "single":
                self._single += 1
                key = ("single", self._single)
            mine = self._groups.get(key)
            if mine is None:
                self._groups[key] = g
                continue
            mine.count += g.count
            mine.first, mine.last = min(mine.first, g.first), max(mine.last, g.last)
            for cmd, n in g.commands.items():
                if cmd in mine.commands or len(mine.commands) < MAX_COMMANDS:
                    mine.commands[cmd] = mine.commands.get(cmd, 0) + n
                else:
                    mine.other_commands += n
            mine.other_commands += g.other_commands
        self.logged_resets |= other.logged_resets
        self._span_resets += other._span_resets
        self._span_failed += other._span_failed

    def budget_breaches(self, series: list[Series]) -> None:
        """The first point of each run where a tier's series went above its budget."""
        by_tier: dict[str, dict[str, dict[float, float]]] = {}
        for s in series:
            by_tier.setdefault(s.labels.get("tier", "?"), {})[s.labels.get("kind", "")] = dict(s.points)
        for tier, kinds in sorted(by_tier.items()):
            used, budget = kinds.get("series", {}), kinds.get("budget", {})
            over = False
            for t in sorted(used):
                now_over = t in budget and used[t] > budget[t]
                if now_over and not over:
                    self.single(t, "budget breach", f"tier {tier}: {used[t]:.0f} series over budget {budget[t]:.0f}",
                                "series/tier_series_vs_budget.csv")
                over = now_over

    def groups(self) -> list[Group]:
        pending, self._span_resets = self._span_resets, []
        for item in pending:
            if item[0] not in self.logged_resets:
                self._span_reset(*item)
        failed, self._span_failed = self._span_failed, []
        for f in failed:
            if f[1] not in self.logged_resets:
                self._span_failed_row(*f)
        return sorted(self._groups.values(), key=lambda g: (g.first, PRIORITY.get(g.kind, 9), g.text))


def capped(groups: list[Group], limit: int) -> tuple[list[Group], int]:
    """At most `limit` groups, the most important kinds first, shown in time order; and how many were left out."""
    if len(groups) <= limit:
        return groups, 0
    keep = sorted(groups, key=lambda g: (PRIORITY.get(g.kind, 9), g.first))[:limit]
    return sorted(keep, key=lambda g: (g.first, PRIORITY.get(g.kind, 9), g.text)), len(groups) - limit


HEADER = ["| time (UTC) | kind | what | count | last (UTC) | evidence |", "|---|---|---|---|---|---|"]


def table(groups: list[Group], limit: int, more_in: str) -> list[str]:
    """Markdown table rows (every cell escaped), capped at `limit` with "N more in <more_in>"."""
    shown, left = capped(groups, limit)
    lines = list(HEADER)
    for g in shown:
        last = rfc3339(g.last) if g.count > 1 else ""
        lines.append(markdown.row(rfc3339(g.first), markdown.cell(g.kind), markdown.cell(g.what()), str(g.count), last,
                                  markdown.link(g.ref)))
    if not groups:
        lines.append(markdown.row("", "", "nothing recorded in the window", "", "", ""))
    if left:
        lines += ["", f"_{left} more in {more_in}_"]
    return lines


def render(groups: list[Group], title: str, limit: int = 500) -> str:
    """timeline.md: the groups, oldest first, capped at `limit` rows."""
    lines = [f"# {title}", "", *table(groups, limit, "[logs.jsonl](logs.jsonl) and [spans.jsonl](spans.jsonl)")]
    return "\n".join(lines) + "\n"
