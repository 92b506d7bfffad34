"""`bcgov dashboards`: build the Grafana dashboards (as code) into JSON files to import."""

from __future__ import annotations

import pathlib

import click


@click.group()
def dashboards() -> None:
    """Grafana dashboards built from code (dashboards/)."""


@dashboards.command("build")
@click.option("--out", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help="Directory to write the JSON into (default: the repository's dashboards/json).")
@click.option("--provisioning-out", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help="Directory for Grafana's provisioning files (datasources/, dashboards/); default: the repository's "
                   "dashboards/provisioning, or OUT/provisioning with --out.")
def build_cmd(out: pathlib.Path | None, provisioning_out: pathlib.Path | None) -> None:
    """Write one JSON file per dashboard, ready for Grafana's import or provisioning, and the
    provisioning files that join Prometheus exemplars, Tempo traces and Loki logs."""
    # Imported here so the rest of the CLI starts without the Grafana SDK loaded.
    from dashboards import build

    for path in build.write(out if out is not None else build.DEFAULT_OUT, provisioning_out):
        click.echo(str(path))


def register(cli: click.Group) -> None:
    """Add the `dashboards` group to the top-level CLI."""
    cli.add_command(dashboards)
