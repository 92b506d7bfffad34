"""Picking sources from options: a Prometheus API, scrape targets, or the local agent by default."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from governor import errors, http
from governor.inventory import Inventory
from governor.promapi import AUTO, Limits, PrometheusSource
from governor.scrape import DEFAULT_AGENT_URL, DEFAULT_JOB, ScrapeSource


class Source(Protocol):
    """Anything that can produce an inventory."""

    def describe(self) -> str: ...

    def collect(self, progress: Callable[[int, int], None] | None = None) -> Inventory: ...

    def close(self) -> None: ...


class MultiScrape:
    """Several scrape targets as one source. Each target's series carry its own `instance`, so the
    union per metric counts every target, like Prometheus; `limits.max_series_total` holds for the
    sum of all targets."""

    def __init__(self, sources: Sequence[ScrapeSource], limits: Limits | None = None) -> None:
        self.sources = list(sources)
        self.limits = limits or Limits()

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.sources)

    def collect(self, progress: Callable[[int, int], None] | None = None) -> Inventory:
        inv: Inventory | None = None
        for i, s in enumerate(self.sources):
            part = s.collect()
            inv = part if inv is None else inv.merged(part)
            if inv.total_series > self.limits.max_series_total:
                raise errors.InventoryTooLarge(
                    f"the {len(self.sources)} scrape targets expose more than --max-series {self.limits.max_series_total} series "
                    f"together (after {i + 1} of them); pass a larger --max-series")
            if progress:
                progress(i + 1, len(self.sources))
        assert inv is not None
        return inv

    def close(self) -> None:
        for s in self.sources:
            s.close()


def from_options(prometheus: str | None, scrape: Sequence[str], options: http.HttpOptions,
                 limits: Limits | None = None, job: str = DEFAULT_JOB, backend: str = AUTO) -> Source:
    """The source the flags ask for; with neither flag, the local agent's /metrics. Scrape targets
    are labelled as scrape job `job`; `backend` names the statistics API of `prometheus` (AUTO:
    detected; ENUMERATE: none, every series enumerated)."""
    if prometheus:
        return PrometheusSource(prometheus, options, limits, backend=backend)
    urls = list(scrape) or [DEFAULT_AGENT_URL]
    scrapers = [ScrapeSource(u, options, limits=limits, job=job) for u in urls]
    return scrapers[0] if len(scrapers) == 1 else MultiScrape(scrapers, limits)
