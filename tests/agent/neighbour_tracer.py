"""A neighbouring BPF tracer, as on a node that also runs Cilium, Falco or a second agent: its own
tracepoint programs on the agent's tracepoints, plus CPU-heavy ones on every syscall and context
switch. While one of them runs, the kernel skips any other tracepoint program that fires on that
CPU (a softirq TCP state change, say) and counts the skip in that program's recursion_misses:
the condition the agent must survive without losing count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# Each program spins over a per-CPU counter for `SPIN` rounds: long enough that interrupts and
# softirqs land inside it. Only while a process of the test's cgroup is current, so the other
# work on a shared machine is not slowed. Independent of bcgov: no shared maps, headers or code.
_SOURCE = r"""
BPF_PERCPU_ARRAY(spins, u64, 1);

static __always_inline int spin(void)
{
    if (bpf_get_current_cgroup_id() != CGROUP_ID)
        return 0;
    int zero = 0;
    u64 *v = spins.lookup(&zero);
    if (!v)
        return 0;
    for (int i = 0; i < SPIN; i++)
        *v = *v * 6364136223846793005ULL + i;
    return 0;
}

TRACEPOINT_PROBE(sock, inet_sock_set_state) { return spin(); }
TRACEPOINT_PROBE(raw_syscalls, sys_enter) { return spin(); }
TRACEPOINT_PROBE(raw_syscalls, sys_exit) { return spin(); }
TRACEPOINT_PROBE(sched, sched_switch) { return spin(); }
TRACEPOINT_PROBE(sched, sched_wakeup) { return spin(); }
"""


@contextlib.contextmanager
def neighbour_tracer(cgroup_id: int, spin: int = 100_000) -> Iterator[object]:
    """Load the neighbour, busy for processes of `cgroup_id` (a cgroup2 inode), for the duration
    of the block (BCC object yielded); always unloaded."""
    from bcc import BPF

    bpf = BPF(text=_SOURCE, cflags=[f"-DSPIN={spin}", f"-DCGROUP_ID={cgroup_id}ULL"])
    try:
        yield bpf
    finally:
        bpf.cleanup()
