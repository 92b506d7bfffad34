"""`bcgov agent ...`: run the node agent and list which probes load on this kernel."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from agent import config as agent_config
from agent.export.collector_health import SdkLineLimiter
from agent.kernel import headers as kernel_headers
from agent.kernel import loader, preflight
from agent.kernel.tracefs import Tracefs
from agent.redaction import url_credentials
from probes import registry
from probes.families import PortOwners

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from agent.export.queue import SpanQueueStats
    from agent.runtime import Agent

POD_LIST_WAIT_S = 10.0


def _setup_logging(json_logs: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("bcgov")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    # Libraries' and the agent's own module loggers (the OTel SDK's export retries, "no Kubernetes
    # config") reach Python's root logger, which printed them as plain text through its last-resort
    # handler among the JSON lines: the same handler, at the root's own level (warnings and up by
    # default, as before). Added beside any others (pytest's capture), replacing only our own.
    handler._bcgov = True  # type: ignore[attr-defined]
    # The OTel SDK's exporters log every retry of every batch (19 lines in 25 s against a dead
    # collector): one per logger a minute here; the agent's own line names the outage
    # (agent/export/collector_health.py).
    handler.addFilter(SdkLineLimiter())
    top = logging.getLogger()
    top.handlers[:] = [h for h in top.handlers if not getattr(h, "_bcgov", False)] + [handler]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: severity, logger, body, and for a logged exception its type,
    message and traceback under OTel's exception.* attribute names (a handler's failure would
    otherwise say only that it failed)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {"severity": record.levelname, "logger": record.name, "body": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["exception.type"] = type(exc).__qualname__
            line["exception.message"] = str(exc)
            line["exception.stacktrace"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _preflight() -> tuple[Tracefs, kernel_headers.HeaderChoice]:
    """The node's tracefs and the kernel headers BCC will use (applied to the environment)."""
    try:
        tracefs = Tracefs(preflight.check())
        headers = kernel_headers.choose()
        headers.apply()  # may unpack the kernel's archive: its failure is one line too
    except (preflight.PreflightError, kernel_headers.HeadersMissing) as exc:
        click.echo(f"bcgov: {exc}", err=True)
        sys.exit(2)
    return tracefs, headers


@click.group()
def agent() -> None:
    """The node agent: kernel events -> spans, logs and metrics."""


@agent.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML agent config.")
@click.option("--metrics-addr", help="HOST:PORT for /metrics (default 127.0.0.1:9464; 'off' disables).")
@click.option("--otlp-endpoint", help="Send spans over OTLP here (e.g. http://collector:4317) instead of a file.")
@click.option("--otlp-protocol", type=click.Choice(["grpc", "http"]), help="OTLP transport (default grpc).")
@click.option("--spans-file", help="OTLP JSON lines file for spans (default var/spans.jsonl).")
@click.option("--duration", type=float, help="Stop after this many seconds (0 or absent: until Ctrl-C/SIGTERM).")
@click.option("--log-file", help="Event log lines go here (default: stderr; on a terminal, var/events.jsonl).")
@click.option("--probe", "probes", multiple=True, help="Load only these probes (repeatable).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="Kubeconfig for the pod watch (default: in-cluster, then $KUBECONFIG).")
@click.option("--node-name", help="This node's name for the pod watch (default: $NODE_NAME, then the hostname).")
def run(config_path: str | None, metrics_addr: str | None, otlp_endpoint: str | None, otlp_protocol: str | None,
        spans_file: str | None, duration: float | None, log_file: str | None, probes: tuple[str, ...],
        kubeconfig: str | None, node_name: str | None) -> None:
    """Run the agent until Ctrl-C, SIGTERM or --duration."""
    from agent.runtime import Agent, AgentParts, AgentStartError

    interactive = sys.stderr.isatty()
    _setup_logging(json_logs=not interactive)
    try:
        cfg = agent_config.load(config_path, {
            "metrics_addr": metrics_addr, "otlp_endpoint": otlp_endpoint, "otlp_protocol": otlp_protocol,
            "spans_file": spans_file, "duration": duration or None, "log_file": log_file,
            "probes": list(probes) or None, "kubeconfig": kubeconfig, "node_name": node_name,
        })
    except agent_config.ConfigError as exc:
        click.echo(f"bcgov: {exc}", err=True)
        sys.exit(2)
    problem = _metrics_port_problem(cfg)  # before seconds of compiling, not after
    if problem:
        click.echo(f"bcgov: {problem}", err=True)
        sys.exit(2)
    ignored = _ignored_log_file(cfg)
    if ignored:
        logging.getLogger("bcgov.agent").warning("%s", ignored)
    if interactive and not cfg.log_file:
        cfg.log_file = "var/events.jsonl"  # keep the live summary readable
    tracefs, headers = _preflight()
    logging.getLogger("bcgov.agent").info("kernel headers: %s", headers.describe())

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The agent's own export connections are not traced; identity comes from the config (the
    # runtime waits up to POD_LIST_WAIT_S for the first pod list: events before it name no pod).
    parts = AgentParts(own_pid=os.getpid(), enricher=None, pod_list_wait_s=POD_LIST_WAIT_S)
    agent_ = Agent(cfg, tracefs, parts)
    try:
        agent_.start()
    except AgentStartError as exc:
        agent_.stop()
        click.echo(f"bcgov: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        agent_.stop()
        click.echo(f"bcgov: {_file_problem(cfg, exc)}", err=True)
        sys.exit(2)
    up = [r.name for r in agent_.reports if r.up]
    if not up:
        agent_.stop()
        click.echo("bcgov: no probe could load on this kernel; see 'bcgov agent probes'", err=True)
        sys.exit(2)
    logging.getLogger("bcgov.agent").info(
        "agent running: probes %s; spans -> %s; events -> %s;%s %s headers (%s)", ", ".join(up),
        url_credentials.display_url(cfg.otlp_endpoint) if cfg.otlp_endpoint else cfg.spans_file,
        _events_destination(cfg), _span_budget_words(agent_.span_budget(), agent_.workload_span_budget()), headers.source, headers.path)
    for problem in _budgets_for_nothing(cfg.series_budgets, parts.registry):
        logging.getLogger("bcgov.agent").warning("%s", problem)
    try:
        if interactive:
            _run_live(agent_, stop, cfg.summary_interval)
        else:
            agent_.run(stop)
    finally:
        agent_.stop()
    # received + lost + skipped = emitted: a run the kernel skipped (another BPF program was running
    # on that CPU) sent and counted nothing, so it is a loss too
    line = (f"agent stopped after {agent_.elapsed():.0f}s; lost records: {agent_.lost()}; "
            f"skipped BPF runs: {agent_.skipped()}"
            f"{_dropped('spans', agent_.span_stats(), 'bcgov_agent_spans_dropped_total')}"
            f"{_dropped('logs', agent_.log_stats(), 'bcgov_agent_logs_dropped_total')}"
            f"{_withheld(agent_.span_budget(), agent_.spans_withheld())}")
    if interactive:
        click.echo(f"bcgov: {line}", err=True)
    else:  # a JSON line like every other line on a non-terminal stderr
        logging.getLogger("bcgov.agent").info("%s", line)


def _metrics_port_problem(cfg: agent_config.AgentConfig) -> str | None:
    """Why the agent could not listen on metrics_addr (bound and released at once), or None."""
    import socket

    where = cfg.metrics_host_port()
    if where is None or where[1] == 0:
        return None
    try:
        infos = socket.getaddrinfo(where[0], where[1], type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"metrics_addr {cfg.metrics_addr}: cannot resolve {where[0]!r} ({exc}); use an address of this node"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server does
        try:
            probe.bind(addr)
        except OSError as exc:
            return (f"metrics_addr {cfg.metrics_addr}: cannot listen ({exc.strerror}); another process may hold "
                    "the port: pick another with --metrics-addr or metrics_addr, or 'off'")
    return None


def _file_problem(cfg: agent_config.AgentConfig, exc: OSError) -> str:
    """An OSError from start-up, naming the setting whose path failed when it is one of ours."""
    failed = os.path.abspath(exc.filename) if exc.filename else None
    for key in ("spans_file", "log_file"):
        path = getattr(cfg, key)
        if failed and path and (os.path.abspath(path) + os.sep).startswith(failed + os.sep):
            return f"{key} {path}: cannot create {exc.filename}: {exc.strerror}; choose a writable path for {key}"
    return str(exc)


def _budgets_for_nothing(budgets: dict, registry: CollectorRegistry) -> list[str]:
    """One warning per series_budgets name that no family of this running agent carries (a typo,
    or a probe not loaded): such a budget silently limits nothing. Known only once every probe
    and collector is registered, hence at start-up rather than when the config is read."""
    import difflib

    from agent.metrics.series_guard import family_name

    if not budgets:
        return []
    families = sorted({family_name(m.name) for m in registry.collect()})
    out = []
    for name in budgets:
        if family_name(name) not in families:
            near = difflib.get_close_matches(family_name(name), families, n=1)
            hint = f"did you mean {near[0]}?" if near else "see /metrics for the agent's families"
            out.append(f"series_budgets names {name}, which this agent does not export, so it limits nothing; {hint}")
    return out


def _dropped(what: str, stats: SpanQueueStats | None, metric: str) -> str:
    """'; spans dropped: N (reason n, ...; metric)' when a queue (spans, or event lines sent over
    OTLP) dropped any (a full queue, a failed export, a batch too large for the spans file), else
    '': a drop is never silent at exit."""
    if stats is None or not stats.dropped_total:
        return ""
    reasons = ", ".join(f"{r} {n}" for r, n in stats.dropped.items() if n)
    return f"; {what} dropped: {stats.dropped_total} ({reasons}; {metric})"


def _withheld(budget: float | None, withheld: int) -> str:
    """'; spans withheld by the span budget: N (...)' when the budgets kept any connection from
    becoming a span, else ''."""
    if not withheld:
        return ""
    return (f"; spans withheld by the span budget: {withheld} (connections still counted in the metrics; "
            f"bcgov_agent_spans_withheld_total; span_budget_per_second: 0 makes every connection a span)")


def _span_budget_words(budget: float | None, per_workload: float = 0.0) -> str:
    """' span budget 1000/s per node (0: every connection a span);' for the start line, with
    ', 50/s per workload' when span_budget_per_workload_per_second is set ('' without
    tcp_lifecycle, which alone makes spans from connections)."""
    if budget is None:
        return ""
    workload = f", {per_workload:g}/s per workload" if per_workload else ""
    if not budget and not workload:
        return " span budget off (every connection a span);"
    node = f"{budget:g}/s per node" if budget else "none per node"
    return f" span budget {node}{workload} (0: every connection a span);"


def _events_destination(cfg: agent_config.AgentConfig) -> str:
    """Where event lines really go for the `logs` setting: stderr or the log file, the OTLP
    endpoint (credentials masked), or both joined by ' and '."""
    local, otlp = cfg.log_destinations()
    where = []
    if local:
        where.append(cfg.log_file if cfg.log_file and cfg.log_file != "-" else "stderr")
    if otlp and cfg.otlp_endpoint:
        where.append(f"OTLP {url_credentials.display_url(cfg.otlp_endpoint)}")
    return " and ".join(where) or "nowhere"


def _ignored_log_file(cfg: agent_config.AgentConfig) -> str | None:
    """A warning when log_file is set but `logs: otlp` writes no line locally, else None."""
    local, _ = cfg.log_destinations()
    if cfg.log_file and not local:
        return (f"log_file {cfg.log_file} is ignored: logs: {cfg.logs} sends event lines only to "
                f"{url_credentials.display_url(cfg.otlp_endpoint or '')}; set logs: both to write the file too")
    return None


def _run_live(agent_: Agent, stop: threading.Event, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    total = len(agent_.reports)
    up = sum(r.up for r in agent_.reports)
    with Live(console=Console(stderr=True), refresh_per_second=1, transient=False) as live:
        def tick() -> None:
            live.update(agent_.summary.render(agent_.lost(), up, total, agent_.elapsed(), agent_.skipped()))
        tick()
        agent_.run(stop, on_tick=tick, tick_s=interval)
        tick()


@agent.command("probes")
@click.option("--no-load", is_flag=True, help="Only check tracepoints; do not compile and load.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def probes_cmd(no_load: bool, as_json: bool) -> None:
    """Which probes are ready on this kernel, and why not (and which kernel headers compile them)."""
    tracefs, headers = _preflight()
    rows: list[dict[str, Any]] = []
    for spec in registry.ALL:
        plan = loader.plan(spec, tracefs)
        ready, why = plan.ready, plan.reason()
        if ready and not no_load:
            try:
                loader.load(plan).close()
            except loader.ProbeLoadError as exc:
                ready, why = False, str(exc)
        rows.append({"probe": spec.name, "ready": ready, "why_not": why, "traces": spec.summary,
                     "without": list(plan.missing_optional), "tracepoints": list(spec.tracepoints()),
                     "families": [d.name for d in spec.metrics if not isinstance(d, PortOwners)],
                     "headers": {"source": headers.source, "path": headers.path, "why": headers.why}})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table("probe", "ready", "why not / missing detail", "what it traces")
        for r in rows:
            detail = r["why_not"] or "; ".join(f"without {w}" for w in r["without"])
            t.add_row(r["probe"], "yes" if r["ready"] else "NO", detail, r["traces"])
        Console().print(t)
        Console().print(f"kernel headers: {headers.describe()}")
    sys.exit(0 if all(r["ready"] for r in rows) else 1)
