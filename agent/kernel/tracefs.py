"""tracefs: which tracepoints this kernel has, and their field layouts.

Feature checks read the kernel's own description of each tracepoint (`events/<cat>/<name>/format`)
instead of guessing from a version number.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

CANDIDATE_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);")


class TracefsMissing(Exception):
    """tracefs is not mounted where BCC looks for it."""


@dataclass(frozen=True)
class TracepointField:
    """One field of a tracepoint's format."""

    name: str
    type: str
    offset: int
    size: int


def find_root(candidates: tuple[str, ...] = CANDIDATE_ROOTS) -> Path:
    """The mounted tracefs root, or a `TracefsMissing` that says how to mount it."""
    for c in candidates:
        if os.path.isdir(os.path.join(c, "events")):
            return Path(c)
    raise TracefsMissing(
        "tracefs is not mounted: run 'mount -t tracefs tracefs /sys/kernel/tracing' "
        "(scripts/bootstrap.sh does it; in a pod, mount the host's /sys/kernel/tracing)"
    )


class Tracefs:
    """Read-only view of one tracefs mount; the root comes in so tests can use a fake tree."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._formats: dict[str, dict[str, TracepointField]] = {}

    def _dir(self, tracepoint: str) -> Path:
        category, _, name = tracepoint.partition(":")
        return self.root / "events" / category / name

    def has(self, tracepoint: str) -> bool:
        """True when the kernel offers `category:name`."""
        return (self._dir(tracepoint) / "format").is_file()

    def fields(self, tracepoint: str) -> dict[str, TracepointField]:
        """The tracepoint's own fields (common_* excluded), by name; empty when it is absent."""
        if tracepoint not in self._formats:
            self._formats[tracepoint] = self._parse(tracepoint)
        return self._formats[tracepoint]

    def _parse(self, tracepoint: str) -> dict[str, TracepointField]:
        try:
            text = (self._dir(tracepoint) / "format").read_text()
        except OSError:
            return {}
        out: dict[str, TracepointField] = {}
        for line in text.splitlines():
            m = _FIELD.match(line)
            if not m:
                continue
            decl = m.group("decl").strip()
            name, ctype = _split_decl(decl)
            if name.startswith("common_"):
                continue
            out[name] = TracepointField(name, ctype, int(m.group("offset")), int(m.group("size")))
        return out


def _split_decl(decl: str) -> tuple[str, str]:
    """'__u8 saddr[28]' -> ('saddr', '__u8 [28]'); '__data_loc char[] comm' -> ('comm', ...)."""
    m = re.match(r"^(?P<type>.*?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<dims>(\[[^\]]*\])*)$", decl)
    if not m:
        return decl, ""
    return m.group("name"), f"{m.group('type').strip()} {m.group('dims')}".strip()
