"""Parsing --since/--until (RFC 3339 or relative like `2h`, `30m`) and choosing a query step."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from governor.evidence.errors import WindowError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
# Steps people can read on an axis; the first that keeps the window under MAX_POINTS wins.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
# Prometheus refuses more than 11,000 points per series; a plot needs far fewer.
MAX_POINTS = 600


def parse_time(text: str, now: float) -> float:
    """A Unix time from `now`, a relative duration before `now` (`2h`), or an RFC 3339 timestamp."""
    t = text.strip()
    if t == "now":
        return now
    m = _RELATIVE.match(t)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    iso = t.replace("z", "Z").replace("Z", "+00:00")
    # Python before 3.11 rejects more than 6 fractional digits; RFC 3339 allows any number.
    iso = re.sub(r"(\.\d{6})\d+", r"\1", iso)
    try:
        parsed = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise WindowError(f"{text!r} is neither RFC 3339 (2026-01-02T15:04:05Z) nor relative (2h, 30m, 90s)") from exc
    if parsed.tzinfo is None:
        raise WindowError(f"{text!r} has no time zone; add Z or an offset such as +02:00")
    return parsed.timestamp()


def rfc3339(ts: float) -> str:
    """A Unix time as RFC 3339 UTC with milliseconds."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def choose_step(seconds: float) -> int:
    """A step that keeps a range query under MAX_POINTS points."""
    for step in _NICE_STEPS:
        if seconds / step <= MAX_POINTS:
            return step
    return int(seconds // MAX_POINTS) + 1


@dataclasses.dataclass(frozen=True)
class Window:
    """The incident window [start, end] in Unix seconds and the range-query step."""

    start: float
    end: float
    step: int

    @classmethod
    def parse(cls, since: str, until: str, now: float) -> Window:
        start, end = parse_time(since, now), parse_time(until, now)
        if end <= start:
            raise WindowError(f"--until ({rfc3339(end)}) must be after --since ({rfc3339(start)})")
        return cls(start, end, choose_step(end - start))

    @property
    def rate_window(self) -> str:
        """The rate() range: four steps so every point sees several samples, at least one minute
        so a 15-30 s scrape interval still gives rate() two samples."""
        return f"{max(4 * self.step, 60)}s"

    def contains(self, ts: float) -> bool:
        return self.start <= ts <= self.end
