"""`export_bundle`: query every source, build every file, redact, write, and say what is missing.

A source that fails is recorded in the manifest under `missing` with the reason and the rest is
still exported; `Result.partial` tells the caller to exit non-zero. Sources the operator did not
name are listed under `not_requested` and do not make a bundle partial.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.redaction.redact import redact_text
from governor import http
from governor.evidence import alerts as alerts_mod
from governor.evidence import bundle as bundle_mod
from governor.evidence import csvout, manifest, plots, postmortem, signals, signing, telemetry, tempo, timeline
from governor.evidence.errors import SourceMissing
from governor.evidence.promrange import RangeClient, Series
from governor.evidence.redaction import redact_value
from governor.evidence.scope import Scope
from governor.evidence.timewindow import Window, rfc3339

Progress = Callable[[str], None]
_IDENTITY_ATTRS = {"namespace": "k8s.namespace.name", "pod": "k8s.pod.name", "workload": "bcgov.workload.name", "tier": "bcgov.tier"}
_NS, _POD, _WORKLOAD, _TIER = _IDENTITY_ATTRS.values()


@dataclasses.dataclass
class Request:
    """What to export and from where; every collaborator's address comes in here."""

    window: Window
    scope: Scope
    out: Path
    command: Sequence[str]
    tool_version: str
    prometheus: str | None = None
    alertmanager: str | None = None
    spans_file: Path | None = None
    otlp_query: str | None = None
    logs_file: Path | None = None
    budgets_file: str | None = None
    sign_key: Path | None = None
    http_options: http.HttpOptions = dataclasses.field(default_factory=http.HttpOptions)


@dataclasses.dataclass
class Result:
    out: Path
    files: list[str]
    missing: dict[str, str]

    @property
    def partial(self) -> bool:
        return bool(self.missing)


class _Run:
    """State of one export; each step adds files and records sources queried or missing."""

    def __init__(self, req: Request, progress: Progress, staging: Path) -> None:
        self.req = req
        self.progress = progress
        self.bundle = bundle_mod.Bundle(staging)
        self.queried: dict[str, str] = {}
        self.missing: dict[str, str] = {}
        self.not_requested: dict[str, str] = {}
        self.alerts: list[alerts_mod.Alert] = []
        self.series: dict[str, list[Series]] = {}
        self.timeline = timeline.Timeline()
        self.seen: dict[tuple[str, ...], set[str]] = {}  # identity -> pillars it was seen in
        self.prom: RangeClient | None = None

    def miss(self, exc: SourceMissing) -> None:
        reason = redact_text(exc.reason)  # it may quote the source's URL, credentials and all
        self.missing[exc.source] = reason
        self.progress(f"missing {exc.source}: {reason}")

    # --------------------------------------------------------------------------- sources

    def prometheus(self) -> None:
        req = self.req
        if not req.prometheus:
            self.not_requested["prometheus"] = "no --prometheus given: no series, plots, ALERTS or budget report"
            return
        self.prom = RangeClient(req.prometheus, req.http_options)
        try:
            self.prom.ready()
        except SourceMissing as exc:
            self.miss(exc)
            self.prom.close()
            self.prom = None
            return
        self.queried["prometheus"] = req.prometheus
        queries: dict[str, str] = {}
        for sig in signals.SIGNALS:
            expr = sig.promql(req.scope, req.window)
            self.progress(f"series {sig.name}")
            try:
                self.series[sig.name] = self.prom.query_range(expr, req.window)
            except SourceMissing as exc:
                self.miss(SourceMissing(f"prometheus:{sig.name}", exc.reason))
                continue
            queries[sig.name] = expr
            self.bundle.add_text(f"series/{sig.name}.csv", csvout.render(expr, req.window, self.series[sig.name]))
        self.bundle.add_json("series/queries.json", {"window": _window_dict(req.window), "queries": queries})

    def alertmanager(self) -> None:
        req = self.req
        if req.alertmanager:
            self.progress("alerts from Alertmanager")
            try:
                self.alerts += alerts_mod.from_alertmanager(req.alertmanager, req.window, req.scope, req.http_options)
                self.queried["alertmanager"] = req.alertmanager
            except SourceMissing as exc:
                self.miss(exc)
        else:
            self.not_requested["alertmanager"] = "no --alertmanager given"
        expr = None
        if self.prom is not None:
            self.progress("ALERTS from Prometheus")
            try:
                found, expr = alerts_mod.from_prometheus(self.prom, req.window, req.scope)
                self.alerts += found
            except SourceMissing as exc:
                self.miss(SourceMissing("prometheus:ALERTS", exc.reason))
        self.alerts.sort(key=lambda a: (a.starts, a.name))
        self.bundle.add_json("alerts.json", {"window": _window_dict(req.window), "alerts_promql": expr,
                                             "alerts": [a.to_dict() for a in self.alerts]})

    def telemetry(self) -> None:
        """The agent's event lines and spans, each streamed from its source into the bundle. With
        both files given, the lines are read in a second process (fork) while this one reads the
        spans: the two halves of the work share nothing until their results are merged."""
        req = self.req
        child = None
        if req.logs_file and (req.spans_file or req.otlp_query):
            child = _LogsProcess(self)
        else:
            self.logs()
        self.spans()
        if child is not None:
            child.join_into(self)

    def logs(self) -> None:
        req = self.req

        def on_log(rec: dict[str, Any], ts: float) -> None:
            self.timeline.log(rec, ts)
            self._see(rec.get("attributes") or {}, "logs")

        with self.bundle.open_stream("logs.jsonl") as out:
            if req.logs_file:
                self.progress(f"logs from {req.logs_file}")
                try:
                    st = telemetry.read_logs(req.logs_file, req.window, req.scope, out, on_log, self.progress,
                                             parse_bodies=timeline.BODIES)
                    self.queried["logs"] = _read_from(req.logs_file, st)
                    self.progress(f"logs: {st.kept} of {st.read} lines kept")
                except SourceMissing as exc:
                    self.miss(exc)
            else:
                self.not_requested["logs"] = "no --logs given"

    def spans(self) -> None:
        req = self.req

        def on_span(s: telemetry.FlatSpan) -> None:
            self.timeline.span(s)
            self._see(s.attributes, "spans")

        with self.bundle.open_stream("spans.jsonl") as out:
            if req.otlp_query:
                self.progress(f"spans from {redact_value(req.otlp_query)}")
                client = tempo.TempoClient(req.otlp_query, req.http_options)
                try:
                    telemetry.filter_spans(client.traces(req.window, req.scope), req.window, req.scope, out, on_span)
                    self.queried[tempo.SOURCE] = req.otlp_query
                except SourceMissing as exc:
                    self.miss(exc)
                finally:
                    client.close()
            if req.spans_file:
                self.progress(f"spans from {req.spans_file}")
                try:
                    st = telemetry.read_spans(req.spans_file, req.window, req.scope, out, on_span, self.progress)
                    self.queried["spans"] = _read_from(req.spans_file, st)
                    self.progress(f"spans: {st.kept} spans kept from {st.read} lines")
                except SourceMissing as exc:
                    self.miss(exc)
            elif not req.otlp_query:
                self.not_requested["spans"] = "no --spans-file or --otlp-query given"

    def _see(self, attrs: dict[str, Any], where: str) -> None:
        g = attrs.get
        key = (g(_NS, ""), g(_POD, ""), g(_WORKLOAD, ""), g(_TIER, ""))
        places = self.seen.get(key)
        if places is None:
            if not any(key) or len(self.seen) >= timeline.MAX_GROUPS:
                return  # bounded like the timeline; identity.json says it is capped
            places = self.seen[key] = set()
        places.add(where)

    def budget_report(self) -> None:
        req = self.req
        if self.prom is None:
            return
        self.progress("budget report")
        from governor import budgets, evaluation, report
        from governor import errors as gov_errors
        from governor.promapi import PrometheusSource

        # The inventory is taken at the window's end: instant queries at that time, not now.
        source = PrometheusSource(req.prometheus or "", req.http_options, clock=lambda: req.window.end)
        try:
            b = budgets.load(req.budgets_file)
            tier = req.scope.tier if req.scope.tier in b.tiers else None
            ev = evaluation.evaluate(source, b, None, evaluation.UsageOptions(), tier)
            self.bundle.add_json("budget-report.json", redact_value(report.to_dict(ev.report)))
        except gov_errors.GovernorError as exc:
            self.miss(SourceMissing("budget-report", str(exc)))
        finally:
            source.close()

    # --------------------------------------------------------------------------- derived files

    def derived(self) -> list[timeline.Group]:
        req = self.req
        for sig in signals.SIGNALS:
            if sig.name in self.series:
                self.progress(f"plot {sig.name}")
                self.bundle.add_bytes(f"plots/{sig.name}.png",
                                      plots.render_png(sig.title, sig.unit, self.series[sig.name], req.window, self.alerts))
        self.bundle.add_json("identity.json", self.identity())
        self.timeline.alerts(self.alerts)
        self.timeline.budget_breaches(self.series.get("tier_series_vs_budget", []))
        groups = [g for g in self.timeline.groups() if req.window.contains(g.first)]
        self.bundle.add_text("timeline.md", timeline.render(groups, f"Timeline {rfc3339(req.window.start)} to {rfc3339(req.window.end)}"))
        return groups

    def identity(self) -> dict[str, Any]:
        """The pods, workloads and tiers seen in any pillar, with where each was seen."""
        for name, series in self.series.items():
            for s in series:
                key = tuple(s.labels.get(k, "") for k in _IDENTITY_ATTRS)
                if any(key):
                    self.seen.setdefault(key, set()).add(f"series/{name}")
        rows = [{**dict(zip(_IDENTITY_ATTRS, map(str, key), strict=True)), "seen_in": sorted(where)}
                for key, where in sorted(self.seen.items(), key=lambda kv: tuple(map(str, kv[0])))]
        return {"scope": self.req.scope.labels(), "workloads": rows, "capped": len(self.seen) >= timeline.MAX_GROUPS,
                "tiers": sorted({r["tier"] for r in rows if r["tier"]}),
                "namespaces": sorted({r["namespace"] for r in rows if r["namespace"]}),
                "pods": sorted({r["pod"] for r in rows if r["pod"]})}


class _LogsProcess:
    """`_Run.logs()` in a forked child: it writes logs.jsonl into the same staging directory and
    sends back what the parent needs (the file's sum, timeline groups, identities, sources)."""

    def __init__(self, run: _Run) -> None:
        ctx = multiprocessing.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_logs_child, args=(run, send), name="bcgov-evidence-logs", daemon=True)
        self._proc.start()
        send.close()

    def join_into(self, run: _Run) -> None:
        try:
            part = self._recv.recv()
        except EOFError:
            part = None
        self._proc.join()
        if part is None:
            run.miss(SourceMissing("logs", f"the process reading {run.req.logs_file} failed (exit code "
                                           f"{self._proc.exitcode}); run the export again, or without --logs"))
            return
        info, tl, seen, queried, missing, not_requested = part
        run.bundle.files["logs.jsonl"] = info
        run.timeline.merge(tl)
        for key, where in seen.items():
            run.seen.setdefault(key, set()).update(where)
        run.queried.update(queried)
        run.missing.update(missing)
        run.not_requested.update(not_requested)


def _logs_child(run: _Run, send: Any) -> None:
    run.bundle.files.clear()
    run.seen.clear()
    run.queried, run.missing, run.not_requested = {}, {}, {}
    run.logs()
    send.send((run.bundle.files["logs.jsonl"], run.timeline, run.seen, run.queried, run.missing, run.not_requested))
    send.close()


def _read_from(path: Path, st: telemetry.Stats) -> str:
    """The source as the manifest names it: the file by its absolute path (a relative one, as typed,
    says nothing once the bundle leaves the shell it was made in), and the rotated backups read too."""
    more = len(st.files) - 1
    where = Path(path).resolve()
    return f"{where} (+{more} rotated: {', '.join(st.files[:-1])})" if more > 0 else str(where)


def _window_dict(w: Window) -> dict[str, Any]:
    return {"start": rfc3339(w.start), "end": rfc3339(w.end), "step_seconds": w.step, "rate_window": w.rate_window}


def export_bundle(req: Request, progress: Progress = lambda _msg: None) -> Result:
    """Build and write the bundle; raises BundleError when the destination is unusable or the
    signing key cannot sign (nothing is left behind then)."""
    bundle_mod.check_destination(req.out)
    staging = bundle_mod.staging_dir(req.out)
    try:
        return _export(req, progress, staging)
    finally:
        bundle_mod.discard(staging)  # gone already when the bundle was finished


def _export(req: Request, progress: Progress, staging: Path) -> Result:
    run = _Run(req, progress, staging)
    try:
        run.prometheus()
        run.alertmanager()
        run.telemetry()
        run.budget_report()
    finally:
        if run.prom is not None:
            run.prom.close()
    groups = run.derived()
    listed = sorted(run.bundle.files) + ["timeline.md", "postmortem.md", manifest.NAME]
    if req.sign_key:
        listed.append(signing.SIG_NAME)
    run.bundle.add_text("postmortem.md", postmortem.render(req.window, req.scope, groups, sorted(set(listed)), run.missing))
    meta = {
        "tool": "bcgov", "tool_version": req.tool_version, "created_at": rfc3339(time.time()),
        "command": [str(redact_value(a)) for a in _redact_command(req.command)],
        "window": _window_dict(req.window), "scope": req.scope.labels(),
        "sources": {k: str(redact_value(v)) for k, v in run.queried.items()},
        "missing": run.missing, "not_requested": run.not_requested,
        "complete": not run.missing,
    }
    if req.sign_key:
        meta["signature"] = {"file": signing.SIG_NAME, "format": "SSHSIG (ssh-keygen -Y sign)", "namespace": signing.NAMESPACE}
    mf = redact_value(manifest.build(run.bundle.files, meta))
    data = manifest.encode(mf)
    run.bundle.add_raw(manifest.NAME, data)
    if req.sign_key:
        progress(f"signing {manifest.NAME} with {req.sign_key}")
        run.bundle.add_raw(signing.SIG_NAME, signing.sign(data, req.sign_key))
    names = sorted(run.bundle.files)
    progress(f"writing {len(names)} files to {req.out}")
    bundle_mod.finish(staging, names, req.out)
    return Result(req.out, names, dict(run.missing))


def _redact_command(argv: Sequence[str]) -> list[str]:
    from agent.redaction.redact import redact_argv

    return redact_argv(list(argv))
