"""recursion_misses from fdinfo: per probe and hook, summed, absent on kernels without the field.
The real-kernel counterpart (a neighbour tracer making the kernel skip runs) is in
test_skipped_runs_ebpf.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.kernel.skipped_runs import SkippedRunsCollector, hook_name, recursion_misses, skipped_total

# The fdinfo of a tracepoint program on kernel 6.18, as read on this machine (prog ids differ).
FDINFO_6_18 = ("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t26\nprog_type:\t5\nprog_jited:\t1\n"
               "prog_tag:\t59f4a931744dcdc6\nmemlock:\t4096\nprog_id:\t162\nrun_time_ns:\t0\nrun_cnt:\t0\n"
               "recursion_misses:\t{misses}\nverified_insns:\t2\n")
# Before 5.12 the field does not exist.
FDINFO_5_10 = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_jited:\t1\nprog_tag:\t59f4a931744dcdc6\nmemlock:\t4096\nprog_id:\t9\n"


def _probe(funcs: dict[bytes, int]) -> SimpleNamespace:
    return SimpleNamespace(bpf=SimpleNamespace(funcs={k: SimpleNamespace(fd=fd) for k, fd in funcs.items()}))


@pytest.mark.parametrize("func, hook", [
    ("tracepoint__sock__inet_sock_set_state", "sock:inet_sock_set_state"),
    ("tracepoint__sched__sched_wakeup", "sched:sched_wakeup"),
    ("raw_tracepoint__inet_sock_set_state", "raw:inet_sock_set_state"),
    ("bcgov_raw__inet_sock_set_state", "raw:inet_sock_set_state"),
    ("helper", "helper"),
])
def test_hook_names(func: str, hook: str) -> None:
    assert hook_name(func) == hook


def test_misses_per_probe_and_program_and_their_total(tmp_path: Path) -> None:
    (tmp_path / "11").write_text(FDINFO_6_18.format(misses=246))
    (tmp_path / "12").write_text(FDINFO_6_18.format(misses=0))
    (tmp_path / "21").write_text(FDINFO_6_18.format(misses=50))
    (tmp_path / "31").write_text(FDINFO_5_10)
    probes = {
        "tcp_lifecycle": _probe({b"tracepoint__sock__inet_sock_set_state": 11, b"tracepoint__tcp__tcp_retransmit_skb": 12}),
        "runqueue": _probe({b"tracepoint__sched__sched_wakeup": 21}),
        "oom": _probe({b"tracepoint__oom__mark_victim": 31}),  # an old kernel's fdinfo: no figure, not 0
        "gone": SimpleNamespace(bpf=None),
    }
    assert recursion_misses(probes, str(tmp_path)) == {
        ("tcp_lifecycle", "sock:inet_sock_set_state"): 246,
        ("tcp_lifecycle", "tcp:tcp_retransmit_skb"): 0,
        ("runqueue", "sched:sched_wakeup"): 50,
    }
    assert skipped_total(probes, str(tmp_path)) == 296
    reg = CollectorRegistry()
    reg.register(SkippedRunsCollector(probes, str(tmp_path)))
    text = generate_latest(reg).decode()
    assert 'bcgov_agent_bpf_recursion_misses_total{probe="tcp_lifecycle",program="sock:inet_sock_set_state"} 246.0' in text
    assert 'bcgov_agent_bpf_recursion_misses_total{probe="runqueue",program="sched:sched_wakeup"} 50.0' in text
    assert 'probe="oom"' not in text


def test_a_program_closed_while_being_read_is_skipped(tmp_path: Path) -> None:
    probes = {"tcp_lifecycle": _probe({b"tracepoint__sock__inet_sock_set_state": 99})}  # no fdinfo/99
    assert recursion_misses(probes, str(tmp_path)) == {}
