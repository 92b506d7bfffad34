"""agent/kernel/sock_diag.py against the kernel, with pyroute2's independent DiagSocket as the oracle:
the same sockets, states, endpoints, inodes and cgroup ids, for IPv4, IPv6 and an IPv4 client of
a dual-stack listener."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from agent.kernel import sock_diag

ALL_STATES = (1 << 12) - 1


@pytest.fixture
def sockets() -> Iterator[dict[str, int]]:
    """A v4 listener with one connection, a dual-stack v6 listener with an IPv4 client and an IPv6 one."""
    made: list[socket.socket] = []
    try:
        v4 = socket.socket(socket.AF_INET)
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        made.append(v4)
        v6 = socket.socket(socket.AF_INET6)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        v6.bind(("::", 0))
        v6.listen()
        made.append(v6)
        ports = {"v4": v4.getsockname()[1], "v6": v6.getsockname()[1]}
        for listener, addr in ((v4, ("127.0.0.1", ports["v4"])), (v6, ("127.0.0.1", ports["v6"])),
                               (v6, ("::1", ports["v6"]))):
            made.append(socket.create_connection(addr))
            made.append(listener.accept()[0])
        ports["inodes"] = {os.fstat(s.fileno()).st_ino for s in made}  # type: ignore[assignment]
        yield ports
    finally:
        for s in made:
            s.close()


def _pyroute2(family: int) -> set[tuple]:
    from pyroute2.netlink.diag import DiagSocket

    with DiagSocket() as ds:
        ds.bind()
        return {(m["idiag_family"], m["idiag_state"], m["idiag_src"], m["idiag_sport"], m["idiag_dst"],
                 m["idiag_dport"], m["idiag_inode"], m.get_attr("INET_DIAG_CGROUP_ID") or 0)
                for m in ds.get_sock_stats(family=family, states=ALL_STATES)}


def test_dump_matches_pyroute2_and_names_our_sockets(sockets: dict) -> None:
    ours = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        got = sock_diag.dump_tcp(family, ALL_STATES)
        mine = {(s.family, s.state, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.inode, s.cgroup_id)
                for s in got if s.inode in sockets["inodes"]}
        oracle = {t for t in _pyroute2(family) if t[6] in sockets["inodes"]}
        assert mine == oracle
        ours |= mine
    assert len(ours) == len(sockets["inodes"]) == 8
    v6 = sockets["v6"]
    # the IPv4 client's accepted socket on the dual-stack listener: AF_INET6 with a mapped address
    assert any(t[0] == socket.AF_INET6 and t[1] == 1 and t[2] == "::ffff:127.0.0.1" and t[3] == v6 for t in ours)
    assert any(t[0] == socket.AF_INET6 and t[1] == 10 and t[3] == v6 for t in ours)  # LISTEN
    cgroup = os.stat(_own_cgroup_dir()).st_ino
    assert {t[7] for t in ours} == {cgroup}  # the creator's cgroup2 id (kernel 5.7+)


def test_state_filter_leaves_out_listeners(sockets: dict) -> None:
    got = sock_diag.dump_tcp(socket.AF_INET, 1 << 1)  # ESTABLISHED only
    assert all(s.state == 1 for s in got)
    assert any(s.local_port == sockets["v4"] for s in got if s.inode in sockets["inodes"])


def _own_cgroup_dir() -> str:
    from agent.identity.cgroups import find_cgroup2_root

    with open("/proc/self/cgroup") as f:
        rel = next(line[3:].strip() for line in f if line.startswith("0::"))
    return find_cgroup2_root() + rel.rstrip("/")
