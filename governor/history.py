"""The governor's local history: per-tier and per-metric counts of past evaluations, and the last
evaluation's series snapshot (for churn), in SQLite under a state directory.

Bounded: evaluations older than `retention_seconds` are pruned on every write, per-metric counts are
kept for each tier's top `top_metrics` only, and one snapshot per source is kept. Histories of
different sources never mix (a report against another Prometheus starts its own trend).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from governor import errors
from governor.churn import Snapshot

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (id INTEGER PRIMARY KEY, source TEXT NOT NULL, ts REAL NOT NULL, total INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS evaluations_source_ts ON evaluations (source, ts);
CREATE TABLE IF NOT EXISTS tier_counts (eval_id INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
    tier TEXT NOT NULL, series INTEGER NOT NULL, budget INTEGER, PRIMARY KEY (eval_id, tier));
CREATE TABLE IF NOT EXISTS metric_counts (eval_id INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
    tier TEXT NOT NULL, metric TEXT NOT NULL, series INTEGER NOT NULL, PRIMARY KEY (eval_id, tier, metric));
CREATE TABLE IF NOT EXISTS snapshots (source TEXT PRIMARY KEY, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot_series (source TEXT NOT NULL, metric TEXT NOT NULL, h INTEGER NOT NULL,
    PRIMARY KEY (source, metric, h)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshot_values (source TEXT NOT NULL, metric TEXT NOT NULL, label TEXT NOT NULL, h INTEGER NOT NULL,
    PRIMARY KEY (source, metric, label, h)) WITHOUT ROWID;
"""


def default_state_dir() -> Path:
    """$BCGOV_STATE_DIR, else $XDG_STATE_HOME/bcgov, else ~/.local/state/bcgov."""
    if os.environ.get("BCGOV_STATE_DIR"):
        return Path(os.environ["BCGOV_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "bcgov"


class History:
    """Open with `History(state_dir)`; use as a context manager or call `close()`."""

    def __init__(self, state_dir: Path, retention_seconds: float = 30 * 86_400, top_metrics: int = 50) -> None:
        self.path = Path(state_dir) / "governor.sqlite3"
        self.retention_seconds = retention_seconds
        self.top_metrics = top_metrics
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise errors.HistoryError(f"cannot open history at {self.path} ({exc}); pass --state-dir DIR or --no-history") from exc

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db:
                yield self._db
        except sqlite3.Error as exc:
            raise errors.HistoryError(f"cannot write history at {self.path} ({exc}); pass --state-dir DIR or --no-history") from exc

    def record(self, source: str, ts: float, total: int, tiers: dict[str, tuple[int, int | None]],
               metrics: dict[str, dict[str, int]]) -> None:
        """Store one evaluation: tier -> (series, budget), tier -> metric -> series (top N kept)."""
        with self._tx() as db:
            cur = db.execute("INSERT INTO evaluations (source, ts, total) VALUES (?, ?, ?)", (source, ts, total))
            eid = cur.lastrowid
            db.executemany("INSERT INTO tier_counts VALUES (?, ?, ?, ?)",
                           [(eid, t, s, b) for t, (s, b) in tiers.items()])
            rows = []
            for tier, counts in metrics.items():
                top = sorted(counts.items(), key=lambda kv: -kv[1])[: self.top_metrics]
                rows += [(eid, tier, m, n) for m, n in top]
            db.executemany("INSERT INTO metric_counts VALUES (?, ?, ?, ?)", rows)
            db.execute("DELETE FROM evaluations WHERE ts < ?", (ts - self.retention_seconds,))

    def tier_points(self, source: str, tier: str, since: float) -> list[tuple[float, int]]:
        """(ts, series) of a tier since `since`, oldest first."""
        rows = self._db.execute(
            "SELECT e.ts, t.series FROM evaluations e JOIN tier_counts t ON t.eval_id = e.id "
            "WHERE e.source = ? AND t.tier = ? AND e.ts >= ? ORDER BY e.ts", (source, tier, since))
        return [(float(ts), int(n)) for ts, n in rows]

    def metric_points(self, source: str, metric: str, since: float) -> list[tuple[float, int]]:
        rows = self._db.execute(
            "SELECT e.ts, SUM(m.series) FROM evaluations e JOIN metric_counts m ON m.eval_id = e.id "
            "WHERE e.source = ? AND m.metric = ? AND e.ts >= ? GROUP BY e.id ORDER BY e.ts", (source, metric, since))
        return [(float(ts), int(n)) for ts, n in rows]

    def save_snapshot(self, source: str, snap: Snapshot) -> None:
        """Replace the source's snapshot with `snap`."""
        with self._tx() as db:
            for table in ("snapshots", "snapshot_series", "snapshot_values"):
                db.execute(f"DELETE FROM {table} WHERE source = ?", (source,))
            db.execute("INSERT INTO snapshots VALUES (?, ?)", (source, snap.taken_at))
            db.executemany("INSERT INTO snapshot_series VALUES (?, ?, ?)",
                           ((source, m, h) for m, hs in snap.series.items() for h in hs))
            db.executemany("INSERT INTO snapshot_values VALUES (?, ?, ?, ?)",
                           ((source, m, lb, h) for m, lv in snap.values.items() for lb, hs in lv.items() for h in hs))

    def load_snapshot(self, source: str) -> Snapshot | None:
        row = self._db.execute("SELECT ts FROM snapshots WHERE source = ?", (source,)).fetchone()
        if row is None:
            return None
        series: dict[str, set[int]] = {}
        for m, h in self._db.execute("SELECT metric, h FROM snapshot_series WHERE source = ?", (source,)):
            series.setdefault(m, set()).add(h)
        values: dict[str, dict[str, set[int]]] = {}
        for m, lb, h in self._db.execute("SELECT metric, label, h FROM snapshot_values WHERE source = ?", (source,)):
            values.setdefault(m, {}).setdefault(lb, set()).add(h)
        return Snapshot(float(row[0]), series, values)
