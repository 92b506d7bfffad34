"""`budgets.yaml`: per-tier series budgets and classification rules, validated with errors that
name the file, the line and the field.

The smallest valid file:

    tiers:
      stream:
        max_series: 50
        match: {metric_prefixes: [flink_, redpanda_, kafka_]}

Everything else has a default (see `Defaults`). A file given by the user replaces the shipped
defaults (`governor/defaults/budgets.yaml`) as a whole: budgets that merge silently are budgets
nobody can read.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import yaml

from governor.errors import BudgetError

UNCLASSIFIED = "unclassified"
# The governor's own series (bcgov_governor_*) and Prometheus' ALERTS: reported in a tier of their
# own, never counted in the tiers they describe (see governor.tiers).
GOVERNOR = "governor"
_TIER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclasses.dataclass(frozen=True)
class Defaults:
    """File-wide settings. Memory and disk figures are documented estimates, configurable:
    Prometheus 2.x needs roughly 3 kB of head memory per active series, and stores 1-2 bytes per
    sample on disk after compression."""

    warn_ratio: float = 0.8
    bytes_per_series: int = 3072
    disk_bytes_per_sample: float = 1.5
    scrape_interval_seconds: float = 30.0
    max_label_values: int = 1000
    top_n: int = 10
    protected_labels: tuple[str, ...] = ("job", "instance")
    tier_label: str = "tier"
    runbook_base_url: str = "runbooks"
    stale_after_seconds: float = 600.0


@dataclasses.dataclass(frozen=True)
class Match:
    metric_prefixes: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    max_series: int
    warn_ratio: float
    max_label_values: int
    match: Match
    metric_caps: dict[str, int]
    label_caps: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Budgets:
    path: str
    defaults: Defaults
    tiers: dict[str, Tier]

    def tier(self, name: str) -> Tier:
        return self.tiers[name]


def default_path() -> Path:
    """The shipped defaults file."""
    return Path(str(importlib.resources.files("governor") / "defaults" / "budgets.yaml"))


def load(path: str | Path | None = None) -> Budgets:
    """Load and validate a budgets file (the shipped defaults when `path` is None)."""
    p = Path(path) if path is not None else default_path()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BudgetError(str(p), None, "", f"cannot read the budgets file ({exc.strerror}); pass --budgets FILE") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BudgetError(str(p), line, "", f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from exc
    return parse(text, str(p))


def parse(text: str, path: str = "<budgets>") -> Budgets:
    """Validate budgets YAML text; `path` only names the file in errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise BudgetError(path, mark.line + 1 if mark else None, "", f"not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise BudgetError(path, None, "", f"not valid YAML: {exc}") from exc
    v = _Validator(path)
    if root is None:
        raise BudgetError(path, 1, "tiers", "the file is empty; it needs at least one tier under 'tiers:'")
    top = v.mapping(root, "", {"version", "defaults", "tiers"}, required={"tiers"})
    if "version" in top:
        v.check(top["version"], "version", v.scalar(top["version"], "version", int) == 1, "must be 1")
    defaults = _defaults(v, top.get("defaults"))
    tiers_node = top["tiers"]
    tiers_map = v.mapping(tiers_node, "tiers", None)
    if not tiers_map:
        raise BudgetError(path, _line(tiers_node), "tiers", "needs at least one tier")
    tiers: dict[str, Tier] = {}
    for name, node in tiers_map.items():
        field = f"tiers.{name}"
        v.check(node, field, bool(_TIER_NAME.match(name)) and name not in (UNCLASSIFIED, GOVERNOR),
                f"tier names are lower-case [a-z0-9_], start with a letter, and '{UNCLASSIFIED}' and '{GOVERNOR}' are reserved")
        tiers[name] = _tier(v, name, node, defaults)
    return Budgets(path, defaults, tiers)


def _defaults(v: _Validator, node: yaml.Node | None) -> Defaults:
    d = Defaults()
    if node is None:
        return d
    fields = {f.name for f in dataclasses.fields(Defaults)}
    m = v.mapping(node, "defaults", fields)
    kw: dict[str, Any] = {}
    for key, n in m.items():
        f = f"defaults.{key}"
        if key == "warn_ratio":
            kw[key] = v.ratio(n, f)
        elif key in ("bytes_per_series", "max_label_values", "top_n"):
            kw[key] = v.positive_int(n, f)
        elif key in ("disk_bytes_per_sample", "scrape_interval_seconds", "stale_after_seconds"):
            kw[key] = v.positive_number(n, f)
        elif key == "protected_labels":
            kw[key] = tuple(v.names(n, f, _LABEL_NAME, "label names"))
        elif key == "tier_label":
            kw[key] = v.scalar(n, f, str)
            v.check(n, f, bool(_LABEL_NAME.match(kw[key])), "must be a label name")
        else:
            kw[key] = v.scalar(n, f, str)
    return dataclasses.replace(d, **kw)


def _tier(v: _Validator, name: str, node: yaml.Node, d: Defaults) -> Tier:
    field = f"tiers.{name}"
    m = v.mapping(node, field, {"max_series", "warn_ratio", "max_label_values", "match", "metrics", "labels"},
                  required={"max_series", "match"})
    match_m = v.mapping(m["match"], f"{field}.match", {"metric_prefixes", "jobs", "namespaces"})
    if not match_m:
        raise BudgetError(v.path, _line(m["match"]), f"{field}.match", "needs metric_prefixes, jobs or namespaces")
    match = Match(
        metric_prefixes=tuple(v.names(match_m["metric_prefixes"], f"{field}.match.metric_prefixes", _METRIC_NAME,
                                      "metric name prefixes")) if "metric_prefixes" in match_m else (),
        jobs=tuple(v.names(match_m["jobs"], f"{field}.match.jobs", None, "job names")) if "jobs" in match_m else (),
        namespaces=tuple(v.names(match_m["namespaces"], f"{field}.match.namespaces", None, "namespaces")) if "namespaces" in match_m else (),
    )
    return Tier(
        name=name,
        max_series=v.positive_int(m["max_series"], f"{field}.max_series"),
        warn_ratio=v.ratio(m["warn_ratio"], f"{field}.warn_ratio") if "warn_ratio" in m else d.warn_ratio,
        max_label_values=v.positive_int(m["max_label_values"], f"{field}.max_label_values") if "max_label_values" in m else d.max_label_values,
        match=match,
        metric_caps=v.caps(m.get("metrics"), f"{field}.metrics", _METRIC_NAME),
        label_caps=v.caps(m.get("labels"), f"{field}.labels", _LABEL_NAME),
    )


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Validator:
    """Typed accessors over YAML nodes that raise `BudgetError` at the node's line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._construct = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, field: str, problem: str) -> BudgetError:
        return BudgetError(self.path, _line(node), field, problem)

    def check(self, node: yaml.Node, field: str, ok: bool, problem: str) -> None:
        if not ok:
            raise self.fail(node, field, problem)

    def mapping(self, node: yaml.Node, field: str, allowed: set[str] | None, required: AbstractSet[str] = frozenset()) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field or "(top level)", "must be a mapping of keys to values")
        out: dict[str, yaml.Node] = {}
        for k, val in node.value:
            key = self._construct.construct_object(k)
            sub = f"{field}.{key}" if field else str(key)
            if not isinstance(key, str):
                raise self.fail(k, sub, "keys must be strings")
            if key in out:
                raise self.fail(k, sub, "duplicate key")
            if allowed is not None and key not in allowed:
                raise self.fail(k, sub, f"unknown field; expected one of: {', '.join(sorted(allowed))}")
            out[key] = val
        for r in sorted(required - out.keys()):
            raise self.fail(node, f"{field}.{r}" if field else r, "required field is missing")
        return out

    def scalar(self, node: yaml.Node, field: str, kind: type | tuple[type, ...]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, field, f"must be a single {_kind_name(kind)}")
        value = self._construct.construct_object(node)
        # YAML booleans are ints in Python; never accept `yes` as a number.
        if isinstance(value, bool) or not isinstance(value, kind):
            raise self.fail(node, field, f"must be {_kind_name(kind)}, got {value!r}")
        return value

    def positive_int(self, node: yaml.Node, field: str) -> int:
        value = self.scalar(node, field, int)
        self.check(node, field, value > 0, f"must be a positive integer, got {value}")
        return int(value)

    def positive_number(self, node: yaml.Node, field: str) -> float:
        value = self.scalar(node, field, (int, float))
        self.check(node, field, value > 0, f"must be a positive number, got {value}")
        return float(value)

    def ratio(self, node: yaml.Node, field: str) -> float:
        value = self.scalar(node, field, (int, float))
        self.check(node, field, 0 < value <= 1, f"must be a ratio in (0, 1], got {value}")
        return float(value)

    def names(self, node: yaml.Node, field: str, pattern: re.Pattern[str] | None, what: str) -> list[str]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, field, f"must be a list of {what}")
        out = []
        for i, item in enumerate(node.value):
            s = self.scalar(item, f"{field}[{i}]", str)
            self.check(item, f"{field}[{i}]", bool(s) and (pattern is None or bool(pattern.match(s))), f"{s!r} is not valid among {what}")
            out.append(s)
        return out

    def caps(self, node: yaml.Node | None, field: str, pattern: re.Pattern[str]) -> dict[str, int]:
        if node is None:
            return {}
        out = {}
        for key, n in self.mapping(node, field, None).items():
            self.check(n, f"{field}.{key}", bool(pattern.match(key)), f"{key!r} is not a valid name")
            out[key] = self.positive_int(n, f"{field}.{key}")
        return out


def _kind_name(kind: type | tuple[type, ...]) -> str:
    def names(t: type) -> str:
        return {int: "an integer", float: "a number", str: "a string"}.get(t, t.__name__)

    return " or ".join(names(k) for k in kind) if isinstance(kind, tuple) else names(kind)
