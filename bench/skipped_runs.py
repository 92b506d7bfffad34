"""Skipped runs next to a neighbouring BPF tracer: what tcp_lifecycle and runqueue lose with and
without their raw-tracepoint repairs, under the same neighbour load.

Each round runs the same load twice, order alternating: `tracepoint only` (the probe as it was:
its raw tracepoint not attached) and `with repair` (as the agent loads it). The load is the one
of tests/agent/test_skipped_runs_ebpf.py: a neighbour BCC tracer busy ~100 us on every syscall,
context switch, wakeup and TCP state change of a test cgroup, one syscall spinner per CPU in that
cgroup, and a workload there making NORMAL loopback connections plus TIMEOUTS connects whose
SYNs are dropped (their retransmits and timeouts run in timer softirqs, which land inside the
neighbour's programs). Per run: the kernel's skipped runs per program (recursion_misses), closes
counted in the kernel against connections made per direction, skipped closes the repair finished,
and `conns` entries of the workload left behind after every socket closed; runqueue's skipped wakeups and how many of
them its raw program marked (a wakeup neither run nor marked is a wait missing from the histogram).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import say
from bench.common import summary as summarize

TESTS_AGENT = Path(__file__).resolve().parent.parent / "tests" / "agent"
ACTIVE, PASSIVE = 1, 2


def _one(repair: bool, normal: int, timeouts: int) -> dict[str, Any]:
    sys.path.insert(0, str(TESTS_AGENT))
    from cgroups import test_cgroup  # noqa: E402 - the tests' real-cgroup helper
    from neighbour_tracer import neighbour_tracer  # noqa: E402

    from agent.kernel import loader, preflight
    from agent.kernel.skipped_runs import recursion_misses
    from agent.kernel.tracefs import Tracefs
    from probes import runqueue, tcp_lifecycle

    tracefs = Tracefs(preflight.check())
    specs = [s if repair else dataclasses.replace(s, raw_tracepoints=()) for s in (tcp_lifecycle.SPEC, runqueue.SPEC)]
    probe, rq = (loader.load(loader.plan(s, tracefs)) for s in specs)
    try:
        with test_cgroup() as cg:
            before = recursion_misses({"tcp_lifecycle": probe, "runqueue": rq})
            repairs_before = [int(sum(rq.bpf["wakeup_repairs"][i])) for i in range(2)]  # after the misses, likewise
            with neighbour_tracer(cg.id):
                t0 = time.monotonic()
                r = subprocess.run([sys.executable, str(TESTS_AGENT / "skip_workload.py"), str(normal), str(timeouts)],
                                   preexec_fn=cg._enter, capture_output=True, text=True, timeout=900)
                elapsed = time.monotonic() - t0
            if r.returncode != 0:
                raise RuntimeError(f"skip workload failed: {r.stderr[-500:]}")
            did = json.loads(r.stdout)
            time.sleep(0.5)  # closes of the last sockets run in softirq just after the workload exits
            # repairs first: a wakeup skipped and marked between the two reads then shows as lost, never
            # the other way round
            marked, unknown = (int(sum(rq.bpf["wakeup_repairs"][i])) - repairs_before[i] for i in range(2))
            after = recursion_misses({"tcp_lifecycle": probe, "runqueue": rq})
            bpf = probe.bpf
            made = {ACTIVE: did["connections"] + did["timed_out"] + 1, PASSIVE: did["connections"] + 1}
            counted = {d: sum(int(v.value) for k, v in bpf["tcp_connections"].items() if k.cgroup_id == cg.id and k.direction == d)
                       for d in made}
            finished = {d: sum(int(v.value) for k, v in bpf["tcp_skipped_closes"].items() if k.cgroup_id == cg.id and k.direction == d)
                     for d in made}
            stale = sum(1 for _, v in bpf["conns"].items() if v.owner.cgroup_id == cg.id)
            return {
                "repair": repair, "seconds": elapsed,
                "skipped_runs": {f"{p}/{prog}": n - before.get((p, prog), 0) for (p, prog), n in after.items()},
                "made": made, "counted": counted, "skipped_closes_finished": finished, "stale_conns_left": stale,
                "closes_missing": sum(made[d] - counted[d] for d in made),
                "wakeups_marked": marked, "wakeups_task_unknown": unknown,
            }
    finally:
        probe.close()
        rq.close()


def run(rounds: int, normal: int, timeouts: int) -> dict[str, Any]:
    """`rounds` x (tracepoint only, with repair), alternating which goes first."""
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        for repair in ((False, True) if i % 2 == 0 else (True, False)):
            say(f"skips round {i + 1}/{rounds}: {'with repair' if repair else 'tracepoint only'}")
            runs.append(_one(repair, normal, timeouts))
    summary = {}
    for side, repair in (("tracepoint only", False), ("with repair", True)):
        mine = [r for r in runs if r["repair"] == repair]
        summary[side] = {
            "state_change_runs_skipped": summarize([r["skipped_runs"].get("tcp_lifecycle/sock:inet_sock_set_state", 0) for r in mine]),
            "all_runs_skipped": summarize([sum(r["skipped_runs"].values()) for r in mine]),
            "closes_missing": summarize([r["closes_missing"] for r in mine]),
            "stale_conns_left": summarize([r["stale_conns_left"] for r in mine]),
            "skipped_closes_finished": summarize([sum(r["skipped_closes_finished"].values()) for r in mine]),
            "wakeup_runs_skipped": summarize([r["skipped_runs"].get("runqueue/sched:sched_wakeup", 0)
                                              + r["skipped_runs"].get("runqueue/sched:sched_wakeup_new", 0) for r in mine]),
            "wakeups_lost": summarize([r["skipped_runs"].get("runqueue/sched:sched_wakeup", 0)
                                       + r["skipped_runs"].get("runqueue/sched:sched_wakeup_new", 0)
                                       - r["wakeups_marked"] for r in mine]),
        }
    return {"params": {"rounds": rounds, "normal": normal, "timeouts": timeouts}, "runs": runs, "summary": summary}
