"""fork_count: forks per cgroup, an example of a probe added in its own files only.

The whole probe is this spec and fork_count.bpf.c next to it: the agent loads it from
`source_dir`, drains `fork_counts` at every scrape and labels each cgroup with the workload
labels, as the `metrics` declaration says, and hands every fork record to `handler`, which writes a
"process forked" log line. Nothing in agent/ knows it (tests/agent/test_example_probe_ebpf.py runs
it in the real agent).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from probes import families as f
from probes.records import c_string
from probes.spec import ProbeSpec

if TYPE_CHECKING:
    from agent.pipeline.router import HandlerContext


class ForkRecord(ctypes.Structure):
    """Mirror of `struct fork_record` (checked against the C when the probe loads)."""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("parent_pid", ctypes.c_uint32),
        ("child_pid", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
    ]


@dataclass(frozen=True, slots=True)
class Fork:
    """One fork: when (kernel monotonic ns), in which cgroup, parent and child pid."""

    ts_ns: int
    cgroup_id: int
    parent_pid: int
    child_pid: int
    comm: str


def decode(raw: bytes) -> Fork:
    """One ring buffer record -> `Fork`."""
    r = ForkRecord.from_buffer_copy(raw)
    return Fork(r.ts_ns, r.cgroup_id, r.parent_pid, r.child_pid, c_string(r.comm))


def handler(ctx: HandlerContext) -> Callable[[Fork], None]:
    """A fork -> a "process forked" log line with the parent's identity (`ctx`: what every
    handler may use, agent/pipeline/router.py)."""
    wall, attributes_for, write = ctx.clock.to_wall_ns, ctx.enricher.attributes_for, ctx.event_log.write

    def handle(ev: Fork) -> None:
        attrs = {"process.pid": ev.parent_pid, "process.executable.name": ev.comm, "bcgov.fork.child_pid": ev.child_pid}
        attrs.update(attributes_for(ev.cgroup_id, ev.parent_pid))
        write(wall(ev.ts_ns), "process forked", attrs)
    return handle


SPEC = ProbeSpec(
    name="fork_count",
    summary="forks counted per cgroup in the kernel and logged (an example probe)",
    required=("sched:sched_process_fork",),
    source_dir=Path(__file__).resolve().parent,
    layouts={"layout": ForkRecord},
    ring_buffer="events",
    decoder=decode,
    handler=handler,
    metrics=(
        f.CounterFamily(
            "bcgov_example_forks", "Processes and threads created, by the workload that created them, counted in the kernel.",
            "fork_counts", (f.WorkloadLabels(cgroup=f.KEY),),
        ),
    ),
)
