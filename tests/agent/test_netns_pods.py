"""The test pods clean up after themselves, and after runs that died before they could."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from netns_pods import LEDGER_DIR, PodNetwork

pytestmark = pytest.mark.ebpf  # root: network namespaces and cgroups

HERE = Path(__file__).parent


def _exists(pods: list[dict[str, str]]) -> list[bool]:
    from pyroute2 import netns

    names = netns.listnetns()
    return [p["netns"] in names or Path(p["cgroup"]).exists() for p in pods]


def _dead(pid: int) -> bool:
    """Gone, or a zombie (orphans of the killed run wait for init to reap them)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_close_removes_pods_namespaces_links_and_cgroups() -> None:
    with PodNetwork() as net:
        pod = net.add_pod("p", "ns", 10)
        proc = pod.popen(["sleep", "300"])
        made = {"netns": pod.netns, "cgroup": str(pod.cgroup_dir)}
        assert (pod.cgroup_dir / "cgroup.procs").read_text().split() == [str(proc.pid)]
        assert _exists([made]) == [True]
    assert proc.returncode == -signal.SIGKILL
    assert _exists([made]) == [False]
    assert not (LEDGER_DIR / f"{net._tag}.json").exists()


def test_a_killed_runs_leftovers_are_swept_by_the_next_network() -> None:
    # A run that dies with its pods up (as after a segfault or a kill -9): nothing of it cleans up.
    script = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent.parent)!r}]
        from netns_pods import PodNetwork
        net = PodNetwork().__enter__()
        pods = [net.add_pod(f"p{{i}}", "ns", i) for i in (10, 20)]
        procs = [p.popen(["sleep", "300"]) for p in pods]
        print(json.dumps([{{"netns": p.netns, "cgroup": str(p.cgroup_dir), "pid": q.pid}}
                          for p, q in zip(pods, procs)]), flush=True)
        sys.stdin.read()
    """)
    dying = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pods = json.loads(dying.stdout.readline())
    finally:
        dying.kill()
        dying.wait()
    try:
        assert _exists(pods) == [True, True]
        with PodNetwork():
            assert _exists(pods) == [False, False]
        assert all(_dead(p["pid"]) for p in pods)  # the pods' processes were killed
    finally:
        from netns_pods import sweep_leftovers

        sweep_leftovers()
