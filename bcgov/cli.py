"""The `bcgov` command line: a thin click front door over the agent and governor libraries.

Each command group lives in its own module (`bcgov/cli_<group>.py`) and only parses, validates
and calls a library function; nothing here holds logic worth testing apart from its wiring.
"""

from __future__ import annotations

import click

from bcgov import cli_agent


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "BCGOV"})
@click.version_option(package_name="bcgov")
def cli() -> None:
    """eBPF observability agent and metric-cardinality governor."""


cli.add_command(cli_agent.agent)

# Optional groups register themselves here as they land; a missing module must not break the CLI.
for _name in ("cli_budget", "cli_governor", "cli_dashboards", "cli_evidence"):
    try:
        _mod = __import__(f"bcgov.{_name}", fromlist=["register"])
    except ModuleNotFoundError as exc:
        if exc.name != f"bcgov.{_name}":
            raise
        continue
    _mod.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bcgov")


if __name__ == "__main__":
    main()
