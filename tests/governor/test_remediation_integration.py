"""The emitted relabel config, loaded into a real Prometheus, drops exactly the promised series."""

from __future__ import annotations

import re
from pathlib import Path

import population
import pytest
import yaml

from governor.promapi import PrometheusSource
from tests import servers

pytestmark = pytest.mark.integration
STREAM = '{__name__=~"flink_.*|redpanda_.*"}'


def test_relabel_drops_exactly_the_promised_series(cli, runner, budgets_file: Path, tmp_path: Path) -> None:
    with servers.serve_exposition(population.exposition()) as ex, \
            servers.start_prometheus(servers.scrape_config(ex.target, job="exporter"), tmp_path) as prom:
        prom.wait_for_first_scrape("exporter")
        before_total = prom.scalar('count({__name__=~".+"})')
        assert prom.scalar(f"count({STREAM})") == 55

        fix = runner.invoke(cli, ["budget", "fix", "--prometheus", prom.url, "--budgets", str(budgets_file),
                                  "--tier", "stream", "--no-history", "--emit", "prometheus-relabel"])
        assert fix.exit_code == 0, fix.output
        promised = int(re.search(r"saves (\d+) series", fix.stdout).group(1))
        assert promised == 51
        relabel = yaml.safe_load(fix.stdout)["metric_relabel_configs"]
        assert len(relabel) == 2

        reloaded_at = prom.reload(servers.scrape_config(ex.target, job="exporter", metric_relabel_configs=relabel))
        prom.wait_for_scrape_after("exporter", reloaded_at)
        # Series dropped by the rule go stale at the reload; poll until Prometheus' view settles.
        servers.poll(lambda: prom.scalar(f"count({STREAM})") == 55 - promised, servers.SCRAPE_TIMEOUT_S, "the stream series to drop")
        assert prom.scalar('count({__name__=~".+"})') == before_total - promised
        assert prom.scalar(f"count({population.FLINK})") == 3
        assert prom.scalar('count(redpanda_kafka_partitions)') == 1

        # The governor agrees: stream is now within budget, with exactly the promised count.
        src = PrometheusSource(prom.url)
        counts = src.series_counts()
        src.close()
        assert counts[population.FLINK] == 3 and counts["redpanda_kafka_partitions"] == 1
        after = runner.invoke(cli, ["budget", "report", "--prometheus", prom.url, "--budgets", str(budgets_file), "--tier", "stream", "--no-history"])
        assert after.exit_code == 0, after.output
