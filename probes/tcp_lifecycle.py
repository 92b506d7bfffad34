"""tcp_lifecycle: finished TCP connections (see tcp_lifecycle.bpf.c for what and what it costs).

One connection, from the kernel to its three outputs, is this module: the C's record
(`TcpCloseRecord`, `decode` -> probes/events.py `TcpConnection`), the metric families its maps feed
(`METRICS`), and `handler`, which turns each connection into a span (agent/export/span_model.py),
a log line with the span's ids and attributes, and the exemplar of the duration histogram's bucket
(remembered under `DurationKey`, labelled at scrape by the same decoders as the drained map).
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from agent.export.json_text import cached_fragment, json_str
from agent.export.span_model import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_UNSET, SpanData, SpanEvent
from agent.export.spans import json_attribute_list
from probes import families as f
from probes.events import TcpConnection
from probes.latency_hist import hist_defines
from probes.records import c_string, ip_from_bytes, struct_of
from probes.spec import FieldFeature, Optional, ProbeSpec, Tally

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from agent.kernel.loader import LoadedProbe
    from agent.pipeline.router import HandlerContext
    from agent.runtime import ProbeServices

# The codes below are the C's too: `shared_defines` passes each as -D<NAME>=<value> (the C has no
# copy; it refuses to compile without them).
RTX_SLOTS = 4
DIR_ACTIVE, DIR_PASSIVE = 1, 2
DIRECTIONS = {DIR_ACTIVE: "active", DIR_PASSIVE: "passive"}
OWNER_CONNECT, OWNER_LISTENER, OWNER_IO = 1, 2, 3
# the process holding the socket's descriptor when the agent started: written by
# agent/kernel/preexisting.py into the probe's `preexisting` map, never by the C itself
OWNER_FD = 4
OWNER_SOURCES = {OWNER_CONNECT: "connect", OWNER_LISTENER: "listener", OWNER_IO: "io", OWNER_FD: "fd"}
F_ESTABLISHED, F_RESET_RECEIVED, F_RESET_SENT, F_BYTES_KNOWN, F_BEFORE_AGENT = 1, 2, 4, 8, 16
# Outcome codes of the in-kernel maps' keys (cgroup_id, direction, outcome, port): the span's
# outcomes, so bcgov_tcp_connections_total, the duration histogram and the span always agree.
# 2 was "failed" (refused or timed out) and is no longer used.
OUTCOME_NORMAL, OUTCOME_RESET, OUTCOME_REFUSED, OUTCOME_TIMEOUT = 0, 1, 3, 4
OUTCOMES = {OUTCOME_NORMAL: "normal", OUTCOME_RESET: "reset", OUTCOME_REFUSED: "refused", OUTCOME_TIMEOUT: "timeout"}
KERNEL_OUTCOMES = OUTCOMES  # tcp_connections and tcp_connections_before_agent
DURATION_OUTCOMES = OUTCOMES  # tcp_connection_durations
#: Log2 slots of the duration histogram (BCGOV_HIST_SLOTS in tcp_lifecycle.bpf.c): finite buckets
#: up to 2^30 us (~17.9 min), longer connections only in +Inf.
DURATION_SLOTS = 32


def shared_defines() -> tuple[str, ...]:
    """The -D defines giving tcp_lifecycle.bpf.c the codes it shares with this module."""
    codes = {
        "RTX_SLOTS": RTX_SLOTS, "DIR_ACTIVE": DIR_ACTIVE, "DIR_PASSIVE": DIR_PASSIVE,
        "OWNER_CONNECT": OWNER_CONNECT, "OWNER_LISTENER": OWNER_LISTENER, "OWNER_IO": OWNER_IO,
        "F_ESTABLISHED": F_ESTABLISHED, "F_RESET_RECEIVED": F_RESET_RECEIVED, "F_RESET_SENT": F_RESET_SENT,
        "F_BYTES_KNOWN": F_BYTES_KNOWN, "F_BEFORE_AGENT": F_BEFORE_AGENT,
        "OUTCOME_NORMAL": OUTCOME_NORMAL, "OUTCOME_RESET": OUTCOME_RESET, "OUTCOME_REFUSED": OUTCOME_REFUSED,
        "OUTCOME_TIMEOUT": OUTCOME_TIMEOUT,
    }
    return tuple(f"{name}={value}" for name, value in codes.items()) + hist_defines(DURATION_SLOTS)


class DurationKey(NamedTuple):
    """A `struct conn_count_key` built in user space (raw kernel codes, as the map's key): the
    pipeline remembers a kept span's exemplar under it, and the collector labels it with the same
    decoders as the drained `tcp_connection_durations` keys, so the two label sets cannot differ."""

    direction: int
    outcome: int
    cgroup_id: int
    port: int


def duration_key(direction: str, outcome: str, cgroup_id: int, server_port: int | None) -> DurationKey:
    """The duration map's key of a decoded connection (its direction and outcome names, its
    cgroup, the listening port of a passive end or None)."""
    return DurationKey(_DIRECTION_CODES.get(direction, 0), _OUTCOME_CODES.get(outcome, -1), cgroup_id, server_port or 0)


_DIRECTION_CODES = {v: k for k, v in DIRECTIONS.items()}
_OUTCOME_CODES = {v: k for k, v in OUTCOMES.items()}


class TcpCloseRecord(ctypes.Structure):
    """Mirror of `struct tcp_close_record`."""

    _fields_ = [
        ("start_ns", ctypes.c_uint64),
        ("established_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("reset_ns", ctypes.c_uint64),
        ("bytes_sent", ctypes.c_uint64),
        ("bytes_received", ctypes.c_uint64),
        ("rtx_ns", ctypes.c_uint64 * RTX_SLOTS),
        ("cgroup_id", ctypes.c_uint64),
        ("sock", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("retransmits", ctypes.c_uint32),
        ("family", ctypes.c_uint16),
        ("sport", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("direction", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("owner_source", ctypes.c_uint8),
        ("oldstate", ctypes.c_uint8),
        ("saddr", ctypes.c_uint8 * 16),
        ("daddr", ctypes.c_uint8 * 16),
        ("comm", ctypes.c_char * 16),
    ]


def outcome_of(flags: int) -> str:
    """Close reason: never established -> refused (a reset answered) or timeout; else reset/normal."""
    if not flags & F_ESTABLISHED:
        return "refused" if flags & F_RESET_RECEIVED else "timeout"
    if flags & (F_RESET_RECEIVED | F_RESET_SENT):
        return "reset"
    return "normal"


_RECORD = struct_of(TcpCloseRecord)
_OUTCOMES = {flags: outcome_of(flags) for flags in range(256)}


def decode(raw: bytes) -> TcpConnection:
    """Turn one ring buffer record into a `TcpConnection`."""
    # Field order is TcpCloseRecord's (struct_of keeps it; check_layout ties that to the C struct);
    # rtx_ns unpacks as RTX_SLOTS items, so changing RTX_SLOTS fails this unpack loudly.
    (start_ns, established_ns, end_ns, reset_ns, bytes_sent, bytes_received, r0, r1, r2, r3, cgroup_id, sock,
     tgid, tid, retransmits, family, sport, dport, direction, flags, owner_source, _oldstate, saddr, daddr,
     comm) = _RECORD.unpack_from(raw)
    bytes_known = flags & F_BYTES_KNOWN
    # Positional, in TcpConnection's field order: keywords cost more than the rest of decode
    # (tests/probes/test_decoders.py checks every field, so a reordering cannot go unnoticed).
    return TcpConnection(
        DIRECTIONS.get(direction, "unknown"), _OUTCOMES[flags], start_ns, established_ns, end_ns, family,
        ip_from_bytes(family, saddr), sport, ip_from_bytes(family, daddr), dport, tgid, tid, c_string(comm),
        cgroup_id, OWNER_SOURCES.get(owner_source, "unknown"),
        bytes_sent if bytes_known else None, bytes_received if bytes_known else None, retransmits,
        (r0, r1, r2, r3)[:min(retransmits, RTX_SLOTS)] if retransmits else (),
        reset_ns, bool(flags & F_RESET_RECEIVED), bool(flags & F_RESET_SENT), sock, bool(flags & F_BEFORE_AGENT),
    )


# Labels of the (cgroup_id, direction, outcome, port) maps: the port (a passive end's listening
# port, else 0) gives the server's tier.
_CONNECTION_LABELS: tuple[f.Label, ...] = (
    f.EnumLabel("direction", "direction", DIRECTIONS),
    f.EnumLabel("outcome", "outcome", OUTCOMES),
    f.WorkloadLabels(port="port"),
)
#: Local port -> the one cgroup listening on it (0: several do), for the 4-tuple counters of
#: tcp_retransmit and tcp_reset: their local end is labelled as that process.
LISTENER_CGROUP = "listener_cgroup"

METRICS: tuple[f.Declaration, ...] = (
    f.CounterFamily(
        "bcgov_tcp_connections", "Finished TCP connections by direction and outcome, counted in the kernel.",
        "tcp_connections", _CONNECTION_LABELS,
    ),
    f.CounterFamily(
        "bcgov_tcp_connections_before_agent",
        "Finished TCP connections that were open when the agent started (learnt through sock_diag; "
        "no duration), counted in the kernel.",
        "tcp_connections_before_agent", _CONNECTION_LABELS,
    ),
    f.IndexedCounter(
        "bcgov_tcp_connections_opened", "TCP connections opened (SYN sent or received), counted in the kernel.",
        "tcp_opens", "direction", DIRECTIONS,
    ),
    f.StatCounter(
        "bcgov_tcp_untracked_closes",
        "TCP closes of connections the probe never saw open and the start-up socket list did not name "
        "(opened between that list and the probe's attach, or map full); no record sent.",
        f.STAT_UNTRACKED,
    ),
    f.HistogramFamily(
        "bcgov_tcp_connection_duration_seconds",
        "Duration of finished TCP connections, from SYN to close, measured in the kernel (every connection, "
        "also when its record is lost); exemplars carry a kept span's trace_id.",
        "tcp_connection_durations", _CONNECTION_LABELS, slots=DURATION_SLOTS, exemplars=True,
    ),
    # What the raw tracepoint repaired after a skipped tracepoint run ("Skipped runs" in the C).
    f.CounterFamily(
        "bcgov_tcp_skipped_closes",
        "TCP connections whose close the kernel skipped running the probe for (another BPF program was running "
        "on the CPU), finished by the probe's raw tracepoint instead (also in bcgov_tcp_connections_total).",
        "tcp_skipped_closes", (f.EnumLabel("direction", "direction", DIRECTIONS), f.WorkloadLabels()),
    ),
    f.IndexedCounter(
        "bcgov_agent_skip_repairs", "Fixes made by a probe's raw tracepoint after the kernel skipped its tracepoint program.",
        "tcp_skip_repairs", "repair",
        dict(enumerate(("close_finished", "open_tracked", "established_marked", "retransmit_counted",
                        "reset_received_marked", "reset_sent_marked"))),
        probe_label=True,
    ),
    f.PortOwners(LISTENER_CGROUP, "listeners", lambda v: int(v.owner.cgroup_id)),
)

# -- what a finished connection becomes: span, log line, exemplar ---------------------------------

ERROR_TYPES = {"refused": "connection_refused", "timeout": "connect_timeout", "reset": "connection_reset"}
_BODIES = {o: f"tcp connection {o}" for o in OUTCOMES.values()}
_JSON_TAILS_MAX = 4096  # (workload, peer) pairs whose OTLP JSON attributes are kept encoded


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


def handler(ctx: HandlerContext) -> Callable[[TcpConnection], None]:
    """One connection -> a span (CLIENT for connect, SERVER for accept) queued for export, a log
    line with the span's attributes and ids, and the span as the exemplar of the kernel's duration
    histogram bucket: one event, three pillars. The agent's own connections are only counted;
    sampled-out ones only counted too (the kernel's metrics stay exact).

    This runs once per record on the reader thread: collaborators are bound to locals once, the
    span is built positionally in one function, and the identity's JSON is cached."""
    wall = ctx.clock.to_wall_ns
    workload_of, peer_of = ctx.identity.workload, ctx.identity.peer
    submit, trace_id_of, span_id_of, keep = ctx.submit_span, ctx.ids.trace_id, ctx.ids.span_id, ctx.sampler.keep
    remember = ctx.exemplars.for_family("bcgov_tcp_connection_duration_seconds").remember  # METRICS' exemplar family
    write_json = ctx.event_log.write_json
    own_pid, instruments = ctx.own_pid, ctx.instruments
    # The identity's OTLP JSON, encoded once per workload and peer: keyed by their log-line JSON
    # (the enrichment cache's strings, whose hashes Python keeps).
    json_tails: dict[tuple[str, str], str] = {}

    def handle(ev: TcpConnection) -> None:
        if ev.pid == own_pid:
            instruments.own_connections.inc()
            return
        if not keep(ev):
            # Metrics stay exact (the kernel counts); only the span, exemplar and log line go.
            instruments.spans_sampled_out.inc()
            return
        port = server_port(ev)
        _, workload_attrs, workload_json = workload_of(ev.cgroup_id, port)
        peer_attrs, peer_json = peer_of(ev.remote_addr, ev.remote_port)

        # -- the span: the connection's attributes, then the workload's and the peer's
        attrs = connection_attributes(ev)
        n = len(attrs)
        attrs.update(workload_attrs)
        if peer_attrs:
            attrs.update(peer_attrs)
        # The cached OTLP JSON tail is used only when the identity overwrote none of the
        # connection's own keys, so it is exactly the last keys.
        tail_keys = len(attrs) - n
        tail = ""
        if tail_keys and tail_keys == len(workload_attrs) + len(peer_attrs):
            identity_key = (workload_json, peer_json)
            tail = json_tails.get(identity_key, "")
            if not tail:
                if len(json_tails) >= _JSON_TAILS_MAX:
                    json_tails.clear()
                tail = json_tails[identity_key] = json_attribute_list({**workload_attrs, **peer_attrs})
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
        error = ERROR_TYPES.get(ev.outcome)
        trace_id, span_id, end_ns = trace_id_of(), span_id_of(), wall(ev.end_ns)
        submit(SpanData(  # positional, in SpanData's field order: keywords cost more
            trace_id, span_id, "tcp connect" if active else "tcp accept", KIND_CLIENT if active else KIND_SERVER,
            wall(ev.start_ns), end_ns, attrs, events,
            STATUS_ERROR if error else STATUS_UNSET, error.replace("_", " ") if error else "", tail, tail_keys,
        ))

        # -- the exemplar: under the duration map's own key, labelled at scrape like the map
        trace_hex, span_hex = f"{trace_id:032x}", f"{span_id:016x}"
        if not ev.before_agent:  # no duration of its own: it is in no histogram bucket
            remember(duration_key(ev.direction, ev.outcome, ev.cgroup_id, port), ev.duration_ns, trace_hex, span_hex)

        # -- the log line: the span's attributes, the same members in the same order, encoded
        # from the connection's fields and the workload's and peer's cached JSON
        members = connection_json_members(ev)
        if workload_json:
            members += "," + workload_json
        if peer_json:
            members += "," + peer_json
        write_json(
            end_ns,
            _BODIES.get(ev.outcome) or f"tcp connection {ev.outcome}",
            "{" + members + "}",
            severity="WARN" if error else "INFO",
            trace_id=trace_hex,
            span_id=span_hex,
        )
    return handle


def _tally(ev: TcpConnection) -> tuple[int, ...]:
    return ev.failed, ev.reset_received or ev.reset_sent, ev.retransmits


def _talker(ev: TcpConnection) -> tuple[tuple[str, int], int]:
    return (ev.comm or "?", ev.pid), (ev.bytes_sent or 0) + (ev.bytes_received or 0)


TALLY = Tally(("failed connects", "resets", "retransmits"), _tally, talker=_talker)


def on_attached(probe: LoadedProbe, services: ProbeServices) -> list[Collector]:
    """The span sampler's keep ratio and the span budgets go into this probe's `span_sampling` and
    `span_budget` maps, and the connections open before the agent into `preexisting`: after the
    attach, so a connection is either in that list or seen opening."""
    collectors = services.sample_spans_in_kernel(probe)
    services.learn_open_connections(probe)
    return collectors


SPEC = ProbeSpec(
    name="tcp_lifecycle",
    summary="one record per finished TCP connection; opens and closes counted in the kernel",
    required=("sock:inet_sock_set_state",),
    optional=(
        Optional(
            ("sock:sock_send_length", "sock:sock_recv_length"),
            "HAVE_SOCK_LENGTH",
            "bytes and the accepting process",
        ),
        Optional(("tcp:tcp_retransmit_skb",), "HAVE_TCP_RETRANSMIT_SKB", "retransmits on the span"),
        Optional(("tcp:tcp_receive_reset",), "HAVE_TCP_RECEIVE_RESET", "resets received on the span"),
        Optional(("tcp:tcp_send_reset",), "HAVE_TCP_SEND_RESET", "resets sent on the span"),
    ),
    field_features=(
        FieldFeature("tcp:tcp_send_reset", "reason", "NEED_ENUM_SK_RST_REASON", "sk_rst_reason"),
    ),
    layouts={"layout": TcpCloseRecord},
    ring_buffer="events",
    decoder=decode,
    defines=shared_defines(),
    # repairs what a skipped tracepoint run leaves wrong (tcp_lifecycle.bpf.c, "Skipped runs")
    raw_tracepoints=(
        ("inet_sock_set_state", "bcgov_raw__inet_sock_set_state", ""),
        ("tcp_retransmit_skb", "bcgov_raw__tcp_retransmit_skb", "HAVE_TCP_RETRANSMIT_SKB"),
        ("tcp_receive_reset", "bcgov_raw__tcp_receive_reset", "HAVE_TCP_RECEIVE_RESET"),
        ("tcp_send_reset", "bcgov_raw__tcp_send_reset", "HAVE_TCP_SEND_RESET"),
    ),
    # The span budget's token buckets need BPF atomic fetch and compare-and-swap (Linux 5.12+).
    fallback=("BCGOV_NO_ATOMIC_FETCH", "no span budget on this kernel (BPF atomics need Linux 5.12+): every record is sent"),
    metrics=METRICS,
    handler=handler,
    tally=TALLY,
    on_attached=on_attached,
)
