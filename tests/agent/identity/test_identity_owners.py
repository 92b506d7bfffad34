"""Owner roll-up rules without an API (pure). API-backed resolution is in test_identity_pods.py."""

from __future__ import annotations

import pytest
from kubernetes.client import V1OwnerReference

from agent.identity.owners import OwnerResolver, cronjob_from_job_name, deployment_from_rs_name, rollup_from_labels


def Ref(kind: str, name: str, controller: bool = True) -> V1OwnerReference:
    """A real client owner reference, as deserialised from the API."""
    return V1OwnerReference(api_version="v1", kind=kind, name=name, uid="00000000-0000-0000-0000-000000000000",
                            controller=controller)


CASES = [
    ("spark executor by app name", {"spark-app-selector": "spark-1a2b", "spark-role": "executor",
                                    "spark-app-name": "etl-orders"}, [Ref("Pod", "etl-driver")],
     ("SparkApplication", "etl-orders")),
    ("spark driver via operator label", {"spark-app-selector": "spark-1a2b", "spark-role": "driver",
                                         "sparkoperator.k8s.io/app-name": "nightly"}, [Ref("SparkApplication", "nightly")],
     ("SparkApplication", "nightly")),
    ("spark with selector only", {"spark-app-selector": "spark-1a2b", "spark-role": "executor"}, None,
     ("SparkApplication", "spark-1a2b")),
    ("airflow task pod", {"dag_id": "daily_sales", "task_id": "load"}, None, ("AirflowDAG", "airflow-dag/daily_sales")),
    ("rs without api: hash suffix stripped", {"pod-template-hash": "5d9f8"}, [Ref("ReplicaSet", "web-5d9f8")],
     ("Deployment", "web")),
    ("rs without hash label stays a ReplicaSet", {}, [Ref("ReplicaSet", "web-5d9f8")], ("ReplicaSet", "web-5d9f8")),
    ("job by cronjob naming convention", {}, [Ref("Job", "backup-28912345")], ("CronJob", "backup")),
    ("plain job", {}, [Ref("Job", "migrate-schema")], ("Job", "migrate-schema")),
    ("statefulset", {}, [Ref("StatefulSet", "postgres")], ("StatefulSet", "postgres")),
    ("daemonset", {}, [Ref("DaemonSet", "fluent-bit")], ("DaemonSet", "fluent-bit")),
    ("non-controller refs: first one", {}, [Ref("ConfigMap", "x", False)], ("ConfigMap", "x")),
    ("controller ref preferred", {}, [Ref("ConfigMap", "x", False), Ref("StatefulSet", "pg")], ("StatefulSet", "pg")),
    ("static pod", {}, [Ref("Node", "node-a")], ("StaticPod", "kube-vip")),
    ("bare pod", {}, None, ("Pod", "kube-vip-node-a")),
]


@pytest.mark.parametrize(("labels", "refs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_resolve_without_api(labels, refs, expected) -> None:
    assert OwnerResolver(None, None).resolve("ns", "kube-vip-node-a", labels, refs) == expected


def test_helpers() -> None:
    assert rollup_from_labels({"spark-role": "executor"}) is None
    assert rollup_from_labels({"dag_id": "d"}) is None  # task_id too, or it is not a task pod
    assert deployment_from_rs_name("web-abc", {"pod-template-hash": "xyz"}) is None
    assert cronjob_from_job_name("backup-2024") is None  # too short to be a scheduled minute
