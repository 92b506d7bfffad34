"""Churn: series created and gone between two evaluations, per metric, and the label driving it.

A short-lived id label (`run_id`, `query_id`, `task_attempt`, a pod name) may keep today's count
small while minting new series every run; comparing the series sets of two evaluations names it.
Sets are compared as 64-bit hashes so the history stays small.
"""

from __future__ import annotations

import dataclasses
import hashlib

from governor.inventory import Inventory, LabelSet, MetricInventory


def series_hash(s: LabelSet) -> int:
    """A stable signed 64-bit hash of a label set (fits SQLite INTEGER)."""
    digest = hashlib.blake2b(repr(s).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def value_hash(label: str, value: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{label}\0{value}".encode(), digest_size=8).digest(), "big", signed=True)


@dataclasses.dataclass
class Snapshot:
    """One evaluation's series and label values per metric, as hashes."""

    taken_at: float
    series: dict[str, set[int]]
    values: dict[str, dict[str, set[int]]]  # metric -> label -> value hashes

    @classmethod
    def of(cls, inventory: Inventory) -> Snapshot:
        series: dict[str, set[int]] = {}
        values: dict[str, dict[str, set[int]]] = {}
        for name, m in inventory.metrics.items():
            if m.truncated:
                continue
            series[name] = {series_hash(s) for s in m.series}
            lv: dict[str, set[int]] = {}
            for s in m.series:
                for k, v in s:
                    lv.setdefault(k, set()).add(value_hash(k, v))
            if lv:
                values[name] = lv
        return cls(inventory.collected_at, series, values)


@dataclasses.dataclass
class ChurnStat:
    metric: str
    created: int
    gone: int
    previous: int
    current: int
    churn_label: str | None  # the label with the most new values among created series
    new_values: int
    since: float


def compute(previous: Snapshot, inventory: Inventory) -> dict[str, ChurnStat]:
    """Churn per metric present in both the snapshot and the inventory (new metrics are growth,
    not churn). Only metrics with any churn are returned."""
    out: dict[str, ChurnStat] = {}
    for name, m in inventory.metrics.items():
        if m.truncated or name not in previous.series:
            continue
        prev = previous.series[name]
        cur = {series_hash(s): s for s in m.series}
        created = [s for h, s in cur.items() if h not in prev]
        gone = len(prev - cur.keys())
        if not created and not gone:
            continue
        label, new_values = _churn_label(m, created, previous.values.get(name, {}))
        out[name] = ChurnStat(name, len(created), gone, len(prev), m.count, label, new_values, previous.taken_at)
    return out


def _churn_label(m: MetricInventory, created: list[LabelSet], prev_values: dict[str, set[int]]) -> tuple[str | None, int]:
    new: dict[str, set[str]] = {}
    for s in created:
        for k, v in s:
            if value_hash(k, v) not in prev_values.get(k, set()):
                new.setdefault(k, set()).add(v)
    if not new:
        return None, 0
    label = max(new, key=lambda k: (len(new[k]), k))
    return label, len(new[label])
