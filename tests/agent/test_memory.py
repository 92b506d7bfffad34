"""Giving back the compiler's memory (agent/memory.py): which mappings are the compiler's, and on
the real kernel, a process that compiled a probe shrinks and can still compile another."""

from __future__ import annotations

import pytest

from agent import memory

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


@pytest.mark.ebpf
def test_a_process_that_compiled_a_probe_gives_back_memory_and_compiles_again() -> None:
    from agent import loader, preflight
    from agent.tracefs import Tracefs
    from probes import registry

    tracefs = Tracefs(preflight.check())
    probe = loader.load(loader.plan(registry.get("tcp_lifecycle"), tracefs, ()))
    try:
        freed = memory.release_compiler_memory()
        assert freed.paged_out_kb > 10 * 1024  # LLVM's pages touched by the compile
        assert freed.rss_after_kb < freed.rss_before_kb
        again = loader.load(loader.plan(registry.get("tcp_retransmit"), tracefs, ()))  # faults them back in
        again.close()
    finally:
        probe.close()
