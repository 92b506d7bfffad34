"""runqueue: run-queue latency per cgroup (see runqueue.bpf.c).

No records: the histograms live in the kernel map `runqueue_latency` (key: cgroup id) and are
drained at scrape time by agent/metrics/latency.py.
"""

from __future__ import annotations

from probes.latency_hist import Hist
from probes.spec import ProbeSpec

SPEC = ProbeSpec(
    name="runqueue",
    summary="run-queue latency histograms per cgroup, in the kernel",
    required=("sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch"),
    layouts={"runqueue_latency": Hist},
    # repair wakeups whose tracepoint run the kernel skipped (runqueue.bpf.c, "Skipped wakeups")
    raw_tracepoints=(("sched_wakeup", "bcgov_raw__sched_wakeup", ""), ("sched_wakeup_new", "bcgov_raw__sched_wakeup_new", "")),
)
