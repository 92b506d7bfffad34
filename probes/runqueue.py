"""runqueue: run-queue latency per cgroup (see runqueue.bpf.c).

No records: the histograms live in the kernel map `runqueue_latency` (key: cgroup id) and are
drained at scrape time by the agent (agent/metrics/collectors.py), as declared in SPEC.metrics.
"""

from __future__ import annotations

from probes import families as f
from probes.latency_hist import Hist, hist_defines
from probes.spec import ProbeSpec

SPEC = ProbeSpec(
    name="runqueue",
    summary="run-queue latency histograms per cgroup, in the kernel",
    required=("sched:sched_wakeup", "sched:sched_wakeup_new", "sched:sched_switch"),
    layouts={"runqueue_latency": Hist},
    defines=hist_defines(),
    metrics=(
        f.HistogramFamily(
            "bcgov_runqueue_latency_seconds", "Time runnable tasks waited for a CPU, measured in the kernel, by workload.",
            "runqueue_latency", (f.WorkloadLabels(cgroup=f.KEY),),
        ),
        f.IndexedCounter(
            "bcgov_agent_skip_repairs",
            "Fixes made by a probe's raw tracepoint after the kernel skipped its tracepoint program.",
            "wakeup_repairs", "repair", dict(enumerate(("wakeup_marked", "wakeup_task_unknown"))), probe_label=True,
        ),
    ),
    # repair wakeups whose tracepoint run the kernel skipped (runqueue.bpf.c, "Skipped wakeups")
    raw_tracepoints=(("sched_wakeup", "bcgov_raw__sched_wakeup", ""), ("sched_wakeup_new", "bcgov_raw__sched_wakeup_new", "")),
)
