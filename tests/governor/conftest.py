"""Fixtures for governor tests: the known population served over HTTP, a real Prometheus scraping
it (one per module: its first scrape costs ~5 s), budgets files and a CLI runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repo on the path
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import population  # noqa: E402

from tests import servers  # noqa: E402


@pytest.fixture
def budgets_file(tmp_path: Path) -> Path:
    p = tmp_path / "budgets.yaml"
    p.write_text(population.BUDGETS)
    return p


@pytest.fixture
def cli() -> click.Group:
    """A fresh top-level group with only the governor's groups: tests need not import the agent."""
    from bcgov import cli_budget, cli_governor

    @click.group()
    def root() -> None:
        pass

    cli_budget.register(root)
    cli_governor.register(root)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def exporter() -> Iterator[servers.ExpositionServer]:
    with servers.serve_exposition(population.exposition()) as ex:
        yield ex


@pytest.fixture(scope="module")
def prometheus(exporter: servers.ExpositionServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.PrometheusServer]:
    """Prometheus scraping the population every second, with one recording rule that names `topic`."""
    tmp = tmp_path_factory.mktemp("prom")
    rules = tmp / "usage-rules.yml"
    rules.write_text(population.RULES_FILE)
    config = servers.scrape_config(exporter.target, job="exporter", extra={"rule_files": [str(rules)]})
    with servers.start_prometheus(config, tmp) as prom:
        prom.wait_for_first_scrape("exporter")
        # Counts must not change under the tests: wait for the rule's series too (evaluated apart
        # from the scrape).
        servers.poll(lambda: prom.scalar("count(topic:redpanda_kafka_partitions:sum)") == population.RECORDED_SERIES,
                     servers.SCRAPE_TIMEOUT_S, "the recording rule's first evaluation", prom.log_tail)
        yield prom
