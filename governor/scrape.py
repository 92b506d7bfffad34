"""Inventory straight from a scrape target's /metrics (Prometheus text or OpenMetrics), so an
exporter can be judged before it reaches Prometheus.

The counts are the series the target exposes; Prometheus would add `job` and `instance` (which do
not change the count for one target) and its five synthetic `up`/`scrape_*` series (not counted).
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client.openmetrics import parser as om_parser
from prometheus_client import parser as text_parser

from governor import errors, http
from governor.inventory import Inventory, MetricInventory, label_set

DEFAULT_AGENT_URL = "http://127.0.0.1:9464/metrics"
_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
# Prometheus does not store OpenMetrics `_created` samples as series in 2.x by default.
_SKIP_OM_SUFFIXES = ("_created",)


class ScrapeSource:
    """Collects an `Inventory` by scraping one exposition URL."""

    def __init__(self, url: str, options: http.HttpOptions | None = None, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self._clock = clock
        what = "the local bcgov agent" if url == DEFAULT_AGENT_URL else "scrape target"
        hint = ("start it with 'bcgov agent run', or pass --prometheus URL or --scrape URL"
                if url == DEFAULT_AGENT_URL else "check that the exporter is running and the URL, or pass another --scrape URL")
        self._http = http.Http(options or http.HttpOptions(), what, hint)

    def describe(self) -> str:
        return f"scrape {self.url}"

    def close(self) -> None:
        self._http.close()

    def collect(self, progress: Callable[[int, int], None] | None = None) -> Inventory:
        resp = self._http.request("GET", self.url, headers={"Accept": _ACCEPT})
        if resp.status_code != 200:
            raise errors.SourceError(f"scrape of {self.url} answered HTTP {resp.status_code}; check the URL path (usually /metrics)")
        inv = parse_exposition(resp.text, resp.headers.get("Content-Type", ""), self.describe(), self._clock())
        if progress:
            progress(inv.total_series, inv.total_series)
        return inv


def parse_exposition(text: str, content_type: str, source: str, now: float) -> Inventory:
    """Parse a text or OpenMetrics exposition into an inventory keyed by sample name."""
    openmetrics = content_type.startswith("application/openmetrics-text")
    try:
        families = list(om_parser.text_string_to_metric_families(text) if openmetrics
                        else text_parser.text_string_to_metric_families(text))
    except ValueError as exc:
        raise errors.SourceError(f"{source}: invalid {'OpenMetrics' if openmetrics else 'text'} exposition: {errors.bounded(exc)}") from exc
    series: dict[str, set] = {}
    types: dict[str, str] = {}
    for fam in families:
        for s in fam.samples:
            if openmetrics and s.name.endswith(_SKIP_OM_SUFFIXES) and s.name != fam.name:
                continue
            series.setdefault(s.name, set()).add(label_set(s.labels))
            types.setdefault(s.name, fam.type)
    metrics = {n: MetricInventory.of(n, ls, types.get(n)) for n, ls in series.items()}
    return Inventory(metrics, source, now)
