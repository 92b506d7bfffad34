"""The agent: load probes, read events, serve metrics, export spans, until told to stop."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.registry import Collector

from agent.config import AgentConfig
from agent.export.collector_health import CollectorHealth
from agent.export.event_log import EventLog
from agent.export.otlp_logs import LogExportCounters, OtlpLogExporter
from agent.export.queue import SpanQueue, SpanQueueStats
from agent.export.rotating_file import RotatingFile, RotationCollector
from agent.export.span_model import IdSource, SpanExporter
from agent.export.spans import JsonlFileExporter, OtlpExporter
from agent.identity.block_devices import BlockDeviceResolver
from agent.identity.enricher import Enricher
from agent.identity.errors import IdentityError
from agent.identity.pv_claims import PvClaims
from agent.kernel import loader, preexisting
from agent.kernel.readers import RingBufferReader
from agent.kernel.sampling import KernelSpanSampling, SpanBudgetCollector
from agent.kernel.skipped_runs import SkippedRunsCollector, skipped_total
from agent.kernel.tracefs import Tracefs
from agent.metrics.collectors import ProbeMetrics, duplicate_families
from agent.metrics.instruments import Instruments
from agent.metrics.readiness import ProbeState, Readiness
from agent.metrics.series_expiry import PodSeriesExpiry
from agent.metrics.series_guard import GuardedView, SeriesGuard
from agent.metrics.server import MetricsServer
from agent.pipeline.clock import MonotonicToWall
from agent.pipeline.router import EventPipeline
from agent.pipeline.sampling import SpanSampler
from agent.selfcost import memory
from agent.selfcost.overhead import BpfCostCollector, BpfStats, BudgetThread, CpuBudget
from agent.summary import Summary
from probes import registry as probe_registry
from probes.families import STAT_LOST
from probes.spec import ProbeSpec

log = logging.getLogger("bcgov.agent")

LOG_FLUSH_AGE_S = 0.05  # how long an event log line may wait in memory (plus up to one poll timeout)


class AgentStartError(Exception):
    """The agent cannot start as configured (e.g. the identity settings); the message names the
    fix and is one line, printed by the CLI as `bcgov: <message>`."""


def version() -> str:
    """The installed bcgov version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v("bcgov")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class ProbeReport:
    """Outcome of trying to load one probe."""

    name: str
    up: bool
    reason: str = ""
    missing_optional: tuple[str, ...] = ()
    code: str = ""  # why it is down, short (agent/metrics/readiness.py)


@dataclass
class AgentParts:
    """Collaborators that tests and embedders may replace; defaults are built from the config."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # None: built from the config at start (pod identity from the Kubernetes API when `identity`
    # is on, as `bcgov agent run` does; stopped with the agent); tests pass their own.
    enricher: Enricher | None = field(default_factory=Enricher)
    span_exporter: SpanExporter | None = None
    event_stream: TextIO | None = None
    clock: MonotonicToWall = field(default_factory=MonotonicToWall)
    ids: IdSource = field(default_factory=IdSource)
    specs: tuple[ProbeSpec, ...] = probe_registry.ALL
    # Connections of this process are counted (bcgov_agent_own_connections_total), not traced:
    # the CLI sets its own pid, so its OTLP exports do not each make a span; None traces all.
    own_pid: int | None = None
    # How long start() waits for the first pod list of an identity it builds: events seen before
    # it would name no pod.
    pod_list_wait_s: float = 10.0


@dataclass
class ProbeServices:
    """What a probe's `on_attached` hook (probes/spec.py) may use and set."""

    config: AgentConfig
    sampler: SpanSampler
    instruments: Instruments
    # set by sample_spans_in_kernel: the span budgets in force and what they withheld
    span_budget: KernelSpanSampling | None = None

    def sample_spans_in_kernel(self, probe: loader.LoadedProbe) -> list[Collector]:
        """For a probe whose program samples and budgets spans before it sends a record (maps
        `span_sampling`, `span_budget`, `span_budget_by_cgroup`, `tcp_sampled_out`,
        `tcp_span_budget`, `tcp_spans_withheld`; agent/kernel/sampling.py): the sampler's keep
        ratio follows into the kernel, the configured budgets apply; returns the budget's collector."""
        sampling = KernelSpanSampling(probe)
        self.sampler.subscribe(sampling.apply)
        self.instruments.spans_sampled_out.kernel = sampling.sampled_out
        sampling.apply_budget(self.config.span_budget_per_second, self.config.span_budget_burst)
        sampling.apply_workload_budget(self.config.span_budget_per_workload_per_second)
        self.span_budget = sampling
        return [SpanBudgetCollector(sampling)]

    def learn_open_connections(self, probe: loader.LoadedProbe) -> None:
        """Fill the probe's `preexisting` map with the connections open now (sock_diag;
        agent/kernel/preexisting.py), so their close makes a record too."""
        preexisting.learn(probe)


class Agent:
    """One agent run. `start()` loads and attaches; `stop()` detaches, drains and flushes."""

    def __init__(self, config: AgentConfig, tracefs: Tracefs, parts: AgentParts | None = None) -> None:
        self.config = config
        self.tracefs = tracefs
        self.parts = parts or AgentParts()
        self.guard = SeriesGuard(config.series_budget_default, config.series_budgets)
        self.instruments: Instruments  # made by start(), once identity is known
        self._own_enricher: Enricher | None = None  # built by start() from the config: stopped by stop()
        self.exposition = GuardedView(self.parts.registry, self.guard)  # what /metrics serves
        self.kernel_metrics: ProbeMetrics | None = None
        self.summary = Summary(self.parts.specs)
        self.probes: dict[str, loader.LoadedProbe] = {}
        self.reports: list[ProbeReport] = []
        self.readiness = Readiness([], self.config.ready_requires)
        self._readers: list[RingBufferReader] = []
        self._span_queue: SpanQueue | None = None
        self._event_log: EventLog | None = None
        self._log_queue: SpanQueue | None = None  # event lines over OTLP (agent/export/otlp_logs.py)
        self._server: MetricsServer | None = None
        self._started_at = 0.0
        # --duration counts from run(), once the probes are up (compiling them took seconds), and
        # ends where stop() begins: the exit line's "stopped after" is the time the agent ran
        self._running_since: float | None = None
        self._stopped_at: float | None = None
        self.pipeline: EventPipeline | None = None
        self.sampler = SpanSampler(config.span_sample_ratio, config.slow_connection_seconds)
        self.cpu_budget: CpuBudget | None = None
        self.kernel_sampling: KernelSpanSampling | None = None
        self._budget_thread: BudgetThread | None = None
        self._bpf_stats: BpfStats | None = None
        self._final_counts: tuple[int, int] | None = None  # (lost, skipped) read just before the probes close
        self._final_withheld: int | None = None  # spans_withheld() read just before the probes close
        self.collector_health: CollectorHealth | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Load every configured probe (each may fail alone), then start readers and servers.
        Raises AgentStartError when two probes declare one metric family or identity cannot be set
        up as configured, OSError when an output file cannot be created."""
        self._started_at = time.monotonic()
        p = self.parts
        # only the configured probes' families are exported: a clash with one not loaded is no clash
        configured = tuple(s for s in p.specs if s.name in self.config.probes)
        problem = duplicate_families(configured)  # before anything compiles: the exposition would be invalid
        if problem:
            raise AgentStartError(problem)
        if p.enricher is None:
            p.enricher = self._own_enricher = self._identity()
        self.instruments = Instruments(p.registry, p.enricher, self.guard)
        resource = {
            "service.name": "bcgov-agent", "service.version": version(), "host.name": _hostname(),
            "k8s.node.name": self.config.resolved_node_name(),
        }
        exporter = p.span_exporter or self._default_exporter(resource)
        # one line when the collector stops answering, one when it answers again (spans and logs)
        health = CollectorHealth(self.config.otlp_endpoint) if self.config.otlp_endpoint else None
        self.collector_health = health
        self._span_queue = SpanQueue(
            exporter,
            on_drop=_watched_drop(lambda reason, n: self.instruments.spans_dropped.labels(reason).inc(n), health, "spans"),
            on_export=_watched_export(self.instruments.spans_exported.inc, health, "spans"),
            max_queue=self.config.span_queue_size,
            flush_timeout_s=self.config.otlp_timeout_seconds,
        )
        local_logs, otlp_logs = self.config.log_destinations()
        log_stream = (p.event_stream or _open_log(self.config)) if local_logs else None
        if otlp_logs and self.config.otlp_endpoint:
            counters = LogExportCounters(p.registry)
            self._log_queue = SpanQueue(
                OtlpLogExporter(self.config.otlp_endpoint, self.config.otlp_protocol, resource, version(),
                                self.config.otlp_timeout_seconds, self.config.otlp_headers),
                on_drop=_watched_drop(counters.on_drop, health, "logs"),
                on_export=_watched_export(counters.on_export, health, "logs"),
                max_queue=self.config.log_queue_size, flush_timeout_s=self.config.otlp_timeout_seconds,
            )
        self._event_log = EventLog(log_stream, batched=True, sink=self._log_queue.submit if self._log_queue else None)
        rotating = [f for f in (log_stream, getattr(exporter, "file", None)) if isinstance(f, RotatingFile)]
        p.registry.register(RotationCollector(rotating))
        self.pipeline = EventPipeline(
            p.clock, p.enricher, self.instruments, self._span_queue.submit, self._event_log, p.ids,
            sampler=self.sampler,
            own_pid=p.own_pid,
        )
        self._load_probes()
        services = ProbeServices(self.config, self.sampler, self.instruments)
        for probe in self.probes.values():
            if probe.plan.spec.on_attached is not None:
                for collector in probe.plan.spec.on_attached(probe, services):
                    p.registry.register(collector)
        self.kernel_sampling = services.span_budget
        # PVC labels need the API: only where the pod watch found a Kubernetes configuration
        claims = PvClaims.connect(self.config.kubeconfig) if getattr(p.enricher, "pods", None) is not None else None
        kernel = ProbeMetrics(configured, self.probes, p.enricher, known=self.config.probes,
                              received=self.instruments.received_count, guard=self.guard,
                              devices=BlockDeviceResolver(claims=claims), exemplars=self.instruments.exemplars)
        self.kernel_metrics = kernel
        p.registry.register(kernel)
        p.registry.register(self.guard)
        p.registry.register(SkippedRunsCollector(self.probes))
        self.readiness = Readiness([ProbeState(r.name, r.up, r.code, r.reason) for r in self.reports],
                                   self.config.ready_requires)
        p.registry.register(self.readiness)
        housekeeping = []
        pods = getattr(p.enricher, "pods", None)  # the pod watch, when identity has one
        if pods is not None:
            housekeeping.append(PodSeriesExpiry(pods, self.guard, [kernel]).run)
        self.exposition = GuardedView(p.registry, self.guard, housekeeping)
        self._start_overhead_accounting()
        if self.probes:  # every compile is done: give back what the compiler held (agent/selfcost/memory.py)
            freed = memory.release_compiler_memory()
            log.info("probes loaded; RSS %d MB after giving back %d MB the compiler held",
                     freed.rss_after_kb // 1024, (freed.trimmed_kb + freed.paged_out_kb) // 1024)
        event_log = self._event_log
        for probe in self.probes.values():
            spec = probe.plan.spec
            if spec.ring_buffer:
                observe = self.summary.observer(spec)
                handle = self.pipeline.handler(spec, [observe] if observe is not None else [])
                # Log lines are held and written once the oldest is LOG_FLUSH_AGE_S old, checked
                # after each poll: a busy node pays one write per ~50 ms, not one per poll.
                reader = RingBufferReader(probe, handle, self.instruments,
                                          after_batch=lambda: event_log.flush(LOG_FLUSH_AGE_S))
                reader.start()
                self._readers.append(reader)
        hp = self.config.metrics_host_port()
        if hp is not None:
            readiness = self.readiness
            self._server = MetricsServer(hp[0], hp[1], self.exposition, ready=lambda: (readiness.ready(), readiness.body()))
            self._server.start()
            log.info("serving metrics on http://%s:%d/metrics", *self._server.address)

    def _identity(self) -> Enricher:
        """Pod identity from the Kubernetes API when `identity` is on (cgroup identity when no API
        is configured), after waiting up to `pod_list_wait_s` for the first pod list; else none."""
        if not self.config.identity:
            return Enricher()
        from agent.identity.pod_enricher import IdentityEnricher

        try:
            enricher = IdentityEnricher.for_node(self.parts.registry, self.config.node_name, self.config.kubeconfig,
                                                 self.config.tiers)
        except IdentityError as exc:
            raise AgentStartError(str(exc)) from exc
        wait_s = self.parts.pod_list_wait_s
        if enricher.pods is not None and not enricher.wait_synced(wait_s):
            log.warning("no pod list from the Kubernetes API within %gs; starting anyway, pods get named once it "
                        "arrives (check the API server address and RBAC: list/watch pods)", wait_s)
        return enricher

    def _start_overhead_accounting(self) -> None:
        reg = self.parts.registry
        try:  # process_cpu_seconds_total, process_resident_memory_bytes, ...
            ProcessCollector(registry=reg)
        except ValueError:  # the embedder's registry already has them
            pass
        if self.config.bpf_stats:
            self._bpf_stats = BpfStats()
            if self._bpf_stats.enable():
                reg.register(BpfCostCollector(self.probes))
        if self.config.cpu_budget:
            self.cpu_budget = CpuBudget(self.config.cpu_budget, self.sampler, registry=reg)
            self._budget_thread = BudgetThread(self.cpu_budget, self.config.cpu_budget_window)
            self._budget_thread.start()

    def _default_exporter(self, resource: dict[str, str]) -> SpanExporter:
        if self.config.otlp_endpoint:
            return OtlpExporter(
                self.config.otlp_endpoint, self.config.otlp_protocol, resource, version(), self.config.otlp_timeout_seconds,
                self.config.otlp_headers,
            )
        return JsonlFileExporter(self.config.spans_file, resource, version(),
                                 self.config.spans_file_max_bytes, self.config.spans_file_backups)

    def _load_probes(self) -> None:
        extra = (f"RINGBUF_PAGES={self.config.ring_buffer_pages}",)
        by_name = {s.name: s for s in self.parts.specs}
        for name in self.config.probes:
            spec = by_name[name]
            plan = loader.plan(spec, self.tracefs, extra)
            try:
                self.probes[name] = loader.load(plan)
            except loader.ProbeLoadError as exc:
                # Degrade per probe: report it (probe_up 0, this line) and run the rest.
                log.error("probe %s not loaded: %s", name, exc)
                self.reports.append(ProbeReport(name, False, str(exc), code=exc.code))
                continue
            self.reports.append(ProbeReport(name, True, "", plan.missing_optional))
            for missing in plan.missing_optional:
                log.warning("probe %s runs without %s", name, missing)

    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None, tick_s: float = 1.0) -> None:
        """Block until `stop` is set or the configured duration has passed."""
        self._running_since = time.monotonic()
        deadline = None if not self.config.duration else self._running_since + self.config.duration
        while not stop.is_set():
            timeout = tick_s if deadline is None else max(0.0, min(tick_s, deadline - time.monotonic()))
            if stop.wait(timeout):
                break
            if on_tick:
                on_tick()
            if deadline is not None and time.monotonic() >= deadline:
                break

    def stop(self) -> None:
        """Detach probes, drain their buffers, flush spans and logs, free everything."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        if self._budget_thread:
            self._budget_thread.stop()
        for probe in self.probes.values():
            probe.detach()
        for reader in self._readers:
            reader.stop()
        if self._span_queue:
            self._span_queue.shutdown()
        if self._log_queue:
            self._log_queue.shutdown()
        if self._server:
            self._server.stop()
        if self._final_counts is None:  # the counters live in the kernel: read them while they exist
            self._final_counts = (self.lost(), self.skipped())
            self._final_withheld = self.spans_withheld()
        for probe in self.probes.values():
            probe.close()
        if self._event_log:
            self._event_log.close()
        if self._bpf_stats:
            self._bpf_stats.restore()
        if self._own_enricher is not None:
            self._own_enricher.stop()

    # -- status ----------------------------------------------------------------------------
    def lost(self) -> int:
        """Records the kernel dropped because the agent fell behind, over all probes (after
        `stop()`: the count at the moment the probes closed)."""
        if self._final_counts is not None:
            return self._final_counts[0]
        return sum(p.stat(STAT_LOST) for p in self.probes.values() if p.bpf is not None and p.plan.spec.ring_buffer)

    def skipped(self) -> int:
        """Probe program runs the kernel skipped (recursion_misses; see agent/kernel/skipped_runs.py), over
        all probes: with `lost()`, received + lost + skipped = emitted."""
        if self._final_counts is not None:
            return self._final_counts[1]
        return skipped_total(self.probes)

    def span_stats(self) -> SpanQueueStats | None:
        """The span queue's accounting (submitted = exported + dropped + queued), once started."""
        return self._span_queue.stats() if self._span_queue else None

    def log_stats(self) -> SpanQueueStats | None:
        """The OTLP log queue's accounting, when event lines go over OTLP (`logs` setting)."""
        return self._log_queue.stats() if self._log_queue else None

    def span_budget(self) -> float | None:
        """The node's span budget in force (spans/s; 0: none, every connection a span), or None
        when no loaded probe samples spans in the kernel (tcp_lifecycle's on_attached; built without the
        budget: 0)."""
        return self.kernel_sampling.budget_per_second if self.kernel_sampling is not None else None

    def workload_span_budget(self) -> float:
        """Each workload's own span budget in force (spans/s; 0: none)."""
        return self.kernel_sampling.workload_budget_per_second if self.kernel_sampling is not None else 0.0

    def spans_withheld(self) -> int:
        """Connection records the span budgets (node and per workload) kept from becoming spans
        (bcgov_agent_spans_withheld_total, all scopes); after `stop()` the count at close."""
        if self._final_withheld is not None:
            return self._final_withheld
        if self.kernel_sampling is None:
            return 0
        return self.kernel_sampling.budget_counts()[1]

    def elapsed(self) -> float:
        """Seconds the agent has run: from run() (or start(), before run) to stop(), or to now."""
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        return end - (self._running_since if self._running_since is not None else self._started_at)


def _watched_drop(count: Callable[[str, int], None], health: CollectorHealth | None,
                  what: str) -> Callable[[str, int], None]:
    """`count` (a queue's on_drop), also telling `health` of a failed export."""
    if health is None:
        return count

    def on_drop(reason: str, n: int) -> None:
        count(reason, n)
        if reason == "export_failed":
            health.failed(what, n)
    return on_drop


def _watched_export(count: Callable[[int], None], health: CollectorHealth | None, what: str) -> Callable[[int], None]:
    """`count` (a queue's on_export), also telling `health` the collector took a batch."""
    if health is None:
        return count

    def on_export(n: int) -> None:
        count(n)
        health.exported(what, n)
    return on_export


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _open_log(config: AgentConfig) -> TextIO | RotatingFile:
    """stderr, or the configured log file, rotating by size (closed by EventLog.close)."""
    path = config.log_file
    if not path or path == "-":
        return sys.stderr
    return RotatingFile(path, config.log_file_max_bytes, config.log_file_backups, name="events")
