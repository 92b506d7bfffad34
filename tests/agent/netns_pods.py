"""Real "pods" for end-to-end identity tests: a network namespace with a pod IP on a bridge, and a
cgroup2 directory in the kubelet + containerd layout (systemd cgroup driver) holding the pod's
processes. Nothing here is faked: the kernel sees exactly what it sees on a node.

    <cgroup2>/kubepods.slice/kubepods-besteffort.slice/
        kubepods-besteffort-pod<uid with underscores>.slice/cri-containerd-<64 hex>.scope

The host end of every pod's veth is attached to one bridge that carries the subnet's first address,
so pod-to-pod traffic is switched on the host and pod-to-host traffic reaches a real host address;
no route, forwarding setting or firewall rule of the machine is touched. `PodNetwork.close()`
removes everything it made (processes first, then cgroups, namespaces, links), also after a
failed test, and only what it made: a `kubepods.slice` that existed before is left alone. What it
makes is also written to a ledger in /run/bcgov-test-pods, so when a run dies before it can clean
up (killed, or crashed), the next `PodNetwork` removes that run's leftovers.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from agent.identity.cgroups import find_cgroup2_root

CLONE_NEWNET = 0x40000000
QOS_SLICE = "kubepods.slice/kubepods-besteffort.slice"
LEDGER_DIR = Path("/run/bcgov-test-pods")


def pod_cgroup_rel(uid: str, container_id: str) -> str:
    """The container's cgroup path below the cgroup2 root, as kubelet + containerd make it."""
    return (f"{QOS_SLICE}/kubepods-besteffort-pod{uid.replace('-', '_')}.slice/"
            f"cri-containerd-{container_id}.scope")


@dataclasses.dataclass
class PodSandbox:
    """One running pod: its identity, network namespace and container cgroup."""

    name: str
    namespace: str
    uid: str
    container_id: str
    ip: str
    netns: str
    cgroup_dir: Path
    procs: list[subprocess.Popen[str]] = dataclasses.field(default_factory=list)

    @property
    def cgroup_id(self) -> int:
        """What bpf_get_current_cgroup_id() returns for the pod's processes (the dir's inode)."""
        return os.stat(self.cgroup_dir).st_ino

    def _enter(self) -> None:
        # Runs in the child between fork and exec, like a container runtime: the program starts
        # inside the pod's network namespace and cgroup.
        fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.netns} failed")
        finally:
            os.close(fd)
        (self.cgroup_dir / "cgroup.procs").write_text(str(os.getpid()))

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a process in the pod (stdout piped, text); close() kills it if still running."""
        proc = subprocess.Popen(list(argv), preexec_fn=self._enter, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a process in the pod to completion."""
        proc = self.popen(argv)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class PodNetwork:
    """A bridge with a /24 of pod IPs, and the pods on it. Use as a context manager."""

    def __init__(self, subnet: str | None = None) -> None:
        self.subnet = subnet or _free_subnet()
        self.gateway = f"{self.subnet}.1"
        self._tag = secrets.token_hex(3)
        self.bridge = f"bcgbr{self._tag}"
        self.cgroup2_root = Path(find_cgroup2_root())
        self.pods: list[PodSandbox] = []
        self._made: dict[str, list[str]] = {"links": [], "netns": [], "cgroups": []}
        self._ledger = LEDGER_DIR / f"{self._tag}.json"

    def __enter__(self) -> PodNetwork:
        sweep_leftovers()
        try:
            self._make_bridge()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, kind: str, value: str) -> None:
        """Remember something made, in memory and in the ledger (before it can leak)."""
        self._made[kind].append(value)
        LEDGER_DIR.mkdir(exist_ok=True)
        tmp = self._ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), **self._made}))
        os.replace(tmp, self._ledger)

    def _make_bridge(self) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            self._record("links", self.bridge)
            ipr.link("add", ifname=self.bridge, kind="bridge")
            idx = ipr.link_lookup(ifname=self.bridge)[0]
            ipr.addr("add", index=idx, address=self.gateway, prefixlen=24)
            ipr.link("set", index=idx, state="up")

    def add_pod(self, name: str, namespace: str, host_octet: int) -> PodSandbox:
        """Create a pod: netns with IP <subnet>.<host_octet> on eth0, a container cgroup, fresh ids."""
        from pyroute2 import IPRoute, NetNS, netns

        uid, cid = str(uuid.uuid4()), secrets.token_hex(32)
        ns_name = f"bcg-{self._tag}-{host_octet}"
        host_end, pod_end = f"bcgv{self._tag}{host_octet}", f"bcgp{self._tag}{host_octet}"
        ip = f"{self.subnet}.{host_octet}"
        self._record("netns", ns_name)
        netns.create(ns_name)
        with IPRoute() as ipr:
            self._record("links", host_end)
            ipr.link("add", ifname=host_end, kind="veth", peer=pod_end)
            bridge_idx = ipr.link_lookup(ifname=self.bridge)[0]
            host_idx = ipr.link_lookup(ifname=host_end)[0]
            ipr.link("set", index=host_idx, master=bridge_idx, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=pod_end)[0], net_ns_fd=ns_name)
        with NetNS(ns_name) as ns:
            idx = ns.link_lookup(ifname=pod_end)[0]
            ns.link("set", index=idx, ifname="eth0")
            ns.addr("add", index=idx, address=ip, prefixlen=24)
            ns.link("set", index=idx, state="up")
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            ns.route("add", dst="0.0.0.0/0", gateway=self.gateway)
        cgroup_dir = self._make_cgroup(pod_cgroup_rel(uid, cid))
        pod = PodSandbox(name, namespace, uid, cid, ip, ns_name, cgroup_dir)
        self.pods.append(pod)
        return pod

    def remove_pod(self, pod: PodSandbox) -> None:
        """Tear one pod down as the kubelet does when it is deleted: processes, cgroups, netns."""
        from pyroute2 import netns

        errors: list[BaseException] = []
        for proc in pod.procs:
            _stop(proc, self.cgroup2_root, errors)
        for d in (pod.cgroup_dir, pod.cgroup_dir.parent):  # container scope, then the pod slice
            _rmdir_cgroup(d, errors)
        netns.remove(pod.netns)  # the veth pair goes with it
        if errors:
            raise errors[0]

    def _make_cgroup(self, rel: str) -> Path:
        path = self.cgroup2_root
        for part in rel.split("/"):
            path = path / part
            try:
                path.mkdir()
                self._record("cgroups", str(path))  # ours: removed by close()
            except FileExistsError:
                pass  # a shared parent (kubepods.slice) someone else made: not ours to remove
        return path

    def close(self) -> None:
        """Kill the pods' processes, then remove cgroups, namespaces and links; raise the first
        failure only after trying everything."""
        errors: list[BaseException] = []
        for pod in self.pods:
            for proc in pod.procs:
                _stop(proc, self.cgroup2_root, errors)
        _remove(self._made, self.cgroup2_root, errors)
        self._ledger.unlink(missing_ok=True)
        if errors:
            raise errors[0]


def _free_subnet() -> str:
    """A 10.251.X prefix (/24) no interface on the host uses yet: parallel runs never share one."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        used = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)}
    taken = {int(ip.split(".")[2]) for ip in used if ip and ip.startswith("10.251.")}
    free = [x for x in range(1, 255) if x not in taken]
    return f"10.251.{free[secrets.randbelow(len(free))]}"


def sweep_leftovers() -> None:
    """Remove what PodNetworks of dead processes left behind (best effort: never raises)."""
    if not LEDGER_DIR.is_dir():
        return
    root = Path(find_cgroup2_root())
    for ledger in LEDGER_DIR.glob("*.json"):
        try:
            made = json.loads(ledger.read_text())
            os.kill(made["pid"], 0)
            continue  # its owner still runs (a parallel test run): not ours to touch
        except ProcessLookupError:
            pass
        except (OSError, ValueError, KeyError):
            continue
        for d in made.get("cgroups", []):  # processes of a dead run may still live in its pods
            try:
                for pid in (Path(d) / "cgroup.procs").read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        _remove(made, root, [])
        ledger.unlink(missing_ok=True)


def _remove(made: dict[str, list[str]], cgroup2_root: Path, errors: list[BaseException]) -> None:
    """Remove recorded cgroups (deepest first), network namespaces and links."""
    from pyroute2 import IPRoute, netns

    for d in sorted(made["cgroups"], key=lambda p: p.count("/"), reverse=True):
        _rmdir_cgroup(Path(d), errors)
    for name in made["netns"]:
        if name in netns.listnetns():
            try:
                netns.remove(name)  # its veth ends go with it, and their peers on the host
            except OSError as e:
                errors.append(e)
    with IPRoute() as ipr:
        for name in reversed(made["links"]):
            found = ipr.link_lookup(ifname=name)
            if not found:
                continue  # a veth removed with its peer's namespace, or never made
            try:
                ipr.link("del", index=found[0])
            except Exception as e:  # pyroute2 raises NetlinkError (an OSError) or its own
                # ENODEV: the link went with its peer's namespace between the lookup and the delete
                if getattr(e, "code", None) != errno.ENODEV:
                    errors.append(e)
    for kind in ("cgroups", "netns", "links"):
        made[kind].clear()


def _stop(proc: subprocess.Popen[str], cgroup2_root: Path, errors: list[BaseException]) -> None:
    if proc.poll() is None:
        try:  # out of the pod cgroup first, so the cgroup can go even if the kill is slow
            (cgroup2_root / "cgroup.procs").write_text(str(proc.pid))
        except OSError:
            pass  # exited meanwhile
        proc.send_signal(signal.SIGKILL)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired as e:
        errors.append(e)


def _rmdir_cgroup(path: Path, errors: list[BaseException]) -> None:
    shared = path.name in ("kubepods.slice", "kubepods-besteffort.slice")
    deadline = time.monotonic() + 10
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if shared and any(p.is_dir() for p in path.iterdir()):
                return  # another test's pods live below this shared parent: theirs to remove
            if e.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(0.05)  # poll: the kernel frees an emptied cgroup asynchronously
                continue
            errors.append(e)
            return
