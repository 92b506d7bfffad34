"""Kernel monotonic time to wall-clock time."""

from __future__ import annotations

from agent.pipeline.clock import MonotonicToWall


def test_offset_uses_the_tightest_bracket() -> None:
    # (mono before, real, mono after) per sample: the second sample's bracket is the narrowest
    mono = iter([100, 180, 200, 202, 300, 350, 400, 420, 500, 530, 600, 700])
    real = iter([1_000_150, 1_000_201, 1_000_330, 1_000_410, 1_000_515])
    clock = MonotonicToWall(lambda: next(mono), lambda: next(real), resample_every_ns=10**12, samples=5)
    # sample 2: before=200 after=202 -> midpoint 201, real 1_000_201 -> offset 1_000_000
    assert clock.to_wall_ns(5_000) == 1_005_000


def test_resamples_after_the_interval() -> None:
    now = {"mono": 0, "shift": 1_000}

    def mono() -> int:
        return now["mono"]

    def real() -> int:  # realtime runs `shift` ahead of monotonic (NTP may move it)
        return now["mono"] + now["shift"]

    clock = MonotonicToWall(mono, real, resample_every_ns=100, samples=1)
    assert clock.to_wall_ns(10) == 1_010
    now["shift"] = 5_000
    now["mono"] = 50
    assert clock.to_wall_ns(10) == 1_010  # within the interval: old offset kept
    now["mono"] = 200
    assert clock.to_wall_ns(10) == 5_010  # past it: re-sampled


def test_real_clocks_give_now() -> None:
    import time

    clock = MonotonicToWall()
    assert abs(clock.to_wall_ns(time.monotonic_ns()) - time.time_ns()) < 50_000_000
