"""`bcgov evidence export|verify`: thin wiring over governor.evidence.

Exit codes (export): 0 complete bundle, 3 partial bundle (a source was down; the manifest says
which and why), 2 usage error or unusable --out. (verify): 0 matches, 1 changed or a bad/missing signature, 2 not a bundle.
"""

from __future__ import annotations

import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from agent.redaction.url_credentials import display_url

EXIT_OK, EXIT_CHANGED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _fail(code: int, message: str) -> None:
    click.echo(f"bcgov: error: {display_url(message)}", err=True)  # an error may quote a URL
    sys.exit(code)


def _version() -> str:
    try:
        return metadata.version("bcgov")
    except metadata.PackageNotFoundError:
        return "unknown"


@click.group("evidence")
def evidence() -> None:
    """Postmortem evidence bundles: export the window's telemetry, verify a bundle."""


@evidence.command("export")
@click.option("--since", required=True, help="Window start: RFC 3339 or relative (2h, 30m).")
@click.option("--until", "until", default="now", show_default=True, help="Window end: RFC 3339, relative, or now.")
@click.option("--tier", help="Only this data tier.")
@click.option("--namespace", help="Only this namespace.")
@click.option("--pod", help="Only this pod.")
@click.option("--prometheus", metavar="URL", help="Prometheus-compatible API base URL.")
@click.option("--alertmanager", metavar="URL", help="Alertmanager base URL (v2 API).")
@click.option("--spans-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's OTLP JSON lines (var/spans.jsonl; its rotated backups .1, .2, ... are read too).")
@click.option("--otlp-query", metavar="URL", help="A Tempo-compatible query API (its /api/search and /api/traces) to fetch the scope's spans from.")
@click.option("--logs", "logs_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's JSON event log (its rotated backups .1, .2, ... are read too).")
@click.option("--budgets", "budgets_file", type=click.Path(dir_okay=False), help="Budgets YAML for budget-report.json.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds per HTTP request.")
@click.option("--retries", type=click.IntRange(min=0, max=10), default=1, show_default=True, help="Retries on network errors.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory, or a path ending in .tar.gz.")
@click.option("--sign-key", type=click.Path(dir_okay=False, path_type=Path),
              help="SSH private key: sign MANIFEST.json into MANIFEST.json.sig (ssh-keygen -Y sign, namespace bcgov-evidence).")
def export_cmd(**kw: Any) -> None:
    """Write a postmortem evidence bundle. Exit 3 when a source was down (partial bundle)."""
    from governor import http
    from governor.evidence import errors, export, scope, timewindow

    if kw["spans_file"] and kw["otlp_query"]:
        raise click.UsageError("pass either --spans-file or --otlp-query, not both")
    try:
        window = timewindow.Window.parse(kw["since"], kw["until"], time.time())
    except errors.WindowError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from exc
    req = export.Request(
        window=window, scope=scope.Scope(kw["tier"], kw["namespace"], kw["pod"]), out=kw["out"],
        command=["bcgov", *sys.argv[1:]], tool_version=_version(),
        prometheus=kw["prometheus"], alertmanager=kw["alertmanager"], spans_file=kw["spans_file"],
        otlp_query=kw["otlp_query"], logs_file=kw["logs_file"], budgets_file=kw["budgets_file"], sign_key=kw["sign_key"],
        http_options=http.HttpOptions(timeout=kw["timeout"], retries=kw["retries"]),
    )
    progress = _progress()
    try:
        result = export.export_bundle(req, progress)
    except errors.BundleError as exc:
        _fail(EXIT_USAGE, str(exc))
        return
    if result.partial:
        for src, why in sorted(result.missing.items()):
            click.echo(f"bcgov: warning: {src} missing: {display_url(why)}", err=True)
        click.echo(f"bcgov: partial bundle written to {result.out} ({len(result.files)} files); "
                   f"MANIFEST.json lists what is missing", err=True)
        sys.exit(EXIT_PARTIAL)
    click.echo(f"bundle written to {result.out} ({len(result.files)} files)", err=True)


def _progress() -> Any:
    """Progress lines on a terminal's stderr only; silent in pipes and CI."""
    if not sys.stderr.isatty():
        return lambda _msg: None
    return lambda msg: click.echo(f"  {msg}", err=True)


@evidence.command("verify")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--allowed-signers", type=click.Path(dir_okay=False, path_type=Path),
              help="OpenSSH allowed_signers file: also require MANIFEST.json.sig by one of these keys.")
def verify_cmd(bundle: Path, allowed_signers: Path | None) -> None:
    """Re-check every file of a bundle against MANIFEST.json, and with --allowed-signers its
    signature first. Exit 1 on any change or a bad or missing signature."""
    from governor.evidence import errors, manifest

    try:
        found = manifest.check(bundle, allowed_signers)
    except errors.BundleError as exc:  # ssh-keygen missing
        _fail(EXIT_USAGE, str(exc))
        return
    except errors.VerifyError as exc:
        _fail(EXIT_USAGE if allowed_signers is None else EXIT_CHANGED, str(exc))
        return
    if len(found.problems) == 1:  # one changed file: one line
        _fail(EXIT_CHANGED, f"{bundle} does not match its manifest: {found.problems[0]}")
    elif found.problems:
        for p in found.problems:
            click.echo(f"bcgov: {p}", err=True)
        _fail(EXIT_CHANGED, f"{bundle} does not match its manifest ({len(found.problems)} entries above)")
    if found.signer:
        click.echo(f"{bundle}: OK, signed by {found.signer} and every file matches MANIFEST.json")
    elif found.signed:
        click.echo(f"{bundle}: OK, every file matches MANIFEST.json (signature not checked: pass --allowed-signers)")
    else:
        click.echo(f"{bundle}: OK, every file matches MANIFEST.json")


def register(cli: click.Group) -> None:
    """Add the `evidence` group to the top-level CLI."""
    cli.add_command(evidence)
