"""tcp_retransmit: retransmits counted per 4-tuple in the kernel (see tcp_retransmit.bpf.c)."""

from __future__ import annotations

from typing import Any

from probes import families as f
from probes.records import ip_from_bytes
from probes.spec import ProbeSpec
from probes.tcp_lifecycle import LISTENER_CGROUP


def local_end(key: Any) -> tuple[str, int]:
    """(address, port) of this host's end of a `struct tuple_key`."""
    return ip_from_bytes(key.family, bytes(key.saddr)), key.sport


def remote_end(key: Any) -> tuple[str, int]:
    """(address, port) of the remote end of a `struct tuple_key`."""
    return ip_from_bytes(key.family, bytes(key.daddr)), key.dport


# what local_end and remote_end read of a `struct tuple_key` (checked against the C at load)
_TUPLE_FIELDS = ("family", "saddr", "sport", "daddr", "dport")


SPEC = ProbeSpec(
    name="tcp_retransmit",
    summary="TCP retransmits counted per connection 4-tuple in the kernel, read at scrape time",
    required=("tcp:tcp_retransmit_skb",),
    metrics=(
        f.CounterFamily(
            "bcgov_tcp_retransmits",
            "TCP segments retransmitted, counted in the kernel per connection and summed by workload.",
            "tcp_retransmits",
            (f.LocalEndpoint(local_end, owners=LISTENER_CGROUP, fields=_TUPLE_FIELDS), f.PeerEndpoint(remote_end, fields=_TUPLE_FIELDS)),
        ),
    ),
)
