"""Series of deleted pods leave after the grace period: a real PodCache fed watch events, the real
resolver and IdentityEnricher, real prometheus_client instruments, the guard and its exposition."""

from __future__ import annotations

import types
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from agent.identity.pod_enricher import IdentityEnricher
from agent.identity.pods import PodCache, PodInfo
from agent.identity.resolver import IdentityResolver
from agent.identity.tiers import TierResolver
from agent.metrics.collectors import ProbeMetrics
from agent.metrics.series_expiry import GoneSeries, PodSeriesExpiry
from agent.metrics.series_guard import OVERFLOW, GuardedView, SeriesGuard
from probes import registry
from probes.latency_hist import hist_slot

GRACE = 300.0
DURATION = "bcgov_tcp_connection_duration_seconds"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CgroupTable:
    """cgroup id -> containerd/systemd-layout path: stands in for the cgroup2 tree walk, which is
    tested against real directories in tests/agent/identity."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}

    def path_for(self, cgroup_id: int) -> str | None:
        return self.paths.get(cgroup_id)


def _pod(name: str, kind: str, workload: str, ip: str) -> PodInfo:
    return PodInfo(
        uid=str(uuid.uuid4()), namespace="data", name=name, node="node-a", ips=(ip,),
        labels=types.MappingProxyType({}), workload_kind=kind, workload_name=workload,
        containers=types.MappingProxyType({}), phase="Running",
    )


class _Durations(Collector):
    """The duration histogram's cumulative state as exported (drained from the kernel in the agent)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Any:
        yield self.state.family()


def _counts(view: GuardedView) -> dict[tuple[str, str, str], float]:
    """(pod, workload, direction) -> observations, from the exposed text."""
    out = {}
    for fam in text_string_to_metric_families(generate_latest(view).decode()):
        if fam.name == DURATION:
            for s in fam.samples:
                if s.name.endswith("_count"):
                    out[(s.labels["pod"], s.labels["workload"], s.labels["direction"])] = s.value
    return out


def test_series_of_expired_pods_are_dropped_and_their_slots_reused() -> None:
    clock = Clock()
    pods = PodCache("node-a", grace_period=GRACE, clock=clock)
    pods.available = True  # fed by apply() below rather than by a watch thread
    table = CgroupTable()
    enricher = IdentityEnricher(IdentityResolver(table, pods, TierResolver({"default_ports": False})), pods)
    cluster = {
        "pg-0": _pod("pg-0", "StatefulSet", "pg", "10.42.0.10"),          # stable name: labelled by pod
        "api-1": _pod("api-1", "Deployment", "api", "10.42.0.11"),        # labelled by workload
        "api-2": _pod("api-2", "Deployment", "api", "10.42.0.12"),
        "etl-x": _pod("etl-x", "CronJob", "nightly-etl", "10.42.0.13"),   # Job pod rolled up to its CronJob
    }
    for i, p in enumerate(cluster.values(), start=1):
        pods.apply("ADDED", p)
        table.paths[i] = f"/kubepods.slice/kubepods-pod{p.uid.replace('-', '_')}.slice/cri-containerd-{i:064x}.scope"
    by_cgroup = dict(enumerate(cluster, start=1))

    reg = CollectorRegistry()
    guard = SeriesGuard(budgets={DURATION: 3})
    latency = ProbeMetrics(registry.ALL, {}, enricher, guard=guard)
    durations = latency.state(DURATION)
    reg.register(_Durations(durations))
    expiry = PodSeriesExpiry(pods, guard, [latency])
    view = GuardedView(reg, guard, [expiry.run])

    def drained(direction: str, cgroup_id: int) -> None:  # one connection, as the kernel map's drain adds it
        slots = [0] * durations.slot_count
        slots[hist_slot(10_000_000, durations.slot_count)] = 1  # 10 ms
        durations.add((direction, "normal", *enricher.labels_for_cgroup(cgroup_id)), slots, 10_000_000)

    for cg in by_cgroup:  # pg-0, api-1 and api-2 (one series: api), etl-x
        drained("active", cg)
    assert _counts(view) == {
        ("pg-0", "pg", "active"): 1.0,
        ("", "api", "active"): 2.0,
        ("", "nightly-etl", "active"): 1.0,
    }

    for name in ("pg-0", "api-1", "etl-x"):
        pods.apply("DELETED", cluster[name])
    clock.now += GRACE - 1
    assert len(_counts(view)) == 3  # within the grace period nothing goes
    clock.now += 1
    after = _counts(view)
    # pg-0 (its own pod series) and nightly-etl (no pod left) go; api stays: api-2 still runs
    assert after == {("", "api", "active"): 2.0}
    assert guard.admitted(DURATION) == 1

    # Freed slots take new label sets instead of the overflow series.
    new = _pod("pg-1", "StatefulSet", "pg", "10.42.0.20")
    pods.apply("ADDED", new)
    table.paths[9] = f"/kubepods.slice/kubepods-pod{new.uid.replace('-', '_')}.slice/cri-containerd-{9:064x}.scope"
    drained("passive", 9)
    assert _counts(view)[("pg-1", "pg", "passive")] == 1.0
    assert guard.overflow_count(DURATION) == 0
    assert not any(OVERFLOW in k for k in _counts(view))


def test_gone_series_matches_peers_and_spares_workloads_with_pods_left() -> None:
    gone = [_pod("pg-0", "StatefulSet", "pg", "10.0.0.1"), _pod("web-1", "Deployment", "web", "10.0.0.2")]
    live = [_pod("web-2", "Deployment", "web", "10.0.0.3")]
    match = GoneSeries(gone, live)
    assert match({"namespace": "data", "pod": "pg-0", "workload": "pg"})
    assert match({"peer_namespace": "data", "peer_workload": "pg", "namespace": "", "workload": "x"})
    assert not match({"namespace": "data", "pod": "", "workload": "web"})  # web-2 still runs
    assert not match({"namespace": "other", "pod": "pg-0", "workload": "pg"})
    assert not match({"direction": "sent"})
