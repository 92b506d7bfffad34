"""Giving back the compiler's memory (agent/selfcost/memory.py): which mappings are the compiler's, and on
the real kernel, a process that compiled a probe shrinks and can still compile another."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.selfcost import memory

# Lines of /proc/<pid>/maps of an agent on this machine (Debian 12, BCC 0.26, LLVM 14).
MAPS = """\
55d4c8a00000-55d4c8a6b000 r--p 00000000 fe:01 1311783                    /usr/bin/python3.11
7f1c2a000000-7f1c2a9b8000 r--p 00000000 fe:01 1323270                    /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1c2a9b8000-7f1c2e3c4000 r-xp 009b8000 fe:01 1323270                    /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1c30000000-7f1c30600000 r--p 00000000 fe:01 1323301                    /usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
7f1c31000000-7f1c31100000 r-xp 00000000 fe:01 1323411                    /usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0
7f1c32000000-7f1c32021000 rw-p 00000000 00:00 0                          [heap]
7f1c33000000-7f1c33001000 rw-p 00000000 00:00 0
"""


def test_only_the_compiler_libraries_are_paged_out() -> None:
    assert memory.compiler_mappings(MAPS) == [(0x7F1C2A000000, 0x9B8000), (0x7F1C2A9B8000, 0x3A0C000),
                                              (0x7F1C30000000, 0x600000)]
    assert memory.compiler_mappings(MAPS, ("libbcc",)) == [(0x7F1C31000000, 0x100000)]


def _compiler_private_kb() -> int:
    """Private clean (this process's alone, unmodified file pages) resident kB of the compiler
    libraries' mappings: what paging out can drop. Pages another process maps too are shared, and
    the kernel rightly leaves those; dirty ones (relocated data) have nowhere to go without swap."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = len(head) >= 6 and head[5].rsplit("/", 1)[-1].startswith(memory.COMPILER_LIBRARIES)
        elif inside and head[0] == "Private_Clean:":
            total += int(head[1])
    return total


@pytest.mark.ebpf
def test_a_process_that_compiled_a_probe_gives_back_memory_and_compiles_again() -> None:
    from agent.kernel import loader, preflight
    from agent.kernel.tracefs import Tracefs
    from probes import registry

    tracefs = Tracefs(preflight.check())
    probe = loader.load(loader.plan(registry.get("tcp_lifecycle"), tracefs, ()))
    try:
        freed = memory.release_compiler_memory()
        assert freed.trimmed_kb > 1024  # the heap LLVM freed after the compile
        assert freed.rss_after_kb < freed.rss_before_kb
        # every compiler page only this process held is paged out (shared ones stay: another BCC
        # process on this machine may be using them)
        assert _compiler_private_kb() < 1024
        again = loader.load(loader.plan(registry.get("tcp_retransmit"), tracefs, ()))  # faults them back in
        again.close()
    finally:
        probe.close()
