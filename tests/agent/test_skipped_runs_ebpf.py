"""Exact next to a neighbouring BPF tracer. While a neighbour's BPF program runs on a CPU, the
kernel skips tcp_lifecycle's tracepoint programs for events on that CPU (recursion_misses); the
probe's raw tracepoint on the same event repairs what a skipped state change leaves: every
connection made is counted for both ends (the skipped closes among them, with their records), and
no `conns` entry outlives its socket."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_harness import CgroupIdentity, RunningAgent, started_agent, wait_for
from bpf_test_run import run_raw
from neighbour_tracer import neighbour_tracer

from agent.kernel.skipped_runs import recursion_misses
from agent.runtime import AgentParts

pytestmark = pytest.mark.ebpf

NORMAL = 2003   # prime: counts that cannot happen by accident
TIMEOUTS = 23
MAX_ROUNDS = 3
ACTIVE, PASSIVE = 1, 2
SKIP_WORKLOAD = Path(__file__).with_name("skip_workload.py")
TCP_SYN_SENT, TCP_ESTABLISHED, TCP_CLOSE = 2, 1, 7


@pytest.fixture
def tcp_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    with started_agent(tmp_path, AgentParts(enricher=CgroupIdentity()), probes=["tcp_lifecycle"]) as agent:
        yield agent


def _counts(agent: RunningAgent, cgroup_id: int, direction: int) -> tuple[int, int]:
    """(closes counted, of which the kernel skipped the tracepoint run) of one cgroup and direction."""
    mine = lambda k: k.cgroup_id == cgroup_id and k.direction == direction  # noqa: E731
    return (agent.kernel_count("tcp_lifecycle", "tcp_connections", mine),
            agent.kernel_count("tcp_lifecycle", "tcp_skipped_closes", mine))


def _conns_of(agent: RunningAgent, cgroup_id: int) -> list[int]:
    return [int(k.value) for k, v in agent.agent.probes["tcp_lifecycle"].bpf["conns"].items() if v.owner.cgroup_id == cgroup_id]


def test_every_connection_is_counted_next_to_a_neighbour_tracer(tcp_agent: RunningAgent, cgroup) -> None:
    agent = tcp_agent
    probes = {"tcp_lifecycle": agent.agent.probes["tcp_lifecycle"]}
    misses_before = sum(recursion_misses(probes).values())
    made = {ACTIVE: 0, PASSIVE: 0}
    for _ in range(MAX_ROUNDS):  # skips are chance events: run again (bounded) until some happened
        with neighbour_tracer(cgroup.id):
            result = subprocess.run([sys.executable, str(SKIP_WORKLOAD), str(NORMAL), str(TIMEOUTS)],
                                    preexec_fn=cgroup._enter, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        did = json.loads(result.stdout)
        assert did["connections"] == NORMAL and did["timed_out"] == TIMEOUTS
        # made: the normal connections' two ends, the timed-out connects, and the one connection
        # that filled the accept queue (both ends, closed unaccepted)
        made[ACTIVE] += NORMAL + TIMEOUTS + 1
        made[PASSIVE] += NORMAL + 1
        for direction, n in made.items():
            wait_for(lambda direction=direction, n=n: _counts(agent, cgroup.id, direction)[0] == n, timeout=60,
                     what=f"{n} closes counted for direction {direction}")
        if sum(recursion_misses(probes).values()) > misses_before:
            break
    # the neighbour did make the kernel skip the agent's runs (SYN retransmits and state changes
    # in timer softirqs landing inside its programs), and the agent exports every one
    misses = sum(recursion_misses(probes).values()) - misses_before
    assert misses > 0
    text = agent.scrape(openmetrics=False)
    exported = sum(float(v) for v in re.findall(r'bcgov_agent_bpf_recursion_misses_total\{probe="tcp_lifecycle",program="[^"]+"\} (\S+)', text))
    assert exported >= misses
    skipped = sum(_counts(agent, cgroup.id, d)[1] for d in made)
    exported_closes = sum(float(v) for v in re.findall(rf'bcgov_tcp_skipped_closes_total\{{cgroup="{cgroup.id}",direction="\w+"\}} (\S+)', text))
    assert exported_closes == skipped
    print(f"made {made}, skipped runs {misses}, of them closes (counted and recorded by the raw program) {skipped}")
    # every close has its span, the skipped ones too (records the ring buffer could not take are counted)
    total = made[ACTIVE] + made[PASSIVE]
    wait_for(lambda: len([x for x in agent.spans() if x["attrs"].get("bcgov.cgroup.id") == cgroup.id]) + agent.agent.lost() >= total,
             timeout=60, what=f"{total} spans of the workload (or lost records)")
    # no conns entry outlives its socket
    assert _conns_of(agent, cgroup.id) == []


# --- the repairs, each driven deterministically through BPF_PROG_TEST_RUN on the real program ---


def _repairs(agent: RunningAgent) -> list[int]:
    table = agent.agent.probes["tcp_lifecycle"].bpf["tcp_skip_repairs"]
    return [int(sum(table[i])) for i in range(6)]


def test_each_repair_of_a_skipped_run(tcp_agent: RunningAgent, cgroup) -> None:
    agent = tcp_agent
    bpf = agent.agent.probes["tcp_lifecycle"].bpf
    raw = bpf.funcs[b"bcgov_raw__inet_sock_set_state"].fd
    before = _repairs(agent)
    # A connection both of whose closes are skipped: held open, then its closes run only the raw program.
    holder = subprocess.Popen([sys.executable, str(SKIP_WORKLOAD), "hold", "120"],
                              preexec_fn=cgroup._enter, stdout=subprocess.PIPE, text=True)
    try:
        socks = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(_conns_of(agent, cgroup.id)), timeout=60,
                         what="both ends of the held connection tracked")
        # a retransmit and resets whose tracepoint runs were skipped still reach the span
        conns = bpf["conns"]
        run_raw(bpf.funcs[b"bcgov_raw__tcp_retransmit_skb"].fd, socks[0], 0)
        assert conns[conns.Key(socks[0])].retransmits == 1 and conns[conns.Key(socks[0])].rtx_ns[0] > 0
        run_raw(bpf.funcs[b"bcgov_raw__tcp_receive_reset"].fd, socks[0])
        run_raw(bpf.funcs[b"bcgov_raw__tcp_send_reset"].fd, socks[1], 0, 0)
        assert conns[conns.Key(socks[0])].flags & 2 and conns[conns.Key(socks[1])].flags & 4  # F_RESET_RECEIVED / _SENT
        for sk in socks:
            run_raw(raw, sk, TCP_ESTABLISHED, TCP_CLOSE)
        assert _conns_of(agent, cgroup.id) == []
        assert _counts(agent, cgroup.id, ACTIVE) == (1, 1) and _counts(agent, cgroup.id, PASSIVE) == (1, 1)
        # finished as the tracepoint program would have: a span each, with the endpoints it last saw
        port = json.loads(holder.stdout.readline())["port"]
        ends = wait_for(lambda: (lambda x: x if len(x) == 2 else None)(
            [x for x in agent.spans() if x["attrs"].get("bcgov.cgroup.id") == cgroup.id]), timeout=60, what="two spans")
        assert sorted(x["name"] for x in ends) == ["tcp accept", "tcp connect"]
        assert {x["attrs"]["server.port"] for x in ends} == {port}
        assert sorted(x["attrs"]["bcgov.tcp.retransmits"] for x in ends) == [0, 1]  # the repaired retransmit rides on one
    finally:
        holder.kill()
        holder.wait()
    # An open, an ESTABLISHED and a close all skipped: the raw program tracks, marks and sweeps it.
    fake_sk = 0xDEAD_0000_0000_BEEF  # a key no socket has; the program never dereferences it
    run_raw(raw, fake_sk, 0, TCP_SYN_SENT)
    entry = bpf["conns"][bpf["conns"].Key(fake_sk)]
    assert entry.direction == ACTIVE and entry.owner.tgid == os.getpid()
    run_raw(raw, fake_sk, TCP_SYN_SENT, TCP_ESTABLISHED)
    assert bpf["conns"][bpf["conns"].Key(fake_sk)].flags & 1  # F_ESTABLISHED
    run_raw(raw, fake_sk, TCP_ESTABLISHED, TCP_CLOSE)
    assert bpf["conns"].Key(fake_sk) not in bpf["conns"]
    assert [a - b for a, b in zip(_repairs(agent), before, strict=True)] == [3, 1, 1, 1, 1, 1]


# --- runqueue: wakeups whose tracepoint run was skipped ---------------------------------------

@pytest.fixture
def runqueue_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    with started_agent(tmp_path, AgentParts(enricher=CgroupIdentity()), probes=["runqueue"]) as agent:
        yield agent


def _wakeup_repairs(agent: RunningAgent) -> tuple[int, int]:
    table = agent.agent.probes["runqueue"].bpf["wakeup_repairs"]
    return int(sum(table[0])), int(sum(table[1]))


def _wakeup_misses(agent: RunningAgent) -> int:
    m = recursion_misses({"runqueue": agent.agent.probes["runqueue"]})
    return m.get(("runqueue", "sched:sched_wakeup"), 0) + m.get(("runqueue", "sched:sched_wakeup_new"), 0)


def test_skipped_wakeups_are_marked_by_the_raw_program(runqueue_agent: RunningAgent, cgroup) -> None:
    agent = runqueue_agent
    misses0, (marked0, unknown0) = _wakeup_misses(agent), _wakeup_repairs(agent)
    with neighbour_tracer(cgroup.id):
        result = subprocess.run([sys.executable, str(SKIP_WORKLOAD), "997", "0"], preexec_fn=cgroup._enter,
                                capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # repairs read before misses (and after them at the start): a fix is never counted without its skip
    marked, unknown = (a - b for a, b in zip(_wakeup_repairs(agent), (marked0, unknown0), strict=True))
    misses = _wakeup_misses(agent) - misses0
    print(f"sched_wakeup runs skipped {misses}: marked by the raw program {marked}, task never seen {unknown}")
    assert misses > 0
    # every skipped wakeup reached the raw program (it is not skipped itself but when it interrupts
    # itself, which its own recursion_misses would show), and most tasks were known by then
    raw_misses = sum(n for (_, prog), n in recursion_misses({"runqueue": agent.agent.probes["runqueue"]}).items()
                     if prog.startswith("raw:"))
    assert marked + unknown + raw_misses >= misses * 0.95
    # a wakeup nested between another's two programs has that one marked twice: a few at most (seen:
    # 14 of 261 on a quiet machine); a raw program that marked every wakeup would be far past this
    assert marked + unknown <= misses + max(10, misses // 10)
    assert marked > unknown


def test_a_skipped_wakeup_marks_the_task_it_learnt(runqueue_agent: RunningAgent) -> None:
    bpf = runqueue_agent.agent.probes["runqueue"].bpf
    raw = bpf.funcs[b"bcgov_raw__sched_wakeup"].fd
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # asleep, so no switch of its own resets what the repair marks
        wait_for(lambda: Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S",
                 timeout=60, what="the sleeper asleep")
        fake_task = 0xFFFF_DEAD_0000_1230  # a key only: the program never dereferences it
        bpf["task_pids"][bpf["task_pids"].Key(fake_task)] = bpf["task_pids"].Leaf(sleeper.pid)
        marked0, unknown0 = _wakeup_repairs(runqueue_agent)
        run_raw(raw, fake_task)  # the wakeup of a known task, its tracepoint run skipped
        assert bpf["tasks"][bpf["tasks"].Key(sleeper.pid)].runnable_since > 0
        run_raw(raw, fake_task + 0x40)  # a task never seen: nothing to mark, counted
        assert _wakeup_repairs(runqueue_agent) == (marked0 + 1, unknown0 + 1)
    finally:
        sleeper.kill()
        sleeper.wait()
