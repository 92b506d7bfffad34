"""The ctypes mirror of `struct bcgov_hist` (probes/bcgov_hist.h), shared by the latency probes."""

from __future__ import annotations

import ctypes

#: Log2 slots per histogram; keep in step with BCGOV_HIST_SLOTS in bcgov_hist.h.
HIST_SLOTS = 26


class Hist(ctypes.Structure):
    """Mirror of `struct bcgov_hist`: one count per log2-microsecond slot and the exact sum."""

    _fields_ = [
        ("slots", ctypes.c_uint64 * HIST_SLOTS),
        ("sum_ns", ctypes.c_uint64),
    ]
