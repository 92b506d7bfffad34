"""`bcgov budget fix` on a real VictoriaMetrics, applied with Debian's real `vmagent` in front of
another: the series it promised to remove are gone, exactly.

Both VictoriaMetrics instances are fed by a vmagent scraping the same exposition, once as it is and
once through the emitted `metric_relabel_configs`; the report was made in two phases (statistics,
then enumeration of what is at risk), so this also checks that its exact figures are exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import scale_population as pop
import yaml

from tests import servers

pytestmark = pytest.mark.integration
ALL = '{__name__=~".+"}'


def scrape_config(target: str, relabel: list | None = None) -> str:
    """vmagent's -promscrape.config (Prometheus' scrape_configs; vmagent refuses unknown keys such
    as evaluation_interval, so not servers.scrape_config)."""
    job: dict = {"job_name": "exporter", "static_configs": [{"targets": [target]}]}
    if relabel:
        job["metric_relabel_configs"] = relabel
    return yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}, sort_keys=False)


def test_vmagent_applies_the_fix_and_exactly_the_promised_series_go(cli, runner, tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(pop.BUDGETS)
    synthetic = '{__name__=~"up|scrape_.*"}'
    with servers.serve_exposition(pop.exposition()) as ex, \
            servers.start_victoriametrics(tmp_path) as before, \
            servers.start_vmagent(scrape_config(ex.target), f"{before.url}/api/v1/write", tmp_path):
        servers.poll(lambda: before.scalar("count(up)") == 1 and before.scalar(f"count({ALL})") - before.scalar(f"count({synthetic})") == pop.TOTAL,
                     servers.SCRAPE_TIMEOUT_S, "vmagent's first scrape in VictoriaMetrics", before.log_tail)
        total_before = before.scalar(f"count({ALL})")
        fix = runner.invoke(cli, ["budget", "fix", "--prometheus", before.url, "--budgets", str(budgets), "--no-history",
                                  "--no-rules", "--enumerate-below", "0", "--all", "--emit", "prometheus-relabel"])
        assert fix.exit_code == 0, fix.output
        promised = int(re.search(r"^# bcgov budget fix \(prometheus-relabel\): \d+ rule\(s\), saves (\d+) series", fix.stdout, re.M).group(1))
        per_metric = {m: (int(b), int(a)) for m, b, a in re.findall(r"^\s*# (\S+): drop [^:]+: (\d+) -> (\d+) series", fix.stdout, re.M)}
        relabel = yaml.safe_load(fix.stdout)["metric_relabel_configs"]

    # partition from redpanda_partition_bytes (156), client from pg_conn_by_client (79), app from
    # spark_tasks (54): only enumerated metrics, so every figure is exact.
    assert promised == 156 + 79 + 54, fix.stdout
    with servers.serve_exposition(pop.exposition()) as ex, \
            servers.start_victoriametrics(tmp_path) as after, \
            servers.start_vmagent(scrape_config(ex.target, relabel), f"{after.url}/api/v1/write", tmp_path):
        servers.poll(lambda: after.scalar("count(up)") == 1 and (after.scalar(f"count({ALL})") or 0) >= total_before - promised,
                     servers.SCRAPE_TIMEOUT_S, "vmagent's first relabelled scrape", after.log_tail)
        total_after = after.scalar(f"count({ALL})")
        counts = {m: after.scalar(f"count({m})") for m in ("redpanda_partition_bytes", "pg_conn_by_client", "spark_tasks", "custom_thing")}
    assert total_after == total_before - promised
    assert counts == {"redpanda_partition_bytes": 4, "pg_conn_by_client": 1, "spark_tasks": 6, "custom_thing": 2}
    # The rules' comments say the same, metric by metric (custom_thing had no rule: untouched).
    assert per_metric == {m: (pop.COUNTS[m], n) for m, n in counts.items() if m != "custom_thing"}
