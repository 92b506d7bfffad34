"""tcp_lifecycle: finished TCP connections (see tcp_lifecycle.bpf.c for what and what it costs)."""

from __future__ import annotations

import ctypes

from probes.events import TcpConnection
from probes.records import c_string, ip_from_bytes
from probes.spec import FieldFeature, Optional, ProbeSpec

RTX_SLOTS = 4
DIRECTIONS = {1: "active", 2: "passive"}
OWNER_SOURCES = {1: "connect", 2: "listener", 3: "io"}
F_ESTABLISHED, F_RESET_RECEIVED, F_RESET_SENT, F_BYTES_KNOWN = 1, 2, 4, 8
# Keys of the in-kernel tcp_connections map: (cgroup_id, direction, outcome).
KERNEL_OUTCOMES = {0: "normal", 1: "reset", 2: "failed"}


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


def decode(raw: bytes) -> TcpConnection:
    """Turn one ring buffer record into a `TcpConnection`."""
    r = TcpCloseRecord.from_buffer_copy(raw)
    bytes_known = bool(r.flags & F_BYTES_KNOWN)
    n_rtx = min(r.retransmits, RTX_SLOTS)
    return TcpConnection(
        direction=DIRECTIONS.get(r.direction, "unknown"),
        outcome=outcome_of(r.flags),
        start_ns=r.start_ns,
        established_ns=r.established_ns,
        end_ns=r.end_ns,
        family=r.family,
        local_addr=ip_from_bytes(r.family, bytes(r.saddr)),
        local_port=r.sport,
        remote_addr=ip_from_bytes(r.family, bytes(r.daddr)),
        remote_port=r.dport,
        pid=r.tgid,
        tid=r.tid,
        comm=c_string(r.comm),
        cgroup_id=r.cgroup_id,
        owner_source=OWNER_SOURCES.get(r.owner_source, "unknown"),
        bytes_sent=r.bytes_sent if bytes_known else None,
        bytes_received=r.bytes_received if bytes_known else None,
        retransmits=r.retransmits,
        retransmit_ns=tuple(r.rtx_ns[i] for i in range(n_rtx)),
        reset_ns=r.reset_ns,
        reset_received=bool(r.flags & F_RESET_RECEIVED),
        reset_sent=bool(r.flags & F_RESET_SENT),
        sock=r.sock,
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
    defines=(f"RTX_SLOTS={RTX_SLOTS}",),
)
