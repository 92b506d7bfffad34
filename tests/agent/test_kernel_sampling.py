"""The kernel's sampling test (tcp_lifecycle.bpf.c with bcgov_sampling.h) and SpanSampler decide
alike, from the real code on both sides: the C hash function compiled with the host compiler
against `sample_hash`, and the threshold KernelSpanSampling writes against SpanSampler.keep. And
SpanSampler tells its subscribers (the kernel map writer) about every keep-ratio change.
(tests/agent/test_kernel_sampling_ebpf.py checks the same against the loaded probe.)"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agent_harness import connection

from agent.kernel.sampling import KernelSpanSampling
from agent.pipeline.sampling import SpanSampler, sample_hash
from probes.spec import PROBES_DIR

U64 = (1 << 64) - 1
RATIOS = (0.0, 1e-9, 0.05, 1 / 3, 0.5, 0.999999, 1.0)

# bcgov_sampling.h as userspace C: BCC's u32/u64 and __always_inline stubbed, hashes read from stdin.
_MAIN = r"""
typedef unsigned long long u64;
typedef unsigned int u32;
#define __always_inline inline
#include "bcgov_sampling.h"
#include <stdio.h>
int main(void) {
    unsigned long long sock, start;
    while (scanf("%llu %llu", &sock, &start) == 2)
        printf("%u\n", bcgov_sample_hash(sock, start));
    return 0;
}
"""


def _pairs() -> list[tuple[int, int]]:
    rng = random.Random(17)
    edges = [0, 1, 8, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, U64 - 7, U64]
    pairs = [(a, b) for a in edges for b in edges]
    pairs += [(rng.randrange(1 << 64) & ~7, rng.randrange(1 << 64)) for _ in range(20000)]  # aligned socks
    pairs += [(0xFFFF888000000000 + 64 * i, 10**12 + 997 * i) for i in range(2000)]  # kernel-address-shaped
    return pairs


def test_the_c_hash_is_sample_hash(tmp_path: Path) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.fail("no host C compiler (cc) to build bcgov_sampling.h's hash with")
    src, exe = tmp_path / "hash.c", tmp_path / "hash"
    src.write_text(_MAIN)
    subprocess.run([cc, "-O2", f"-I{PROBES_DIR}", "-o", str(exe), str(src)], check=True)
    pairs = _pairs()
    out = subprocess.run([str(exe)], input="".join(f"{s} {t}\n" for s, t in pairs), capture_output=True, text=True,
                         check=True).stdout.split()
    assert [int(h) for h in out] == [sample_hash(s, t) for s, t in pairs]


class _Entry(SimpleNamespace):
    pass


class _Table(dict):
    """A BPF array as KernelSpanSampling uses it: Key(i), item get and set."""

    Key = staticmethod(lambda i: i)


def _kernel_threshold(ratio: float, slow_ns: int) -> Any:
    """The span_sampling entry the real KernelSpanSampling writes for `ratio`."""
    table = _Table({0: _Entry(active=0, keep_below=0, slow_ns=0)})
    probe = SimpleNamespace(bpf={"span_sampling": table}, plan=SimpleNamespace(defines=()))
    KernelSpanSampling(probe).apply(ratio, slow_ns)  # type: ignore[arg-type]
    return table[0]


def test_kernel_threshold_keeps_exactly_what_the_sampler_keeps() -> None:
    rng = random.Random(7)
    # sock 0 makes the hash the start time's low 32 bits: every hash value near a threshold is tried
    hashes = [rng.randrange(1 << 32) for _ in range(20000)] + [0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
    keyed = [(0, h) for h in hashes] + [(rng.randrange(1 << 64) & ~7, rng.randrange(1 << 40)) for _ in range(5000)]
    for ratio in RATIOS:
        sampler = SpanSampler(ratio=ratio, slow_seconds=2.0)
        entry = _kernel_threshold(sampler.ratio * sampler.shed_keep, sampler.slow_ns)
        assert entry.slow_ns == sampler.slow_ns and entry.active == (1 if ratio < 1.0 else 0)
        for sock, start_ns in keyed:
            ev = connection(sock=sock, start_ns=start_ns, end_ns=start_ns + 1_000, retransmits=0, retransmit_ns=())
            # the C's test for a normal, fast connection (tcp_lifecycle.bpf.c): sent unless active
            # and bcgov_sample_hash(sock, start) >= keep_below
            sent = not (entry.active and sample_hash(ev.sock, ev.start_ns) >= entry.keep_below)
            assert sampler.keep(ev) == sent, (ratio, sock, start_ns)


def test_subscribers_hear_every_keep_ratio_change() -> None:
    sampler = SpanSampler(ratio=0.5, slow_seconds=2.0)
    heard: list[tuple[float, int]] = []
    sampler.subscribe(lambda ratio, slow_ns: heard.append((ratio, slow_ns)))
    sampler.shed_keep = 0.5
    sampler.shed_keep = 0.5   # unchanged: nothing to write
    sampler.shed_keep = 1.0
    assert heard == [(0.5, 2_000_000_000), (0.25, 2_000_000_000), (0.5, 2_000_000_000)]
