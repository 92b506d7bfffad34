"""Data tier of a workload or connection end: oltp, stream, batch, lakehouse, serving, platform.

Resolution order, most specific first:

1. the pod label ``bcgov.io/tier`` (ignored unless it names a known tier, so a typo cannot mint a
   new label value);
2. configured label mappings (``{"app.kubernetes.io/name=postgresql": "oltp"}``), in config order;
3. configured namespace mappings (``{"kafka": "stream"}``);
4. the port of the connection end (its local port; for a peer, the port it was reached on):
   configured ports, then the shipped defaults below;
5. the pod's declared container ports (``spec.containers[].ports``), first one with a tier: a MinIO
   pod without a tier label is lakehouse on every signal, including the ones that carry no port
   (per-cgroup counters, the client end of its own connections).

Default port conflicts and how they are settled:

* 8080 is both Trino and the Airflow webserver (and half the internet's dev servers): it maps to
  **serving** (Trino). Airflow is recognised by its worker log server 8793 and Flower 5555 (batch);
  label or namespace mappings are the fix for an Airflow UI.
* 8081 is both the Redpanda/Confluent schema registry and the Flink JobManager REST/web port: both
  are the **stream** tier, so the clash is harmless.
* 9000 is MinIO (lakehouse) but also ClickHouse native and php-fpm; MinIO wins on a data platform.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agent.identity.errors import IdentityConfigError

TIERS = ("oltp", "stream", "batch", "lakehouse", "serving", "platform")
TIER_LABEL = "bcgov.io/tier"

DEFAULT_PORTS: Mapping[int, str] = {
    5432: "oltp",  # PostgreSQL
    6432: "oltp",  # PgBouncer
    9092: "stream",  # Kafka / Redpanda
    9644: "stream",  # Redpanda admin
    8081: "stream",  # schema registry; also Flink REST (stream too)
    8082: "stream",  # Redpanda pandaproxy
    6123: "stream",  # Flink JobManager RPC
    6124: "stream",  # Flink blob server
    6121: "stream",  # Flink TaskManager data
    6122: "stream",  # Flink TaskManager RPC
    7077: "batch",  # Spark standalone master
    4040: "batch",  # Spark driver UI
    7078: "batch",  # spark.driver.port as commonly pinned on Kubernetes
    7079: "batch",  # spark.blockManager.port as commonly pinned on Kubernetes
    8793: "batch",  # Airflow worker log server
    5555: "batch",  # Airflow Flower
    9000: "lakehouse",  # MinIO S3 API
    9001: "lakehouse",  # MinIO console
    19120: "lakehouse",  # Nessie catalog
    9083: "lakehouse",  # Hive metastore (Iceberg catalogs)
    8080: "serving",  # Trino (see the module docstring for the Airflow clash)
    8088: "serving",  # Superset
}


def _check_tier(tier: Any, where: str) -> str:
    if tier not in TIERS:
        raise IdentityConfigError(f"{where}: tier {tier!r} is not one of {', '.join(TIERS)}")
    return str(tier)


class TierResolver:
    """Resolves a tier from pod labels, namespace and port, per a validated configuration.

    ``config`` keys (all optional): ``namespaces`` {namespace: tier}, ``labels``
    {"key=value": tier}, ``ports`` {port: tier} (override/extend the defaults), ``default_ports``
    (bool, default True). Invalid entries raise IdentityConfigError at construction.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = dict(config or {})
        unknown = set(config) - {"namespaces", "labels", "ports", "default_ports"}
        if unknown:
            raise IdentityConfigError(f"tiers: unknown keys {sorted(unknown)}")
        self._namespaces = {
            str(ns): _check_tier(t, f"tiers.namespaces[{ns}]")
            for ns, t in dict(config.get("namespaces") or {}).items()
        }
        self._labels: list[tuple[str, str, str]] = []
        for selector, t in dict(config.get("labels") or {}).items():
            key, sep, value = str(selector).partition("=")
            if not sep or not key:
                raise IdentityConfigError(f"tiers.labels: {selector!r} must look like key=value")
            self._labels.append((key, value, _check_tier(t, f"tiers.labels[{selector}]")))
        self._ports: dict[int, str] = dict(DEFAULT_PORTS) if config.get("default_ports", True) else {}
        for port, t in dict(config.get("ports") or {}).items():
            try:
                p = int(port)
            except (TypeError, ValueError) as e:
                raise IdentityConfigError(f"tiers.ports: {port!r} is not a port number") from e
            if not 0 < p < 65536:
                raise IdentityConfigError(f"tiers.ports: {p} is out of range")
            self._ports[p] = _check_tier(t, f"tiers.ports[{p}]")

    def resolve(
        self,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
        port: int | None = None,
        declared_ports: Iterable[int] = (),
    ) -> str | None:
        """Return the tier, or None when nothing matches; ``declared_ports`` are the pod's
        container ports, tried after ``port``."""
        if labels:
            explicit = labels.get(TIER_LABEL)
            if explicit in TIERS:
                return explicit
            for key, value, tier in self._labels:
                if labels.get(key) == value:
                    return tier
        if namespace and namespace in self._namespaces:
            return self._namespaces[namespace]
        if port is not None and (port_tier := self._ports.get(port)) is not None:
            return port_tier
        return self.for_ports(declared_ports)

    def for_ports(self, ports: Iterable[int]) -> str | None:
        """The tier of the first port in ``ports`` that has one (e.g. local then remote port)."""
        for p in ports:
            if (t := self._ports.get(p)) is not None:
                return t
        return None
