"""Connections older than the agent, on the real kernel: opened (loopback, plain IPv4 and an IPv4
client of a dual-stack AF_INET6 listener) before the agent starts, closed after. Their closes give
a span and a count each, marked as started before the agent (agent/kernel/preexisting.py learns them
through sock_diag at start-up), and a dual-stack socket's IPv4 connection is network.type ipv4."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cgroups
import pytest
from agent_harness import RunningAgent, started_agent, wait_for

pytestmark = pytest.mark.ebpf

N = 11  # connections per run: a prime, so no other count can pass for it

# Holds N loopback connections (both ends in this one process) until told, then closes them all:
# client end first (an orderly close), then the accepted end.
HOLDER = r"""
import json, os, socket, sys
dual, n = sys.argv[1] == "dual", int(sys.argv[2])
if dual:
    srv = socket.socket(socket.AF_INET6)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", 0))
else:
    srv = socket.socket(socket.AF_INET)
    srv.bind(("127.0.0.1", 0))
srv.listen(64)
port = srv.getsockname()[1]
pairs = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = srv.accept()
    pairs.append((c, a))
print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
sys.stdin.readline()
for c, a in pairs:
    c.close()
    a.close()
srv.close()
print("closed", flush=True)
"""


class Holder:
    """The holder process, started in a test cgroup; always killed at the end."""

    def __init__(self, cg: cgroups.TestCgroup, kind: str, netns: str | None = None) -> None:
        argv = [sys.executable, "-c", HOLDER, kind, str(N)]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        self.proc = subprocess.Popen(argv, preexec_fn=cg._enter, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port, self.pid = info["port"], info["pid"]

    def close_all(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "closed"
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def holder_cgroup() -> Iterator[cgroups.TestCgroup]:
    with cgroups.test_cgroup() as cg:
        yield cg


def _spans_on(agent: RunningAgent, port: int) -> list[dict[str, Any]]:
    return [s for s in agent.spans()
            if port in (s["attrs"].get("network.local.port"), s["attrs"].get("network.peer.port"))]


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of our own (loopback up), as a pod has; always deleted."""
    name = f"bcgov-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.parametrize(("kind", "own_netns"), [("ipv4", False), ("dual", False), ("ipv4", True)],
                         ids=["ipv4", "dual-stack", "ipv4-in-its-own-netns"])
def test_connections_open_before_the_agent_give_spans_and_counts_when_they_close(
    kind: str, own_netns: bool, holder_cgroup: cgroups.TestCgroup, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    holder = Holder(holder_cgroup, kind, request.getfixturevalue("netns") if own_netns else None)
    try:
        with started_agent(tmp_path) as agent:
            holder.close_all()
            spans = wait_for(lambda: len(s := _spans_on(agent, holder.port)) >= 2 * N and s, what=f"{2 * N} spans")

            def counted(direction: int) -> int:
                return agent.kernel_count("tcp_lifecycle", "tcp_connections_before_agent",
                                          lambda k: k.cgroup_id == holder_cgroup.id and k.direction == direction)

            wait_for(lambda: counted(1) == N and counted(2) == N, what="before-agent counts")
            # counted once, as older than the agent: not as connections the agent saw open
            assert agent.kernel_count("tcp_lifecycle", "tcp_connections", lambda k: k.cgroup_id == holder_cgroup.id) == 0
            text = agent.scrape()
            assert 'bcgov_tcp_connections_before_agent_total{direction="passive",outcome="normal"}' in text
    finally:
        holder.kill()
    assert len(spans) == 2 * N
    assert sorted(s["kind"] for s in spans) == [2] * N + [3] * N  # N SERVER (accept), N CLIENT (connect)
    for s in spans:
        a = s["attrs"]
        assert a["bcgov.tcp.start_observed"] is False, a
        assert a["bcgov.tcp.outcome"] == "normal" and a["bcgov.tcp.owner_source"] == "fd"
        assert a["process.pid"] == holder.pid and a["bcgov.cgroup.id"] == holder_cgroup.id
        assert a["network.local.address"] == a["network.peer.address"] == "127.0.0.1"
        assert a["network.type"] == "ipv4"  # also on the dual-stack listener's AF_INET6 sockets
        assert int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"])
    passive = [s["attrs"] for s in spans if s["kind"] == 2]
    assert {a["network.local.port"] for a in passive} == {holder.port}


def test_an_ipv4_client_of_a_dual_stack_listener_is_ipv4(running_agent: RunningAgent, cgroup: cgroups.TestCgroup) -> None:
    """Seen opening (no start-up listing involved): the AF_INET6 accepted socket of an IPv4 client."""
    holder = Holder(cgroup, "dual")
    try:
        holder.close_all()
    finally:
        holder.kill()
    spans = wait_for(lambda: len(s := _spans_on(running_agent, holder.port)) >= 2 * N and s, what="spans")
    server = [s["attrs"] for s in spans if s["kind"] == 2]
    assert len(server) == N
    for a in server:
        assert (a["network.type"], a["network.local.address"], a["network.peer.address"]) == ("ipv4", "127.0.0.1", "127.0.0.1")
        assert "bcgov.tcp.start_observed" not in a


# deploy/daemonset/agent-daemonset.yaml: drop ALL, add these (no SYS_PTRACE)
DAEMONSET_CAPS = "-all,+bpf,+perfmon,+sys_resource,+sys_admin,+dac_read_search"
LIST = """
import json, sys
sys.path.insert(0, sys.argv[1])
from agent.kernel import preexisting
print(json.dumps([[c.local_port, c.remote_port, c.cgroup_id] for c in preexisting.list_all_open_connections()]))
"""


def test_a_pods_namespace_is_listed_with_the_daemonsets_capabilities(holder_cgroup: cgroups.TestCgroup, netns: str) -> None:
    """Without CAP_SYS_PTRACE /proc/<pid>/ns/net of a pod's (root, fully capable) process cannot be
    opened; its CNI bind mount in /run/netns can, and the sockets' own cgroup names the owner."""
    holder = Holder(holder_cgroup, "ipv4", netns)
    try:
        root = str(Path(__file__).resolve().parents[2])
        out = subprocess.run(["setpriv", f"--bounding-set={DAEMONSET_CAPS}", "--inh-caps=-all", sys.executable, "-c",
                              LIST, root], check=True, capture_output=True, text=True, timeout=60).stdout
        listed = [c for c in json.loads(out) if holder.port in c[:2]]
        assert len(listed) == 2 * N
        assert {c[2] for c in listed} == {holder_cgroup.id}
        holder.close_all()
    finally:
        holder.kill()
