"""block_io: block request latency per device, operation and cgroup (see block_io.bpf.c).

No records: the histograms live in the kernel map `block_io_latency` and are drained at scrape
time by the agent (agent/metrics/collectors.py), as declared in SPEC.metrics.
"""

from __future__ import annotations

from probes import families as f
from probes.latency_hist import Hist, hist_defines
from probes.spec import Optional, ProbeSpec

#: `op` values of the map key, as in block_io.bpf.c.
OPS = {0: "read", 1: "write", 2: "discard", 3: "other"}


def dev_major_minor(dev: int) -> tuple[int, int]:
    """Split the kernel-internal dev_t the block tracepoints carry (20-bit minor, not the
    userspace encoding `os.major` understands)."""
    return dev >> 20, dev & ((1 << 20) - 1)


SPEC = ProbeSpec(
    name="block_io",
    summary="block I/O latency histograms per device, operation and cgroup, in the kernel",
    required=("block:block_rq_issue", "block:block_rq_complete"),
    optional=(
        Optional(
            ("block:block_io_start",),
            "HAVE_IO_START",
            "I/O attributed to the submitting task's cgroup, not the dispatching one",
        ),
    ),
    layouts={"block_io_latency": Hist},
    defines=hist_defines(),
    metrics=(
        f.HistogramFamily(
            "bcgov_block_io_latency_seconds",
            "Block request latency from issue to completion, measured in the kernel, by device and workload.",
            "block_io_latency",
            (f.BlockDevice("dev", ("device",), dev_major_minor), f.EnumLabel("op", "op", OPS, default="other"),
             f.BlockDevice("dev", ("mount", "pvc", "pvc_namespace"), dev_major_minor), f.WorkloadLabels()),
        ),
    ),
)
