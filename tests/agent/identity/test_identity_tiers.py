"""TierResolver: precedence, shipped port defaults and config validation (pure)."""

from __future__ import annotations

import pytest

from agent.identity.errors import IdentityConfigError
from agent.identity.tiers import DEFAULT_PORTS, TIERS, TierResolver

CONFIG = {
    "namespaces": {"kafka": "stream", "warehouse": "lakehouse"},
    "labels": {"app.kubernetes.io/name=postgresql": "oltp", "app=airflow-webserver": "batch"},
    "ports": {15432: "oltp", 8080: "serving"},
}

CASES = [
    ("explicit pod label wins", {"bcgov.io/tier": "platform", "app": "airflow-webserver"}, "kafka", 5432, "platform"),
    ("unknown explicit value is ignored", {"bcgov.io/tier": "gold"}, None, 5432, "oltp"),
    ("label mapping", {"app.kubernetes.io/name": "postgresql"}, "kafka", 9092, "oltp"),
    ("label mapping beats the 8080 port default", {"app": "airflow-webserver"}, None, 8080, "batch"),
    ("namespace mapping", {"app": "x"}, "warehouse", 5432, "lakehouse"),
    ("configured extra port", None, None, 15432, "oltp"),
    ("postgres", None, None, 5432, "oltp"),
    ("kafka/redpanda", None, None, 9092, "stream"),
    ("redpanda admin", None, None, 9644, "stream"),
    ("schema registry / flink rest", None, None, 8081, "stream"),
    ("pandaproxy", None, None, 8082, "stream"),
    ("flink jobmanager rpc", None, None, 6123, "stream"),
    ("spark master", None, None, 7077, "batch"),
    ("spark ui", None, None, 4040, "batch"),
    ("airflow log server", None, None, 8793, "batch"),
    ("minio api", None, None, 9000, "lakehouse"),
    ("minio console", None, None, 9001, "lakehouse"),
    ("nessie", None, None, 19120, "lakehouse"),
    ("trino (8080 clash settled as serving)", None, None, 8080, "serving"),
    ("superset", None, None, 8088, "serving"),
    ("nothing matches", {"app": "x"}, "default", 12345, None),
    ("no inputs", None, None, None, None),
]


@pytest.mark.parametrize(("labels", "namespace", "port", "tier"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_resolve(labels, namespace, port, tier) -> None:
    assert TierResolver(CONFIG).resolve(labels, namespace, port) == tier


def test_defaults_only_use_known_tiers_and_can_be_turned_off() -> None:
    assert set(DEFAULT_PORTS.values()) <= set(TIERS)
    assert TierResolver().resolve(port=5432) == "oltp"
    assert TierResolver({"default_ports": False}).resolve(port=5432) is None
    assert TierResolver().for_ports([40000, 9092]) == "stream"


@pytest.mark.parametrize(
    "config",
    [
        {"namespaces": {"db": "gold"}},
        {"labels": {"no-equals-sign": "oltp"}},
        {"ports": {"http": "serving"}},
        {"ports": {70000: "serving"}},
        {"namespace": {}},
    ],
)
def test_invalid_config_is_rejected_at_construction(config) -> None:
    with pytest.raises(IdentityConfigError):
        TierResolver(config)


def test_declared_container_ports_come_after_labels_namespace_and_the_connection_port() -> None:
    r = TierResolver(CONFIG)
    assert r.resolve({"app": "minio"}, "lake", None, (9000, 9001)) == "lakehouse"
    assert r.resolve(None, None, 40000, (12345, 9092)) == "stream"  # first declared port with a tier
    assert r.resolve(None, None, 5432, (9000,)) == "oltp"  # the connection's own port wins
    assert r.resolve(None, "warehouse", None, (5432,)) == "lakehouse"  # a namespace mapping wins
    assert r.resolve({"bcgov.io/tier": "batch"}, None, None, (5432,)) == "batch"
    assert r.resolve(None, None, None, (12345,)) is None
