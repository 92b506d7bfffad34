"""Series of deleted pods leave the agent after their grace period.

The pod cache keeps a deleted pod resolvable for a grace period (its last events and scrapes
arrive after the DELETED event), then expires it. Then its series are dropped:
- label sets naming the pod itself (``namespace`` + ``pod``, or ``peer_namespace`` + ``peer_pod``),
  which only pods with stable names carry (see Identity.to_prom_labels);
- label sets naming its workload (``namespace`` + ``workload``, or the ``peer_`` pair) when no pod
  of that workload is left on this node: a finished Spark application, Job or scaled-away
  Deployment. A workload with pods left keeps its series: they are those pods' too.
The guard releases their admission, so new pods get their slots, and every holder of per-label-set
state (kernel collector cumulatives, prometheus_client children) drops them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from agent.identity.pods import PodInfo
from agent.metrics.series_guard import LabelValues, SeriesGuard

log = logging.getLogger("bcgov.agent.series")

_PREFIXES = ("", "peer_")


class ExpiringPods(Protocol):
    def expire(self) -> list[PodInfo]: ...

    def pop_expired(self) -> list[PodInfo]: ...

    def pods(self) -> list[PodInfo]: ...


class SeriesHolder(Protocol):
    def forget(self, released: Mapping[str, Iterable[LabelValues]]) -> None: ...


class GoneSeries:
    """Matches label sets that belong to expired pods or to workloads with no pod left."""

    def __init__(self, gone: Iterable[PodInfo], live: Iterable[PodInfo]) -> None:
        gone = list(gone)
        self._pods = {(p.namespace, p.name) for p in gone}
        alive = {(p.namespace, p.workload_name) for p in live if p.deleted_at is None}
        self._workloads = {(p.namespace, p.workload_name) for p in gone if p.workload_name} - alive

    def __call__(self, labels: Mapping[str, str]) -> bool:
        for prefix in _PREFIXES:
            ns = labels.get(prefix + "namespace")
            if not ns:
                continue
            pod = labels.get(prefix + "pod")
            if pod and (ns, pod) in self._pods:
                return True
            workload = labels.get(prefix + "workload")
            if workload and (ns, workload) in self._workloads:
                return True
        return False


class PodSeriesExpiry:
    """Run at each scrape: expire pods past their grace, drop their series everywhere."""

    def __init__(self, pods: ExpiringPods, guard: SeriesGuard, holders: Sequence[SeriesHolder]) -> None:
        self._pods = pods
        self._guard = guard
        self._holders = list(holders)

    def run(self) -> int:
        """Drop the series of pods expired since the last run; return how many label sets went."""
        self._pods.expire()
        gone = self._pods.pop_expired()
        if not gone:
            return 0
        released = self._guard.release_matching(GoneSeries(gone, self._pods.pods()))
        for holder in self._holders:
            holder.forget(released)
        n = sum(len(v) for v in released.values())
        if n:
            log.info("dropped %d series of %d expired pod(s)", n, len(gone))
        return n
