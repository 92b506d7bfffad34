"""`bcgov budget report|rules|fix`: thin wiring over the governor library.

Exit codes: 0 within budget, 3 over budget (or warn with --fail-on warn), 2 usage or config error,
4 source unreachable or unusable. Errors are one line on stderr naming the cause and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from agent.redaction.url_credentials import display_url
from governor import budgets, cardinality, errors, evaluation, history, http, remediation, report, rules, sources
from governor.analysis import OVER, WARN
from governor.promapi import Limits

EXIT_OK, EXIT_USAGE, EXIT_OVER, EXIT_SOURCE = 0, 2, 3, 4


def fail(code: int, message: str) -> None:
    """Print one error line and exit with `code` (a URL's credentials masked: the error may quote it)."""
    click.echo(f"bcgov: error: {display_url(message)}", err=True)
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map the governor's errors to exit codes with one clear line each."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.BudgetError as exc:
            fail(EXIT_USAGE, str(exc))
        except errors.InventoryTooLarge as exc:
            fail(EXIT_USAGE, str(exc))
        except errors.SourceError as exc:  # includes SourceUnreachable
            fail(EXIT_SOURCE, str(exc))
        except errors.GovernorError as exc:
            fail(EXIT_USAGE, str(exc))

    return wrapper


def _read_secret(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path} ({exc.strerror})", param_hint=flag) from exc
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{path} is not UTF-8 text; write the secret as UTF-8", param_hint=flag) from exc


def source_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Where the inventory comes from, and how to talk to it."""
    opts = [
        click.option("--prometheus", metavar="URL", help="Prometheus-compatible API base URL (Prometheus, Mimir, VictoriaMetrics, Thanos)."),
        click.option("--scrape", "scrape_urls", metavar="URL", multiple=True,
                     help="Scrape a /metrics URL directly (repeatable; each keeps its own instance label). "
                          f"Default with no source: {sources.DEFAULT_AGENT_URL}."),
        click.option("--scrape-job", default=sources.DEFAULT_JOB, show_default=True, metavar="NAME",
                     help="The job label --scrape targets get, as in Prometheus' scrape config (tiers can match it)."),
        click.option("--bearer-token-file", type=click.Path(dir_okay=False), help="File holding a bearer token."),
        click.option("--basic-auth-user", help="Basic auth user name."),
        click.option("--basic-auth-password-file", type=click.Path(dir_okay=False), help="File holding the basic auth password."),
        click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Extra HTTP header, e.g. X-Scope-OrgID:tenant."),
        click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="CA bundle for TLS."),
        click.option("--insecure-skip-verify", is_flag=True, help="Do not verify TLS certificates."),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds per HTTP request."),
        click.option("--retries", type=click.IntRange(min=0, max=10), default=2, show_default=True, help="Retries on network errors and 429/5xx."),
        click.option("--max-series", type=click.IntRange(min=1), default=Limits.max_series_total, show_default=True,
                     help="Refuse inventories above this many series."),
        click.option("--backend", type=click.Choice(["auto", *cardinality.BACKENDS, "enumerate"]), default="auto", show_default=True,
                     help="The --prometheus backend's cardinality statistics API (auto: detected); 'enumerate' uses none and counts every series."),
        click.option("--enumerate-below", type=click.IntRange(min=0), default=Limits.enumerate_below, show_default=True, metavar="N",
                     help="With fewer series than this (by the backend's statistics) every series is enumerated (all figures exact)."),
        click.option("--max-series-per-metric", type=click.IntRange(min=1), default=Limits.max_series_per_metric, show_default=True,
                     help="Metrics above this are counted but not analysed."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def build_source(kw: dict[str, Any]) -> sources.Source:
    """Pop the source options from `kw` and build the source they name."""
    prometheus = kw.pop("prometheus")
    scrape_urls = kw.pop("scrape_urls")
    if prometheus and scrape_urls:
        raise click.UsageError("pass either --prometheus or --scrape, not both")
    basic_user = kw.pop("basic_auth_user")
    basic_pw = _read_secret(kw.pop("basic_auth_password_file"), "--basic-auth-password-file")
    if (basic_user is None) != (basic_pw is None):
        raise click.UsageError("--basic-auth-user and --basic-auth-password-file go together")
    headers = []
    for h in kw.pop("headers"):
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r} is not NAME:VALUE", param_hint="--header")
        headers.append((name.strip(), value.strip()))
    options = http.HttpOptions(
        timeout=kw.pop("timeout"), retries=kw.pop("retries"),
        bearer_token=_read_secret(kw.pop("bearer_token_file"), "--bearer-token-file"),
        basic_auth=(basic_user, basic_pw) if basic_user and basic_pw is not None else None,
        ca_file=kw.pop("ca_file"), insecure_skip_verify=kw.pop("insecure_skip_verify"), headers=tuple(headers),
    )
    limits = Limits(max_series_total=kw.pop("max_series"), max_series_per_metric=kw.pop("max_series_per_metric"),
                    enumerate_below=kw.pop("enumerate_below"))
    backend = kw.pop("backend")
    if backend != "auto" and not prometheus:
        raise click.UsageError("--backend names the statistics API of a --prometheus URL; scrape targets have none")
    return sources.from_options(prometheus, scrape_urls, options, limits, kw.pop("scrape_job"), backend)


budgets_option = click.option("--budgets", "budgets_file", type=click.Path(dir_okay=False), metavar="FILE",
                              help="Budgets YAML (default: the shipped governor/defaults/budgets.yaml).")


def analysis_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--tier", help="Only this tier."),
        click.option("--state-dir", type=click.Path(file_okay=False), help="History directory (default: $XDG_STATE_HOME/bcgov)."),
        click.option("--no-history", is_flag=True, help="Do not read or write the local history (no churn or growth)."),
        click.option("--dashboards", type=click.Path(exists=True, file_okay=False),
                     help="Grafana dashboards folder for label usage (default: ./dashboards if present)."),
        click.option("--query-log", type=click.Path(exists=True, dir_okay=False), help="Prometheus query_log_file for label usage."),
        click.option("--no-rules", is_flag=True, help="Do not read /api/v1/rules for label usage."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal's stderr; nothing otherwise (pipes, CI)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("inventory"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("inventory", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def run_evaluation(kw: dict[str, Any], show_progress: bool = True) -> tuple[budgets.Budgets, evaluation.Evaluation, sources.Source]:
    """Shared by report and fix: load budgets, build the source, evaluate once."""
    b = budgets.load(kw.pop("budgets_file"))
    tier = kw.pop("tier")
    if tier is not None and tier not in b.tiers and tier != budgets.UNCLASSIFIED:
        raise click.BadParameter(f"unknown tier {tier!r}; known: {', '.join(b.tiers)}", param_hint="--tier")
    source = build_source(kw)
    dash = kw.pop("dashboards")
    if dash is None and Path("dashboards").is_dir():
        dash = "dashboards"
    usage_opts = evaluation.UsageOptions(rules=not kw.pop("no_rules"), dashboards=Path(dash) if dash else None,
                                         query_log=Path(q) if (q := kw.pop("query_log")) else None)
    state_dir = kw.pop("state_dir")
    no_history = kw.pop("no_history")
    try:
        with contextlib.ExitStack() as stack:
            hist = None if no_history else stack.enter_context(history.History(Path(state_dir) if state_dir else history.default_state_dir()))
            bar = stack.enter_context(progress_bar(show_progress))
            ev = evaluation.evaluate(source, b, hist, usage_opts, tier, bar)
    finally:
        source.close()
    return b, ev, source


@click.group("budget")
def budget() -> None:
    """Series budgets per data tier: report, alert rules, remediation."""


@budget.command("report")
@source_options
@budgets_option
@analysis_options
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
@click.option("--fail-on", type=click.Choice(["over", "warn"]), default="over", show_default=True,
              help="Exit 3 when any tier is at this status or worse (warn includes warnings such as an empty target).")
@click.option("--fail-on-explosion", is_flag=True,
              help="Also exit 3 when any metric, unclassified ones included, has a label with more values than its cap "
                   "(the tier's labels: cap, else max_label_values, else defaults.max_label_values).")
@guarded
def report_cmd(fmt: str, fail_on: str, fail_on_explosion: bool, **kw: Any) -> None:
    """Inventory series, compare with budgets, recommend labels to drop. Exit 3 over budget."""
    _, ev, _ = run_evaluation(kw, show_progress=fmt == "table")
    color = fmt == "table" and sys.stdout.isatty()
    click.echo(report.render(ev.report, fmt, color=color), nl=False)
    worst = ev.report.worst_status()
    if worst == OVER or (fail_on == "warn" and worst == WARN):
        sys.exit(EXIT_OVER)
    if fail_on_explosion and any(t.label_explosions for t in ev.report.tiers):
        sys.exit(EXIT_OVER)


@budget.command("rules")
@budgets_option
@click.option("--format", "fmt", type=click.Choice(["prometheus", "prometheusrule"]), default="prometheus", show_default=True,
              help="A Prometheus rule file, or a Kubernetes PrometheusRule (prometheus-operator).")
@click.option("--runbook-base-url", help="Base URL for runbook_url (default: budgets defaults.runbook_base_url).")
@click.option("--interval", "interval_s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="The governor's evaluation interval in seconds (sizes rule windows).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@guarded
def rules_cmd(budgets_file: str | None, fmt: str, runbook_base_url: str | None, interval_s: float, output: str | None) -> None:
    """Alert rules for every tier and for the agent, each with a runbook link."""
    b = budgets.load(budgets_file)
    groups = rules.build(b, runbook_base_url=runbook_base_url, interval_seconds=interval_s)
    text = rules.render(groups, fmt)
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@budget.command("fix")
@source_options
@budgets_option
@analysis_options
@click.option("--emit", type=click.Choice(list(remediation.EMITTERS)), default="prometheus-relabel", show_default=True)
@click.option("--all", "all_tiers", is_flag=True, help="Apply recommendations for every tier, not only tiers at warn or over.")
@guarded
def fix_cmd(emit: str, all_tiers: bool, **kw: Any) -> None:
    """Print config that applies the report's recommendations, commented with the series saved."""
    _, ev, _ = run_evaluation(kw)
    plan = remediation.plan(ev.report, ev.inventory, all_tiers=all_tiers)
    click.echo(remediation.EMITTERS[emit](plan), nl=False)


def register(cli: click.Group) -> None:
    """Add the `budget` group to the top-level CLI."""
    cli.add_command(budget)

