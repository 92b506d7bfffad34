"""The live terminal summary of `bcgov agent run`: top talkers and what each probe counts (failed
connects, resets, retransmits, execs, exits, OOM kills), lost records, refreshed every few
seconds. Only shown on a terminal. What an event adds is its probe's `Tally` (probes/spec.py)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Table

from probes.spec import ProbeSpec, Tally

RECENT_KEPT = 5  # names listed after a count with `recent` (e.g. the last OOM kills)


class Summary:
    """Observers of events (cheap: a few counter updates) that render a rich table."""

    def __init__(self, specs: Sequence[ProbeSpec] = (), top: int = 8) -> None:
        self._top = top
        self._lock = threading.Lock()
        self._tallies = [s.tally for s in specs if s.tally is not None]
        # every probe's counts show from the start, 0 until counted, in the specs' order
        self.counts: dict[str, int] = {name: 0 for t in self._tallies for name in t.counts}
        self.recent: dict[str, list[str]] = {}
        self.connections: Counter[tuple[str, int]] = Counter()
        self.bytes: Counter[tuple[str, int]] = Counter()

    def observer(self, spec: ProbeSpec) -> Callable[[Any], None] | None:
        """The function counting one of `spec`'s events, or None when it adds nothing."""
        tally = spec.tally
        if tally is None:
            return None
        names, count, talker, recent = tally.counts, tally.count, tally.talker, tally.recent
        for name in names:
            self.counts.setdefault(name, 0)
        if tally not in self._tallies:
            self._tallies.append(tally)
        last = names[-1] if names else ""
        counts, lock = self.counts, self._lock

        def observe(event: Any) -> None:
            amounts = count(event)
            with lock:
                for name, n in zip(names, amounts, strict=True):
                    counts[name] += n
                if talker is not None:
                    who, nbytes = talker(event)
                    self.connections[who] += 1
                    self.bytes[who] += nbytes
                if recent is not None:
                    kept = self.recent.setdefault(last, [])
                    kept.append(recent(event))
                    del kept[:-RECENT_KEPT]
        return observe

    def render(self, lost: int, probes_up: int, probes_total: int, elapsed_s: float, skipped: int = 0) -> Table:
        """The table shown on the terminal; `skipped`: probe runs the kernel skipped (recursion_misses)."""
        with self._lock:
            caption = "  ".join(self._entry(t) for t in self._tallies)
            table = Table(
                title=f"bcgov agent: {probes_up}/{probes_total} probes up, {elapsed_s:.0f}s, lost records {lost}, "
                      f"skipped runs {skipped}",
                caption=caption,
            )
            table.add_column("top talkers (process)")
            table.add_column("pid", justify="right")
            table.add_column("connections", justify="right")
            table.add_column("bytes", justify="right")
            for (comm, pid), n in self.connections.most_common(self._top):
                table.add_row(comm, str(pid), str(n), str(self.bytes[(comm, pid)]))
            return table

    def _entry(self, tally: Tally) -> str:
        parts = [f"{name} {self.counts[name]}" for name in tally.counts]
        kept = self.recent.get(tally.counts[-1]) if tally.counts and tally.recent is not None else None
        if kept:
            parts[-1] += f" (last: {', '.join(kept)})"
        return "  ".join(parts)
