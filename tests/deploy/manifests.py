"""Loading the deploy/daemonset manifests for the tests (a library module, not a conftest)."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "daemonset"

# Custom resources kubernetes-validate has no schema for, with the spec fields each must carry.
CUSTOM_KINDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("monitoring.coreos.com/v1", "PodMonitor"): ("selector", "podMetricsEndpoints"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("groups",),
    ("argoproj.io/v1alpha1", "Application"): ("project", "source", "destination"),
}


def base_files() -> list[pathlib.Path]:
    """Every YAML file directly in the base folder (the kustomization's own file excluded)."""
    return sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def all_manifest_files() -> list[pathlib.Path]:
    """The base's manifests plus the example ArgoCD Application (kept outside the base)."""
    return base_files() + sorted((BASE / "argocd").glob("*.yaml"))


def load_docs(path: pathlib.Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of one file."""
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def objects() -> list[tuple[pathlib.Path, dict[str, Any]]]:
    """(file, object) for every manifest, base and example."""
    return [(p, d) for p in all_manifest_files() for d in load_docs(p)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    """Every object of one kind."""
    return [d for _, d in objects() if d.get("kind") == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    """The single object of this kind and name; fails the test if there is not exactly one."""
    found = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def generator() -> ModuleType:
    """deploy/daemonset/generate.py, imported by path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bcgov_deploy_generate", BASE / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
