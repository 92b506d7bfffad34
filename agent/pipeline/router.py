"""probe -> event -> enrich -> export: what the agent does with each event it receives.

One `EventPipeline.handle` call per decoded event, on the reader thread. Connection events become
a span (queued for export), an exemplar with that span's trace_id for the duration histogram the
kernel keeps (agent/metrics/exemplars.py), and a log line with the same trace_id: one event, three pillars.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from agent.pipeline.clock import MonotonicToWall
from agent.identity.enricher import Enricher
from agent.identity.cache import EnrichmentCache
from agent.export.event_log import EventLog
from agent.metrics.instruments import Instruments
from agent.export.json_text import cached_fragment, json_str
from agent.pipeline.redact import redact_argv, redact_text
from agent.export.spans import (
    KIND_CLIENT,
    KIND_SERVER,
    STATUS_ERROR,
    IdSource,
    SpanData,
    SpanEvent,
    json_attribute_list,
)
from probes.events import OomKill, ProcessExec, ProcessExit, TcpConnection
from probes.process import ARG_LEN
from probes.tcp_lifecycle import duration_key

ERROR_TYPES = {"refused": "connection_refused", "timeout": "connect_timeout", "reset": "connection_reset"}
_BODIES = {o: f"tcp connection {o}" for o in ("normal", "reset", "refused", "timeout")}
LOG_FLUSH_AGE_S = 0.05  # how long a log line may wait in memory (plus up to one poll timeout)


def network_type(ev: TcpConnection) -> str:
    """"ipv4" or "ipv6" by the address actually used: an IPv4 client of a dual-stack (AF_INET6)
    socket has an IPv4-mapped address, which the decoder prints as IPv4, and is IPv4."""
    return "ipv6" if ev.family == socket.AF_INET6 and ":" in ev.local_addr else "ipv4"


def server_port(ev: TcpConnection) -> int | None:
    """The local port when it names this end's tier (the accepting side's listening port); a
    client's ephemeral port names nothing. The kernel keys its counts the same way."""
    return ev.local_port if ev.direction == "passive" else None


def connection_attributes(ev: TcpConnection) -> dict[str, Any]:
    """OTel semantic-convention attributes of a connection as its owner's socket saw it."""
    attrs: dict[str, Any] = {
        "network.transport": "tcp",
        "network.type": network_type(ev),
        "network.local.address": ev.local_addr,
        "network.local.port": ev.local_port,
        "network.peer.address": ev.remote_addr,
        "network.peer.port": ev.remote_port,
        "bcgov.tcp.direction": ev.direction,
        "bcgov.tcp.outcome": ev.outcome,
        "bcgov.tcp.retransmits": ev.retransmits,
        "bcgov.tcp.owner_source": ev.owner_source,
    }
    if ev.direction == "active":
        attrs.update({"server.address": ev.remote_addr, "server.port": ev.remote_port,
                      "client.address": ev.local_addr, "client.port": ev.local_port})
    else:
        attrs.update({"server.address": ev.local_addr, "server.port": ev.local_port,
                      "client.address": ev.remote_addr, "client.port": ev.remote_port})
    if ev.pid:
        attrs["process.pid"] = ev.pid
        attrs["process.executable.name"] = ev.comm
    if ev.bytes_sent is not None:
        attrs["bcgov.tcp.bytes_sent"] = ev.bytes_sent
        attrs["bcgov.tcp.bytes_received"] = ev.bytes_received
    if ev.established_ns:
        attrs["bcgov.tcp.handshake_seconds"] = max(0, ev.established_ns - ev.start_ns) / 1e9
    if ev.retransmits > len(ev.retransmit_ns):
        # the probe keeps the first RTX_SLOTS retransmit times: say how many events the span lacks
        attrs["bcgov.tcp.retransmit_events_dropped"] = ev.retransmits - len(ev.retransmit_ns)
    if ev.outcome in ERROR_TYPES:
        attrs["error.type"] = ERROR_TYPES[ev.outcome]
    if ev.before_agent:
        attrs["bcgov.tcp.start_observed"] = False
    return attrs


@cached_fragment
def _quote(text: str) -> str:
    """`text` as a JSON string: addresses, process names and enum words repeat."""
    return json_str(text)


def connection_json_members(ev: TcpConnection) -> str:
    """`connection_attributes(ev)` as JSON object members (no braces), written directly: the
    same keys in the same order (tests/agent/test_pipeline_json.py holds the two together)."""
    active = ev.direction == "active"
    local, remote = _quote(ev.local_addr), _quote(ev.remote_addr)
    lp, rp = ev.local_port, ev.remote_port
    text = (
        f'"network.transport":"tcp","network.type":"{network_type(ev)}",'
        f'"network.local.address":{local},"network.local.port":{lp},"network.peer.address":{remote},'
        f'"network.peer.port":{rp},"bcgov.tcp.direction":{_quote(ev.direction)},'
        f'"bcgov.tcp.outcome":{_quote(ev.outcome)},"bcgov.tcp.retransmits":{ev.retransmits},'
        f'"bcgov.tcp.owner_source":{_quote(ev.owner_source)},'
    )
    if active:
        text += f'"server.address":{remote},"server.port":{rp},"client.address":{local},"client.port":{lp}'
    else:
        text += f'"server.address":{local},"server.port":{lp},"client.address":{remote},"client.port":{rp}'
    if ev.pid:
        text += f',"process.pid":{ev.pid},"process.executable.name":{_quote(ev.comm)}'
    if ev.bytes_sent is not None:
        received = "null" if ev.bytes_received is None else int(ev.bytes_received)
        text += f',"bcgov.tcp.bytes_sent":{int(ev.bytes_sent)},"bcgov.tcp.bytes_received":{received}'
    if ev.established_ns:
        # a finite float: float.__repr__ is exactly what json writes for it
        text += f',"bcgov.tcp.handshake_seconds":{max(0, ev.established_ns - ev.start_ns) / 1e9!r}'
    if ev.retransmits > len(ev.retransmit_ns):
        text += f',"bcgov.tcp.retransmit_events_dropped":{ev.retransmits - len(ev.retransmit_ns)}'
    if ev.outcome in ERROR_TYPES:
        text += f',"error.type":"{ERROR_TYPES[ev.outcome]}"'
    if ev.before_agent:
        text += ',"bcgov.tcp.start_observed":false'
    return text


class SpanSampler:
    """Keeps every failed, reset and slow connection's span and a ratio of the rest.

    Sampling is deterministic per connection socket and start time, so a rerun of the same
    stream keeps the same spans; the default keeps everything (a homelab can afford it). The
    kernel applies the same test before it sends a record (tcp_lifecycle.bpf.c span_sampling,
    written by agent/kernel/sampling.py through `subscribe`), so sampled-out connections mostly
    never cross the ring buffer; this check catches records sent before a ratio change.
    """

    def __init__(self, ratio: float = 1.0, slow_seconds: float = 1.0) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"span sample ratio must be within 0..1, not {ratio}")
        self.ratio = ratio
        self._shed_keep = 1.0
        self._slow_ns = int(slow_seconds * 1e9)
        self._listeners: list[Callable[[float, int], None]] = []

    @property
    def shed_keep(self) -> float:
        """Set by the CPU budget (agent/selfcost/overhead.py) while it sheds span work; 1.0 otherwise."""
        return self._shed_keep

    @shed_keep.setter
    def shed_keep(self, keep: float) -> None:
        changed = keep != self._shed_keep
        self._shed_keep = keep
        if changed:
            self._notify()

    @property
    def slow_ns(self) -> int:
        """Connections at least this long always keep their span."""
        return self._slow_ns

    def subscribe(self, listener: Callable[[float, int], None]) -> None:
        """Call `listener(keep ratio, slow_ns)` now and whenever the keep ratio changes."""
        self._listeners.append(listener)
        listener(self.ratio * self._shed_keep, self._slow_ns)

    def _notify(self) -> None:
        ratio = self.ratio * self._shed_keep
        for listener in self._listeners:
            listener(ratio, self._slow_ns)

    def keep(self, ev: TcpConnection) -> bool:
        """True when this connection's span must be exported."""
        ratio = self.ratio * self.shed_keep
        if ratio >= 1.0 or ev.outcome != "normal" or ev.retransmits or ev.duration_ns >= self._slow_ns:
            return True
        h = (ev.sock * 0x9E3779B97F4A7C15 + ev.start_ns) & 0xFFFFFFFF
        return h < ratio * 0x100000000


class EventPipeline:
    """Enriches and exports events; every collaborator comes in through the constructor."""

    def __init__(
        self,
        clock: MonotonicToWall,
        enricher: Enricher,
        instruments: Instruments,
        submit_span: Callable[[SpanData], None],
        event_log: EventLog,
        ids: IdSource,
        observers: list[Callable[[object], None]] | None = None,
        sampler: "SpanSampler | None" = None,
        own_pid: int | None = None,
    ) -> None:
        self._clock = clock
        self._enricher = enricher
        self._identity = EnrichmentCache(enricher)
        # The agent's own connections (its OTLP exports, its API watches) would each make a span
        # that is exported over another connection, forever: with own_pid set they are only counted.
        self._own_pid = own_pid
        self._instruments = instruments
        self._exemplars = instruments.duration_exemplars
        self._submit_span = submit_span
        self._log = event_log
        self._ids = ids
        self._observers = observers or []
        self._sampler = sampler or SpanSampler()
        self._json_tails: dict[tuple[str, str], str] = {}  # (workload, peer) JSON members -> OTLP JSON attributes

    def flush(self) -> None:
        """Write out the log lines held so far."""
        self._log.flush()

    def end_of_batch(self) -> None:
        """Called by the readers after each poll: held log lines are written once the oldest is
        LOG_FLUSH_AGE_S old, so a busy node pays one write per ~50 ms, not one per poll."""
        self._log.flush(LOG_FLUSH_AGE_S)

    def handle(self, event: object) -> None:
        """Route one event to its exporters."""
        if isinstance(event, TcpConnection):
            self._connection(event)
        elif isinstance(event, ProcessExec):
            self._exec(event)
        elif isinstance(event, ProcessExit):
            self._exit(event)
        elif isinstance(event, OomKill):
            self._oom(event)
        for observe in self._observers:
            observe(event)

    def connection_span(self, ev: TcpConnection) -> SpanData:
        """The span of one connection endpoint: CLIENT for connect, SERVER for accept."""
        return self._span(ev, self._identity.workload(ev.cgroup_id, server_port(ev))[1],
                          self._identity.peer(ev.remote_addr, ev.remote_port)[0])

    def _span(self, ev: TcpConnection, workload_attrs: dict[str, Any], peer_attrs: dict[str, Any],
              identity_key: tuple[str, str] | None = None) -> SpanData:
        wall = self._clock.to_wall_ns
        attrs = connection_attributes(ev)
        n = len(attrs)
        attrs.update(workload_attrs)
        if peer_attrs:
            attrs.update(peer_attrs)
        # The identity's OTLP JSON, encoded once per workload and peer: keyed by their log-line JSON
        # (the enrichment cache's strings, whose hashes Python keeps), and used only when the
        # identity overwrote none of the connection's own keys, so it is exactly the last keys.
        tail_keys = len(attrs) - n
        tail = ""
        if identity_key is not None and tail_keys and tail_keys == len(workload_attrs) + len(peer_attrs):
            tail = self._json_tails.get(identity_key)
            if tail is None:
                if len(self._json_tails) >= 4096:
                    self._json_tails.clear()
                tail = self._json_tails[identity_key] = json_attribute_list({**workload_attrs, **peer_attrs})
        else:
            tail_keys = 0
        events = [
            SpanEvent("tcp.retransmit", wall(ts), {"bcgov.tcp.retransmit.index": i + 1})
            for i, ts in enumerate(ev.retransmit_ns)
        ] if ev.retransmit_ns else []
        if ev.reset_ns:
            who = "received" if ev.reset_received else "sent"
            events.append(SpanEvent("tcp.reset", wall(ev.reset_ns), {"bcgov.tcp.reset.direction": who}))
        active = ev.direction == "active"
        span = SpanData(
            self._ids.trace_id(), self._ids.span_id(), "tcp connect" if active else "tcp accept",
            KIND_CLIENT if active else KIND_SERVER, wall(ev.start_ns), wall(ev.end_ns), attrs, events,
            json_tail=tail, json_tail_keys=tail_keys,
        )
        if ev.outcome in ERROR_TYPES:
            span.status_code = STATUS_ERROR
            span.status_message = ERROR_TYPES[ev.outcome].replace("_", " ")
        return span

    def _connection(self, ev: TcpConnection) -> None:
        if ev.pid == self._own_pid:
            self._instruments.own_connections.inc()
            return
        if not self._sampler.keep(ev):
            # Metrics stay exact (the kernel counts); only the span, exemplar and log line go.
            self._instruments.spans_sampled_out.inc()
            return
        workload_labels, workload_attrs, workload_json = self._identity.workload(ev.cgroup_id, server_port(ev))
        peer_attrs, peer_json = self._identity.peer(ev.remote_addr, ev.remote_port)
        span = self._span(ev, workload_attrs, peer_attrs, (workload_json, peer_json))
        self._submit_span(span)
        trace_id, span_id = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        if not ev.before_agent:  # no duration of its own: it is in no histogram bucket
            self._exemplars.remember(duration_key(ev.direction, ev.outcome, ev.cgroup_id, server_port(ev)),
                                     ev.duration_ns, trace_id, span_id)
        # The line's attributes are the span's: the same members in the same order, encoded
        # from the connection's fields and the workload's and peer's cached JSON.
        members = connection_json_members(ev)
        if workload_json:
            members += "," + workload_json
        if peer_json:
            members += "," + peer_json
        self._log.write_json(
            span.end_ns,
            _BODIES.get(ev.outcome) or f"tcp connection {ev.outcome}",
            "{" + members + "}",
            severity="WARN" if span.status_code == STATUS_ERROR else "INFO",
            trace_id=trace_id,
            span_id=span_id,
        )

    def _exec(self, ev: ProcessExec) -> None:
        attrs: dict[str, Any] = {
            "process.pid": ev.pid,
            "process.executable.name": ev.comm,
            "process.executable.path": redact_text(ev.filename),
            "process.command_args": redact_argv(ev.argv, ARG_LEN),
            "process.owner.uid": ev.uid,
        }
        if ev.argv_truncated:
            attrs["bcgov.process.args_truncated"] = True
        attrs.update(self._enricher.attributes_for(ev.cgroup_id, ev.pid))
        self._log.write(self._clock.to_wall_ns(ev.ts_ns), "process exec", attrs)

    def _exit(self, ev: ProcessExit) -> None:
        attrs: dict[str, Any] = {"process.pid": ev.pid, "process.executable.name": ev.comm, "bcgov.process.exit_kind": ev.exit_kind}
        if ev.exit_code is not None:
            attrs["process.exit.code"] = ev.exit_code
        if ev.signal is not None:
            attrs["bcgov.process.signal"] = ev.signal
        if ev.lifetime_ns is not None:
            attrs["bcgov.process.lifetime_seconds"] = ev.lifetime_ns / 1e9
        attrs.update(self._enricher.attributes_for(ev.cgroup_id, ev.pid))
        failed = ev.exit_kind == "signaled" or (ev.exit_code or 0) != 0
        self._log.write(self._clock.to_wall_ns(ev.ts_ns), "process exit", attrs, severity="WARN" if failed else "INFO")

    def _oom(self, ev: OomKill) -> None:
        attrs: dict[str, Any] = {
            "process.pid": ev.pid,
            "process.executable.name": ev.comm,
            "bcgov.oom.trigger_pid": ev.trigger_pid,
            "bcgov.oom.total_vm_kb": ev.total_vm_kb,
            "bcgov.oom.anon_rss_kb": ev.anon_rss_kb,
            "bcgov.oom.file_rss_kb": ev.file_rss_kb,
            "bcgov.oom.shmem_rss_kb": ev.shmem_rss_kb,
        }
        attrs.update(self._enricher.attributes_for(ev.cgroup_id, ev.pid))
        self._log.write(self._clock.to_wall_ns(ev.ts_ns), "oom kill", attrs, severity="ERROR")
