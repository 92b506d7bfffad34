"""The cgroup conformance corpus (fixtures/cgroup_corpus.yaml): real paths and /proc/<pid>/cgroup
lines from other projects' fixtures, each parsed to the identity a careful engineer expects, and no
label value or attribute except the pod uid and container id fields carrying an instance id."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from identity_helpers import FIXTURES

from agent.identity.containers import ContainerRef, parse_cgroup_path
from agent.identity.resolver import IdentityResolver, UnresolvedCounts
from agent.identity.tiers import TierResolver


def cgroup_path_of(text: str) -> str:
    """The path of a corpus entry: a cgroup path, or one ``/proc/<pid>/cgroup`` line ("5:cpu,cpuacct:/kubepods/...")."""
    if text.startswith("/"):
        return text
    head, sep, rest = text.partition(":")
    if sep and head.isdigit():
        return rest.partition(":")[2]
    return text


CORPUS: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "cgroup_corpus.yaml").read_text())
SOURCES = {"coroot", "datadog", "beyla", "kepler"}  # named in the corpus header, with their commits
# Instance ids as they appear in paths: long hex runs (container ids, 32-hex static pod uids, ECS
# task ids) and UUIDs with dashes or underscores (pod uids, desktop scopes).
_ID = re.compile(r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{16,}")
# The only fields allowed to carry those ids.
ID_ATTRIBUTES = {"k8s.pod.uid", "container.id"}


class _OnePath:
    """The cgroup path cache's protocol for one known cgroup (id 7)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def path_for(self, cgroup_id: int) -> str | None:
        return self._path if cgroup_id == 7 else None


def _expected(expect: dict[str, str]) -> ContainerRef:
    return ContainerRef(
        runtime=expect["runtime"], container_id=expect.get("container_id"), pod_uid=expect.get("pod_uid"),
        qos_class=expect.get("qos"), systemd_unit=expect.get("unit"), lxc_name=expect.get("lxc"),
    )


def _ids_in(text: str) -> set[str]:
    """Every id in the text, in each spelling it could be printed in (dashes or underscores)."""
    out = set()
    for m in _ID.findall(text):
        out |= {m, m.replace("_", "-"), m.replace("-", "_"), m[:12]}
    return out


def test_corpus_is_large_and_sourced() -> None:
    assert len(CORPUS) >= 40
    for entry in CORPUS:
        src = entry["source"]
        assert (isinstance(src, str) and src in SOURCES) or {"repo", "path", "commit"} <= set(src), entry


@pytest.mark.parametrize("entry", CORPUS, ids=[f"{i:02d}-{e['shape']}" for i, e in enumerate(CORPUS)])
def test_corpus_identity(entry: dict[str, Any]) -> None:
    assert parse_cgroup_path(cgroup_path_of(entry["text"])) == _expected(entry["expect"])


@pytest.mark.parametrize("entry", CORPUS, ids=[f"{i:02d}-{e['shape']}" for i, e in enumerate(CORPUS)])
def test_no_label_value_carries_an_instance_id(entry: dict[str, Any]) -> None:
    """Resolved without Kubernetes (pod fields empty, as on a node whose API is down): every Prometheus
    label value and every span attribute other than the id fields is free of the path's ids."""
    path = cgroup_path_of(entry["text"])
    ids = _ids_in(path)
    resolver = IdentityResolver(_OnePath(path), None, TierResolver(), UnresolvedCounts())
    who = resolver.for_cgroup(7, port=5432)
    values = list(who.to_prom_labels().values()) + list(who.to_prom_labels(per_pod=True).values())
    values += [v for k, v in who.to_otel_attributes().items() if k not in ID_ATTRIBUTES]
    ref = parse_cgroup_path(path)
    values += [ref.systemd_unit or "", ref.lxc_name or ""]
    leaked = {(v, i) for v in values for i in ids if i in v}
    assert not leaked, f"{path}: label values carry ids: {leaked}"
    if ref.pod_uid or ref.container_id:  # ...and the id fields do carry them
        attrs = who.to_otel_attributes()
        assert attrs.get("k8s.pod.uid") == ref.pod_uid or attrs.get("container.id") == ref.container_id


def test_cgroup_path_of_proc_lines() -> None:
    assert cgroup_path_of("5:cpu,cpuacct:/kubepods/x") == "/kubepods/x"
    assert cgroup_path_of("0::/") == "/"
    assert cgroup_path_of("/system.slice/a.service") == "/system.slice/a.service"
    assert cgroup_path_of("kubelet/kubepods/x") == "kubelet/kubepods/x"
