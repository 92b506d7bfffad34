"""A known series population for governor tests: an exposition with exact, hand-checkable counts.

Per tier (with BUDGETS below), as an exporter exposes it (Prometheus adds job/instance):
- stream (budget 50): flink_taskmanager_job_task_records_in_total, task_name a/b/c with 20/10/23
  task_attempt values = 53 series (dropping task_attempt leaves 3: saves 50; dropping task_name
  leaves 23: saves 30); redpanda_kafka_partitions, topic orders/payments = 2 (dropping topic saves 1).
  55 series: over.
- oltp (budget 100): pg_stat_database_xact_commit_total, datname app/postgres/template1 = 3; pg_up = 1.
  4 series: ok.
- batch (budget 40, warn_ratio 0.5): spark_executor_active_tasks, app_id 5 x executor 2 = 10;
  airflow_dag_run_duration, dag_id 12 = 12. 22 series: warn (>= 20).
- unclassified: process_cpu_seconds_total 1, custom_thing 2 = 3 (plus Prometheus' 5 synthetic
  series per target when scraped: up, scrape_*).
"""

from __future__ import annotations

TASK_ATTEMPTS = {"a": 20, "b": 10, "c": 23}
FLINK = "flink_taskmanager_job_task_records_in_total"

BUDGETS = """\
tiers:
  stream:
    max_series: 50
    match: {metric_prefixes: [flink_, redpanda_, kafka_]}
  oltp:
    max_series: 100
    match: {metric_prefixes: [pg_]}
  batch:
    max_series: 40
    warn_ratio: 0.5
    match: {metric_prefixes: [spark_, airflow_]}
"""

EXPECTED = {"stream": 55, "oltp": 4, "batch": 22}
EXPORTER_UNCLASSIFIED = 3
SYNTHETIC_PER_TARGET = 5  # up, scrape_duration_seconds, scrape_samples_scraped, scrape_samples_post_metric_relabeling, scrape_series_added
EXPORTER_TOTAL = sum(EXPECTED.values()) + EXPORTER_UNCLASSIFIED  # 84


def exposition(attempts: dict[str, int] | None = None) -> str:
    """The population in Prometheus text format 0.0.4."""
    attempts = TASK_ATTEMPTS if attempts is None else attempts
    lines = [f"# HELP {FLINK} Records in.", f"# TYPE {FLINK} counter"]
    for task, n in attempts.items():
        lines += [f'{FLINK}{{task_name="{task}",task_attempt="{i}"}} {i + 1}' for i in range(n)]
    lines += ["# HELP redpanda_kafka_partitions Partitions.", "# TYPE redpanda_kafka_partitions gauge",
              'redpanda_kafka_partitions{topic="orders"} 12', 'redpanda_kafka_partitions{topic="payments"} 6']
    lines += ["# TYPE pg_stat_database_xact_commit_total counter"]
    lines += [f'pg_stat_database_xact_commit_total{{datname="{d}"}} 7' for d in ("app", "postgres", "template1")]
    lines += ["# TYPE pg_up gauge", "pg_up 1"]
    lines += ["# TYPE spark_executor_active_tasks gauge"]
    lines += [f'spark_executor_active_tasks{{app_id="app-{a}",executor="{e}"}} 1' for a in range(5) for e in (1, 2)]
    lines += ["# TYPE airflow_dag_run_duration gauge"]
    lines += [f'airflow_dag_run_duration{{dag_id="dag_{d}"}} 3.5' for d in range(12)]
    lines += ["# TYPE process_cpu_seconds_total counter", "process_cpu_seconds_total 1.5"]
    lines += ["# TYPE custom_thing gauge", 'custom_thing{x="1"} 1', 'custom_thing{x="2"} 2']
    return "\n".join(lines) + "\n"


RECORDED_SERIES = 2  # the rule below yields one series per topic (orders, payments), unclassified
# Loaded into the fixture Prometheus so label usage can be seen from /api/v1/rules.
RULES_FILE = """\
groups:
  - name: usage
    rules:
      - record: topic:redpanda_kafka_partitions:sum
        expr: sum by (topic) (redpanda_kafka_partitions)
"""
