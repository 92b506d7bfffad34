"""The process probe's maps cannot leak: the issue's failed-exec storm (5000 execs of missing
files, more than pending_exec's 4096 entries) leaves no entry behind and fills nothing, and the
exec after it is logged with its whole argv, redacted."""

from __future__ import annotations

import os

import pytest
from agent_harness import RunningAgent, wait_for

from probes.families import STAT_MAP_FULL

pytestmark = pytest.mark.ebpf

STORM = 5000  # > pending_exec's 4096: before the fix this filled it for the agent's lifetime


def _dead_tid_entries(agent: RunningAgent) -> list[int]:
    """pending_exec keys whose thread no longer exists (checked twice: an exiting thread removes
    its own entry, so one still there after its /proc entry is gone has leaked)."""
    table = agent.agent.probes["process"].bpf["pending_exec"]
    dead = [int(k.value) for k in list(table.keys()) if not os.path.exists(f"/proc/{int(k.value)}")]
    return [tid for tid in dead if table.Key(tid) in table]


def test_failed_exec_storm_leaks_nothing_and_the_next_exec_keeps_its_argv(running_agent: RunningAgent, cgroup) -> None:
    probe = running_agent.agent.probes["process"]
    full_before = probe.stat(STAT_MAP_FULL)
    storm = cgroup.run_argv(
        ["/bin/bash", "-c", f"for i in $(seq {STORM}); do /nonexistent/x$i 2>/dev/null; done; exit 0"], timeout=300)
    assert storm.returncode == 0, storm.stderr

    assert _dead_tid_entries(running_agent) == []
    assert len(probe.bpf["pending_exec"]) < 4096
    assert probe.stat(STAT_MAP_FULL) == full_before

    secret = "S3cret-after-storm"
    argv = ["/bin/sh", "-c", f"exit 0; redis-cli -a {secret} ping", "sh", "--password", secret]
    assert cgroup.run_argv(argv).returncode == 0

    def known_exec() -> dict | None:
        for r in running_agent.logs():
            a = r["attributes"]
            if r["body"] == "process exec" and a.get("bcgov.cgroup.id") == cgroup.id and a.get("process.executable.path", "").endswith("sh") \
                    and a["process.command_args"][:2] == ["/bin/sh", "-c"]:
                return r
        return None

    line = wait_for(known_exec, what="the exec line of the command run after the storm")
    assert line["attributes"]["process.command_args"] == ["/bin/sh", "-c", "exit 0; redis-cli -a *** ping", "sh", "--password", "***"]
    assert secret not in running_agent.log_path.read_text()
    # the storm's own children: one exit line each (bash's "not found" code), or counted as lost
    def storm_exits() -> int:
        n = sum(1 for r in running_agent.logs() if r["body"] == "process exit"
                and r["attributes"].get("bcgov.cgroup.id") == cgroup.id and r["attributes"].get("process.exit.code") == 127)
        return n + running_agent.agent.lost() >= STORM

    wait_for(storm_exits, what=f"{STORM} exit lines of the failed execs (or lost records)")


def test_an_exec_storm_does_not_make_the_kernel_skip_the_agents_other_programs(running_agent: RunningAgent, cgroup) -> None:
    # A ring buffer wakeup from inside the process probe's program is an irq_work whose IPI runs
    # while that program still runs: the reader's sched_wakeup then skipped runqueue's program
    # (3800 skips per 2000 execs before the probe submitted without wakeups).
    from agent.kernel.skipped_runs import recursion_misses

    execs = 1009  # prime
    before = recursion_misses(running_agent.agent.probes).get(("runqueue", "sched:sched_wakeup"), 0)
    done = cgroup.run_argv(["/bin/bash", "-c", f"for i in $(seq {execs}); do /bin/true; done"], timeout=300)
    assert done.returncode == 0
    wait_for(lambda: running_agent.kernel_count("process", "process_execs", lambda k: k.value == cgroup.id) >= execs + 1,
             what=f"{execs + 1} execs counted")
    skipped = recursion_misses(running_agent.agent.probes).get(("runqueue", "sched:sched_wakeup"), 0) - before
    assert skipped < execs // 4, f"{skipped} sched_wakeup runs skipped during {execs} execs"
