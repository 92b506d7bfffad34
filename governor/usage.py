"""Which labels does anyone use? Alerting/recording rules, dashboards and logged queries.

A label is *unused* for a metric when no expression that names the metric (or selects metrics by a
`__name__` regex, which may match it) also names the label, as an identifier or as a string
literal (`label_replace` takes label names as strings): `by`/`without` clauses and label matchers
count, in rules, dashboards and logged queries alike. A dashboard also uses what it shows: a
legend's `{{label}}`, and every label of a table panel's query (each becomes a column). This
over-approximates use without a full PromQL parser: it can call an unused label "used", never a
used one "unused", which is the safe direction for a recommendation to drop.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from governor import errors

MAX_DASHBOARD_FILES = 2000
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_QUERY_LOG_BYTES = 64 * 1024 * 1024  # read the newest part of a big log
# Not preceded by a digit or '.': keeps the unit of `5m` or `1.5e3` from looking like a name.
_IDENT = re.compile(r"(?<![0-9a-zA-Z_:.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_ANY_METRIC = "*"
_ANY_LABEL = "*"  # in `names`: every label of the selected metrics is used (a table panel shows them all)
_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


@dataclasses.dataclass
class _Expr:
    where: str
    metrics: frozenset[str]  # may contain _ANY_METRIC
    names: frozenset[str]    # identifiers and string literal contents


def tokens(expr: str) -> tuple[set[str], set[str]]:
    """(identifiers outside strings, contents of string literals) of a PromQL expression."""
    strings = {m.group(0)[1:-1] for m in _STRING.finditer(expr)}
    bare = _STRING.sub(" ", expr)
    # Drop numbers and durations like 5m: identifiers only start with a letter, '_' or ':'.
    return set(_IDENT.findall(bare)), strings


def _parse(expr: str, where: str, shown: Iterable[str] = ()) -> _Expr:
    idents, strings = tokens(expr)
    metrics = set(idents)
    if re.search(r"__name__\s*(=~|!~|!=)", expr):
        metrics.add(_ANY_METRIC)
    return _Expr(where, frozenset(metrics), frozenset(idents | strings | set(shown)))


class UsageIndex:
    """Expressions gathered from every usage source, answering `is_unused(metric, label)`."""

    def __init__(self) -> None:
        self._exprs: list[_Expr] = []
        self.sources: list[str] = []

    def add(self, expr: str, where: str, shown: Iterable[str] = ()) -> None:
        """`shown`: labels the expression's result displays beyond what it names (a legend's
        `{{label}}`; `*` for all of them)."""
        self._exprs.append(_parse(expr, where, shown))

    def add_source(self, description: str, exprs: Iterable[tuple[str, str] | tuple[str, str, Iterable[str]]]) -> int:
        n = 0
        for item in exprs:
            self.add(*item)
            n += 1
        self.sources.append(f"{description} ({n} expressions)")
        return n

    def users(self, metric: str, label: str) -> list[str]:
        return sorted({e.where for e in self._exprs
                       if (metric in e.metrics or _ANY_METRIC in e.metrics) and (label in e.names or _ANY_LABEL in e.names)})

    def is_unused(self, metric: str, label: str) -> bool:
        return not self.users(metric, label)


def rule_expressions(rules_data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(expr, 'rule NAME') from a Prometheus /api/v1/rules `data` object."""
    for group in rules_data.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("name") or rule.get("alert") or rule.get("record") or "?"
            if rule.get("query"):
                yield rule["query"], f"rule {name}"


def dashboard_expressions(folder: Path) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(expr, 'dashboard FILE', shown labels) for every query in Grafana JSON under `folder`: the
    labels a target's legendFormat shows, or every label (`*`) for a table panel."""
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())[:MAX_DASHBOARD_FILES]
    for path in files:
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # not a dashboard; other JSON may live beside them
        for expr, shown in _walk_exprs(doc, None):
            yield expr, f"dashboard {path.name}", shown


def _walk_exprs(node: Any, panel_type: str | None) -> Iterator[tuple[str, tuple[str, ...]]]:
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and ("targets" in node or "panels" in node):
            panel_type = node["type"]  # a panel (or row): its targets are shown this way
        legend_format = node.get("legendFormat")
        legend = legend_format if isinstance(legend_format, str) else ""
        shown = tuple(_LEGEND.findall(legend)) + ((_ANY_LABEL,) if panel_type == "table" else ())
        for k, v in node.items():
            if k in ("expr", "query") and isinstance(v, str):
                yield v, shown
            else:
                yield from _walk_exprs(v, panel_type)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_exprs(v, panel_type)


def query_log_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(query, 'query log') from Prometheus' `query_log_file` (JSON lines with params.query)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - MAX_QUERY_LOG_BYTES))
            data = f.read()
    except OSError as exc:
        raise errors.GovernorError(f"cannot read query log {path} ({exc.strerror}); check --query-log") from exc
    for line in data.splitlines():
        try:
            q = json.loads(line).get("params", {}).get("query")
        except (ValueError, AttributeError):
            continue  # first line may be cut by the seek
        if isinstance(q, str):
            yield q, "query log"
