"""The incident's scope (--tier/--namespace/--pod) as a PromQL matcher and a telemetry filter."""

from __future__ import annotations

import dataclasses
from typing import Any

# Telemetry attribute (agent/identity/resolver.py) for each Prometheus identity label.
ATTRIBUTE_OF = {"tier": "bcgov.tier", "namespace": "k8s.namespace.name", "pod": "k8s.pod.name"}


def promql_string(s: str) -> str:
    """Escape for a double-quoted PromQL string literal."""
    return s.replace("\\", "\\\\").replace('"', '\\"')


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which workloads the bundle is about; all None means everything."""

    tier: str | None = None
    namespace: str | None = None
    pod: str | None = None

    def labels(self) -> dict[str, str]:
        return {k: v for k, v in (("tier", self.tier), ("namespace", self.namespace), ("pod", self.pod)) if v}

    def matchers(self, only: tuple[str, ...] | None = None) -> str:
        """`{tier="x",namespace="y"}` (or `{}`) for the labels given; `only` limits which apply
        (governor tier series carry `tier` but no namespace or pod)."""
        items = [(k, v) for k, v in self.labels().items() if only is None or k in only]
        return "{" + ",".join(f'{k}="{promql_string(v)}"' for k, v in items) + "}"

    def matches(self, attributes: dict[str, Any]) -> bool:
        """True when telemetry attributes are in scope. A record without identity attributes is
        out of scope once a scope is set: it cannot be shown to belong to the incident."""
        return all(attributes.get(ATTRIBUTE_OF[k]) == v for k, v in self.labels().items())

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels().items()) or "everything"
