"""Span shedding in the kernel: the keep ratio and slow threshold written into tcp_lifecycle's
`span_sampling` map, so normal, fast connections whose span would be sampled out are not sent
as records at all (tcp_lifecycle.bpf.c). Their count comes back from `tcp_sampled_out`."""

from __future__ import annotations

import math
import threading

from agent.loader import LoadedProbe


class KernelSpanSampling:
    """Writes SpanSampler's decisions into the probe's map; reads the kernel's sampled-out count."""

    def __init__(self, probe: LoadedProbe) -> None:
        self._probe = probe
        self._lock = threading.Lock()  # the budget thread and start() may both write

    def apply(self, ratio: float, slow_ns: int) -> None:
        """Keep `ratio` of normal, fast (< slow_ns) connections' records; 1.0 sends every record."""
        table = self._probe.bpf["span_sampling"]
        with self._lock:
            entry = table[table.Key(0)]
            entry.active = 1 if ratio < 1.0 else 0
            # SpanSampler keeps hash < ratio * 2^32; for an integer hash that is hash < ceil(...)
            entry.keep_below = min(1 << 32, math.ceil(max(0.0, ratio) * (1 << 32)))
            entry.slow_ns = slow_ns
            table[table.Key(0)] = entry

    def sampled_out(self) -> int:
        """Records the kernel did not send because their span was sampled out."""
        return int(sum(self._probe.bpf["tcp_sampled_out"][0]))
