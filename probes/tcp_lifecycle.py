"""tcp_lifecycle: finished TCP connections (see tcp_lifecycle.bpf.c for what and what it costs)."""

from __future__ import annotations

import ctypes

from probes.events import TcpConnection
from probes.records import c_string, ip_from_bytes, struct_of
from probes.spec import FieldFeature, Optional, ProbeSpec

RTX_SLOTS = 4
DIRECTIONS = {1: "active", 2: "passive"}
# 4: the process holding the socket's descriptor when the agent started (agent/kernel/preexisting.py)
OWNER_SOURCES = {1: "connect", 2: "listener", 3: "io", 4: "fd"}
F_ESTABLISHED, F_RESET_RECEIVED, F_RESET_SENT, F_BYTES_KNOWN, F_BEFORE_AGENT = 1, 2, 4, 8, 16
# Outcome codes of the in-kernel maps' keys (cgroup_id, direction, outcome, port): the span's
# outcomes, so bcgov_tcp_connections_total, the duration histogram and the span always agree.
OUTCOMES = {0: "normal", 1: "reset", 3: "refused", 4: "timeout"}
KERNEL_OUTCOMES = OUTCOMES  # tcp_connections and tcp_connections_before_agent
DURATION_OUTCOMES = OUTCOMES  # tcp_connection_durations
#: Log2 slots of the duration histogram (BCGOV_HIST_SLOTS in tcp_lifecycle.bpf.c): finite buckets
#: up to 2^30 us (~17.9 min), longer connections only in +Inf.
DURATION_SLOTS = 32


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
    defines=(f"RTX_SLOTS={RTX_SLOTS}", f"BCGOV_HIST_SLOTS={DURATION_SLOTS}"),
    # repairs what a skipped tracepoint run leaves wrong (tcp_lifecycle.bpf.c, "Skipped runs")
    raw_tracepoints=(
        ("inet_sock_set_state", "bcgov_raw__inet_sock_set_state", ""),
        ("tcp_retransmit_skb", "bcgov_raw__tcp_retransmit_skb", "HAVE_TCP_RETRANSMIT_SKB"),
        ("tcp_receive_reset", "bcgov_raw__tcp_receive_reset", "HAVE_TCP_RECEIVE_RESET"),
        ("tcp_send_reset", "bcgov_raw__tcp_send_reset", "HAVE_TCP_SEND_RESET"),
    ),
    # The span budget's token buckets need BPF atomic fetch and compare-and-swap (Linux 5.12+).
    fallback=("BCGOV_NO_ATOMIC_FETCH", "no span budget on this kernel (BPF atomics need Linux 5.12+): every record is sent"),
)
