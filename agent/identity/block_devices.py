"""Block device (major:minor) -> device name, mount point and, on Kubernetes, the PVC mounted there.

The block tracepoints name a request's whole disk by major:minor. The name comes from sysfs
(`/sys/dev/block/MAJ:MIN/uevent` DEVNAME); where it is mounted from the host's mount table. Mounts
of the disk's partitions count as the disk's. Device-mapper volumes (LVM, dm-crypt) are bio-based:
their requests reach the tracepoints on the disks underneath, whose own mount table entries do not
name the volumes' mount points, so such disks carry no (or only their direct) mount label. The
agent runs in a container with hostPID, so `/proc/1/mountinfo` is the host's mount namespace
(`/proc/self/mountinfo` would list the container's own mounts); on a plain host both agree, and
self is the fallback when PID 1's table cannot be read.

A PersistentVolume the kubelet mounted for a pod appears at
`<kubelet root>/pods/<pod uid>/volumes/<plugin>/<volume>`; for PVC-backed volumes `<volume>` is
the PersistentVolume's name. Turning that into the claim needs the cluster's view (which PVC is
bound to that PV), so it is a pluggable `ClaimLookup` (agent/identity/pv_claims.py reads the PV's
claimRef from the API); without one the PVC labels stay "".
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bcgov.agent.identity.block_devices")

DEFAULT_MOUNTINFO = ("/proc/1/mountinfo", "/proc/self/mountinfo")
DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"

#: (pod uid, PV name) -> (claim name, claim namespace), or None when unknown.
ClaimLookup = Callable[[str, str], "tuple[str, str] | None"]

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo, the fields bcgov uses."""

    major: int
    minor: int
    root: str          # the path inside the filesystem that is mounted ("/" unless a bind mount)
    mount_point: str
    fstype: str
    source: str


@dataclass(frozen=True)
class KubeletVolume:
    """A pod volume mount made by the kubelet."""

    pod_uid: str
    plugin: str        # e.g. "kubernetes.io/csi" (the kubelet writes "~" for "/")
    volume: str        # the PersistentVolume's name for PVC-backed volumes


@dataclass(frozen=True)
class BlockDevice:
    """Label values for one block device."""

    device: str
    mount: str = ""
    pvc: str = ""
    pvc_namespace: str = ""


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text (proc(5)); malformed lines are skipped, not fatal."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            major, minor = (int(x) for x in fields[2].split(":"))
            mounts.append(Mount(major, minor, _unescape(fields[3]), _unescape(fields[4]),
                                fields[sep + 1], _unescape(fields[sep + 2])))
        except (ValueError, IndexError):
            continue
    return mounts


def kubelet_volume(mount_point: str, kubelet_root: str = DEFAULT_KUBELET_ROOT) -> KubeletVolume | None:
    """The pod volume a mount point belongs to, when it is under the kubelet's pod directories."""
    prefix = kubelet_root.rstrip("/") + "/pods/"
    if not mount_point.startswith(prefix):
        return None
    parts = mount_point[len(prefix):].split("/")
    if len(parts) < 4 or parts[1] != "volumes" or not all(parts[:4]):
        return None
    return KubeletVolume(pod_uid=parts[0], plugin=parts[2].replace("~", "/"), volume=parts[3])


def pick_mount(mounts: Sequence[Mount], kubelet_root: str = DEFAULT_KUBELET_ROOT) -> str:
    """The mount point that names a device best: where its filesystem's root is mounted (not a
    bind mount of a subdirectory), outside the kubelet's directories when possible, shortest."""
    if not mounts:
        return ""
    whole = [m for m in mounts if m.root == "/"] or list(mounts)
    kubelet = kubelet_root.rstrip("/") + "/"
    outside = [m for m in whole if not m.mount_point.startswith(kubelet)] or whole
    return min((m.mount_point for m in outside), key=lambda p: (len(p), p))


def read_device_name(sys_root: Path, major: int, minor: int) -> str:
    """DEVNAME from sysfs, or "MAJ:MIN" when sysfs does not know the device."""
    try:
        for line in (sys_root / "dev/block" / f"{major}:{minor}" / "uevent").read_text().splitlines():
            if line.startswith("DEVNAME="):
                return line.split("=", 1)[1]
    except OSError:
        pass
    return f"{major}:{minor}"


def partitions_of(sys_root: Path, major: int, minor: int) -> list[tuple[int, int]]:
    """major:minor of the disk's partitions (sysfs subdirectories holding a `partition` file)."""
    disk = sys_root / "dev/block" / f"{major}:{minor}"
    out = []
    try:
        for child in disk.iterdir():
            if (child / "partition").is_file():
                ma, mi = (child / "dev").read_text().strip().split(":")
                out.append((int(ma), int(mi)))
    except (OSError, ValueError):
        pass
    return sorted(out)


class BlockDeviceResolver:
    """major:minor -> `BlockDevice`, cached for `ttl` seconds (mounts change as pods come and go)."""

    def __init__(
        self,
        sys_root: str | Path = "/sys",
        mountinfo_paths: Iterable[str | Path] = DEFAULT_MOUNTINFO,
        kubelet_root: str = DEFAULT_KUBELET_ROOT,
        claims: ClaimLookup | None = None,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sys = Path(sys_root)
        self._mountinfo_paths = [Path(p) for p in mountinfo_paths]
        self._kubelet_root = kubelet_root
        self._claims = claims
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], tuple[float, BlockDevice]] = {}
        self._mounts: list[Mount] | None = None
        self._mounts_at = 0.0

    def describe(self, major: int, minor: int) -> BlockDevice:
        """Labels for the disk major:minor (its partitions' mounts count as its own)."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get((major, minor))
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
            dev = self._resolve(major, minor, self._mount_table(now))
            self._cache[(major, minor)] = (now, dev)
            return dev

    def _mount_table(self, now: float) -> list[Mount]:
        if self._mounts is None or now - self._mounts_at >= self._ttl:
            self._mounts = self._read_mounts()
            self._mounts_at = now
        return self._mounts

    def _read_mounts(self) -> list[Mount]:
        for path in self._mountinfo_paths:
            try:
                return parse_mountinfo(path.read_text())
            except OSError as exc:
                log.debug("cannot read %s (%s); trying the next mount table", path, exc)
        log.warning("no mount table readable (%s): block I/O has no mount labels",
                    ", ".join(map(str, self._mountinfo_paths)))
        return []

    def _resolve(self, major: int, minor: int, table: list[Mount]) -> BlockDevice:
        ids = {(major, minor), *partitions_of(self._sys, major, minor)}
        mounts = [m for m in table if (m.major, m.minor) in ids]
        pvc = pvc_ns = ""
        if self._claims is not None:
            volumes = sorted({v for m in mounts if (v := kubelet_volume(m.mount_point, self._kubelet_root))},
                             key=lambda v: (v.pod_uid, v.volume))
            for vol in volumes:
                claim = self._claims(vol.pod_uid, vol.volume)
                if claim is not None:
                    pvc, pvc_ns = claim
                    break
        return BlockDevice(read_device_name(self._sys, major, minor), pick_mount(mounts, self._kubelet_root), pvc, pvc_ns)
