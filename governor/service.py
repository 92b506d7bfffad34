"""`bcgov governor run`: evaluate on a schedule, expose `bcgov_governor_*`, push alerts.

Survives its source being down: a failed evaluation is logged and counted, the last good report is
kept and exported with `bcgov_governor_stale 1`, and the next attempt comes after a backoff that
grows to the interval. The metrics are built fresh on every scrape from the current state (a
custom collector, no global registry), and are themselves bounded: top N metrics and labels per tier.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.redaction.url_credentials import display_url
from governor import alerts, errors, evaluation
from governor.analysis import Report
from governor.budgets import Budgets
from governor.history import History
from governor.sources import Source

log = logging.getLogger("bcgov.governor")
MIN_BACKOFF_SECONDS = 1.0


@dataclasses.dataclass
class State:
    report: Report | None = None
    source_up: bool = False
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    last_duration: float = 0.0
    consecutive_failures: int = 0
    evaluations: dict[str, int] = dataclasses.field(default_factory=lambda: {"success": 0, "error": 0})
    alert_push_errors: int = 0


class GovernorCollector:
    """Builds the governor's metric families from the current `State` at scrape time."""

    def __init__(self, state: Callable[[], State], budgets: Budgets, stale_after_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._state = state
        self._budgets = budgets
        self._stale_after = stale_after_seconds
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        st = self._state()
        tier_series = GaugeMetricFamily("bcgov_governor_tier_series", "Active series per tier at the last successful evaluation.", labels=["tier"])
        tier_budget = GaugeMetricFamily("bcgov_governor_tier_budget_series", "Series budget (max_series) per tier.", labels=["tier"])
        metric_series = GaugeMetricFamily("bcgov_governor_metric_series", "Series of the top metrics per tier.", labels=["tier", "metric"])
        label_values = GaugeMetricFamily("bcgov_governor_label_values", "Distinct values of the top labels per tier.", labels=["tier", "metric", "label"])
        tier_last = GaugeMetricFamily("bcgov_governor_tier_last_success_timestamp_seconds", "When each tier was last evaluated successfully.", labels=["tier"])
        for name, tier in self._budgets.tiers.items():
            tier_budget.add_metric([name], tier.max_series)
        if st.report is not None:
            for t in st.report.tiers:
                tier_series.add_metric([t.name], t.series)
                if st.last_success is not None:
                    tier_last.add_metric([t.name], st.last_success)
                for m in t.top_metrics:
                    metric_series.add_metric([t.name, m.name], m.series)
                for c in t.top_labels:
                    label_values.add_metric([t.name, c.metric, c.label], c.distinct_values)
        yield from (tier_series, tier_budget, metric_series, label_values, tier_last)
        yield GaugeMetricFamily("bcgov_governor_source_up", "1 if the last evaluation could read the source.", value=1 if st.source_up else 0)
        yield GaugeMetricFamily("bcgov_governor_stale", "1 if the exported counts are older than stale_after_seconds (or there are none yet).",
                                value=1 if self.is_stale(st) else 0)
        if st.last_success is not None:
            yield GaugeMetricFamily("bcgov_governor_last_success_timestamp_seconds", "Time of the last successful evaluation.", value=st.last_success)
        yield GaugeMetricFamily("bcgov_governor_evaluation_duration_seconds", "Duration of the last evaluation.", value=st.last_duration)
        yield from self._phases(st)
        ev = CounterMetricFamily("bcgov_governor_evaluations", "Evaluations by result.", labels=["result"])
        for result, n in sorted(st.evaluations.items()):
            ev.add_metric([result], n)
        yield ev
        yield CounterMetricFamily("bcgov_governor_alert_push_errors", "Failed pushes to Alertmanager.", value=st.alert_push_errors)

    def _phases(self, st: State) -> Iterable[Metric]:
        """How the last good inventory was collected (governor.twophase): each phase's duration,
        and how many series and metrics were enumerated exactly or taken from statistics."""
        p = st.report.phases if st.report is not None else None
        if p is None:
            return
        dur = GaugeMetricFamily("bcgov_governor_inventory_phase_duration_seconds",
                                "Duration of each inventory phase at the last successful evaluation: statistics "
                                "(the backend's cardinality API) and enumeration (exact series).", labels=["phase"])
        dur.add_metric(["statistics"], p.statistics_seconds)
        dur.add_metric(["enumeration"], p.enumeration_seconds)
        yield dur
        series = GaugeMetricFamily("bcgov_governor_inventory_series",
                                   "Series at the last successful evaluation by how they were counted: enumerated "
                                   "(exact), estimated (the backend's statistics) or count_query (exact, not fetched).", labels=["counted"])
        series.add_metric(["enumerated"], p.enumerated_series)
        series.add_metric(["estimated"], p.estimated_series)
        series.add_metric(["count_query"], p.counted_series)
        yield series
        metrics = GaugeMetricFamily("bcgov_governor_inventory_metrics",
                                    "Metric names at the last successful evaluation by how they were counted.", labels=["counted"])
        metrics.add_metric(["enumerated"], p.enumerated_metrics)
        metrics.add_metric(["estimated"], p.estimated_metrics)
        metrics.add_metric(["count_query"], p.counted_metrics)
        yield metrics

    def is_stale(self, st: State) -> bool:
        """Stale once the last good counts are older than `stale_after_seconds`; one failed
        evaluation is not stale (`bcgov_governor_source_up` says the source is down)."""
        if st.last_success is None:
            return True
        return self._clock() - st.last_success > self._stale_after


class Governor:
    """The evaluation loop. Construct, `register(registry)`, then `run(stop)` or `evaluate_once()`."""

    def __init__(self, source: Source, budgets: Budgets, interval_seconds: float = 60.0, history: History | None = None,
                 usage: evaluation.UsageOptions | None = None, pusher: alerts.AlertmanagerPusher | None = None,
                 runbook_base_url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.budgets = budgets
        self.interval_seconds = interval_seconds
        self.history = history
        self.usage = usage or evaluation.UsageOptions(rules=False)
        self.pusher = pusher
        self.runbook_base_url = runbook_base_url
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State()
        self.stale_after_seconds = max(budgets.defaults.stale_after_seconds, 3 * interval_seconds)
        self.collector = GovernorCollector(self.state, budgets, self.stale_after_seconds, clock)

    def state(self) -> State:
        with self._lock:
            return dataclasses.replace(self._state, evaluations=dict(self._state.evaluations))

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.collector)

    def evaluate_once(self) -> bool:
        """One evaluation; never raises for source or push problems (they are logged and counted)."""
        started = self._clock()
        try:
            ev = evaluation.evaluate(self.source, self.budgets, self.history, self.usage)
        except errors.GovernorError as exc:
            with self._lock:
                st = self._state
                st.source_up = False
                st.last_attempt = started
                st.last_error = display_url(str(exc))
                st.consecutive_failures += 1
                st.evaluations["error"] += 1
                st.last_duration = self._clock() - started
            log.warning("evaluation failed (%d in a row), keeping the last good state: %s", self._state.consecutive_failures,
                        display_url(str(exc)))
            self._push(None)
            return False
        with self._lock:
            st = self._state
            st.report = ev.report
            st.source_up = True
            st.last_success = st.last_attempt = started
            st.last_error = None
            st.consecutive_failures = 0
            st.evaluations["success"] += 1
            st.last_duration = self._clock() - started
        log.info("evaluated %d series from %s: %s", ev.report.total_series, ev.report.source, ev.report.worst_status())
        self._push(ev.report)
        return True

    def _push(self, report: Report | None) -> None:
        if self.pusher is None:
            return
        st = self.state()
        # Like the generated rule: alert on missing data only once it is overdue, not on one failure.
        overdue = st.last_success is None or self._clock() - st.last_success > self.stale_after_seconds
        stale = set(self.budgets.tiers) if overdue else set()
        try:
            self.pusher.push(alerts.evaluate(st.report if report is None else report, self.budgets, stale, self.runbook_base_url))
        except errors.AlertPushError as exc:
            with self._lock:
                self._state.alert_push_errors += 1
            log.warning("alert push failed: %s", display_url(str(exc)))  # it may quote the Alertmanager URL

    def next_delay(self) -> float:
        """The interval after a success; after failures a backoff doubling up to the interval."""
        n = self._state.consecutive_failures
        if n == 0:
            return self.interval_seconds
        return min(self.interval_seconds, MIN_BACKOFF_SECONDS * 2 ** (n - 1))

    def run(self, stop: threading.Event, max_evaluations: int | None = None) -> None:
        """Evaluate until `stop` is set (or `max_evaluations` were done)."""
        done = 0
        while not stop.is_set():
            self.evaluate_once()
            done += 1
            if max_evaluations is not None and done >= max_evaluations:
                return
            stop.wait(self.next_delay())
