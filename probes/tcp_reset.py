"""tcp_reset: resets sent and received, counted per 4-tuple in the kernel (see tcp_reset.bpf.c)."""

from __future__ import annotations

from dataclasses import dataclass

from probes import families as f
from probes.records import ip_from_bytes, sockaddr_endpoint
from probes.spec import FieldFeature, ProbeSpec
from probes.tcp_lifecycle import LISTENER_CGROUP

DIRECTIONS = {1: "sent", 2: "received"}
ADDR_TUPLE, ADDR_SOCKADDR = 0, 1


@dataclass(frozen=True, slots=True)
class ResetTuple:
    """Decoded key of the tcp_resets map: who reset whom (local is this host's side)."""

    direction: str
    family: int
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int


def decode_key(key: object) -> ResetTuple:
    """Decode a `struct reset_key` (BCC's ctypes key) in either address layout."""
    saddr, daddr = bytes(key.saddr), bytes(key.daddr)  # type: ignore[attr-defined]
    direction = DIRECTIONS.get(key.direction, "unknown")  # type: ignore[attr-defined]
    if key.addr_kind == ADDR_SOCKADDR:  # type: ignore[attr-defined]
        family, local, lport = sockaddr_endpoint(saddr)
        _, remote, rport = sockaddr_endpoint(daddr)
        return ResetTuple(direction, family, local, lport, remote, rport)
    family = key.family  # type: ignore[attr-defined]
    return ResetTuple(
        direction,
        family,
        ip_from_bytes(family, saddr),
        key.sport,  # type: ignore[attr-defined]
        ip_from_bytes(family, daddr),
        key.dport,  # type: ignore[attr-defined]
    )


def local_end(key: object) -> tuple[str, int]:
    """(address, port) of this host's end of a `struct reset_key`."""
    t = decode_key(key)
    return t.local_addr, t.local_port


def remote_end(key: object) -> tuple[str, int]:
    """(address, port) of the remote end of a `struct reset_key`."""
    t = decode_key(key)
    return t.remote_addr, t.remote_port


# what local_end and remote_end read of a `struct reset_key` (checked against the C at load)
_TUPLE_FIELDS = ("addr_kind", "family", "saddr", "sport", "daddr", "dport")


SPEC = ProbeSpec(
    name="tcp_reset",
    summary="TCP resets sent and received, counted per 4-tuple in the kernel, read at scrape time",
    required=("tcp:tcp_send_reset", "tcp:tcp_receive_reset"),
    field_features=(
        FieldFeature("tcp:tcp_send_reset", "saddr", "SEND_RESET_SOCKADDR", "[28]"),
        FieldFeature("tcp:tcp_send_reset", "reason", "NEED_ENUM_SK_RST_REASON", "sk_rst_reason"),
    ),
    metrics=(
        f.CounterFamily(
            "bcgov_tcp_resets", "TCP resets sent and received, counted in the kernel.", "tcp_resets",
            (f.EnumLabel("direction", "direction", DIRECTIONS), f.LocalEndpoint(local_end, owners=LISTENER_CGROUP, fields=_TUPLE_FIELDS),
             f.PeerEndpoint(remote_end, fields=_TUPLE_FIELDS)),
        ),
    ),
)
