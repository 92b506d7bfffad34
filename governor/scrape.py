"""Inventory straight from scrape targets' /metrics pages, counted as Prometheus would store them,
so an exporter can be judged before it reaches Prometheus.

Each target's series get the `job` and `instance` labels Prometheus adds (`instance` is the
target's host:port; labels of the same names on the page become `exported_job` and
`exported_instance`, Prometheus' `honor_labels: false`), so several targets never collapse into
one. Prometheus' five synthetic series per target (`up`, `scrape_*`) are not counted.
The page is parsed by `governor.exposition`, which follows Prometheus' own parsers.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable

from agent.redaction.url_credentials import display_url
from governor import errors, exposition, http
from governor.inventory import Inventory, LabelSet, MetricInventory
from governor.promapi import Limits

DEFAULT_AGENT_URL = "http://127.0.0.1:9464/metrics"
DEFAULT_JOB = "scrape"
# The Accept header of Prometheus 2.x scrapes: OpenMetrics first, then the text format.
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
_TARGET_LABELS = ("instance", "job")


def check_url(url: str) -> urllib.parse.SplitResult:
    """A scrape URL must be http(s) with a host; anything else is a usage error naming the fix."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise errors.UsageError(f"--scrape {url!r} is not a valid URL ({exc}); pass e.g. http://host:9100/metrics") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.UsageError(f"--scrape {url!r} is not an http(s) URL with a host; pass e.g. http://host:9100/metrics")
    return parts


def instance_of(parts: urllib.parse.SplitResult) -> str:
    """Prometheus' `instance`: host:port, the scheme's default port added when none is given."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def with_target_labels(labels: LabelSet, job: str, instance: str) -> LabelSet:
    """`labels` as Prometheus stores them from this target (honor_labels: false)."""
    d = dict(labels)
    for name in _TARGET_LABELS:
        if name in d:
            exported = "exported_" + name
            while exported in d:  # Prometheus prefixes again until the name is free
                exported = "exported_" + exported
            d[exported] = d.pop(name)
    d["job"], d["instance"] = job, instance
    return tuple(sorted(d.items()))


class ScrapeSource:
    """Collects an `Inventory` by scraping one exposition URL as scrape job `job`."""

    def __init__(self, url: str, options: http.HttpOptions | None = None, clock: Callable[[], float] = time.time,
                 limits: Limits | None = None, job: str = DEFAULT_JOB) -> None:
        self.url = url
        self.instance = instance_of(check_url(url))
        self.job = job
        self.limits = limits or Limits()
        self._clock = clock
        what = "the local bcgov agent" if url == DEFAULT_AGENT_URL else "scrape target"
        hint = ("start it with 'bcgov agent run', or pass --prometheus URL or --scrape URL"
                if url == DEFAULT_AGENT_URL else "check that the exporter is running and the URL, or pass another --scrape URL")
        self._http = http.Http(options or http.HttpOptions(), what, hint)

    def describe(self) -> str:
        return f"scrape {display_url(self.url)}"  # credentials in the URL are never shown

    def close(self) -> None:
        self._http.close()

    def collect(self, progress: Callable[[int, int], None] | None = None) -> Inventory:
        resp = self._http.send("GET", self.url, headers={"Accept": ACCEPT})
        if resp.status_code != 200:
            raise errors.SourceError(http.status_problem(f"scrape of {self.url}", resp.status_code, self._http.options.retries))
        content_type = resp.headers.get("Content-Type", "")
        inv = inventory_of(resp.content, content_type, self.describe(), self._clock(), self.job, self.instance, self.limits)
        if progress:
            progress(inv.total_series, inv.total_series)
        return inv


def inventory_of(body: bytes, content_type: str, source: str, now: float, job: str = DEFAULT_JOB,
                 instance: str | None = None, limits: Limits | None = None) -> Inventory:
    """An inventory from one page (bytes, decoded as UTF-8), each series with the target labels
    when `instance` is given. Raises SourceError for a page Prometheus would refuse and
    InventoryTooLarge past `limits`."""
    limits = limits or Limits()
    fmt = exposition.format_of(content_type)
    try:
        page = exposition.parse(exposition.decode(body), fmt)
    except exposition.ExpositionError as exc:
        raise errors.SourceError(f"{source}: Prometheus would refuse this {'OpenMetrics' if fmt == exposition.OPENMETRICS else 'text'} "
                                 f"page: {errors.bounded(exc)}") from exc
    if page.total_series > limits.max_series_total:
        raise errors.InventoryTooLarge(f"{source} exposes {page.total_series} series, more than --max-series {limits.max_series_total}; "
                                       "pass a larger --max-series")
    metrics: dict[str, MetricInventory] = {}
    for name, series in page.series.items():
        type_, family = exposition.family_of(name, page.types)
        if instance is not None:
            series = {with_target_labels(s, job, instance) for s in series}
        if len(series) > limits.max_series_per_metric:
            metrics[name] = MetricInventory(name, frozenset(), len(series), type_, truncated=True, family=family)
        else:
            metrics[name] = MetricInventory.of(name, series, type_, family)
    exposition.infer_families(metrics)  # pages without # TYPE lines
    warnings = [] if page.series else [f"{source} answered with no series ({len(body)} bytes): is this the right URL, "
                                       "and is the exporter initialised?"]
    return Inventory(metrics, source, now, warnings=warnings)


def parse_exposition(text: str, content_type: str, source: str, now: float) -> Inventory:
    """An inventory of one page as the exporter exposes it (no target labels): for tests and tools."""
    return inventory_of(text.encode("utf-8", errors="surrogateescape"), content_type, source, now)
