"""Pod -> the workload it belongs to (kind, name).

Metrics carry the workload rather than the pod, so short-lived pods (Spark executors, Airflow task
pods, Job pods) must roll up to something stable:

1. Spark (``spark-app-selector`` + ``spark-role``): kind "SparkApplication", named by the
   ``spark-app-name`` label, else the Spark operator's ``sparkoperator.k8s.io/app-name``, else the
   app selector (which is unique per run, hence last).
2. Airflow task pods (``dag_id`` + ``task_id``): kind "AirflowDAG", name ``airflow-dag/<dag_id>``.
3. The controller owner reference: ReplicaSet -> Deployment and Job -> CronJob read through the API
   (small TTL cache); when the API refuses, naming conventions stand in (ReplicaSet name minus the
   ``pod-template-hash`` suffix; CronJob job names ``<cronjob>-<scheduled minute>``).
   Static pods (owned by their Node) become kind "StaticPod" named without the node suffix.
4. No owner: the pod is its own workload (kind "Pod").
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

_CRONJOB_JOB = re.compile(r"^(.+)-(\d{8,})$")

SPARK_KIND = "SparkApplication"
AIRFLOW_KIND = "AirflowDAG"


def rollup_from_labels(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """Return (kind, name) for pods whose labels name their owner (Spark, Airflow), else None."""
    selector = labels.get("spark-app-selector")
    if selector and labels.get("spark-role") in ("driver", "executor"):
        name = labels.get("spark-app-name") or labels.get("sparkoperator.k8s.io/app-name") or selector
        return SPARK_KIND, name
    dag_id = labels.get("dag_id")
    if dag_id and labels.get("task_id"):
        return AIRFLOW_KIND, f"airflow-dag/{dag_id}"
    return None


def deployment_from_rs_name(rs_name: str, labels: Mapping[str, str]) -> str | None:
    """Guess the Deployment from a ReplicaSet name and the pod's ``pod-template-hash`` label."""
    h = labels.get("pod-template-hash")
    if h and rs_name.endswith("-" + h) and len(rs_name) > len(h) + 1:
        return rs_name[: -len(h) - 1]
    return None


def cronjob_from_job_name(job_name: str) -> str | None:
    """Guess the CronJob from a Job name of the form ``<cronjob>-<minutes since epoch>``."""
    m = _CRONJOB_JOB.match(job_name)
    return m.group(1) if m else None


def controller_ref(owner_refs: Sequence[Any] | None) -> tuple[str, str] | None:
    """The (kind, name) of the controlling owner reference, else of the first one."""
    if not owner_refs:
        return None
    chosen = next((r for r in owner_refs if getattr(r, "controller", False)), owner_refs[0])
    return chosen.kind, chosen.name


class OwnerResolver:
    """Resolves a pod's workload, reading ReplicaSets and Jobs through the API with a bounded cache.

    ``apps_api``/``batch_api`` are ``kubernetes.client.AppsV1Api``/``BatchV1Api`` (or None to use
    naming conventions only).
    """

    def __init__(
        self,
        apps_api: Any | None,
        batch_api: Any | None,
        *,
        max_entries: int = 1024,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apps = apps_api
        self._batch = batch_api
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        self._cache: collections.OrderedDict[tuple[str, str, str], tuple[float, tuple[str, str] | None]]
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()
        self.api_failures = 0

    def resolve(
        self, namespace: str, pod_name: str, labels: Mapping[str, str], owner_refs: Sequence[Any] | None
    ) -> tuple[str, str]:
        """Return (workload_kind, workload_name) for a pod."""
        rolled = rollup_from_labels(labels)
        if rolled is not None:
            return rolled
        ref = controller_ref(owner_refs)
        if ref is None:
            return "Pod", pod_name
        kind, name = ref
        if kind == "ReplicaSet":
            parent = self._parent("ReplicaSet", namespace, name)
            if parent is not None:
                return parent
            guess = deployment_from_rs_name(name, labels)
            return ("Deployment", guess) if guess else ("ReplicaSet", name)
        if kind == "Job":
            parent = self._parent("Job", namespace, name)
            if parent is not None:
                return parent
            return ("Job", name)
        if kind == "Node":
            suffix = "-" + name
            base = pod_name[: -len(suffix)] if pod_name.endswith(suffix) else pod_name
            return "StaticPod", base
        return kind, name

    def _parent(self, kind: str, namespace: str, name: str) -> tuple[str, str] | None:
        """The workload above a ReplicaSet or Job from the cache or the API; None when unreadable."""
        key = (kind, namespace, name)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                return hit[1]
        result = self._read_parent(kind, namespace, name)
        with self._lock:
            self._cache[key] = (now + self._ttl, result)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return result

    def _read_parent(self, kind: str, namespace: str, name: str) -> tuple[str, str] | None:
        api = self._apps if kind == "ReplicaSet" else self._batch
        obj = None
        if api is not None:
            try:
                if kind == "ReplicaSet":
                    obj = api.read_namespaced_replica_set(name, namespace, _request_timeout=10)
                else:
                    obj = api.read_namespaced_job(name, namespace, _request_timeout=10)
            except Exception as e:  # 403 (no RBAC), 404 (already gone), network: fall back to names
                self.api_failures += 1
                log.debug("cannot read %s %s/%s: %s", kind, namespace, name, e)
        if obj is not None:
            ref = controller_ref(obj.metadata.owner_references)
            if ref is not None and ref[0] in ("Deployment", "CronJob"):
                return ref
            return kind, name  # read fine and has no parent: it is the workload itself
        if kind == "Job" and (cron := cronjob_from_job_name(name)):
            return "CronJob", cron
        return None
