"""fork_count: forks per cgroup, an example of a probe added in its own files only.

The whole probe is this spec and fork_count.bpf.c next to it: the agent loads it from
`source_dir`, drains `fork_counts` at every scrape and labels each cgroup with the workload
labels, as the `metrics` declaration says. Nothing in agent/ knows it
(tests/agent/test_example_probe_ebpf.py runs it in the real agent).
"""

from __future__ import annotations

from pathlib import Path

from probes import families as f
from probes.spec import ProbeSpec

SPEC = ProbeSpec(
    name="fork_count",
    summary="forks counted per cgroup in the kernel, read at scrape time (an example probe)",
    required=("sched:sched_process_fork",),
    source_dir=Path(__file__).resolve().parent,
    metrics=(
        f.CounterFamily(
            "bcgov_example_forks", "Processes and threads created, by the workload that created them, counted in the kernel.",
            "fork_counts", (f.WorkloadLabels(cgroup=f.KEY),),
        ),
    ),
)
