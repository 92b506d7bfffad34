"""TCP connections open before the agent started, so their close still gives a span and a count.

tcp_lifecycle tracks a connection from its SYN; one opened before the probe attached used to close
untracked (only ``bcgov_tcp_untracked_closes_total`` moved), and connection pools (PgBouncer, JDBC,
Kafka clients) hold their busiest connections for hours. At start-up, right after the probe is
attached, this module lists every open TCP socket through socket diagnostics (NETLINK_SOCK_DIAG,
agent/kernel/sock_diag.py), in the host's network namespace and in every other one the node has
(pods), and writes each into the probe's ``preexisting`` map, keyed by the endpoints
exactly as ``sock:inet_sock_set_state`` gives them at close. The probe adopts the entry at that
close: the connection is counted in ``bcgov_tcp_connections_before_agent_total`` (never in the
duration histogram: its start was not seen), and its record is flagged, so span and log line carry
``bcgov.tcp.start_observed=false`` and start when the agent learnt of the connection.

Who owns it: the process holding the socket's file descriptor (found through ``/proc/<pid>/fd``;
the agent runs with ``hostPID``; another user's needs CAP_SYS_PTRACE), in that process's cgroup;
else the socket's own cgroup (``INET_DIAG_CGROUP_ID``, the cgroup its creator was in: a pod's
container), without pid and comm. Pods' namespaces are entered through the bind mounts CNI plugins
keep in ``/run/netns`` (mount it into the agent) or, with CAP_SYS_PTRACE, through their processes. Direction: passive when the local port
has a listening socket in the same network namespace, active otherwise.

Limits: a connection opened between the probe's attach and this listing is tracked by the probe
too; its entry here is then never adopted and stays in the map (bounded, 16384 entries). Sockets
in SYN_SENT/SYN_RECV are left out (their outcome is not known yet); they close untracked.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.kernel import sock_diag
from probes.tcp_lifecycle import DIR_ACTIVE, DIR_PASSIVE, OWNER_FD

log = logging.getLogger("bcgov.agent.kernel.preexisting")

# tcp_states.h
TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, TCP_TIME_WAIT, TCP_CLOSE, TCP_LISTEN = 1, 2, 3, 6, 7, 10
_OPEN_STATES = sum(1 << s for s in (1, 4, 5, 8, 9, 11))  # ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING
CLONE_NEWNET = 0x40000000


@dataclasses.dataclass(frozen=True, slots=True)
class OpenConnection:
    """One open TCP socket as sock_diag lists it. Addresses as the kernel prints them (an IPv4 client
    of an AF_INET6 socket is ``::ffff:a.b.c.d``); ``cgroup_id`` is the socket's (its creator's)."""

    family: int
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    inode: int
    cgroup_id: int
    passive: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    """The process holding a socket: pid, comm and cgroup id (0 when unknown)."""

    pid: int
    comm: str
    cgroup_id: int


def list_open_connections() -> list[OpenConnection]:
    """Every open TCP connection of this thread's network namespace (IPv4 and IPv6 sockets).

    Raises OSError when socket diagnostics cannot be used (no NETLINK_SOCK_DIAG, no permission)."""
    socks = [s for family in (socket.AF_INET, socket.AF_INET6)
             for s in sock_diag.dump_tcp(family, _OPEN_STATES | (1 << TCP_LISTEN))]
    listening = {s.local_port for s in socks if s.state == TCP_LISTEN}
    return [
        OpenConnection(s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.inode, s.cgroup_id,
                       s.local_port in listening)
        for s in socks
        if s.state != TCP_LISTEN
    ]


def _in_netns(ns_path: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread that has entered the network namespace at ``ns_path`` (setns affects
    only the calling thread for CLONE_NEWNET); the thread ends with it, so nothing else moves."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(ns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({ns_path}) failed")
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=run, name="bcgov-netns-list", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


# Where CNI plugins and `ip netns` bind-mount pods' network namespaces (containerd, CRI-O, K3s).
NETNS_DIRS = ("/run/netns", "/var/run/netns")


def network_namespaces(proc: str = "/proc", netns_dirs: Iterable[str] = NETNS_DIRS) -> dict[int, str]:
    """Network namespace inode -> a path that enters it, one per namespace: the bind mounts in
    ``netns_dirs`` (opening them needs no more than reading a root-owned file), then each process's
    ``/proc/<pid>/ns/net`` (which needs ptrace access to that process: CAP_SYS_PTRACE for another
    user's or a more privileged one's)."""
    found: dict[int, str] = {}
    for d in netns_dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            try:
                found.setdefault(os.stat(f"{d}/{name}").st_ino, f"{d}/{name}")
            except OSError:
                continue
    for pid in _pids(proc):
        path = f"{proc}/{pid}/ns/net"
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue  # exited, or a kernel thread
        found.setdefault(ino, path)
    return found


def list_all_open_connections(proc: str = "/proc", netns_dirs: Iterable[str] = NETNS_DIRS) -> list[OpenConnection]:
    """Open TCP connections of this namespace and of every other one a process lives in."""
    conns = list_open_connections()
    own = os.stat(f"{proc}/self/ns/net").st_ino
    for ino, path in network_namespaces(proc, netns_dirs).items():
        if ino == own:
            continue
        try:
            conns += _in_netns(path, list_open_connections)
        except OSError as e:  # the namespace went away, or no CAP_SYS_ADMIN to enter it
            log.debug("cannot list connections in %s: %s", path, e)
    return conns


def socket_owners(inodes: Iterable[int], cgroup_root: str, proc: str = "/proc") -> dict[int, Owner]:
    """Socket inode -> the first process found holding it (by ``/proc/<pid>/fd``)."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    owners: dict[int, Owner] = {}
    for pid in _pids(proc):
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:
                continue
            if inode is not None and inode not in owners:
                owners[inode] = Owner(pid, _comm(proc, pid), _cgroup_id(proc, pid, cgroup_root))
        if len(owners) == len(wanted):
            break
    return owners


def _pids(proc: str) -> list[int]:
    return [int(n) for n in os.listdir(proc) if n.isdigit()]


def _comm(proc: str, pid: int) -> str:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cgroup_id(proc: str, pid: int, cgroup_root: str) -> int:
    """The process's cgroup2 id (its directory's inode), as ``bpf_get_current_cgroup_id()`` gives it."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return os.stat(cgroup_root + line[3:].strip().rstrip("/")).st_ino
    except OSError:
        pass
    return 0


def _addr_bytes(family: int, addr: str) -> bytes:
    raw = socket.inet_pton(family, addr)
    return raw + bytes(16 - len(raw))


def seed(table: Any, conns: Iterable[OpenConnection], owners: dict[int, Owner], seen_ns: int | None = None) -> int:
    """Write ``conns`` into a probe's ``preexisting`` map (a BCC table); returns how many were
    written. ``seen_ns`` is on the BPF clock (CLOCK_MONOTONIC), now by default."""
    seen = time.clock_gettime_ns(time.CLOCK_MONOTONIC) if seen_ns is None else seen_ns
    conns = list(conns)
    written = 0
    for c in conns:
        key = table.Key()
        key.family, key.sport, key.dport = c.family, c.local_port, c.remote_port
        ctypes.memmove(key.saddr, _addr_bytes(c.family, c.local_addr), 16)
        ctypes.memmove(key.daddr, _addr_bytes(c.family, c.remote_addr), 16)
        leaf = table.Leaf()
        owner = owners.get(c.inode)
        leaf.owner.cgroup_id = (owner.cgroup_id if owner else 0) or c.cgroup_id
        if owner is not None:
            leaf.owner.tgid = leaf.owner.tid = owner.pid
            leaf.owner.comm = owner.comm.encode()[:15]
        leaf.seen_ns = seen
        leaf.direction = DIR_PASSIVE if c.passive else DIR_ACTIVE
        leaf.owner_source = OWNER_FD
        try:
            table[key] = leaf
        except Exception as e:  # map full: the rest close untracked, as before
            log.warning("connections open before the agent: %d listed, only %d fit the probe's map (%s); "
                        "the others' closes count as untracked", len(conns), written, e)
            break
        written += 1
    return written


def learn(tcp_probe: Any, cgroup_root: str | None = None) -> int:
    """List the node's open TCP connections and hand them to the loaded tcp_lifecycle probe.
    Never raises: without socket diagnostics the agent runs on, and says so once."""
    started = time.monotonic()
    try:
        if cgroup_root is None:
            from agent.identity.cgroups import find_cgroup2_root
            cgroup_root = find_cgroup2_root()
        conns = list_all_open_connections()
        owners = socket_owners((c.inode for c in conns), cgroup_root)
        n = seed(tcp_probe.bpf["preexisting"], conns, owners)
    except Exception as e:  # noqa: BLE001 - start-up must not fail over this
        log.warning("connections open before the agent are not known (%s): their closes count as untracked "
                    "(bcgov_tcp_untracked_closes_total); the agent needs NETLINK_SOCK_DIAG and CAP_SYS_ADMIN for it", e)
        return 0
    log.info("learnt %d TCP connections open before the agent (%d with their process) in %.0f ms",
             n, len(owners), (time.monotonic() - started) * 1000)
    return n
