"""oom: OOM kills (see oom.bpf.c)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from probes import families as f
from probes.events import OomKill
from probes.records import c_string
from probes.spec import ProbeSpec, Tally

if TYPE_CHECKING:
    from agent.pipeline.router import HandlerContext


class OomRecord(ctypes.Structure):
    """Mirror of `struct oom_record`."""

    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("total_vm_kb", ctypes.c_uint64),
        ("anon_rss_kb", ctypes.c_uint64),
        ("file_rss_kb", ctypes.c_uint64),
        ("shmem_rss_kb", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("trigger_tgid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("cgroup_source", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
    ]


def decode(raw: bytes) -> OomKill:
    """Decode one OOM kill record."""
    r = OomRecord.from_buffer_copy(raw)
    return OomKill(
        ts_ns=r.ts_ns,
        pid=r.pid,
        comm=c_string(r.comm),
        cgroup_id=r.cgroup_id,
        trigger_pid=r.trigger_tgid,
        uid=r.uid,
        total_vm_kb=r.total_vm_kb,
        anon_rss_kb=r.anon_rss_kb,
        file_rss_kb=r.file_rss_kb,
        shmem_rss_kb=r.shmem_rss_kb,
    )


def handler(ctx: HandlerContext) -> Callable[[OomKill], None]:
    """An OOM kill -> an "oom kill" log line at ERROR, naming the victim, the task that ran out
    and the victim's memory."""
    wall, attributes_for, write = ctx.clock.to_wall_ns, ctx.enricher.attributes_for, ctx.event_log.write

    def handle(ev: OomKill) -> None:
        attrs: dict[str, Any] = {
            "process.pid": ev.pid,
            "process.executable.name": ev.comm,
            "bcgov.oom.trigger_pid": ev.trigger_pid,
            "bcgov.oom.total_vm_kb": ev.total_vm_kb,
            "bcgov.oom.anon_rss_kb": ev.anon_rss_kb,
            "bcgov.oom.file_rss_kb": ev.file_rss_kb,
            "bcgov.oom.shmem_rss_kb": ev.shmem_rss_kb,
        }
        attrs.update(attributes_for(ev.cgroup_id, ev.pid))
        write(wall(ev.ts_ns), "oom kill", attrs, severity="ERROR")
    return handle


TALLY = Tally(("OOM kills",), lambda ev: (1,), recent=lambda ev: f"{ev.comm}[{ev.pid}]")


SPEC = ProbeSpec(
    name="oom",
    summary="OOM kills: victim pid, comm, memory and cgroup",
    required=("oom:mark_victim", "sched:sched_process_fork", "sched:sched_process_exec"),
    layouts={"layout": OomRecord},
    ring_buffer="events",
    decoder=decode,
    # OOM kills are rare and each one matters: the pod is named whatever its workload kind.
    metrics=(
        f.CounterFamily(
            "bcgov_oom_kills", "OOM killer victims, counted in the kernel; pod shown for every workload kind.", "oom_kills",
            (f.WorkloadLabels(cgroup=f.KEY, per_pod=True),),
        ),
    ),
    handler=handler,
    tally=TALLY,
)
