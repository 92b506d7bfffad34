"""The kernel's sampling test (tcp_lifecycle.bpf.c) and SpanSampler decide alike, and SpanSampler
tells its subscribers (the kernel map writer) about every keep-ratio change."""

from __future__ import annotations

import math
import random

from agent.pipeline.router import SpanSampler


def test_kernel_threshold_keeps_exactly_what_the_sampler_keeps() -> None:
    rng = random.Random(7)
    hashes = [rng.randrange(1 << 32) for _ in range(20000)] + [0, 1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1]
    for ratio in (0.0, 1e-9, 0.05, 1 / 3, 0.5, 0.999999, 1.0):
        keep_below = min(1 << 32, math.ceil(ratio * (1 << 32)))  # agent/kernel/sampling.py
        assert [h < ratio * 0x100000000 for h in hashes] == [h < keep_below for h in hashes], ratio


def test_subscribers_hear_every_keep_ratio_change() -> None:
    sampler = SpanSampler(ratio=0.5, slow_seconds=2.0)
    heard: list[tuple[float, int]] = []
    sampler.subscribe(lambda ratio, slow_ns: heard.append((ratio, slow_ns)))
    sampler.shed_keep = 0.5
    sampler.shed_keep = 0.5   # unchanged: nothing to write
    sampler.shed_keep = 1.0
    assert heard == [(0.5, 2_000_000_000), (0.25, 2_000_000_000), (0.5, 2_000_000_000)]
