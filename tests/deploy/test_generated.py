"""The generated manifests equal what generate.py produces now, and the config they ship loads."""

from __future__ import annotations

import manifests
import pytest
import yaml

from agent import config as agent_config
from governor import budgets

GENERATE = manifests.generator()


@pytest.mark.parametrize("name", sorted(GENERATE.GENERATED))
def test_committed_copy_equals_generated(name: str) -> None:
    committed = (manifests.BASE / name).read_text(encoding="utf-8")
    assert committed == GENERATE.GENERATED[name](), (
        f"deploy/daemonset/{name} is stale: run .venv/bin/python deploy/daemonset/generate.py")


def test_configmap_ships_the_default_budgets_and_a_valid_agent_config(tmp_path) -> None:
    data = manifests.one("ConfigMap", "bcgov-config")["data"]
    assert data["budgets.yaml"] == (manifests.ROOT / "governor" / "defaults" / "budgets.yaml").read_text()
    # Load both the way the pods will: from files, through the real loaders.
    (tmp_path / "agent.yaml").write_text(data["agent.yaml"])
    (tmp_path / "budgets.yaml").write_text(data["budgets.yaml"])
    cfg = agent_config.load(str(tmp_path / "agent.yaml"), {})
    assert cfg.metrics_host_port() == ("0.0.0.0", 9464)
    assert budgets.load(str(tmp_path / "budgets.yaml"))


def test_pods_mount_the_configmap_files_their_args_name() -> None:
    ds = manifests.one("DaemonSet", "bcgov-agent")["spec"]["template"]["spec"]["containers"][0]
    gov = manifests.one("Deployment", "bcgov-governor")["spec"]["template"]["spec"]["containers"][0]
    keys = set(manifests.one("ConfigMap", "bcgov-config")["data"])
    assert ds["args"] == ["--config", "/etc/bcgov/agent.yaml"] and "agent.yaml" in keys
    assert "--budgets=/etc/bcgov/budgets.yaml" in gov["args"] and "budgets.yaml" in keys
    for c in (ds, gov):
        assert any(m["mountPath"] == "/etc/bcgov" for m in c["volumeMounts"])


def test_kustomize_sets_one_namespace() -> None:
    kustomization = yaml.safe_load((manifests.BASE / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "bcgov-system"
