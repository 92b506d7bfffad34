"""Inventory from any Prometheus-compatible HTTP API (Prometheus, Mimir, VictoriaMetrics, Thanos).

Live series are what an instant query returns (5 minute lookback, staleness aware). We do not use
`/api/v1/series` for the series set: seen on Prometheus 2.42, it keeps returning series that went
stale minutes ago while they are still in the head, which would overstate the count and break the
"savings are exact" promise once a relabel rule takes effect.

One collection is one pass over the live series, at one evaluation time for every query:
metric names come from the label index (`/api/v1/label/__name__/values` over the last
`NAMES_WINDOW_S`, cheap: no samples are read), then whole metrics are fetched with instant queries,
a few names per request and `Limits.parallel` requests in flight, so Prometheus (multi-core)
encodes the next answer while this process parses the last. Measured on a 1M-series TSDB (bench/):
every PromQL pass over all series costs Prometheus about 4-7 s there, so exact aggregations in
PromQL (`count by (L)`, `count(count without (L) (M))`: two passes per label) cost more than this
one fetch, and an up-front `count by (__name__)` pass would add 7 s; counts come from the fetch.

Work is bounded: the running total is checked after every answer (above `max_series_total` the
collection stops with an error naming the flag), and a metric larger than `max_series_per_metric`
keeps only its count (marked truncated: not analysed). With no count pass up front, such a metric is
fetched once to be counted: that bound limits analysis, while memory is held by the total bound and
`http.MAX_BODY_BYTES` per answer.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agent.redaction.url_credentials import display_url
from governor import errors, exposition, http
from governor.inventory import Inventory, MetricInventory, Phases, label_set

if TYPE_CHECKING:
    from governor.budgets import Budgets

Progress = Callable[[int, int], None]  # (requests answered so far, requests in all)

# Metric names are read from the index over this window before the evaluation time. Prometheus'
# default lookback is 5 minutes; a name whose newest sample is older than this is not live under
# any usual lookback. Names that have no live series are simply absent from the answers.
NAMES_WINDOW_S = 3600.0
# A metric this big (by the backend's statistics) is fetched in shards (see enumerate()).
SHARD_MIN_SERIES = 20_000
AUTO, ENUMERATE = "auto", "enumerate"  # --backend: detect the statistics API; use none (enumerate all)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on one collection; defaults suit a homelab Prometheus with a few million series.

    `names_per_request` caps the metric names in one query (small metrics share a request; with
    few names each metric gets its own so requests can run in parallel); `parallel` is the number
    of requests in flight."""

    names_per_request: int = 25
    parallel: int = 3
    max_series_per_metric: int = 500_000
    max_series_total: int = 5_000_000
    # Two-phase inventories only above this many series (by the backend's statistics): below it
    # enumerating everything is cheap and every figure is exact.
    enumerate_below: int = 200_000


class PrometheusSource:
    """Collects an `Inventory` from a Prometheus HTTP API at `base_url`."""

    def __init__(self, base_url: str, options: http.HttpOptions | None = None, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time, backend: str = AUTO) -> None:
        if not re.match(r"https?://[^/?#\s]+", base_url):
            raise errors.UsageError(f"--prometheus {base_url!r} is not an http(s) URL; pass the API base URL, e.g. http://host:9090")
        self.base_url = base_url.rstrip("/")
        self.limits = limits or Limits()
        self.backend = backend  # AUTO, ENUMERATE or one of governor.cardinality.BACKENDS
        self._clock = clock
        self._options = options or http.HttpOptions()
        # One HTTP session per thread: requests.Session is not documented as thread-safe.
        self._local = threading.local()
        self._clients: list[http.Http] = []
        self._clients_lock = threading.Lock()

    @property
    def _http(self) -> http.Http:
        client = getattr(self._local, "http", None)
        if client is None:
            client = http.Http(self._options, "Prometheus", "check that it is running and the URL is right, or pass --prometheus URL")
            self._local.http = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def describe(self) -> str:
        return f"prometheus {display_url(self.base_url)}"  # credentials in the URL are never shown

    def now(self) -> float:
        """The evaluation time of a collection started now (Unix seconds)."""
        return self._clock()

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    # ------------------------------------------------------------------------------------ API calls

    def _api(self, path: str, params: dict[str, Any] | None = None, post: bool = False) -> Any:
        url = f"{self.base_url}/api/v1/{path}"
        # POST keeps long match expressions out of the URL (proxies cap URL length).
        resp = self._http.send("POST", url, data=params) if post else self._http.send("GET", url, params=params)
        try:
            body = json.loads(resp.content)
        except ValueError as exc:
            if resp.status_code >= 500 or resp.status_code == 429:  # a server in trouble, not a wrong URL
                raise errors.SourceError(http.status_problem(f"Prometheus API {url}", resp.status_code, self._options.retries)) from exc
            raise errors.SourceError(
                f"{url} did not answer JSON (HTTP {resp.status_code}: {errors.bounded(resp.text, 120)}); "
                "is this a Prometheus-compatible API? --prometheus wants the base URL, e.g. http://host:9090"
            ) from exc
        if body.get("status") != "success":
            raise errors.SourceError(f"{url} failed: {errors.bounded(body.get('error') or body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query at `at` (default: now); the result vector."""
        data = self._api("query", {"query": expr, "time": f"{self._clock() if at is None else at:.3f}"}, post=True)
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

    def metric_names(self, at: float) -> list[str]:
        """Names in the label index over `NAMES_WINDOW_S` before `at`; a superset of the live ones."""
        params = {"start": f"{at - NAMES_WINDOW_S:.3f}", "end": f"{at:.3f}"}
        return sorted(str(n) for n in self._api("label/__name__/values", params))

    def collect(self, progress: Progress | None = None, budgets: Budgets | None = None) -> Inventory:
        """The inventory at one evaluation time (within `limits`). With `budgets` and a backend
        that keeps cardinality statistics, in two phases (governor.twophase): statistics first,
        then exact enumeration of the metrics at risk only; else every live series of every metric."""
        if budgets is not None and self.backend != ENUMERATE:
            from governor import twophase  # imports this module

            return twophase.collect(self, budgets, progress)
        at = self._clock()
        started = time.monotonic()
        names = self.metric_names(at)
        metrics = self.enumerate(names, at, self.metadata(), progress)
        inv = self.inventory(metrics, at)
        if budgets is None:  # a plain inventory (library use): nothing to say about phases
            return inv
        n = sum(m.count for m in metrics.values())
        inv.phases = Phases(backend=None, statistics=None, meaning=None, statistics_seconds=0.0,
                            enumeration_seconds=time.monotonic() - started, enumerated_metrics=len(metrics),
                            enumerated_series=n, estimated_metrics=0, estimated_series=0,
                            note="--backend enumerate: every series enumerated")
        return inv

    def inventory(self, metrics: dict[str, MetricInventory], at: float) -> Inventory:
        """An `Inventory` of `metrics` collected at `at`, with families inferred and head stats."""
        exposition.infer_families(metrics)  # backends without metadata (VictoriaMetrics) give no types
        warnings = [] if metrics else [f"{self.describe()} holds no live series (none in the last 5 minutes): "
                                       "is it scraping anything, and is this the right server or tenant?"]
        return Inventory(metrics, self.describe(), at, self.head_stats(), warnings)

    def enumerate(self, names: list[str], at: float, types: dict[str, str], progress: Progress | None = None,
                  already: int = 0, sizes: dict[str, int] | None = None) -> dict[str, MetricInventory]:
        """Every live series of the metrics `names` at `at`, exactly; metrics with no live series
        are absent. `already` series counted elsewhere count against `limits.max_series_total`.
        A metric that `sizes` (a count from statistics) puts at `SHARD_MIN_SERIES` or more is
        fetched in `limits.parallel` shards by the values of its most varied label, so the backend
        encodes them on several cores while this process parses."""
        metrics: dict[str, MetricInventory] = {}
        big = {n for n in names if sizes and sizes.get(n, 0) >= SHARD_MIN_SERIES}
        selectors = [_names_selector(b) for b in self._batches([n for n in names if n not in big])]
        for name in sorted(big):
            selectors += self._shards(name, at)
        partial: dict[str, set] = {}  # sharded metrics, until every shard has answered
        total = already
        for done, fetched in enumerate(self._fetch_all(selectors, at), 1):
            for name, series in fetched.items():
                total += len(series)
                if total > self.limits.max_series_total:
                    raise errors.InventoryTooLarge(
                        f"Prometheus holds more than {self.limits.max_series_total} live series; "
                        "pass a larger --max-series or narrow with --tier"
                    )
                if name in big:
                    partial.setdefault(name, set()).update(series)
                else:
                    metrics[name] = self._metric(name, series, types)
            if progress:
                progress(done, len(selectors))
        for name, series in partial.items():
            metrics[name] = self._metric(name, series, types)
        return metrics

    def _metric(self, name: str, series: set, types: dict[str, str]) -> MetricInventory:
        type_, family = exposition.family_of(name, types)
        if len(series) > self.limits.max_series_per_metric:  # too big to analyse: keep the count, say so
            return MetricInventory(name, frozenset(), len(series), type_, truncated=True, family=family)
        m = MetricInventory.of(name, series, type_, family)
        # Every analysis needs these counts; computed here they overlap the requests still in
        # flight instead of running after the last answer.
        m.all_value_counts()
        return m

    def _shards(self, name: str, at: float) -> list[str]:
        """Selectors that together select every series of `name` once: its most varied label's
        values in `limits.parallel` groups, and the series without that label (index lookups only)."""
        match = f'{{__name__="{name}"}}'
        labels = [lb for lb in self._api("labels", {"match[]": match, "start": f"{at - NAMES_WINDOW_S:.3f}", "end": f"{at:.3f}"})
                  if lb != "__name__"]
        best, values = "", list[str]()
        for lb in labels:
            v = self.label_values(lb, match, at)
            if len(v) > len(values):
                best, values = lb, v
        k = min(self.limits.parallel, len(values))
        if k < 2:
            return [match]
        groups = [values[i::k] for i in range(k)]
        out = [f'{{__name__="{name}",{best}=~"{_promql_string("|".join(re.escape(v) for v in g))}"}}' for g in groups]
        return out + [f'{{__name__="{name}",{best}=""}}']

    def count_by_name(self, names: list[str], at: float) -> dict[str, int]:
        """Live series of each of `names` at `at`, exactly, without fetching them: one PromQL
        `count by (__name__)` per batch of names. Metrics with no live series are absent."""
        out: dict[str, int] = {}
        per = 200
        for i in range(0, len(names), per):
            regex = "|".join(re.escape(n) for n in names[i: i + per])
            for r in self.query(f'count by (__name__) ({{__name__=~"{_promql_string(regex)}"}})', at):
                out[r["metric"].get("__name__", "")] = int(float(r["value"][1]))
        return out

    def label_values(self, label: str, match: str | None, at: float) -> list[str]:
        """Values of `label` in the label index over `NAMES_WINDOW_S` before `at`, of the series
        `match` selects (all when None): an index lookup, no samples read, a superset of the live."""
        params: dict[str, Any] = {"start": f"{at - NAMES_WINDOW_S:.3f}", "end": f"{at:.3f}"}
        if match is not None:
            params["match[]"] = match
        return [str(v) for v in self._api(f"label/{label}/values", params)]

    def label_names(self, at: float) -> list[str]:
        """Label names in the index over `NAMES_WINDOW_S` before `at`."""
        return [str(v) for v in self._api("labels", {"start": f"{at - NAMES_WINDOW_S:.3f}", "end": f"{at:.3f}"})]

    def get(self, path: str, params: dict[str, Any], enveloped: bool) -> Any:
        """GET `/api/v1/<path>`: the `data` of a Prometheus-style answer when `enveloped`, else
        the whole JSON body (Mimir's cardinality API has no envelope)."""
        if enveloped:
            return self._api(path, params)
        url = f"{self.base_url}/api/v1/{path}"
        resp = self._http.send("GET", url, params=params)
        try:
            return json.loads(resp.content)
        except ValueError as exc:
            raise errors.SourceError(f"{url} did not answer JSON (HTTP {resp.status_code}: {errors.bounded(resp.text, 120)})") from exc

    def _per_request(self, n_names: int) -> int:
        # Enough requests to keep `parallel` busy (and answers small), never more names than the cap.
        return max(1, min(self.limits.names_per_request, n_names // (8 * self.limits.parallel)))

    def _batches(self, names: list[str]) -> Iterator[list[str]]:
        per = self._per_request(len(names))
        for i in range(0, len(names), per):
            yield names[i: i + per]

    def _fetch_all(self, batches: list[str], at: float) -> Iterator[dict[str, set]]:
        """Answers of the selectors `batches` in order, at most `parallel` requests (and parsed answers) pending,
        so memory stays at the inventory plus a few answers."""
        with concurrent.futures.ThreadPoolExecutor(self.limits.parallel, thread_name_prefix="bcgov-promapi") as pool:
            pending: collections.deque[concurrent.futures.Future[dict[str, set]]] = collections.deque()
            it = iter(batches)
            try:
                for batch in it:
                    pending.append(pool.submit(self._fetch, batch, at))
                    if len(pending) >= self.limits.parallel:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for f in pending:
                    f.cancel()

    def _fetch(self, selector: str, at: float) -> dict[str, set]:
        out: dict[str, set] = {}
        for r in self.query(selector, at):
            labels = r["metric"]  # ours to change: parsed for this call only
            name = labels.pop("__name__", "")
            series = out.get(name)
            if series is None:
                series = out[name] = set()
            # label_set() without its per-pair filter: ~30% less per series at 1M; Prometheus stores
            # no empty values, but another backend might send one.
            series.add(tuple(sorted(labels.items())) if "" not in labels.values() else label_set(labels))
        return out


def _names_selector(names: list[str]) -> str:
    return f'{{__name__=~"{_promql_string("|".join(re.escape(n) for n in names))}"}}'


def _promql_string(s: str) -> str:
    """Escape for a double-quoted PromQL string literal."""
    return s.replace("\\", "\\\\").replace('"', '\\"')
