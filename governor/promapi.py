"""Inventory from any Prometheus-compatible HTTP API (Prometheus, Mimir, VictoriaMetrics, Thanos).

Live series are what an instant query returns (5 minute lookback, staleness aware). We do not use
`/api/v1/series` for the series set: seen on Prometheus 2.42, it keeps returning series that went
stale minutes ago while they are still in the head, which would overstate the count and break the
"savings are exact" promise once a relabel rule takes effect.

Work is bounded: series counts per metric come first from one `count by (__name__)` query; then
series sets are fetched in chunks of whole metrics of at most `chunk_series` series each, and a
metric larger than `max_series_per_metric` keeps only its count (marked truncated).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable, Iterator

from governor import errors, http
from governor.inventory import Inventory, MetricInventory, label_set

Progress = Callable[[int, int], None]  # (series fetched so far, total series)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on one collection; defaults suit a homelab Prometheus with a few million series."""

    chunk_series: int = 50_000
    max_series_per_metric: int = 500_000
    max_series_total: int = 5_000_000


class PrometheusSource:
    """Collects an `Inventory` from a Prometheus HTTP API at `base_url`."""

    def __init__(self, base_url: str, options: http.HttpOptions | None = None, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits or Limits()
        self._clock = clock
        self._http = http.Http(
            options or http.HttpOptions(), "Prometheus",
            "check that it is running and the URL is right, or pass --prometheus URL",
        )

    def describe(self) -> str:
        return f"prometheus {self.base_url}"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------ API calls

    def _api(self, path: str, params: dict[str, Any] | None = None, post: bool = False) -> Any:
        url = f"{self.base_url}/api/v1/{path}"
        # POST keeps long match expressions out of the URL (proxies cap URL length).
        resp = self._http.request("POST", url, data=params) if post else self._http.request("GET", url, params=params)
        try:
            body = resp.json()
        except ValueError as exc:
            raise errors.SourceError(
                f"{url} did not answer JSON (HTTP {resp.status_code}: {errors.bounded(resp.text, 120)}); "
                "is this a Prometheus-compatible API? --prometheus wants the base URL, e.g. http://host:9090"
            ) from exc
        if body.get("status") != "success":
            raise errors.SourceError(f"{url} failed: {errors.bounded(body.get('error') or body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector."""
        data = self._api("query", {"query": expr, "time": f"{self._clock():.3f}"}, post=True)
        if data.get("resultType") != "vector":
            raise errors.SourceError(f"query {expr!r} returned {data.get('resultType')}, expected a vector")
        return list(data["result"])

    def head_stats(self) -> dict[str, float] | None:
        """TSDB head stats when the backend offers them (Prometheus does; others may not)."""
        try:
            data = self._api("status/tsdb")
        except errors.SourceUnreachable:
            raise
        except errors.SourceError:
            return None
        head = data.get("headStats") or {}
        return {k: float(v) for k, v in head.items() if isinstance(v, (int, float))} or None

    def metadata(self) -> dict[str, str]:
        """metric name -> type from /api/v1/metadata; empty when the backend lacks it."""
        try:
            data = self._api("metadata")
        except errors.SourceUnreachable:
            raise
        except errors.SourceError:
            return {}
        types: dict[str, str] = {}
        for name, entries in data.items():
            if entries:
                types[name] = entries[0].get("type", "unknown")
        return types

    def rules(self) -> dict[str, Any]:
        """/api/v1/rules `data`; an empty set when the backend has no rules API."""
        try:
            return dict(self._api("rules"))
        except errors.SourceUnreachable:
            raise
        except errors.SourceError:
            return {"groups": []}

    # ------------------------------------------------------------------------------------ inventory

    def series_counts(self) -> dict[str, int]:
        """Live series per metric name, from one aggregation query."""
        return {r["metric"].get("__name__", ""): int(float(r["value"][1]))
                for r in self.query('count by (__name__) ({__name__=~".+"})')}

    def collect(self, progress: Progress | None = None) -> Inventory:
        """The full inventory: every live series of every metric (within `limits`)."""
        now = self._clock()
        counts = self.series_counts()
        total = sum(counts.values())
        if total > self.limits.max_series_total:
            raise errors.InventoryTooLarge(
                f"Prometheus holds {total} live series, above the bound of {self.limits.max_series_total}; "
                "pass a larger --max-series or narrow with --tier"
            )
        types = self.metadata()
        metrics: dict[str, MetricInventory] = {}
        done = 0
        for chunk in self._chunks(counts):
            fetched = self._fetch(chunk)
            for name in chunk:
                metrics[name] = MetricInventory.of(name, fetched.get(name, ()), _type_of(name, types))
                done += counts[name]
            if progress:
                progress(done, total)
        for name, n in counts.items():
            if name not in metrics:  # too big for an exact set: keep the count, say so
                metrics[name] = MetricInventory(name, frozenset(), n, _type_of(name, types), truncated=True)
                done += n
        if progress:
            progress(total, total)
        return Inventory(metrics, self.describe(), now, self.head_stats())

    def _chunks(self, counts: dict[str, int]) -> Iterator[list[str]]:
        chunk: list[str] = []
        size = 0
        for name in sorted(counts):
            n = counts[name]
            if n > self.limits.max_series_per_metric:
                continue
            if chunk and size + n > self.limits.chunk_series:
                yield chunk
                chunk, size = [], 0
            chunk.append(name)
            size += n
        if chunk:
            yield chunk

    def _fetch(self, names: list[str]) -> dict[str, set]:
        regex = "|".join(re.escape(n) for n in names)
        out: dict[str, set] = {}
        for r in self.query(f'{{__name__=~"{_promql_string(regex)}"}}'):
            labels = r["metric"]
            out.setdefault(labels.get("__name__", ""), set()).add(label_set(labels))
        return out


def _promql_string(s: str) -> str:
    """Escape for a double-quoted PromQL string literal."""
    return s.replace("\\", "\\\\").replace('"', '\\"')


_SUFFIX_TYPES = (("_bucket", "histogram"), ("_count", None), ("_sum", None), ("_total", "counter"))


def _type_of(name: str, types: dict[str, str]) -> str | None:
    """Metadata is keyed by family name (`foo` for `foo_bucket`); try the name, then its family."""
    if name in types:
        return types[name]
    for suffix, _ in _SUFFIX_TYPES:
        if name.endswith(suffix) and name[: -len(suffix)] in types:
            return types[name[: -len(suffix)]]
    return None

