"""Which connections keep their span: the keep ratio, its hash, and who hears when it changes.

The kernel applies the same test before it sends a record (tcp_lifecycle.bpf.c, `span_sampling`,
with `bcgov_sample_hash` from probes/bcgov_sampling.h; written by agent/kernel/sampling.py through
`SpanSampler.subscribe`), so sampled-out connections mostly never cross the ring buffer; the
check here catches records sent before a ratio change reached the kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / phi: spreads socket addresses, which are 8-byte aligned


def sample_hash(sock: int, start_ns: int) -> int:
    """The 32-bit sampling hash of a connection (its socket address and start time, both u64):
    `(sock * 0x9E3779B97F4A7C15 + start_ns) mod 2^32`, as `bcgov_sample_hash` computes it in C
    (tests/agent/test_kernel_sampling.py compiles that and compares)."""
    return (sock * _GOLDEN + start_ns) & 0xFFFFFFFF


class Sampled(Protocol):
    """What the sampler reads of a finished connection (probes/events.py TcpConnection)."""

    outcome: str
    retransmits: int
    sock: int
    start_ns: int

    @property
    def duration_ns(self) -> int: ...


class SpanSampler:
    """Keeps every failed, reset, retransmitted and slow connection's span and a ratio of the rest.

    Sampling is deterministic per connection socket and start time, so a rerun of the same
    stream keeps the same spans; the default keeps everything (a homelab can afford it).
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

    def keep(self, ev: Sampled) -> bool:
        """True when this connection's span must be exported."""
        ratio = self.ratio * self._shed_keep
        if ratio >= 1.0 or ev.outcome != "normal" or ev.retransmits or ev.duration_ns >= self._slow_ns:
            return True
        return sample_hash(ev.sock, ev.start_ns) < ratio * 0x100000000
