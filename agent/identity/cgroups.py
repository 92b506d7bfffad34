"""cgroup id -> cgroup path.

``bpf_get_current_cgroup_id()`` returns the kernfs id of the task's cgroup2 directory, which is that
directory's inode number (``os.stat(path).st_ino``). A miss in the cache asks the kernel directly
through a kernfs file handle (``cgroup_handles``): a pod's cgroup made a moment ago is named on its
first event. Where file handles do not work (no CAP_DAC_READ_SEARCH, not kernfs), a miss walks the
cgroup2 tree instead and remembers all it saw; those walks are rate-limited, because a stream of ids
for cgroups that no longer exist (short-lived processes) must not turn into a tree walk per event.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable

from agent.identity.cgroup_handles import HandleLookup
from agent.identity.errors import CgroupRootError

log = logging.getLogger(__name__)

# Unified (cgroup2-only) hosts mount it here; hybrid hosts (v1 controllers + cgroup2, like the CI
# machines) mount it one level down.
CANDIDATE_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


def find_cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> str:
    """Return the cgroup2 mount point, preferring the unified location over the hybrid one.

    Raises CgroupRootError when no cgroup2 file system is mounted.
    """
    mounts: list[str] = []
    try:
        with open(mountinfo, encoding="utf-8") as f:
            for line in f:
                # mountinfo: "... mount_point ... - fstype source options"
                pre, _, post = line.partition(" - ")
                if post.split(" ", 1)[0] == "cgroup2":
                    mounts.append(pre.split(" ")[4])
    except OSError as e:
        raise CgroupRootError(f"cannot read {mountinfo} to find the cgroup2 mount") from e
    for candidate in CANDIDATE_ROOTS:
        if candidate in mounts:
            return candidate
    if mounts:
        return mounts[0]
    raise CgroupRootError(
        "no cgroup2 file system is mounted; mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) "
        "or pass the root explicitly"
    )


class CgroupPathCache:
    """Bounded LRU of cgroup id -> path relative to the cgroup2 root ("/kubepods.slice/...").

    ``root=None`` finds the cgroup2 mount on first use. ``min_rescan_interval`` (seconds) bounds how
    often a miss may walk the tree; ``max_walk`` bounds the directories visited in one walk.
    ``use_handles=False`` never asks the kernel by file handle (walks only). Safe to use from
    several threads.
    """

    def __init__(
        self,
        root: str | None = None,
        max_entries: int = 8192,
        *,
        min_rescan_interval: float = 1.0,
        max_walk: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
        use_handles: bool = True,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._root = root
        self._max_entries = max_entries
        self._min_rescan_interval = min_rescan_interval
        self._max_walk = max_walk
        self._clock = clock
        self._lru: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._last_scan: float | None = None
        self._handles: HandleLookup | None = None
        self._handles_checked = not use_handles
        # Ids the kernel said have no cgroup. cgroup ids are 64-bit and never reused, so this can
        # only go stale by eviction; it keeps ids of short-lived cgroups from costing a lookup each.
        self._gone: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0
        self.rescans = 0
        self.rescans_skipped = 0

    @property
    def root(self) -> str:
        """The cgroup2 mount point in use (found on first access when not given)."""
        if self._root is None:
            self._root = find_cgroup2_root()
        return self._root

    def path_for(self, cgroup_id: int) -> str | None:
        """Return the path of the cgroup with this id, or None if it cannot be found (yet)."""
        with self._lock:
            path = self._lru.get(cgroup_id)
            if path is not None:
                self._lru.move_to_end(cgroup_id)
                self.hits += 1
                return path
            self.misses += 1
            handles = self._handle_lookup()
            if handles is not None:
                if cgroup_id in self._gone:
                    return None
                try:
                    found = handles.path_for(cgroup_id)
                except OSError as e:
                    log.warning("cgroup lookup by file handle failed (%s); walking the tree instead", e)
                    self._handles = None
                else:
                    if found is None:
                        self._gone[cgroup_id] = None
                        if len(self._gone) > self._max_entries:
                            self._gone.popitem(last=False)
                    else:
                        self._put(cgroup_id, found)
                    return found
            now = self._clock()
            if self._last_scan is not None and now - self._last_scan < self._min_rescan_interval:
                self.rescans_skipped += 1
                return None
            self._last_scan = now
            found = self._rescan(cgroup_id)
            return found

    def _handle_lookup(self) -> HandleLookup | None:
        if not self._handles_checked:
            self._handles_checked = True
            self._handles = HandleLookup.open(self.root)
            if self._handles is None:
                log.info("cgroup file handles unavailable under %s; cgroups are found by walking it", self.root)
        return self._handles

    @property
    def handle_lookups(self) -> int:
        """Misses answered by the kernel through a file handle (no walk)."""
        return self._handles.lookups if self._handles is not None else 0

    def rescan(self) -> None:
        """Walk the tree now, regardless of the rate limit (for start-up or tests)."""
        with self._lock:
            self._last_scan = self._clock()
            self._rescan(None)

    def __len__(self) -> int:
        return len(self._lru)

    def _rescan(self, wanted: int | None) -> str | None:
        """Walk the cgroup2 tree, filling the LRU; the wanted id is inserted last so it survives."""
        self.rescans += 1
        root = self.root
        found: str | None = None
        visited = 0
        # (absolute dir, relative path) pairs; iterative so deep trees cannot hit the recursion limit.
        try:
            root_ino = os.stat(root).st_ino
        except OSError as e:
            raise CgroupRootError(f"cgroup2 root {root} is not readable") from e
        self._put(root_ino, "/")
        if wanted == root_ino:
            found = "/"
        stack = [(root, "")]
        while stack and visited < self._max_walk:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue  # removed while we walked: normal for short-lived cgroups
            for entry in entries:
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    # cgroupfs (kernfs) reports the same inode in readdir as in stat: no stat needed.
                    ino = entry.inode()
                except OSError:
                    continue
                visited += 1
                path = f"{rel}/{entry.name}"
                if ino == wanted:
                    found = path
                else:
                    self._put(ino, path)
                stack.append((entry.path, path))
        if visited >= self._max_walk:
            log.warning("cgroup walk stopped after %d directories (max_walk)", visited)
        if found is not None and wanted is not None:
            self._put(wanted, found)
        return found

    def _put(self, cgroup_id: int, path: str) -> None:
        self._lru[cgroup_id] = path
        self._lru.move_to_end(cgroup_id)
        while len(self._lru) > self._max_entries:
            self._lru.popitem(last=False)
