"""What went wrong reading the probes' maps at scrape, per probe and family: counted, logged
sparingly, never raised (agent/metrics/collectors.py carries on with the other families).

Two kinds, two self-metrics:

- `bcgov_agent_scrape_errors_total{probe,family}`: scrapes at which a family could not be read
  (its map missing, a value of the wrong shape); that family is left out of that scrape, the rest
  is served. The load-time check (agent/kernel/declared_maps.py) refuses most such probes before
  they run; this is what is left (e.g. a map BCC cannot read on this kernel).
- `bcgov_agent_undecoded_keys_total{probe,family}`: drained map keys whose labels could not be
  decoded. Their counts are kept, in the family's `__overflow__` series (the series guard's), so
  the family's total stays exact and no label value is made up from input the decoders refused.

Each (probe, family, kind) is logged the first time, then at most once per `every_s`, with how
many there were meanwhile, so a failing family costs one line a minute, not one per scrape.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, Metric

log = logging.getLogger("bcgov.agent.metrics")

LOG_EVERY_S = 60.0
_TEXT_MAX = 300  # an exception's text in a log line: enough to name the map or field, no more


class ScrapeErrors:
    """Counts of failed family reads and undecoded keys, by (probe, family); not thread-safe (the
    collector calls it under its scrape lock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, every_s: float = LOG_EVERY_S) -> None:
        self._clock = clock
        self._every_s = every_s
        self.failed_reads: dict[tuple[str, str], int] = defaultdict(int)
        self.undecoded_keys: dict[tuple[str, str], int] = defaultdict(int)
        self._logged_at: dict[tuple[str, str, str], float] = {}
        self._unlogged: dict[tuple[str, str, str], int] = defaultdict(int)

    def read_failed(self, probe: str, family: str, exc: BaseException) -> None:
        """`family` of `probe` could not be read this scrape (left out of it)."""
        self.failed_reads[(probe, family)] += 1
        self._log(probe, family, "read", 1, "left out of the scrape", exc)

    def undecoded(self, probe: str, family: str, n: int, exc: BaseException) -> None:
        """`n` drained keys of `family` whose labels could not be decoded (counted in its overflow series)."""
        self.undecoded_keys[(probe, family)] += n
        self._log(probe, family, "decode", n, "map keys whose labels cannot be decoded, counted in its __overflow__ series",
                  exc)

    def _log(self, probe: str, family: str, kind: str, n: int, what: str, exc: BaseException) -> None:
        key = (probe, family, kind)
        now = self._clock()
        last = self._logged_at.get(key)
        if last is not None and now - last < self._every_s:
            self._unlogged[key] += n
            return
        self._logged_at[key] = now
        text = f"{type(exc).__name__}: {exc}"[:_TEXT_MAX]
        since = self._unlogged.pop(key, 0)
        log.error("probe %s, family %s: %s: %s%s", probe, family, what, text,
                  f" ({since} more since the last line)" if since else "")

    def families(self) -> Iterable[Metric]:
        """The two counters (see the module docstring)."""
        for name, doc, counts in (
            ("bcgov_agent_scrape_errors", "Scrapes at which a probe's metric family could not be read (left out of that "
             "scrape; the log names the cause).", self.failed_reads),
            ("bcgov_agent_undecoded_keys", "Drained map keys whose labels could not be decoded; their counts are in the "
             "family's __overflow__ series.", self.undecoded_keys),
        ):
            fam = CounterMetricFamily(name, doc, labels=["probe", "family"])
            for (probe, family), n in sorted(counts.items()):
                fam.add_metric([probe, family], float(n))
            yield fam
