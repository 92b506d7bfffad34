"""MANIFEST.json: sha256 and size of every file, tool version, the command (redacted), sources
queried and missing; `verify` re-checks a bundle directory or .tar.gz against it."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any, Iterable

from governor.evidence.errors import VerifyError

NAME = "MANIFEST.json"
SCHEMA = "bcgov.evidence-manifest/v1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(files: dict[str, bytes], meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest for `files` (bundle-relative path -> bytes) plus `meta` fields."""
    return {"schema": SCHEMA, **meta,
            "files": {p: {"sha256": sha256(b), "size": len(b)} for p, b in sorted(files.items())}}


def _read_bundle(path: Path) -> dict[str, bytes]:
    """Every regular file of a bundle directory or tarball, by bundle-relative path."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    if path.is_file() and tarfile.is_tarfile(path):
        out: dict[str, bytes] = {}
        with tarfile.open(path, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            prefix = _common_root(m.name for m in members)
            for m in members:
                fh = tar.extractfile(m)
                assert fh is not None  # regular files always have a body
                out[m.name[len(prefix):]] = fh.read()
        return out
    raise VerifyError(f"{path} is neither a bundle directory nor a .tar.gz bundle")


def _common_root(names: Iterable[str]) -> str:
    """The single top directory every member sits in (`bundle/`), or "" when there is none."""
    tops = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
    return tops.pop() if len(tops) == 1 else ""


def verify(path: Path) -> list[str]:
    """Problems found (empty when the bundle matches its manifest exactly)."""
    files = _read_bundle(path)
    raw = files.pop(NAME, None)
    if raw is None:
        raise VerifyError(f"{path} has no {NAME}; was it written by `bcgov evidence export`?")
    try:
        manifest = json.loads(raw)
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifyError(f"{path}/{NAME} is not a valid manifest ({exc})") from exc
    problems = []
    for name, entry in sorted(listed.items()):
        data = files.get(name)
        if data is None:
            problems.append(f"{name}: missing")
        elif len(data) != entry.get("size"):
            problems.append(f"{name}: size {len(data)} != {entry.get('size')}")
        elif sha256(data) != entry.get("sha256"):
            problems.append(f"{name}: sha256 mismatch")
    problems += [f"{name}: not in the manifest" for name in sorted(set(files) - set(listed))]
    return problems
