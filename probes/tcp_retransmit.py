"""tcp_retransmit: retransmits counted per 4-tuple in the kernel (see tcp_retransmit.bpf.c)."""

from __future__ import annotations

from probes.spec import ProbeSpec

SPEC = ProbeSpec(
    name="tcp_retransmit",
    summary="TCP retransmits counted per connection 4-tuple in the kernel, read at scrape time",
    required=("tcp:tcp_retransmit_skb",),
)
