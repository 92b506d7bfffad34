"""Writing bundle files straight to disk as they are made, hashing them on the way.

Files go into a staging directory beside the destination (`.NAME.part`), so memory stays flat
however large the telemetry is; `finish` turns the staging directory into the bundle directory (a
rename) or a .tar.gz (streamed from the staged files), and a half-written bundle never carries the
final name. Every text file gets a last redaction pass here (`redact_text` per line) on top of the
structural redaction its producer did; JSON-lines files are redacted structurally, value by value,
by their producer (telemetry.py), since a line-level pass would mask OTLP's own `"key"` fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from agent.redaction.redact import redact_text
from governor.evidence import markdown
from governor.evidence.errors import BundleError

_TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".csv", ".txt")


class FileInfo:
    """sha256 (hex) and size in bytes of one written file."""

    __slots__ = ("sha256", "size")

    def __init__(self, sha256: str, size: int) -> None:
        self.sha256, self.size = sha256, size


class StreamWriter:
    """One bundle file written line by line; the sha256 is computed while writing."""

    def __init__(self, bundle: Bundle, name: str) -> None:
        self._bundle, self._name = bundle, name
        self._path = bundle.staging / name
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: BinaryIO = self._path.open("wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self._size += len(data)
        self._fh.write(data)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.close()
        self._bundle.files[self._name] = FileInfo(self._hash.hexdigest(), self._size)

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Bundle:
    """Files by bundle-relative path, staged on disk under `staging`; `files` holds their sums."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.files: dict[str, FileInfo] = {}

    def open_stream(self, path: str) -> StreamWriter:
        """A writer for a large file (JSON lines) whose producer redacted every value itself."""
        return StreamWriter(self, path)

    def add_text(self, path: str, text: str) -> None:
        last_pass = _markdown_last_pass if path.endswith(".md") else redact_text
        self._put(path, "\n".join(last_pass(line) for line in text.split("\n")).encode())

    def add_json(self, path: str, obj: Any) -> None:
        self.add_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def add_raw(self, path: str, data: bytes) -> None:
        """Bytes written exactly as given: the manifest (its signature covers these bytes) and its signature."""
        self._put(path, data)

    def add_bytes(self, path: str, data: bytes) -> None:
        if path.endswith(_TEXT_SUFFIXES):
            raise BundleError(f"{path}: text files go through add_text so they are redacted")
        self._put(path, data)

    def read(self, path: str) -> bytes:
        return (self.staging / path).read_bytes()

    def _put(self, path: str, data: bytes) -> None:
        with self.open_stream(path) as w:
            w.write(data)


def _markdown_last_pass(line: str) -> str:
    """The last redaction pass over a markdown line, which its cells masked before escaping
    (markdown.cell): a line whose unescaped text has nothing left to mask stays as it is; only a
    line some producer wrote without `cell` is masked here, escaped text and all (no leak, at
    worst a mask that renders as emphasis)."""
    seen = markdown.unescape(line)
    return line if redact_text(seen) == seen else redact_text(line)


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
    elif not out.parent.is_dir():
        raise BundleError(f"{out.parent} does not exist; create it or pick another --out")


def staging_dir(out: Path) -> Path:
    """A fresh staging directory beside `out` (same file system, so finishing is a rename)."""
    path = out.with_name(f".{out.name}.part")
    try:
        if path.exists():
            shutil.rmtree(path)  # left by an export that was killed: ours, by name
        path.mkdir()
    except OSError as exc:
        raise BundleError(f"cannot write the bundle next to {out}: {exc.strerror or exc}") from exc
    return path


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def finish(staging: Path, names: list[str], out: Path) -> None:
    """Make `out` from the staged files: a rename for a directory, a .tar.gz with one top directory."""
    try:
        if is_tarball(out):
            root = out.name.removesuffix(".tar.gz").removesuffix(".tgz")
            tmp = out.with_name(out.name + ".part")
            # level 1: a 1 GB window compresses ~3x faster than at the default 9, to ~1.4x the size
            with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
                for name in sorted(names):
                    src = staging / name
                    info = tarfile.TarInfo(f"{root}/{name}")
                    info.size, info.mtime, info.mode = src.stat().st_size, int(time.time()), 0o644
                    with src.open("rb") as fh:
                        tar.addfile(info, fh)
            os.replace(tmp, out)
            discard(staging)
            return
        if out.exists():
            out.rmdir()  # empty (check_destination said so)
        os.replace(staging, out)
    except OSError as exc:
        raise BundleError(f"cannot write the bundle to {out}: {exc.strerror or exc}") from exc
