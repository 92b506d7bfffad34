"""Helpers shared by the identity tests: polling, an injectable clock, fixtures, real cgroups."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> Any:
    """A recorded JSON fixture from ``fixtures/``."""
    return json.loads((FIXTURES / name).read_text())


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll until predicate() is truthy (never sleep a fixed time); fail clearly otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")


class FakeClock:
    """An injectable monotonic clock: tests move time instead of sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CgroupTree:
    """Real cgroup2 directories under ``<cgroup2 root>/bcgov-test-<random>``, removed by cleanup().

    Processes placed in them are moved back to the root cgroup and killed before the directories
    are removed deepest first, so cleanup works even after a failed assertion.
    """

    def __init__(self, cgroup2_root: str) -> None:
        self.cgroup2_root = cgroup2_root
        self.base = os.path.join(cgroup2_root, f"bcgov-test-{secrets.token_hex(4)}")
        self.rel_base = "/" + os.path.basename(self.base)
        self._dirs: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def make(self, rel: str) -> str:
        """Create ``base + rel`` (and its parents); return the absolute directory."""
        if not self._dirs:
            os.mkdir(self.base)
            self._dirs.append(self.base)
        path = self.base
        for part in [p for p in rel.split("/") if p]:
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                os.mkdir(path)
                self._dirs.append(path)
        return path

    def run_in(self, directory: str) -> subprocess.Popen[bytes]:
        """Start a sleeping child and move it into the cgroup at ``directory``."""
        proc = subprocess.Popen(["sleep", "300"])
        self._procs.append(proc)
        with open(os.path.join(directory, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        return proc

    def cleanup(self) -> None:
        for proc in self._procs:
            try:
                with open(os.path.join(self.cgroup2_root, "cgroup.procs"), "w") as f:
                    f.write(str(proc.pid))
            except OSError:
                pass
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for d in sorted(self._dirs, key=lambda d: d.count("/"), reverse=True):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
