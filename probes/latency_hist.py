"""The in-kernel log2 latency histogram (probes/bcgov_hist.h): its ctypes mirror, its slot count
and the slot a duration falls in, shared by the latency probes and the agent.

HIST_SLOTS reaches the C as `-DBCGOV_HIST_SLOTS` from each spec's defines (`hist_defines`); the
header has no default. `hist_slot` is `bcgov_hist_slot` in Python: tests/probes/test_shared_keys.py
compiles the header's function with the host C compiler and compares the two.
"""

from __future__ import annotations

import ctypes

#: Log2 slots per histogram of block_io and runqueue (a probe may choose its own, see hist_defines).
HIST_SLOTS = 26


def hist_defines(slots: int = HIST_SLOTS) -> tuple[str, ...]:
    """The `-D` defines that size `struct bcgov_hist` to `slots` in a probe's C."""
    return (f"BCGOV_HIST_SLOTS={slots}",)


def hist_slot(delta_ns: int, slots: int = HIST_SLOTS) -> int:
    """The slot of a `delta_ns` duration: the bit length of whole microseconds (slot 0 is < 1 us,
    slot s is 2^(s-1) <= us < 2^s), the last slot catching everything longer."""
    return min((delta_ns // 1000).bit_length(), slots - 1)


class Hist(ctypes.Structure):
    """Mirror of `struct bcgov_hist`: one count per log2-microsecond slot and the exact sum."""

    _fields_ = [
        ("slots", ctypes.c_uint64 * HIST_SLOTS),
        ("sum_ns", ctypes.c_uint64),
    ]
