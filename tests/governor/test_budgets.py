"""Budgets files: the smallest valid one, the shipped defaults, and errors naming file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from governor import budgets
from governor.errors import BudgetError

SMALLEST = """\
tiers:
  stream:
    max_series: 50
    match: {metric_prefixes: [flink_, redpanda_, kafka_]}
"""


def test_smallest_file_gets_defaults() -> None:
    b = budgets.parse(SMALLEST, "b.yaml")
    t = b.tier("stream")
    assert (t.max_series, t.warn_ratio, t.max_label_values) == (50, 0.8, 1000)
    assert t.match.metric_prefixes == ("flink_", "redpanda_", "kafka_")
    assert b.defaults.bytes_per_series == 3072


def test_shipped_defaults_cover_every_tier_with_real_prefixes() -> None:
    b = budgets.load()
    assert list(b.tiers) == ["oltp", "stream", "batch", "lakehouse", "serving", "platform"]
    prefixes = {t: set(b.tier(t).match.metric_prefixes) for t in b.tiers}
    assert {"pg_"} <= prefixes["oltp"]
    assert {"redpanda_", "kafka_", "flink_"} <= prefixes["stream"]
    assert {"spark_", "airflow_", "dbt_"} <= prefixes["batch"]
    assert {"minio_", "iceberg_", "nessie_"} <= prefixes["lakehouse"]
    assert {"trino_", "superset_"} <= prefixes["serving"]
    assert {"node_", "kube_", "kubelet_", "container_", "bcgov_"} <= prefixes["platform"]


@pytest.mark.parametrize(
    "text, line, field, problem",
    [
        ("tiers:\n  stream:\n    max_series: fifty\n    match: {jobs: [x]}\n", 3, "tiers.stream.max_series", "must be an integer, got 'fifty'"),
        ("tiers:\n  stream:\n    max_series: 0\n    match: {jobs: [x]}\n", 3, "tiers.stream.max_series", "must be a positive integer"),
        ("tiers:\n  stream:\n    max_series: 5\n    warn_ratio: 1.5\n    match: {jobs: [x]}\n", 4, "tiers.stream.warn_ratio", "ratio in (0, 1]"),
        ("tiers:\n  stream:\n    max_series: 5\n    macth: {jobs: [x]}\n", 4, "tiers.stream.macth", "unknown field"),
        ("tiers:\n  stream:\n    max_series: 5\n", 3, "tiers.stream.match", "required field is missing"),
        ("tiers:\n  stream:\n    max_series: 5\n    match: {metric_prefixes: [flink-]}\n", 4, "tiers.stream.match.metric_prefixes[0]", "not valid"),
        ("tiers:\n  Stream:\n    max_series: 5\n    match: {jobs: [x]}\n", 3, "tiers.Stream", "tier names"),
        ("tiers:\n  unclassified:\n    max_series: 5\n    match: {jobs: [x]}\n", 3, "tiers.unclassified", "reserved"),
        ("defaults:\n  top_n: yes\ntiers:\n  s:\n    max_series: 5\n    match: {jobs: [x]}\n", 2, "defaults.top_n", "got True"),
        ("tiers:\n  s:\n    max_series: 5\n    match: {jobs: [x]}\n    labels: {pod: -1}\n", 5, "tiers.s.labels.pod", "positive integer"),
        ("tiers:\n  s:\n    max_series: 5\n    max_series: 6\n    match: {jobs: [x]}\n", 4, "tiers.s.max_series", "duplicate key"),
    ],
)
def test_invalid_field_names_file_line_and_field(text: str, line: int, field: str, problem: str) -> None:
    with pytest.raises(BudgetError) as exc:
        budgets.parse(text, "my-budgets.yaml")
    e = exc.value
    assert (e.path, e.line, e.field) == ("my-budgets.yaml", line, field)
    assert problem in e.problem
    assert str(e).startswith(f"my-budgets.yaml:{line}: {field}: ")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(BudgetError) as exc:
        budgets.parse("tiers:\n  stream: [\n    max_series: 5\n", "b.yaml")
    assert exc.value.line == 4 and "not valid YAML" in str(exc.value)


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match=r"nope\.yaml: cannot read the budgets file .*pass --budgets FILE"):
        budgets.load(tmp_path / "nope.yaml")


def test_cli_exits_2_with_one_line_naming_file_line_field(cli, runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers:\n  stream:\n    max_series: many\n    match: {jobs: [x]}\n")
    result = runner.invoke(cli, ["budget", "rules", "--budgets", str(bad)])
    assert result.exit_code == 2
    assert result.output == f"bcgov: error: {bad}:3: tiers.stream.max_series: must be an integer, got 'many'\n"
