"""The `bcgov` command line: a thin click front door over the agent and governor libraries.

Each command group lives in its own module (`bcgov/cli_<group>.py`) and only parses, validates
and calls a library function; nothing here holds logic worth testing apart from its wiring.
"""

from __future__ import annotations

import click

from bcgov import cli_agent, cli_budget, cli_dashboards, cli_evidence, cli_governor


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "BCGOV"})
@click.version_option(package_name="bcgov")
def cli() -> None:
    """eBPF observability agent and metric-cardinality governor."""


cli.add_command(cli_agent.agent)
for _group in (cli_budget, cli_governor, cli_dashboards, cli_evidence):
    _group.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bcgov")


if __name__ == "__main__":
    main()
