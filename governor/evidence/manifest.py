"""MANIFEST.json: sha256 and size of every file, tool version, the command (redacted), sources
queried and missing; `verify` re-checks a bundle directory or .tar.gz against it, reading each
file in chunks, and with `allowed_signers` also its SSH signature (signing.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from governor.evidence import signing
from governor.evidence.errors import VerifyError

NAME = "MANIFEST.json"
SCHEMA = "bcgov.evidence-manifest/v1"
_CHUNK = 1 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(files: Mapping[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest for `files` (bundle-relative path -> bytes, or an object with `sha256` and
    `size` as bundle.FileInfo) plus `meta` fields."""
    def entry(v: Any) -> dict[str, Any]:
        if isinstance(v, bytes):
            return {"sha256": sha256(v), "size": len(v)}
        return {"sha256": v.sha256, "size": v.size}

    return {"schema": SCHEMA, **meta, "files": {p: entry(v) for p, v in sorted(files.items())}}


def encode(manifest: dict[str, Any]) -> bytes:
    """The manifest's bytes as written (and signed)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode()


@dataclasses.dataclass
class _Entry:
    name: str
    open: Any  # () -> binary file object; None for an entry that is not a regular file
    odd: str = ""  # why the entry is no file of a bundle (a link, an unsafe path), else ""


def _unsafe(name: str) -> bool:
    """An absolute tar member name or one with a `..` component (it would land outside the bundle)."""
    return name.startswith("/") or ".." in name.split("/")


def _entries(path: Path) -> Iterator[_Entry]:
    """Every entry of a bundle directory or tarball, by bundle-relative path: regular files with
    an opener; symbolic links, other non-files and unsafe tar paths with `odd` saying what they are."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            rel = str(p.relative_to(path))
            if p.is_symlink():
                yield _Entry(rel, None, "a symbolic link, not a regular file (a bundle holds regular files only)")
            elif p.is_file():
                yield _Entry(rel, lambda p=p: p.open("rb"))
        return
    if path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path, "r:gz") as tar:
            members = [m for m in tar.getmembers() if not m.isdir()]
            # the bundle's top directory, from its safe entries only: an added `../x` must not hide it
            prefix = _common_root(m.name for m in members if not _unsafe(m.name))
            for m in members:
                if _unsafe(m.name):
                    yield _Entry(m.name, None, "an unsafe path (absolute or with ..) that no bundle holds")
                    continue
                name = m.name[len(prefix):] if m.name.startswith(prefix) else m.name
                if m.issym() or m.islnk():
                    yield _Entry(name, None, "a link, not a regular file (a bundle holds regular files only)")
                elif not m.isfile():
                    yield _Entry(name, None, "not a regular file (a bundle holds regular files only)")
                else:
                    yield _Entry(name, lambda m=m: tar.extractfile(m))
        return
    raise VerifyError(f"{path} is neither a bundle directory nor a .tar.gz bundle")


def _common_root(names: Iterable[str]) -> str:
    """The single top directory every member sits in (`bundle/`), or "" when there is none."""
    tops = {n.split("/", 1)[0] + "/" for n in names if "/" in n}
    return tops.pop() if len(tops) == 1 else ""


def _digest(fh: IO[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


@dataclasses.dataclass
class Verified:
    """What `check` found: files that differ (empty when none) and who signed, when checked."""

    problems: list[str]
    signer: str | None = None
    signed: bool = False


def check(path: Path, allowed_signers: Path | None = None) -> Verified:
    """Every file against the manifest; with `allowed_signers`, first the manifest's signature.

    Raises VerifyError (one line) when there is no readable manifest, or when a signature is
    required and missing, made by a key not in `allowed_signers`, or does not match the manifest."""
    digests: dict[str, tuple[str, int]] = {}
    odd: dict[str, str] = {}
    raw = sig = None
    for e in _entries(path):
        if e.odd:
            odd[e.name] = e.odd
        elif e.name == NAME:
            raw = e.open().read()
        elif e.name == signing.SIG_NAME:
            sig = e.open().read()
        else:
            digests[e.name] = _digest(e.open())
    if raw is None:
        raise VerifyError(f"{path} has no {NAME}; was it written by `bcgov evidence export`?")
    signer = None
    if allowed_signers is not None:
        if sig is None:
            raise VerifyError(f"{path} has no {signing.SIG_NAME}: the bundle is unsigned (export it with --sign-key KEY), "
                              f"so nothing shows who made it")
        signer = signing.verify(raw, sig, allowed_signers)
    try:
        listed = json.loads(raw)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifyError(f"{path}/{NAME} is not a valid manifest ({exc})") from exc
    # one line per entry, saying what happened to it
    problems = []
    for name, entry in sorted(listed.items()):
        got = digests.get(name)
        if name in odd:
            problems.append(f"{name}: replaced by {odd[name]}")
        elif got is None:
            problems.append(f"{name}: missing")
        elif got[1] != entry.get("size"):
            problems.append(f"{name}: changed (size {got[1]} bytes, the manifest says {entry.get('size')}; sha256 mismatch)")
        elif got[0] != entry.get("sha256"):
            problems.append(f"{name}: changed (sha256 mismatch)")
    problems += [f"{name}: added (not in the manifest)" for name in sorted(set(digests) - set(listed))]
    problems += [f"{name}: added, {why}" for name, why in sorted(odd.items()) if name not in listed]
    return Verified(problems, signer, sig is not None)


def verify(path: Path) -> list[str]:
    """Problems found (empty when the bundle matches its manifest exactly); the signature is not checked."""
    return check(path).problems
