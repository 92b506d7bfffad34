"""cgroup id -> path in a few system calls: open_by_handle_at(2) with a kernfs file handle.

On cgroup2 the id BPF reports (``bpf_get_current_cgroup_id()``) is the kernfs node id, and kernfs
hands out file handles of type FILEID_KERNFS whose 8 bytes are that id. Opening the handle gives the
cgroup's directory and ``/proc/self/fd`` names its path. No tree walk and no rate limit, so a cgroup
made a moment ago (a pod that just started, a Spark executor) is named on its first event, and an id
whose cgroup is gone costs one failed call (ESTALE) instead of a walk.

Needs CAP_DAC_READ_SEARCH, which the agent has as root or through its DaemonSet capabilities. Where
the kernel, the file system or the capabilities refuse, ``HandleLookup.open(root)`` returns None and
the caller walks the tree instead.
"""

from __future__ import annotations

import ctypes
import errno
import os

FILEID_KERNFS = 0xFE
# Errors meaning "no cgroup has this id (any more)"; anything else means handles do not work here.
_GONE = frozenset({errno.ESTALE, errno.ENOENT})
_DELETED = " (deleted)"


class _KernfsHandle(ctypes.Structure):
    """``struct file_handle`` carrying one kernfs node id."""

    _fields_ = [("handle_bytes", ctypes.c_uint32), ("handle_type", ctypes.c_int32), ("id", ctypes.c_uint64)]


class HandleLookup:
    """Names cgroups below ``root`` by id through file handles. Build it with ``open()``."""

    def __init__(self, root: str, libc: ctypes.CDLL) -> None:
        self._root = os.path.realpath(root)
        self._open_by_handle_at = libc.open_by_handle_at
        self.lookups = 0

    @classmethod
    def open(cls, root: str) -> HandleLookup | None:
        """A lookup for the cgroup2 tree at ``root``, or None when file handles do not work there
        (no such libc call, not kernfs, no CAP_DAC_READ_SEARCH): checked by naming ``root`` itself."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            lookup = cls(root, libc)
            if lookup.path_for(os.stat(root).st_ino) != "/":
                return None
        except (OSError, AttributeError):
            return None
        lookup.lookups = 0  # the check above is no lookup anyone asked for
        return lookup

    def path_for(self, cgroup_id: int) -> str | None:
        """The path of this cgroup relative to the root ("/kubepods.slice/..."), or None when no
        cgroup below the root has this id. Raises OSError when the lookup itself fails."""
        self.lookups += 1
        handle = _KernfsHandle(8, FILEID_KERNFS, cgroup_id)
        mount_fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = self._open_by_handle_at(mount_fd, ctypes.byref(handle), os.O_RDONLY | os.O_DIRECTORY)
            if fd < 0:
                err = ctypes.get_errno()
                if err in _GONE:
                    return None
                raise OSError(err, f"open_by_handle_at on {self._root}: {os.strerror(err)}")
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
        finally:
            os.close(mount_fd)
        if path.endswith(_DELETED):
            return None  # removed between the open and the readlink
        if path == self._root:
            return "/"
        prefix = self._root.rstrip("/")
        if not path.startswith(prefix + "/"):
            return None  # a cgroup outside the tree this cache is rooted at
        return path[len(prefix):]
