"""Which kernel headers BCC compiles the probes against, and why.

Probes read tracepoint fields and BPF helpers only (DESIGN.md), so any header set with the basic
types compiles them correctly; the headers need not match the running kernel. The order:

1. ``node``: the node's own, ``/lib/modules/<release>/build`` (BCC's default lookup; preferred, a
   distribution's matching headers are the least surprising), but only when complete for BCC:
   BCC compiles from ``source/`` when ``build/`` and ``source/`` are both directories, else from
   ``build/`` (iovisor/bcc src/cc/frontends/clang/loader.cc, get_kernel_path_info), force-includes
   ``include/linux/kconfig.h`` from there, which includes ``generated/autoconf.h`` from
   ``build/include`` (kbuild_helper.cc). A tree missing any of these made BCC's compile fail and
   the Python process segfault (exit 139), so an incomplete tree is skipped and the line says why.
2. ``kheaders``: the kernel's built-in archive ``/sys/kernel/kheaders.tar.xz`` (CONFIG_IKHEADERS;
   BCC unpacks it into /tmp by itself when the first lookup fails).
3. ``bundled``: the generic set scripts/bundle_kernel_headers.sh makes (the image and
   scripts/bootstrap.sh both run it), handed to BCC through ``BCC_KERNEL_SOURCE``, which replaces
   BCC's lookup with that one tree.

``BCC_KERNEL_SOURCE`` already set in the environment wins over all three (``environment``): the
operator chose. Nothing here runs at import; paths come in through `Locations`.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_DEFAULT = "/usr/local/share/bcgov/kernel-headers"
BUNDLED_ENV = "BCGOV_KERNEL_HEADERS"   # where the bundled set is, when not at BUNDLED_DEFAULT
BCC_ENV = "BCC_KERNEL_SOURCE"
KHEADERS = "/sys/kernel/kheaders.tar.xz"


class HeadersMissing(Exception):
    """No header set BCC could compile with; the message names every place looked at and the fix."""


@dataclass(frozen=True)
class Locations:
    """Where to look; tests point these at fake trees."""

    release: str = field(default_factory=platform.release)
    modules_root: str = "/lib/modules"
    kheaders: str = KHEADERS
    bundled: str = field(default_factory=lambda: os.environ.get(BUNDLED_ENV) or BUNDLED_DEFAULT)

    @property
    def node_build(self) -> Path:
        return Path(self.modules_root) / self.release / "build"


@dataclass(frozen=True)
class HeaderChoice:
    """The header set in use. `source` is node | kheaders | bundled | environment."""

    source: str
    path: str
    why: str
    unpack: bool = False  # kheaders only: unpack the archive here and point BCC at it


    def describe(self) -> str:
        """One line for `bcgov agent probes` and the start-up log."""
        return f"{self.source} headers at {self.path}: {self.why}"

    def apply(self, environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
        """Point BCC at the chosen tree: the bundled set, or the archive unpacked (BCC finds the others)."""
        if self.source == "bundled":
            environ[BCC_ENV] = self.path
        elif self.source == "kheaders" and self.unpack:
            environ[BCC_ENV] = unpack_kheaders(self.path, platform.release())


def _bundle_origin(path: Path) -> str:
    try:
        return (path / "BCGOV_HEADERS_FROM").read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return "unknown packages"


KCONFIG = "include/linux/kconfig.h"
AUTOCONF = "include/generated/autoconf.h"
UTSRELEASE = "include/generated/utsrelease.h"


@dataclass(frozen=True)
class NodeTree:
    """What BCC's default lookup would compile from under ``<modules_root>/<release>``.

    `compile_dir` is where BCC runs clang (``source/`` when build/ and source/ are both
    directories, else ``build/`` or $BCC_KERNEL_MODULES_SUFFIX); `missing` is None when the tree
    is complete, else the first thing missing, worded for the headers line."""

    build: Path
    compile_dir: Path
    present: bool
    missing: str | None

    def release(self) -> str | None:
        """The kernel release these headers were made for (generated/utsrelease.h), if it says."""
        for top in (self.build, self.compile_dir):
            try:
                text = (top / UTSRELEASE).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                parts = line.split(None, 2)
                if len(parts) == 3 and parts[:2] == ["#define", "UTS_RELEASE"]:
                    return parts[2].strip().strip('"')
        return None


def inspect_node(where: Locations, environ: os._Environ[str] | dict[str, str] = os.environ) -> NodeTree:
    """The node's tree as BCC's default lookup sees it (the rules are in the module docstring)."""
    kdir = Path(where.modules_root) / where.release
    build, source = kdir / "build", kdir / "source"
    both = build.is_dir() and source.is_dir()
    compile_dir = source if both else kdir / environ.get("BCC_KERNEL_MODULES_SUFFIX", "build")
    present = any(p.exists() or p.is_symlink() for p in (build, source))
    missing: str | None = None
    if not present:
        missing = "absent"
    elif not build.exists():
        missing = f"{build} is a broken link to {os.readlink(build)}" if build.is_symlink() else f"no {build}"
    elif not (build / "include").is_dir():
        missing = "no build/include"
    elif not (compile_dir / KCONFIG).is_file():
        where_from = "source/ (BCC compiles from source/ when build/ and source/ are both directories)" \
            if both else compile_dir.name + "/"
        missing = f"no {KCONFIG} under {where_from}"
    elif not ((build / AUTOCONF).is_file() or (compile_dir / AUTOCONF).is_file()):
        missing = f"no {AUTOCONF} (the kernel configuration BCC's kconfig.h includes)"
    return NodeTree(build, compile_dir, present, missing)


def _version_note(tree: NodeTree, release: str) -> str:
    made_for = tree.release()
    if made_for is None or made_for == release:
        return ""
    return (f"; they are for {made_for}, the running kernel is {release} (fine: probes read tracepoint "
            "fields only, which BCC lays out from tracefs)")


def choose(where: Locations | None = None, environ: os._Environ[str] | dict[str, str] = os.environ) -> HeaderChoice:
    """The first usable header set in the documented order; raises HeadersMissing with the fix."""
    w = where or Locations()
    chosen = environ.get(BCC_ENV)
    if chosen:
        missing = [f for f in (KCONFIG, AUTOCONF) if not (Path(chosen) / f).is_file()]
        if missing:
            raise HeadersMissing(
                f"{BCC_ENV}={chosen} holds no {' and no '.join(missing)}: point it at one merged header tree "
                f"(e.g. {BUNDLED_DEFAULT}, made by scripts/bundle_kernel_headers.sh) or unset it"
            )
        return HeaderChoice("environment", chosen, f"{BCC_ENV} is set, which replaces every other lookup")
    node = inspect_node(w, environ)
    build = w.node_build
    if node.missing is None:
        return HeaderChoice("node", str(build), "the node's own headers are complete and preferred"
                            + _version_note(node, w.release))
    not_node = f"no headers at {build}" if not node.present else \
        f"node headers at {build} are incomplete: {node.missing}"
    if Path(w.kheaders).exists():
        # BCC falls back to the archive by itself only when kconfig.h is missing where it looks:
        # when the node's tree is there but broken otherwise, unpack it here and point BCC at it.
        return HeaderChoice("kheaders", w.kheaders, f"{not_node}; using the kernel's own (CONFIG_IKHEADERS)",
                            unpack=node.present)
    bundled = Path(w.bundled)
    if all((bundled / f).is_file() for f in (KCONFIG, AUTOCONF)):
        return HeaderChoice(
            "bundled", str(bundled),
            f"{not_node} and no {w.kheaders}; using the generic set from {_bundle_origin(bundled)} "
            "(probes read tracepoint fields only, so headers need not match the kernel)",
        )
    fix = "" if not node.present else f"; or remove the incomplete {build}"
    raise HeadersMissing(
        f"kernel headers not found: {not_node}, no {w.kheaders}, no bundled set at {bundled}; "
        "run scripts/bootstrap.sh (it makes the bundled set), or apt-get install linux-headers-$(uname -r), "
        f"or 'modprobe kheaders'{fix}"
    )


def unpack_kheaders(archive: str, release: str, tmp_root: str | None = None) -> str:
    """Unpack the kernel's header archive (a .tar.xz of include/ and arch/) into a fresh directory
    under `tmp_root` (default $TMPDIR) and return it; as BCC's get_proc_kheaders does, but for a
    node whose own tree would stop BCC from reaching its own fallback. Raises HeadersMissing."""
    import tarfile
    import tempfile

    dest = tempfile.mkdtemp(prefix=f"bcgov-kheaders-{release}-", dir=tmp_root)
    try:
        with tarfile.open(archive, "r:xz") as tar:
            # headers are plain files and directories; anything else, or a name leaving `dest`, is
            # not extracted (Python 3.11.2 here has no tarfile extraction filters)
            safe = [m for m in tar.getmembers() if (m.isfile() or m.isdir())
                    and not m.name.startswith("/") and ".." not in Path(m.name).parts]
            tar.extractall(dest, members=safe)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise HeadersMissing(f"cannot unpack {archive} into {dest}: {exc}; run scripts/bootstrap.sh "
                             "(it makes the bundled set) or install linux-headers-$(uname -r)") from exc
    if not (Path(dest) / KCONFIG).is_file():
        raise HeadersMissing(f"{archive} holds no {KCONFIG}; run scripts/bootstrap.sh (it makes the bundled set)")
    return dest
