"""The series guard: budgets, first-come admission, one overflow series, exact sums, counting,
release; on real prometheus_client families and exposition."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from agent.config import AgentConfig, ConfigError
from agent.identity.enricher import Enricher
from agent.metrics.collectors import ProbeMetrics
from agent.metrics.series_guard import OVERFLOW, GuardedView, SeriesGuard
from probes import registry
from probes.latency_hist import hist_slot


def _series(view: GuardedView, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Exposed samples of one family (by sample name + labels), parsed back from the text format."""
    out = {}
    for fam in text_string_to_metric_families(generate_latest(view).decode()):
        if fam.name == family:
            for s in fam.samples:
                out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def test_first_come_first_served_then_one_overflow_series() -> None:
    g = SeriesGuard(default_budget=3)
    names = ("peer",)
    assert [g.admit("m", names, (p,)) for p in "abc"] == [("a",), ("b",), ("c",)]
    assert g.admit("m", names, ("d",)) == (OVERFLOW,)
    assert g.admit("m", names, ("a",)) == ("a",)  # admitted ones stay admitted
    assert g.admit("m", names, ("e",)) == (OVERFLOW,)
    assert g.admit("m", names, ("d",)) == (OVERFLOW,)  # and refused ones stay refused
    assert g.admitted("m") == 3
    assert g.overflow_count("m") == 2  # distinct label sets folded: d and e
    assert g.admit("other", names, ("d",)) == ("d",)  # budgets are per family


def test_per_metric_budgets_accept_the_total_suffix() -> None:
    g = SeriesGuard(default_budget=100, budgets={"bcgov_tcp_resets_total": 1})
    assert g.budget("bcgov_tcp_resets") == 1 and g.budget("bcgov_tcp_resets_total") == 1
    assert g.budget("bcgov_oom_kills") == 100
    g.admit("bcgov_tcp_resets", ("d",), ("sent",))
    assert g.admit("bcgov_tcp_resets", ("d",), ("received",)) == (OVERFLOW,)


def test_folded_memory_is_bounded_and_only_ever_over_counts() -> None:
    g = SeriesGuard(default_budget=1, folded_memory=2)
    g.admit("m", ("x",), ("kept",))
    for v in ("a", "b", "a", "c"):  # a is remembered when seen again; c evicts the least recent, b
        g.admit("m", ("x",), (v,))
    assert g.overflow_count("m") == 3
    g.admit("m", ("x",), ("b",))  # b fell out of the 2-entry memory: counted again
    assert g.overflow_count("m") == 4


def test_exposition_folds_counters_and_histograms_exactly() -> None:
    class Source:
        def collect(self):
            c = CounterMetricFamily("bcgov_x", "x", labels=["peer"])
            for i in range(5):
                c.add_metric([f"p{i}"], float(i + 1))
            h = HistogramMetricFamily("bcgov_h_seconds", "h", labels=["peer"])
            for i in range(4):
                h.add_metric([f"p{i}"], buckets=[("0.1", 1.0), ("1.0", 2.0 + i), ("+Inf", 3.0 + i)], sum_value=1.5 * (i + 1))
            yield c
            yield h

    reg = CollectorRegistry()
    reg.register(Source())
    guard = SeriesGuard(default_budget=2)
    view = GuardedView(reg, guard)
    counters = _series(view, "bcgov_x")
    assert counters == {
        ("bcgov_x_total", ("peer", "p0")): 1.0,
        ("bcgov_x_total", ("peer", "p1")): 2.0,
        ("bcgov_x_total", ("peer", OVERFLOW)): 3.0 + 4.0 + 5.0,
    }
    hist = _series(view, "bcgov_h_seconds")
    ovf = {k: v for k, v in hist.items() if ("peer", OVERFLOW) in k}
    assert ovf == {
        ("bcgov_h_seconds_bucket", ("le", "0.1"), ("peer", OVERFLOW)): 2.0,
        ("bcgov_h_seconds_bucket", ("le", "1.0"), ("peer", OVERFLOW)): 4.0 + 5.0,
        ("bcgov_h_seconds_bucket", ("le", "+Inf"), ("peer", OVERFLOW)): 5.0 + 6.0,
        ("bcgov_h_seconds_count", ("peer", OVERFLOW)): 5.0 + 6.0,
        ("bcgov_h_seconds_sum", ("peer", OVERFLOW)): 4.5 + 6.0,
    }
    assert len({k[1:] for k in hist if k[0] == "bcgov_h_seconds_count"}) == 3  # budget + 1 series
    _series(view, "bcgov_x")  # scraping again folds the same label sets: not counted twice
    assert guard.overflow_count("bcgov_x") == 3 and guard.overflow_count("bcgov_h_seconds") == 2
    own = _series(GuardedView(guard, SeriesGuard()), "bcgov_agent_series_overflow")
    assert own == {
        ("bcgov_agent_series_overflow_total", ("metric", "bcgov_h_seconds")): 2.0,
        ("bcgov_agent_series_overflow_total", ("metric", "bcgov_x")): 3.0,
    }


class _Durations(Collector):
    """The duration histogram's cumulative state as exported (the kernel drain is tested on the
    real kernel in test_duration_exact_ebpf.py)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Any:
        yield self.state.family()


def test_duration_histogram_folds_at_the_source_and_the_view_merges_nothing_twice() -> None:
    class ByPeer(Enricher):
        label_names = ("workload",)

    reg = CollectorRegistry()
    guard = SeriesGuard(default_budget=10, budgets={"bcgov_tcp_connection_duration_seconds": 2})
    durations = ProbeMetrics(registry.ALL, {}, ByPeer(), guard=guard).state("bcgov_tcp_connection_duration_seconds")
    reg.register(_Durations(durations))
    for i in range(7):  # drained kernel deltas: one connection of (i + 1) ms each
        slots = [0] * durations.slot_count
        slots[hist_slot((i + 1) * 1_000_000, durations.slot_count)] = 1
        durations.add(("active", "normal", f"w{i}"), slots, (i + 1) * 1_000_000)
    view = GuardedView(reg, guard)
    counts = {k: v for k, v in _series(view, "bcgov_tcp_connection_duration_seconds").items()
              if k[0] == "bcgov_tcp_connection_duration_seconds_count"}
    assert counts == {
        ("bcgov_tcp_connection_duration_seconds_count", ("direction", "active"), ("outcome", "normal"), ("workload", "w0")): 1.0,
        ("bcgov_tcp_connection_duration_seconds_count", ("direction", "active"), ("outcome", "normal"), ("workload", "w1")): 1.0,
        ("bcgov_tcp_connection_duration_seconds_count", ("direction", OVERFLOW), ("outcome", OVERFLOW), ("workload", OVERFLOW)): 5.0,
    }
    assert guard.overflow_count("bcgov_tcp_connection_duration_seconds") == 5


def test_release_frees_slots_for_new_label_sets() -> None:
    g = SeriesGuard(default_budget=2)
    names = ("namespace", "workload")
    g.admit("m", names, ("a", "w1"))
    g.admit("m", names, ("b", "w2"))
    assert g.admit("m", names, ("c", "w3")) == (OVERFLOW, OVERFLOW)
    released = g.release_matching(lambda labels: labels["namespace"] == "a")
    assert released == {"m": [("a", "w1")]}
    assert g.admit("m", names, ("c", "w3")) == ("c", "w3")
    assert g.admitted("m") == 2


def test_registry_counters_outside_the_agent_are_guarded_too() -> None:
    reg = CollectorRegistry()
    c = Counter("bcgov_other", "o", ["k"], registry=reg)
    for i in range(4):
        c.labels(str(i)).inc()
    view = GuardedView(reg, SeriesGuard(budgets={"bcgov_other": 1}))
    totals = {k: v for k, v in _series(view, "bcgov_other").items() if k[0] == "bcgov_other_total"}
    assert totals == {("bcgov_other_total", ("k", "0")): 1.0, ("bcgov_other_total", ("k", OVERFLOW)): 3.0}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"series_budget_default": 0}, "series_budget_default must be an integer >= 1"),
        ({"series_budgets": {"bcgov_tcp_resets": -1}}, "series_budgets.bcgov_tcp_resets must be an integer >= 1"),
        ({"series_budgets": {"bad name": 5}}, "'bad name' is not a Prometheus metric name"),
        ({"series_budgets": ["x"]}, "series_budgets must be a mapping"),
        ({"otlp_timeout_seconds": 0.0}, "otlp_timeout_seconds must be within 0..60"),
    ],
)
def test_bad_budget_config_names_the_fix(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        AgentConfig(**fields).validate()
