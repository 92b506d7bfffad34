"""Giving back the memory BCC's compiler held once every probe is loaded.

Measured on this machine (bench/README.md "memory"): loading the seven probes takes the agent from
28 MB (Python, OTel SDK, gRPC, prometheus_client) to ~169 MB RSS, and after the last compile
~39 MB of that is heap that LLVM/clang freed but glibc kept (released by `malloc_trim(0)`) and
~83 MB is pages of libLLVM and libclang-cpp touched by the compiles (clean file pages: the kernel
can drop them and read them back from the library file if a later compile needs them;
`madvise(MADV_PAGEOUT)`, Linux 5.4+, asks it to do so now, which leaves every byte as it was).
Neither is needed again unless a probe is compiled again, which then faults the pages back in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bcgov.agent.selfcost.memory")

MADV_PAGEOUT = 21  # linux/mman-common.h, 5.4+
#: Libraries only the BPF compiler uses: their pages are cold once the probes are loaded.
COMPILER_LIBRARIES = ("libLLVM", "libclang")


@dataclass
class Released:
    """RSS (kB) before and after, and what each step gave back (kB)."""

    rss_before_kb: int
    rss_after_kb: int
    trimmed_kb: int
    paged_out_kb: int


def rss_kb(status: Path = Path("/proc/self/status")) -> int:
    """VmRSS of this process in kB."""
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def compiler_mappings(maps_text: str, libraries: tuple[str, ...] = COMPILER_LIBRARIES) -> list[tuple[int, int]]:
    """(start, length) of every mapping in /proc/<pid>/maps text whose file name starts with one
    of `libraries`."""
    out = []
    for line in maps_text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6:
            continue
        name = parts[5].rsplit("/", 1)[-1]
        if not name.startswith(libraries):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        out.append((start, end - start))
    return out


def release_compiler_memory() -> Released:
    """malloc_trim(0), then MADV_PAGEOUT on the compiler libraries' mappings; never raises (a libc
    without malloc_trim or a kernel without MADV_PAGEOUT only gives back less)."""
    before = rss_kb()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    try:
        libc.malloc_trim(0)
    except AttributeError:  # not glibc
        pass
    trimmed = rss_kb()
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start, length in compiler_mappings(maps):
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_PAGEOUT) != 0:
            log.debug("madvise(MADV_PAGEOUT) at %#x: errno %d", start, ctypes.get_errno())
            break  # an older kernel (EINVAL): the rest would fail the same way
    after = rss_kb()
    return Released(before, after, before - trimmed, trimmed - after)
