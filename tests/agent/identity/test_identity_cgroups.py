"""CgroupPathCache: real cgroup2 directories (``ebpf``: root + kernel) and a plain-directory tree for
the cache mechanics (inode lookup works the same on any file system)."""

from __future__ import annotations

import os
import pathlib

import pytest
from identity_fixtures import cgroup_tree  # noqa: F401  (pytest fixtures)
from identity_helpers import CgroupTree, FakeClock

from agent.identity.cgroups import CgroupPathCache, find_cgroup2_root
from agent.identity.containers import ContainerRef, parse_cgroup_path
from agent.identity.errors import CgroupRootError

CID = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
UID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
UID_ = UID.replace("-", "_")

REAL_LAYOUTS = [
    ("containerd-systemd",
     f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
     ContainerRef("containerd", CID, UID, "besteffort")),
    ("containerd-cgroupfs-k3s", f"/kubepods/burstable/pod{UID}/{CID}", ContainerRef("containerd", CID, UID, "burstable")),
    ("cri-o", f"/kubepods.slice/kubepods-pod{UID_}.slice/crio-{CID}.scope", ContainerRef("cri-o", CID, UID, "guaranteed")),
    ("docker-systemd", f"/system.slice/docker-{CID}.scope", ContainerRef("docker", CID)),
    ("docker-cgroupfs", f"/docker/{CID}", ContainerRef("docker", CID)),
    ("systemd-service", "/system.slice/nginx.service", ContainerRef("systemd", systemd_unit="nginx.service")),
    ("proxmox-lxc", "/lxc/101/ns/system.slice/postgresql.service",
     ContainerRef("lxc", systemd_unit="postgresql.service", lxc_name="101")),
    ("lxc-payload", "/lxc.payload.minio/init.scope", ContainerRef("lxc", lxc_name="minio")),
    ("host", "/init.scope", ContainerRef("host")),
]


def _proc_cgroup2_path(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))


@pytest.mark.ebpf
@pytest.mark.parametrize(("rel", "expected"), [c[1:] for c in REAL_LAYOUTS], ids=[c[0] for c in REAL_LAYOUTS])
def test_real_cgroup_layout_resolves_to_its_container(cgroup_tree: CgroupTree, rel: str, expected) -> None:
    directory = cgroup_tree.make(rel)
    proc = cgroup_tree.run_in(directory)
    cgroup_id = os.stat(directory).st_ino  # what bpf_get_current_cgroup_id() returns for proc
    # Rooted at the mount: the kernel's own view of the process' cgroup must match the cache's.
    at_mount = CgroupPathCache(cgroup_tree.cgroup2_root)
    assert at_mount.path_for(cgroup_id) == _proc_cgroup2_path(proc.pid) == cgroup_tree.rel_base + rel
    # Rooted at the test base, the path is exactly the layout, and parses to the container.
    at_base = CgroupPathCache(cgroup_tree.base)
    path = at_base.path_for(cgroup_id)
    assert path == rel
    assert parse_cgroup_path(path) == expected


@pytest.mark.ebpf
def test_new_cgroup_is_found_by_a_rescan_on_miss(cgroup_tree: CgroupTree) -> None:
    clock = FakeClock()
    cache = CgroupPathCache(None, clock=clock, min_rescan_interval=1.0, use_handles=False)
    cache.rescan()
    d = cgroup_tree.make(f"/kubepods/besteffort/pod{UID}/{CID}")
    clock.now += 1.0
    assert cache.root == find_cgroup2_root()
    assert cache.path_for(os.stat(d).st_ino) == f"{cgroup_tree.rel_base}/kubepods/besteffort/pod{UID}/{CID}"
    assert cache.rescans == 2 and cache.handle_lookups == 0


@pytest.mark.ebpf
def test_new_cgroup_is_named_by_file_handle_at_once_without_a_walk(cgroup_tree: CgroupTree) -> None:
    clock = FakeClock()
    cache = CgroupPathCache(cgroup_tree.cgroup2_root, clock=clock, min_rescan_interval=3600.0)
    cache.rescan()
    # Made after the walk, well inside the rate limit: only the kernel can name it.
    d = cgroup_tree.make(f"/kubepods/besteffort/pod{UID}/{CID}")
    assert cache.path_for(os.stat(d).st_ino) == f"{cgroup_tree.rel_base}/kubepods/besteffort/pod{UID}/{CID}"
    gone = cgroup_tree.make("/gone")
    gone_id = os.stat(gone).st_ino
    os.rmdir(gone)
    assert cache.path_for(gone_id) is None
    assert cache.path_for(2**62 + 12345) is None  # never existed
    assert cache.rescans == 1 and cache.rescans_skipped == 0 and cache.handle_lookups == 3
    assert cache.path_for(gone_id) is None and cache.handle_lookups == 3  # remembered as gone
    assert cache.path_for(os.stat(d).st_ino) is not None and cache.hits == 1  # cached now


@pytest.mark.ebpf
def test_file_handles_stay_inside_the_cache_root(cgroup_tree: CgroupTree) -> None:
    inside = cgroup_tree.make("/a/b")
    cache = CgroupPathCache(cgroup_tree.base)
    assert cache.path_for(os.stat(inside).st_ino) == "/a/b"
    outside = os.stat(cgroup_tree.cgroup2_root).st_ino  # the mount root is above this cache's root
    assert cache.path_for(outside) is None and cache.handle_lookups == 2


def _tree(tmp: pathlib.Path, n: int) -> list[pathlib.Path]:
    dirs = []
    for i in range(n):
        d = tmp / f"kubepods.slice/pod{i}.slice"
        d.mkdir(parents=True)
        dirs.append(d)
    return dirs


def test_miss_rescans_are_rate_limited(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    cache = CgroupPathCache(str(tmp_path), clock=clock, min_rescan_interval=1.0)
    (first,) = _tree(tmp_path, 1)
    assert cache.path_for(first.stat().st_ino) == "/kubepods.slice/pod0.slice"
    assert cache.rescans == 1
    late = tmp_path / "late"
    late.mkdir()
    for unknown in range(10_000, 11_000):  # a flood of ids that do not exist
        assert cache.path_for(unknown) is None
    assert cache.path_for(late.stat().st_ino) is None  # within the interval: not walked yet
    assert cache.rescans == 1 and cache.rescans_skipped == 1001
    clock.now += 1.0
    assert cache.path_for(late.stat().st_ino) == "/late"
    assert cache.rescans == 2
    assert cache.path_for(first.stat().st_ino) == "/kubepods.slice/pod0.slice" and cache.hits == 1


def test_cache_is_bounded_and_keeps_the_wanted_entry(tmp_path: pathlib.Path) -> None:
    clock = FakeClock()
    dirs = _tree(tmp_path, 20)
    cache = CgroupPathCache(str(tmp_path), max_entries=4, clock=clock)
    for i, d in enumerate(dirs):
        clock.now += 1.0
        assert cache.path_for(d.stat().st_ino) == f"/kubepods.slice/pod{i}.slice"
        assert len(cache) <= 4


def test_root_detection_prefers_unified_then_hybrid(tmp_path: pathlib.Path) -> None:
    line = "35 25 0:30 / {mp} rw,nosuid - {fs} {fs} rw\n"
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(line.format(mp="/sys/fs/cgroup/memory", fs="cgroup")
                      + line.format(mp="/sys/fs/cgroup/unified", fs="cgroup2"))
    unified = tmp_path / "unified"
    unified.write_text(line.format(mp="/sys/fs/cgroup", fs="cgroup2"))
    none = tmp_path / "none"
    none.write_text(line.format(mp="/sys/fs/cgroup/memory", fs="cgroup"))
    assert find_cgroup2_root(str(hybrid)) == "/sys/fs/cgroup/unified"
    assert find_cgroup2_root(str(unified)) == "/sys/fs/cgroup"
    with pytest.raises(CgroupRootError, match="no cgroup2"):
        find_cgroup2_root(str(none))
    with pytest.raises(CgroupRootError) as e:
        find_cgroup2_root(str(tmp_path / "missing"))
    assert isinstance(e.value.__cause__, OSError)


def test_unreadable_root_raises_identity_error(tmp_path: pathlib.Path) -> None:
    cache = CgroupPathCache(str(tmp_path / "absent"))
    with pytest.raises(CgroupRootError):
        cache.path_for(1)


@pytest.mark.ebpf
def test_without_cap_dac_read_search_a_miss_walks_the_tree(cgroup_tree: CgroupTree) -> None:
    import subprocess
    import sys

    d = cgroup_tree.make(f"/kubepods/besteffort/pod{UID}/{CID}")
    code = ("import os, sys; from agent.identity.cgroups import CgroupPathCache; c = CgroupPathCache(sys.argv[1]); "
            "print(c.path_for(int(sys.argv[2])), c.handle_lookups, c.rescans)")
    # setpriv (util-linux) drops the capability the way a DaemonSet without it would run.
    out = subprocess.run(
        ["setpriv", "--inh-caps=-dac_read_search", "--bounding-set=-dac_read_search",
         sys.executable, "-c", code, cgroup_tree.base, str(os.stat(d).st_ino)],
        capture_output=True, text=True, check=True, cwd=pathlib.Path(__file__).parents[3],
    ).stdout.split()
    assert out == [f"/kubepods/besteffort/pod{UID}/{CID}", "0", "1"]
