"""Growth: the trend of a tier's series count and the projected time until it hits its budget,
from a least-squares line through the local history."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

MIN_POINTS = 3


@dataclasses.dataclass
class Growth:
    points: int
    window_seconds: float
    series_per_day: float
    seconds_to_budget: float | None  # None: not growing, or no budget; 0: already over

    @property
    def hours_to_budget(self) -> float | None:
        return None if self.seconds_to_budget is None else self.seconds_to_budget / 3600


def fit(points: Sequence[tuple[float, int]], budget: int | None) -> Growth | None:
    """A line through (unix time, series) points; None with fewer than MIN_POINTS distinct times."""
    pts = sorted(points)
    if len({t for t, _ in pts}) < MIN_POINTS:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    slope = sum((t - mt) * (y - my) for t, y in pts) / var  # series per second
    current = pts[-1][1]
    eta: float | None = None
    if budget is not None:
        if current > budget:
            eta = 0.0
        elif slope > 0:
            eta = (budget - current) / slope
    return Growth(n, pts[-1][0] - pts[0][0], slope * 86_400, eta)
