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
def build_cmd(out: pathlib.Path | None) -> None:
    """Write one JSON file per dashboard, ready for Grafana's import or provisioning."""
    # Imported here so the rest of the CLI starts without the Grafana SDK loaded.
    from dashboards import build

    for path in build.write(out if out is not None else build.DEFAULT_OUT):
        click.echo(str(path))


def register(cli: click.Group) -> None:
    """Add the `dashboards` group to the top-level CLI."""
    cli.add_command(dashboards)
