"""Kernel log2 slots -> Prometheus cumulative buckets, and the cumulative per-label state."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from agent.metrics.cumulative import (
    BUCKET_BOUNDS,
    FINITE_SLOTS,
    HistogramState,
    cumulative_buckets,
    slot_upper_bound_seconds,
)
from agent.metrics.series_guard import OVERFLOW, SeriesGuard
from probes.block_io import OPS, dev_major_minor
from probes.latency_hist import HIST_SLOTS, Hist


def _slots(**by_slot: int) -> list[int]:
    out = [0] * HIST_SLOTS
    for k, n in by_slot.items():
        out[int(k[1:])] = n
    return out


@pytest.mark.parametrize("slot, le", [
    (0, 1e-06),          # under 1 us
    (1, 2e-06),          # 1 us
    (10, 0.001024),      # 512..1023 us: below 1.024 ms
    (20, 1.048576),
    (FINITE_SLOTS - 1, 16.777216),
])
def test_slot_upper_bounds_are_powers_of_two_microseconds(slot: int, le: float) -> None:
    assert slot_upper_bound_seconds(slot) == pytest.approx(le, rel=1e-12)


def test_bucket_bounds_are_increasing_and_end_at_inf() -> None:
    assert len(BUCKET_BOUNDS) == HIST_SLOTS and BUCKET_BOUNDS[-1] == "+Inf"
    bounds = [float(b) for b in BUCKET_BOUNDS]
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    assert BUCKET_BOUNDS[:3] == ("1e-06", "2e-06", "4e-06")


def test_cumulative_buckets_sum_up_and_overflow_only_reaches_inf() -> None:
    slots = _slots(s0=1, s3=2, s10=5, **{f"s{HIST_SLOTS - 1}": 7})
    buckets = dict(cumulative_buckets(slots))
    assert buckets["1e-06"] == 1
    assert buckets["4e-06"] == 1 and buckets["8e-06"] == 3
    assert buckets["0.001024"] == 8
    assert buckets[BUCKET_BOUNDS[FINITE_SLOTS - 1]] == 8   # the overflow slot is above every finite le
    assert buckets["+Inf"] == 15


def test_cumulative_buckets_refuse_a_layout_mismatch() -> None:
    with pytest.raises(ValueError, match="HIST_SLOTS"):
        cumulative_buckets([0] * (HIST_SLOTS - 1))


def test_ctypes_mirror_has_one_counter_per_slot_and_the_sum() -> None:
    import ctypes

    assert ctypes.sizeof(Hist) == 8 * (HIST_SLOTS + 1)


class _Families(Collector):
    def __init__(self, state: HistogramState) -> None:
        self.state = state

    def collect(self):
        yield self.state.family()


def test_state_accumulates_drained_deltas_into_a_monotonic_histogram() -> None:
    state = HistogramState("bcgov_runqueue_latency_seconds", "doc", ["workload"])
    state.add(("pg",), _slots(s2=3), 9_000)
    state.add(("pg",), _slots(s2=1, s5=2), 50_000)   # the next scrape's drain
    state.add(("spark",), _slots(s1=1), 1_500)
    reg = CollectorRegistry()
    reg.register(_Families(state))
    text = generate_latest(reg).decode()
    assert 'bcgov_runqueue_latency_seconds_bucket{le="4e-06",workload="pg"} 4.0' in text
    assert 'bcgov_runqueue_latency_seconds_bucket{le="3.2e-05",workload="pg"} 6.0' in text
    assert 'bcgov_runqueue_latency_seconds_count{workload="pg"} 6.0' in text
    assert 'bcgov_runqueue_latency_seconds_sum{workload="pg"} 5.9e-05' in text
    assert 'bcgov_runqueue_latency_seconds_count{workload="spark"} 1.0' in text


def test_state_admits_through_the_guard_and_forgets_released_label_sets() -> None:
    guard = SeriesGuard(default_budget=2)
    state = HistogramState("bcgov_runqueue_latency_seconds", "doc", ["workload"], guard)
    for w in ("a", "b", "c", "d"):
        state.add((w,), _slots(s1=1), 1000)
    assert sorted(state.slots) == [(OVERFLOW,), ("a",), ("b",)]
    assert state.slots[(OVERFLOW,)][1] == 2          # c and d, folded, counted exactly
    assert guard.overflow_count("bcgov_runqueue_latency_seconds") == 2
    released = guard.release_matching(lambda labels: labels["workload"] == "a")
    state.forget(released["bcgov_runqueue_latency_seconds"])
    assert ("a",) not in state.slots and ("a",) not in state.sum_ns


@pytest.mark.parametrize("dev, want", [
    ((254 << 20) | 0, (254, 0)),
    ((7 << 20) | 3, (7, 3)),
    ((259 << 20) | 65537, (259, 65537)),   # minors above 255 (NVMe namespaces, many loops)
])
def test_kernel_dev_t_splits_into_major_minor(dev: int, want: tuple[int, int]) -> None:
    assert dev_major_minor(dev) == want


def test_op_names_cover_the_probe_codes() -> None:
    assert OPS == {0: "read", 1: "write", 2: "discard", 3: "other"}


def test_duration_histogram_has_its_own_slot_count_with_buckets_past_16_seconds() -> None:
    from probes.tcp_lifecycle import DURATION_SLOTS

    slots = [0] * DURATION_SLOTS
    slots[25], slots[DURATION_SLOTS - 1] = 3, 2   # ~33.5 s and beyond the last finite bucket
    buckets = cumulative_buckets(slots, DURATION_SLOTS)
    assert len(buckets) == DURATION_SLOTS and buckets[-1] == ("+Inf", 5.0)
    assert dict(buckets)["33.554432"] == 3.0 and buckets[-2] == ("1073.741824", 3.0)


def test_exemplars_go_to_the_kernels_slot_of_their_duration() -> None:
    from agent.metrics.cumulative import HistogramState
    from agent.metrics.exemplars import DurationExemplars
    from probes.latency_hist import hist_slot
    from probes.tcp_lifecycle import DURATION_SLOTS, DurationKey

    key = DurationKey(direction=1, outcome=0, cgroup_id=7, port=0)
    store = DurationExemplars(max_pending=3)
    # 999 ns -> 0 us: slot 0; 1000 ns -> 1 us: slot 1; 3 us -> slot 2; 4 us -> slot 3; 2 h -> the overflow slot
    for i, ns in enumerate((999, 1000, 3000)):
        store.remember(key, ns, f"{i:032x}", f"{i:016x}")
    store.remember(key, 4000, "f" * 32, "f" * 16)   # a 4th key: over max_pending, skipped
    store.remember(key, 2500, "e" * 32, "e" * 16)   # same slot as 3000: the latest wins
    taken = {slot: ex.labels["trace_id"][0] for _, slot, ex in store.take(DURATION_SLOTS)}
    assert taken == {0: "0", 1: "0", 2: "e"} and store.take(DURATION_SLOTS) == []
    assert [hist_slot(ns, DURATION_SLOTS) for ns in (999, 1000, 3000, 2500)] == [0, 1, 2, 2]  # the store's slots
    store.remember(key, 7200 * 10**9, "a" * 32, "a" * 16)
    ((taken_key, slot, ex),) = store.take(DURATION_SLOTS)
    assert taken_key == key and slot == DURATION_SLOTS - 1 == hist_slot(7200 * 10**9, DURATION_SLOTS) and ex.value == 7200.0

    state = HistogramState("d_seconds", "d", ["direction", "outcome"], slot_count=DURATION_SLOTS)
    kernel = [0] * DURATION_SLOTS
    kernel[DURATION_SLOTS - 1] = 1
    state.attach_exemplar(("active", "normal"), DURATION_SLOTS - 1, ex)   # before its label set is drained: dropped
    assert state.exemplars == {}
    state.add(("active", "normal"), kernel, 7200 * 10**9)
    state.attach_exemplar(("active", "normal"), DURATION_SLOTS - 1, ex)
    inf = [s for s in state.family().samples if s.labels.get("le") == "+Inf"]
    assert [(s.value, s.exemplar) for s in inf] == [(1.0, ex)]


def test_slots_of_two_histograms_share_one_remembered_duration() -> None:
    """Two durations past the 26-slot overflow stay apart for a 32-slot histogram, and fold into
    one (the latest) for a 26-slot one."""
    from agent.metrics.exemplars import DurationExemplars

    store = DurationExemplars()
    store.remember("k", 20 * 10**9, "1" * 32, "1" * 16)   # 20 s: slot 25 of 32, the overflow of 26
    store.remember("k", 40 * 10**9, "2" * 32, "2" * 16)   # 40 s: slot 26 of 32
    ((_, slot, ex),) = store.take(HIST_SLOTS)
    assert slot == HIST_SLOTS - 1 and ex.labels["trace_id"] == "2" * 32
