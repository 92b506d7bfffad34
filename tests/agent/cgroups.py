"""Real cgroups for tests: a cgroup2 directory (identity: its inode is the BPF cgroup id) and
optionally a cgroup v1 memory cgroup with a limit (for OOM kills). Removed even when tests fail."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

UNIFIED = Path("/sys/fs/cgroup/unified") if os.path.isdir("/sys/fs/cgroup/unified") else Path("/sys/fs/cgroup")
MEMORY_V1 = Path("/sys/fs/cgroup/memory")
WORKLOAD = Path(__file__).with_name("workload.py")


class TestCgroup:
    """A cgroup2 leaf (plus an optional v1 memory cgroup) that child processes can be started in."""

    def __init__(self, memory_limit_bytes: int | None = None) -> None:
        name = f"bcgov-test-{uuid.uuid4().hex[:10]}"
        self.path = UNIFIED / name
        self.path.mkdir()
        self.id = os.stat(self.path).st_ino
        self.memory: Path | None = None
        if memory_limit_bytes is not None:
            self.memory = MEMORY_V1 / name
            self.memory.mkdir()
            (self.memory / "memory.limit_in_bytes").write_text(str(memory_limit_bytes))

    def _enter(self) -> None:
        # Runs in the child between fork and exec: the exec itself then happens in the cgroup.
        pid = str(os.getpid())
        (self.path / "cgroup.procs").write_text(pid)
        if self.memory is not None:
            (self.memory / "cgroup.procs").write_text(pid)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the test workload (tests/agent/workload.py ARGS) in this cgroup and wait for it."""
        return subprocess.run(
            [sys.executable, str(WORKLOAD), *args], preexec_fn=self._enter, capture_output=True, text=True, timeout=timeout
        )

    def run_argv(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run any command in this cgroup."""
        return subprocess.run(argv, preexec_fn=self._enter, capture_output=True, text=True, timeout=timeout)

    def remove(self) -> None:
        """Remove the cgroups, waiting briefly for exiting processes to leave them."""
        for path in (self.path, self.memory):
            if path is None or not path.exists():
                continue
            deadline = time.monotonic() + 10
            while True:
                try:
                    path.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)  # poll: the kernel frees an emptied cgroup asynchronously


@contextlib.contextmanager
def test_cgroup(memory_limit_bytes: int | None = None) -> Iterator[TestCgroup]:
    """A `TestCgroup` for the duration of the block."""
    cg = TestCgroup(memory_limit_bytes)
    try:
        yield cg
    finally:
        cg.remove()
