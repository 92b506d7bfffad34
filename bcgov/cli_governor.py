"""`bcgov governor run`: the long-running governor service (thin wiring over governor.service)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry, start_http_server

from bcgov import cli_budget
from governor import alerts, budgets, evaluation, history, http, service


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return host or "0.0.0.0", int(port)


def _duration(value: str) -> float:
    """'60s', '5m', '1h' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value)
    except ValueError:
        seconds = -1
    if seconds < 1:
        raise click.BadParameter(f"{value!r} is not a duration of at least 1s (e.g. 60s, 5m)", param_hint="--interval")
    return seconds


@click.group("governor")
def governor() -> None:
    """The governor service: evaluate budgets on a schedule, export metrics, push alerts."""


@governor.command("run")
@cli_budget.source_options
@cli_budget.budgets_option
@click.option("--listen", default="127.0.0.1:9465", show_default=True, help="HOST:PORT for /metrics.")
@click.option("--alertmanager", metavar="URL", help="Push alerts to this Alertmanager (v2 API).")
@click.option("--interval", default="60s", show_default=True, help="Evaluation interval (e.g. 30s, 5m).")
@click.option("--runbook-base-url", help="Base URL for runbook links (default: budgets defaults.runbook_base_url).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="History directory (default: $XDG_STATE_HOME/bcgov).")
@click.option("--no-history", is_flag=True, help="Keep no local history (no churn or growth).")
@click.option("--dashboards", type=click.Path(exists=True, file_okay=False), help="Grafana dashboards folder for label usage.")
@click.option("--evaluations", type=click.IntRange(min=1), help="Stop after this many evaluations (for tests and cron).")
@cli_budget.guarded
def run_cmd(budgets_file: str | None, listen: str, alertmanager: str | None, interval: str, runbook_base_url: str | None,
            state_dir: str | None, no_history: bool, dashboards: str | None, evaluations: int | None, **kw: Any) -> None:
    """Evaluate every --interval, serve bcgov_governor_* on --listen, survive the source being down."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    b = budgets.load(budgets_file)
    host, port = _listen(listen)
    interval_s = _duration(interval)
    source = cli_budget.build_source(kw)
    hist = None if no_history else history.History(Path(state_dir) if state_dir else history.default_state_dir())
    pusher = alerts.AlertmanagerPusher(alertmanager, http.HttpOptions(), interval_s,
                                       generator_url=f"http://{host}:{port}/metrics") if alertmanager else None
    gov = service.Governor(source, b, interval_s, hist, evaluation.UsageOptions(
        rules=True, dashboards=Path(dashboards) if dashboards else None), pusher, runbook_base_url)
    registry = CollectorRegistry()
    gov.register(registry)
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {listen} ({exc.strerror}); pass another --listen") from exc
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"bcgov governor: {source.describe()} every {interval_s:g}s, metrics on http://{host}:{port}/metrics", err=True)
    try:
        gov.run(stop, max_evaluations=evaluations)
    finally:
        server.shutdown()
        thread.join(timeout=5)
        source.close()
        if pusher:
            pusher.close()
        if hist:
            hist.close()


def register(cli: click.Group) -> None:
    """Add the `governor` group to the top-level CLI."""
    cli.add_command(governor)
