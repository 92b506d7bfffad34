"""A line-oriented file that rotates by size, so the agent never holds more than a set total on disk.

Used for the spans JSONL file and the event log (the pod's emptyDir has a `sizeLimit`; the kubelet
evicts a pod past it). `path` grows to `max_bytes`, then becomes `path.1` (and `path.1` becomes
`path.2`, ...; the oldest past `backups` is deleted). At most ``max_bytes * (backups + 1)`` bytes
are on disk at any time. Lines are never split: a write is cut at line boundaries, and a single line
longer than `max_bytes` is dropped and counted, never written in part. Rotations and dropped lines
are counted and exported by `RotationCollector` as
``bcgov_agent_file_rotations_total{file}`` and ``bcgov_agent_file_lines_dropped_total{file}``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("bcgov.agent")

MIN_MAX_BYTES = 4096  # below this a batch of spans would not fit in one file


class RotatingFile:
    """Append-only text sink with size rotation; the write/flush/close subset of a text stream.

    `name` is the `file` label of its metrics (e.g. "spans", "events"). Thread-safe."""

    def __init__(self, path: str, max_bytes: int, backups: int, name: str) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be >= {MIN_MAX_BYTES}, not {max_bytes}")
        if backups < 0:
            raise ValueError(f"backups must be >= 0, not {backups}")
        self.path = path
        self.name = name
        self.max_bytes = max_bytes
        self.backups = backups
        self.rotations = 0
        self.lines_dropped = 0
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._fh = open(path, "ab")  # noqa: SIM115 - held for the agent's life, closed by close()
        self._size = self._fh.tell()

    def write(self, text: str) -> int:
        """Append `text` (whole lines); rotate first where the next line would not fit."""
        data = text.encode("utf-8")
        with self._lock:
            while data:
                room = self.max_bytes - self._size
                if len(data) <= room:
                    self._append(data)
                    break
                fits = data.rfind(b"\n", 0, room) + 1  # the whole lines that still fit
                if fits:
                    self._append(data[:fits])
                    data = data[fits:]
                    continue
                end = data.find(b"\n") + 1 or len(data)
                if end > self.max_bytes:  # one line larger than a whole file: it can never fit
                    self.lines_dropped += 1
                    data = data[end:]
                    continue
                self._rotate()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._fh.flush()

    def close(self) -> None:
        """Close the file. A disk that takes no more bytes (ENOSPC, EIO) is logged, not raised:
        what is still buffered belongs to writes already reported failed, and an exception here
        would end the agent's shutdown before its exit line."""
        with self._lock:
            try:
                self._fh.close()  # the descriptor is closed even when the final flush fails
            except OSError as exc:
                log.error("cannot finish writing %s (%s): %s", self.path, self.name, exc.strerror or exc)

    def _append(self, data: bytes) -> None:
        self._fh.write(data)
        self._size += len(data)

    def _rotate(self) -> None:
        self._fh.close()
        if self.backups == 0:
            self._fh = open(self.path, "wb")  # noqa: SIM115 - truncated: no backups kept
        else:
            for i in range(self.backups, 1, -1):
                older = f"{self.path}.{i - 1}"
                if os.path.exists(older):
                    os.replace(older, f"{self.path}.{i}")
            os.replace(self.path, f"{self.path}.1")
            self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
        self.rotations += 1


class RotationCollector(Collector):
    """Exports the rotation and drop counts of the agent's rotating files."""

    def __init__(self, files: Iterable[RotatingFile]) -> None:
        self._files = list(files)

    def collect(self) -> Iterator[CounterMetricFamily]:
        rotations = CounterMetricFamily(
            "bcgov_agent_file_rotations", "Size rotations of the agent's local files (spans, events)", labels=["file"])
        dropped = CounterMetricFamily(
            "bcgov_agent_file_lines_dropped",
            "Lines not written to a local file because one line was larger than its max_bytes", labels=["file"])
        for f in self._files:
            rotations.add_metric([f.name], f.rotations)
            dropped.add_metric([f.name], f.lines_dropped)
        yield rotations
        yield dropped
