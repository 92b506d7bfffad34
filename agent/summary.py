"""The live terminal summary of `bcgov agent run`: top talkers, resets, retransmits, OOM kills,
execs and lost records, refreshed every few seconds. Only shown on a terminal."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from rich.table import Table

from probes.events import OomKill, ProcessExec, ProcessExit, TcpConnection


@dataclass
class Totals:
    """What the agent has seen since it started."""

    connections: Counter[tuple[str, int]] = field(default_factory=Counter)
    bytes: Counter[tuple[str, int]] = field(default_factory=Counter)
    failed: int = 0
    resets: int = 0
    retransmits: int = 0
    execs: int = 0
    exits: int = 0
    oom_kills: list[str] = field(default_factory=list)


class Summary:
    """An observer of events (cheap: a few counter updates) that renders a rich table."""

    def __init__(self, top: int = 8) -> None:
        self._top = top
        self._lock = threading.Lock()
        self.totals = Totals()

    def observe(self, event: object) -> None:
        """Count one event."""
        t = self.totals
        with self._lock:
            if isinstance(event, TcpConnection):
                who = (event.comm or "?", event.pid)
                t.connections[who] += 1
                t.bytes[who] += (event.bytes_sent or 0) + (event.bytes_received or 0)
                t.failed += event.failed
                t.resets += event.reset_received or event.reset_sent
                t.retransmits += event.retransmits
            elif isinstance(event, ProcessExec):
                t.execs += 1
            elif isinstance(event, ProcessExit):
                t.exits += 1
            elif isinstance(event, OomKill):
                t.oom_kills.append(f"{event.comm}[{event.pid}]")
                del t.oom_kills[:-5]

    def render(self, lost: int, probes_up: int, probes_total: int, elapsed_s: float, skipped: int = 0) -> Table:
        """The table shown on the terminal; `skipped`: probe runs the kernel skipped (recursion_misses)."""
        with self._lock:
            t = self.totals
            table = Table(
                title=f"bcgov agent: {probes_up}/{probes_total} probes up, {elapsed_s:.0f}s, lost records {lost}, "
                      f"skipped runs {skipped}",
                caption=(
                    f"failed connects {t.failed}  resets {t.resets}  retransmits {t.retransmits}  "
                    f"execs {t.execs}  exits {t.exits}  OOM kills {len(t.oom_kills)}"
                    + (f" (last: {', '.join(t.oom_kills)})" if t.oom_kills else "")
                ),
            )
            table.add_column("top talkers (process)")
            table.add_column("pid", justify="right")
            table.add_column("connections", justify="right")
            table.add_column("bytes", justify="right")
            for (comm, pid), n in t.connections.most_common(self._top):
                table.add_row(comm, str(pid), str(n), str(t.bytes[(comm, pid)]))
            return table
