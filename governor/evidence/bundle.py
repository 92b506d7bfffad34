"""Collecting bundle files in memory and writing them to a directory or a .tar.gz.

Every text file gets a last redaction pass here (`redact_text` per line) on top of the structural
redaction its producer did: whatever a producer forgot, nothing secret-looking reaches the disk.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from agent.redact import redact_text
from governor.evidence.errors import BundleError

_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".csv", ".txt")


class Bundle:
    """Files by bundle-relative path; `write` lays them out at the destination."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add_text(self, path: str, text: str) -> None:
        self.files[path] = "\n".join(redact_text(line) for line in text.split("\n")).encode()

    def add_json(self, path: str, obj: Any) -> None:
        self.add_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def add_jsonl(self, path: str, records: list[Any]) -> None:
        self.add_text(path, "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records))

    def add_bytes(self, path: str, data: bytes) -> None:
        if path.endswith(_TEXT_SUFFIXES):
            raise BundleError(f"{path}: text files go through add_text so they are redacted")
        self.files[path] = data


def is_tarball(out: Path) -> bool:
    return out.name.endswith(".tar.gz") or out.name.endswith(".tgz")


def check_destination(out: Path) -> None:
    """Refuse to mix a bundle into existing files: verify would then fail for reasons not ours."""
    if is_tarball(out):
        if out.exists():
            raise BundleError(f"{out} already exists; pick a new --out or remove it")
        if not out.parent.is_dir():
            raise BundleError(f"{out.parent} does not exist; create it or pick another --out")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not an empty directory; pick a new --out")


def write(files: dict[str, bytes], out: Path) -> None:
    """Write `files` under directory `out`, or as `out` (.tar.gz) with one top directory."""
    try:
        if is_tarball(out):
            root = out.name.removesuffix(".tar.gz").removesuffix(".tgz")
            tmp = out.with_name(out.name + ".part")
            with tarfile.open(tmp, "w:gz") as tar:
                for name, data in sorted(files.items()):
                    info = tarfile.TarInfo(f"{root}/{name}")
                    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                    tar.addfile(info, io.BytesIO(data))
            os.replace(tmp, out)  # a half-written tarball never carries the final name
            return
        for name, data in files.items():
            p = out / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    except OSError as exc:
        raise BundleError(f"cannot write the bundle to {out}: {exc.strerror or exc}") from exc
