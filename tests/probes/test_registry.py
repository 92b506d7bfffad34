"""The shipped registry: names unique, and no metric family declared by two probes (the agent only
checks the probes it is configured with, at start; this holds for every combination)."""

from __future__ import annotations

from agent.metrics.collectors import duplicate_families
from probes import registry


def test_probe_names_are_unique_and_resolvable() -> None:
    names = registry.names()
    assert len(names) == len(set(names))
    assert [registry.get(n).name for n in names] == names


def test_no_family_is_declared_by_two_shipped_probes() -> None:
    assert duplicate_families(registry.ALL) == ""
    # the check itself finds a clash (so the line above cannot pass for want of looking)
    assert "declared twice" in duplicate_families((*registry.ALL, registry.get("oom")))
