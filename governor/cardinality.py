"""Phase 1 of an inventory: the backend's own cardinality statistics, a handful of requests at any size.

Three statistics APIs are spoken (shapes checked against the real servers where one runs here):

- Prometheus `GET /api/v1/status/tsdb`: `headStats.numSeries` and the top 10 of
  `seriesCountByMetricName` / `labelValueCountByLabelName` (2.42 ignores `limit`). Counts are
  series in the TSDB head: live ones plus those gone stale in the last hours.
- VictoriaMetrics `GET /api/v1/status/tsdb?topN=N&date=YYYY-MM-DD` (1.79): `totalSeries`,
  `seriesCountByMetricName`, `labelValueCountByLabelName` (also `match[]` and `focusLabel`). Counts
  are series with a sample on that UTC day, from the per-day index.
- Mimir `GET /api/v1/cardinality/label_values?label_names[]=__name__` and
  `/api/v1/cardinality/label_names` (Mimir's HTTP API reference, "Label values cardinality";
  `limit` at most 500): series per metric name and values per label in the ingesters, counted with
  `count_method=active` (series that had a sample within the ingesters' idle timeout).

None of them is what the governor counts exactly (series with a sample in the 5 minute lookback at
one evaluation time): every figure taken from here is marked estimated, with where it came from.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from governor import errors

PROMETHEUS, VICTORIAMETRICS, MIMIR = "prometheus", "victoriametrics", "mimir"
BACKENDS = (PROMETHEUS, VICTORIAMETRICS, MIMIR)
# VictoriaMetrics lists up to topN entries per table; asked for more names than any sane TSDB has,
# its metric list is complete (it says so when fewer come back than asked for).
VM_TOP_N = 100_000
MIMIR_LIMIT = 500  # the API's maximum

# get(path under /api/v1, params, enveloped) -> the answer's JSON; `enveloped` answers carry
# {"status": "success", "data": ...} and the function returns `data`.
Get = Callable[[str, dict[str, Any], bool], Any]


@dataclasses.dataclass
class Statistics:
    """What a backend's statistics say. `metrics` maps metric names to series counts and is every
    metric when `metrics_complete`; `label_values` maps label names to distinct values over all
    metrics and is every label when `labels_complete`, else any unlisted label has at most
    `label_values_bound` values (None: unknown)."""

    backend: str
    source: str          # the request(s), e.g. "VictoriaMetrics /api/v1/status/tsdb (date 2026-11-29)"
    meaning: str         # what a count means there, e.g. "series with a sample on that UTC day"
    total: int | None
    metrics: dict[str, int]
    metrics_complete: bool
    label_values: dict[str, int]
    labels_complete: bool
    label_values_bound: int | None = None
    seconds: float = 0.0


def detect(get: Get) -> str | None:
    """The backend behind the API, from the shape of its statistics answers; None when it offers
    none of them (Thanos, an older VictoriaMetrics, a proxy that hides them)."""
    try:
        data = get("status/tsdb", {}, True)
    except errors.SourceUnreachable:
        raise
    except errors.SourceError:
        data = None
    if isinstance(data, dict):
        if "headStats" in data:
            return PROMETHEUS
        if "totalSeries" in data:
            return VICTORIAMETRICS
    try:
        body = get("cardinality/label_names", {"limit": "0"}, False)
    except errors.SourceUnreachable:
        raise
    except errors.SourceError:
        return None
    return MIMIR if isinstance(body, dict) and "label_names_count" in body else None


def fetch(get: Get, backend: str, at: float) -> Statistics:
    """The statistics of `backend` as of `at` (Unix seconds). Raises SourceError naming the
    endpoint when the backend does not answer as its API says."""
    started = time.monotonic()
    stats = {PROMETHEUS: _prometheus, VICTORIAMETRICS: _victoriametrics, MIMIR: _mimir}[backend](get, at)
    stats.seconds = time.monotonic() - started
    return stats


def _pairs(items: Any, what: str) -> dict[str, int]:
    """[{"name": n, "value": v}, ...] -> {n: v}."""
    if not isinstance(items, list):
        raise errors.SourceError(f"{what} is not a list in the status/tsdb answer; is this a Prometheus-compatible API?")
    try:
        return {str(i["name"]): int(i["value"]) for i in items}
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.SourceError(f"{what} entries are not {{name, value}} pairs: {errors.bounded(items)}") from exc


def _prometheus(get: Get, at: float) -> Statistics:
    data = get("status/tsdb", {}, True)
    metrics = _pairs(data.get("seriesCountByMetricName"), "seriesCountByMetricName")
    labels = _pairs(data.get("labelValueCountByLabelName"), "labelValueCountByLabelName")
    head = data.get("headStats") or {}
    total = int(head["numSeries"]) if isinstance(head.get("numSeries"), (int, float)) else None
    # Top 10 only (2.42 has no `limit`): fewer than 10 entries means the list is whole.
    return Statistics(
        backend=PROMETHEUS, source="Prometheus /api/v1/status/tsdb (top 10)",
        meaning="series in the TSDB head, including series gone stale in the last hours",
        total=total, metrics=metrics, metrics_complete=len(metrics) < 10,
        label_values=labels, labels_complete=len(labels) < 10,
        label_values_bound=min(labels.values()) if len(labels) >= 10 else None,
    )


def _victoriametrics(get: Get, at: float) -> Statistics:
    day = time.strftime("%Y-%m-%d", time.gmtime(at))
    data = get("status/tsdb", {"topN": str(VM_TOP_N), "date": day}, True)
    metrics = _pairs(data.get("seriesCountByMetricName"), "seriesCountByMetricName")
    labels = _pairs(data.get("labelValueCountByLabelName"), "labelValueCountByLabelName")
    return Statistics(
        backend=VICTORIAMETRICS, source=f"VictoriaMetrics /api/v1/status/tsdb (date {day}, topN {VM_TOP_N})",
        meaning=f"series with a sample on {day} (UTC), live or not",
        total=int(data["totalSeries"]) if isinstance(data.get("totalSeries"), (int, float)) else None,
        metrics=metrics, metrics_complete=len(metrics) < VM_TOP_N,
        label_values=labels, labels_complete=len(labels) < VM_TOP_N,
    )


def _mimir(get: Get, at: float) -> Statistics:
    params = {"label_names[]": "__name__", "limit": str(MIMIR_LIMIT), "count_method": "active"}
    body = get("cardinality/label_values", params, False)
    try:
        (entry,) = [e for e in body["labels"] if e.get("label_name") == "__name__"]
        metrics = {str(c["label_value"]): int(c["series_count"]) for c in entry["cardinality"]}
        names_total = int(entry["label_values_count"])
        total = int(body["series_count_total"])
        lbody = get("cardinality/label_names", {"limit": str(MIMIR_LIMIT), "count_method": "active"}, False)
        labels = {str(c["label_name"]): int(c["label_values_count"]) for c in lbody["cardinality"]}
        labels_total = int(lbody["label_names_count"])
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.SourceError(f"the Mimir cardinality API answered in an unknown shape ({errors.bounded(exc)}); "
                                 "pass --backend prometheus or --backend enumerate") from exc
    return Statistics(
        backend=MIMIR, source="Mimir /api/v1/cardinality/label_values and /label_names (count_method active)",
        meaning="active series in the ingesters (a sample within their idle timeout)",
        total=total, metrics=metrics, metrics_complete=len(metrics) >= names_total,
        label_values=labels, labels_complete=len(labels) >= labels_total,
        label_values_bound=min(labels.values()) if len(labels) < labels_total and labels else None,
    )
