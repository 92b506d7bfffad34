"""A population for two-phase inventories: every metric's count known, and which metrics the
governor must enumerate (and which it may leave to the backend's statistics) decided by the rules
of governor.twophase / governor.atrisk, worked out by hand below.

BUDGETS: max_label_values 50, top_n 3; stream 200 (prefixes redpanda_, kafka_); oltp 1000 (pg_);
batch 100 with a cap of 70 on spark_tasks (spark_). Series as exposed (one target):

- stream: redpanda_partition_bytes 4 topics x 40 partitions = 160; the histogram
  redpanda_request_latency_seconds (5 routes: _bucket 5 x 4 le = 20, _count 5, _sum 5) = 30;
  kafka_small_0..11, 3 topics each = 36; app_requests_total with tier="stream", 3 paths = 3.
  229 series, over 200. Warn line 160, excess 69: the biggest unit (redpanda_partition_bytes, 160)
  covers it, so it alone is enumerated as at risk. Dropping `partition` leaves 4 series: saves 156.
- oltp: pg_conn_by_client, 80 clients = 80 (label `client` over the cap of 50: an explosion
  candidate, enumerated; dropping it saves 79); pg_small_0..14, 4 datnames each = 60. 140: ok.
- batch: spark_tasks 10 apps x 6 executors = 60, at least 0.8 of its cap of 70: at risk, enumerated.
- app_requests_total carries the tier label: enumerated, its tier (stream) comes from its labels.
  custom_thing (x 1, 2 = 2) matches no prefix and carries no configured job or namespace: it is
  unclassified whole, by its name, and not enumerated.

Estimated (left to statistics): the redpanda_request_latency_seconds family, kafka_small_*, pg_small_*,
custom_thing.
"""

from __future__ import annotations

BUDGETS = """\
defaults:
  max_label_values: 50
  top_n: 3
tiers:
  stream:
    max_series: 200
    match: {metric_prefixes: [redpanda_, kafka_]}
  oltp:
    max_series: 1000
    match: {metric_prefixes: [pg_]}
  batch:
    max_series: 100
    match: {metric_prefixes: [spark_]}
    metrics:
      spark_tasks: 70
"""

HIST = "redpanda_request_latency_seconds"
COUNTS: dict[str, int] = {
    "redpanda_partition_bytes": 160, f"{HIST}_bucket": 20, f"{HIST}_count": 5, f"{HIST}_sum": 5,
    **{f"kafka_small_{i}": 3 for i in range(12)}, "app_requests_total": 3,
    "pg_conn_by_client": 80, **{f"pg_small_{i}": 4 for i in range(15)},
    "spark_tasks": 60, "custom_thing": 2,
}
TIERS = {"stream": 229, "oltp": 140, "batch": 60, "unclassified": 2}
ENUMERATED = {"redpanda_partition_bytes", "pg_conn_by_client", "spark_tasks", "app_requests_total"}
ESTIMATED = set(COUNTS) - ENUMERATED
TOTAL = sum(COUNTS.values())  # 431


def samples() -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every series above."""
    out: list[tuple[str, dict[str, str], float]] = []
    out += [("redpanda_partition_bytes", {"topic": f"t{t}", "partition": f"p{p}"}, 1.0) for t in range(4) for p in range(40)]
    for r in range(5):
        out += [(f"{HIST}_bucket", {"route": f"/r{r}", "le": le}, 1.0) for le in ("0.1", "1", "10", "+Inf")]
        out += [(f"{HIST}_count", {"route": f"/r{r}"}, 1.0), (f"{HIST}_sum", {"route": f"/r{r}"}, 0.5)]
    out += [(f"kafka_small_{i}", {"topic": f"t{t}"}, 1.0) for i in range(12) for t in range(3)]
    out += [("app_requests_total", {"tier": "stream", "path": f"/p{p}"}, 1.0) for p in range(3)]
    out += [("pg_conn_by_client", {"client": f"c{c}"}, 1.0) for c in range(80)]
    out += [(f"pg_small_{i}", {"datname": f"d{d}"}, 1.0) for i in range(15) for d in range(4)]
    out += [("spark_tasks", {"app": f"a{a}", "executor": f"e{e}"}, 1.0) for a in range(10) for e in range(6)]
    out += [("custom_thing", {"x": x}, 1.0) for x in ("1", "2")]
    return out


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def exposition() -> str:
    """Prometheus text format 0.0.4 (Prometheus adds job and instance when it scrapes)."""
    lines = [f"# TYPE {HIST} histogram"]
    lines += [f"{n}{{{_labels(lb)}}} {v}" for n, lb, v in samples() if n.startswith(HIST)]
    lines += [f"{n}{{{_labels(lb)}}} {v}" for n, lb, v in samples() if not n.startswith(HIST)]
    return "\n".join(lines) + "\n"


def import_lines(ts_ms: int, instance: str = "exporter:9100", job: str = "exporter") -> str:
    """Text-format lines with a timestamp, for VictoriaMetrics' /api/v1/import/prometheus, with the
    job and instance a scrape would add."""
    return "".join(f'{n}{{job="{job}",instance="{instance}",{_labels(lb)}}} {v} {ts_ms}\n' for n, lb, v in samples())
