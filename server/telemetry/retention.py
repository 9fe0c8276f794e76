"""What the metrics store keeps when it is full: a byte bound per run and in total, oldest data first.

The store (:class:`deepdive.telemetry.store.MetricsStore`) calls :func:`enforce` inside every write
transaction, so a batch is stored together with whatever eviction makes room for it, or neither.

* **Per run** (``run_max_bytes``, default 256 MiB): when a run's rows weigh more, its oldest rows go
  until it is back under 90 % of the bound. One run that floods the store loses its own oldest
  data, never another run's.
* **In total** (``max_bytes``, default 1 GiB): when the database's used pages weigh more, the oldest
  rows of any run go, until it is under 90 % of the bound.

"Oldest" is the tier order, each tier oldest first: 1-minute rows, then 1-second rows, then raw rows
(compaction keeps that the order of age). The newest data goes last. A run's summary (its row in
``runs``: name, job, start, end, outcome) is never evicted, and what was dropped is counted per run
(``usage``: rows, the raw samples behind them, bytes), so ``MetricsStore.runs`` and
``MetricsStore.stats`` say what is missing. The machine's samples are the run ``""``.

A row weighs ``len(data) + len(run) + 64`` bytes (its JSON, its run id, and the columns and index
entries around them); ``usage.bytes`` holds the sum per run, kept in step by every write, fold and
eviction. The total bound is measured on the file itself (used pages times the page size). Deleted
rows free pages; :func:`needs_shrink` says when to give them back to the file system (the store is
``auto_vacuum=INCREMENTAL``), so the file shrinks instead of only being reused.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Iterable, Optional

MIB = 1 << 20
MAX_BYTES = 1024 * MIB
RUN_MAX_BYTES = 256 * MIB
MIN_BYTES = 1 * MIB
ROW_OVERHEAD = 64
LOW_WATER = 0.9  # evict down to this fraction of a bound, so eviction is not paid on every write
SHRINK_FREE = 1 / 16  # free pages worth this fraction of max_bytes are given back to the file system
_TIERS_OLDEST_FIRST = ("m_1m", "m_1s", "m_raw")

USAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (run TEXT PRIMARY KEY, bytes INTEGER NOT NULL DEFAULT 0,
                                  dropped_rows INTEGER NOT NULL DEFAULT 0,
                                  dropped_samples INTEGER NOT NULL DEFAULT 0,
                                  dropped_bytes INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS m_1s_run_t ON m_1s (run, t);
CREATE INDEX IF NOT EXISTS m_1m_run_t ON m_1m (run, t);
CREATE INDEX IF NOT EXISTS m_1m_t ON m_1m (t);
"""


def check_bounds(max_bytes: int, run_max_bytes: int) -> None:
    """Raise ValueError with what to do when the two bounds make no sense."""
    if max_bytes < MIN_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_BYTES} (1 MiB), got {max_bytes}")
    if not MIN_BYTES <= run_max_bytes <= max_bytes:
        raise ValueError(f"run_max_bytes must be from 1 MiB to max_bytes ({max_bytes}), got {run_max_bytes}")


def row_cost(run: str, data: str) -> int:
    """What one stored row weighs in the accounting (its ``data`` is ASCII JSON)."""
    return len(data) + len(run) + ROW_OVERHEAD


def add_usage(db: sqlite3.Connection, deltas: dict[str, int]) -> None:
    """Add ``deltas`` (run -> bytes, may be negative) to the runs' weights."""
    db.executemany("INSERT INTO usage (run, bytes) VALUES (?, ?) "
                   "ON CONFLICT(run) DO UPDATE SET bytes = bytes + excluded.bytes",
                   [(run, delta) for run, delta in deltas.items() if delta])


def fill_usage(db: sqlite3.Connection) -> None:
    """Weigh every stored row once: for a store made before the accounting existed."""
    db.execute("DELETE FROM usage")
    db.execute(f"INSERT INTO usage (run, bytes) SELECT run, SUM(LENGTH(data) + LENGTH(run) + {ROW_OVERHEAD}) "
               "FROM (SELECT run, data FROM m_raw UNION ALL SELECT run, data FROM m_1s "
               "UNION ALL SELECT run, data FROM m_1m) GROUP BY run")


def pages(db: sqlite3.Connection) -> tuple[int, int]:
    """(bytes in used pages, bytes in free pages) of the database."""
    size = db.execute("PRAGMA page_size").fetchone()[0]
    count = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (count - free) * size, free * size


def needs_shrink(db: sqlite3.Connection, max_bytes: int) -> bool:
    """Whether the free pages should be given back: the file is over its bound, or much of it is free."""
    used, free = pages(db)
    return used + free > max_bytes or free > max_bytes * SHRINK_FREE


def enforce(db: sqlite3.Connection, max_bytes: int, run_max_bytes: int, runs: Optional[Iterable[str]] = None) -> int:
    """Evict the oldest rows until the bounds hold (module docstring); call inside the write transaction.

    Args:
        db (sqlite3.Connection): the store's connection, in a transaction.
        max_bytes (int): the bound on the database's used pages.
        run_max_bytes (int): the bound on each run's weight.
        runs (Iterable[str] | None): the runs just written (None: every run).

    Returns:
        int: rows evicted.
    """
    if runs is None:
        over = [row[0] for row in db.execute("SELECT run FROM usage WHERE bytes > ?", (run_max_bytes,))]
    else:
        over = [run for run in set(runs) if _weight(db, run) > run_max_bytes]
    evicted = 0
    for run in over:
        evicted += _evict(db, _weight(db, run) - int(run_max_bytes * LOW_WATER), run)
    used, _ = pages(db)
    while used > max_bytes:
        rows = _evict(db, used - int(max_bytes * LOW_WATER), None)
        if not rows:
            break  # nothing left to evict: the runs and the schema alone are over the bound
        evicted += rows
        used, _ = pages(db)
    return evicted


def _weight(db: sqlite3.Connection, run: str) -> int:
    row = db.execute("SELECT bytes FROM usage WHERE run = ?", (run,)).fetchone()
    return row[0] if row else 0


def _evict(db: sqlite3.Connection, amount: int, run: Optional[str]) -> int:
    """Delete the oldest rows (of ``run``, or of every run) weighing at least ``amount``; count them."""
    gone: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # run -> rows, samples, bytes
    freed = rows = 0
    for table in _TIERS_OLDEST_FIRST:
        if freed >= amount:
            break
        where, args = ("WHERE run = ? ", (run,)) if run is not None else ("", ())
        cursor = db.execute(f"SELECT rowid, run, n, LENGTH(data) + LENGTH(run) FROM {table} {where}ORDER BY t", args)
        doomed = []
        for rowid, row_run, n, size in cursor:
            cost = size + ROW_OVERHEAD
            doomed.append((rowid,))
            counts = gone[row_run]
            counts[0] += 1
            counts[1] += n
            counts[2] += cost
            freed += cost
            if freed >= amount:
                break
        cursor.close()
        db.executemany(f"DELETE FROM {table} WHERE rowid = ?", doomed)
        rows += len(doomed)
    db.executemany("UPDATE usage SET bytes = bytes - ?, dropped_rows = dropped_rows + ?, "
                   "dropped_samples = dropped_samples + ?, dropped_bytes = dropped_bytes + ? WHERE run = ?",
                   [(b, r, s, b, name) for name, (r, s, b) in gone.items()])
    return rows
