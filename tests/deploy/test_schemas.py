"""Every manifest is a valid Kubernetes object: built-in kinds against the 1.30 schemas (strict, so
unknown fields fail), custom resources structurally; the kustomization lists exactly the base files."""

from __future__ import annotations

import pathlib
from typing import Any

import kubernetes_validate
import manifests
import pytest
import yaml

K8S_VERSION = "1.30"
OBJECTS = manifests.objects()


def _id(item: tuple[pathlib.Path, dict[str, Any]]) -> str:
    path, obj = item
    return f"{path.name}:{obj['kind']}/{obj['metadata']['name']}"


def test_there_are_manifests_of_every_expected_kind() -> None:
    kinds = {obj["kind"] for _, obj in OBJECTS}
    assert kinds == {
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
        "Deployment", "Service", "PodMonitor", "ServiceMonitor", "PrometheusRule", "Application",
    }


@pytest.mark.parametrize("item", [i for i in OBJECTS if (i[1]["apiVersion"], i[1]["kind"]) not in manifests.CUSTOM_KINDS], ids=_id)
def test_builtin_kind_validates_strictly(item: tuple[pathlib.Path, dict[str, Any]]) -> None:
    _, obj = item
    # Raises ValidationError (with the failing path) on a wrong type, missing or unknown field.
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The check above has teeth: a misspelt field in the DaemonSet fails."""
    ds = manifests.one("DaemonSet", "bcgov-agent")
    broken = yaml.safe_load(yaml.safe_dump(ds))
    broken["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("item", [i for i in OBJECTS if (i[1]["apiVersion"], i[1]["kind"]) in manifests.CUSTOM_KINDS], ids=_id)
def test_custom_resource_structure(item: tuple[pathlib.Path, dict[str, Any]]) -> None:
    _, obj = item
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}
    assert obj["metadata"]["name"]
    for field in manifests.CUSTOM_KINDS[(obj["apiVersion"], obj["kind"])]:
        assert obj["spec"].get(field), f"{obj['kind']} needs spec.{field}"


def test_monitors_select_the_pods_and_ports_that_exist() -> None:
    ds = manifests.one("DaemonSet", "bcgov-agent")
    svc = manifests.one("Service", "bcgov-governor")
    pod_monitor = manifests.one("PodMonitor", "bcgov-agent")
    service_monitor = manifests.one("ServiceMonitor", "bcgov-governor")
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    agent_ports = {p["name"] for p in ds["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= agent_ports
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}


def test_prometheusrule_groups_have_alerts_with_runbooks() -> None:
    rule = manifests.one("PrometheusRule", "bcgov-governor")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for r in alerts:
        assert r["expr"] and r["annotations"]["runbook_url"].endswith(f"/{r['alert']}.md")


def test_argocd_application_points_at_this_folder() -> None:
    app = manifests.one("Application", "bcgov")
    assert app["spec"]["source"]["path"] == manifests.BASE.relative_to(manifests.ROOT).as_posix()
    assert app["spec"]["destination"]["namespace"] == "bcgov-system"


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((manifests.BASE / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert sorted(listed) == [p.name for p in manifests.base_files()]
