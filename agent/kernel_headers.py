"""Which kernel headers BCC compiles the probes against, and why.

Probes read tracepoint fields and BPF helpers only (DESIGN.md), so any header set with the basic
types compiles them correctly; the headers need not match the running kernel. The order:

1. ``node``: the node's own, ``/lib/modules/<release>/build`` with ``include/`` (BCC's default
   lookup; preferred, a distribution's matching headers are the least surprising).
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

    def describe(self) -> str:
        """One line for `bcgov agent probes` and the start-up log."""
        return f"{self.source} headers at {self.path}: {self.why}"

    def apply(self, environ: "os._Environ[str] | dict[str, str]" = os.environ) -> None:
        """Point BCC at the chosen tree (only the bundled set needs it; BCC finds the others)."""
        if self.source == "bundled":
            environ[BCC_ENV] = self.path


def _bundle_origin(path: Path) -> str:
    try:
        return (path / "BCGOV_HEADERS_FROM").read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        return "unknown packages"


def choose(where: Locations | None = None, environ: "os._Environ[str] | dict[str, str]" = os.environ) -> HeaderChoice:
    """The first usable header set in the documented order; raises HeadersMissing with the fix."""
    w = where or Locations()
    chosen = environ.get(BCC_ENV)
    if chosen:
        if not (Path(chosen) / "include" / "linux" / "kconfig.h").exists():
            raise HeadersMissing(
                f"{BCC_ENV}={chosen} holds no include/linux/kconfig.h: point it at one merged header tree "
                f"(e.g. {BUNDLED_DEFAULT}, made by scripts/bundle_kernel_headers.sh) or unset it"
            )
        return HeaderChoice("environment", chosen, f"{BCC_ENV} is set, which replaces every other lookup")
    build = w.node_build
    if (build / "include").is_dir():
        return HeaderChoice("node", str(build), "the node's own headers are present and preferred")
    if Path(w.kheaders).exists():
        return HeaderChoice(
            "kheaders", w.kheaders, f"no headers at {build}; the kernel carries its own (CONFIG_IKHEADERS)"
        )
    bundled = Path(w.bundled)
    if (bundled / "include" / "linux" / "kconfig.h").exists():
        return HeaderChoice(
            "bundled", str(bundled),
            f"no headers at {build} and no {w.kheaders}; using the generic set from {_bundle_origin(bundled)} "
            "(probes read tracepoint fields only, so headers need not match the kernel)",
        )
    raise HeadersMissing(
        f"kernel headers not found: none at {build}, no {w.kheaders}, no bundled set at {bundled}; "
        "run scripts/bootstrap.sh (it makes the bundled set), or apt-get install linux-headers-$(uname -r), "
        "or 'modprobe kheaders'"
    )
