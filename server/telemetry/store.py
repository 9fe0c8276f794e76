"""SQLite store of runs and their metrics, downsampled for history.

One file (WAL journal, ``synchronous=FULL``: a committed transaction survives a crash of the
daemon and of the machine). Every write is one transaction, so a batch of samples is stored whole
or not at all, and compaction moves rows between tiers inside one transaction: no committed row is
ever lost half-way.

Bytes on disk are bounded per run and in total (``run_max_bytes``, 256 MiB, and ``max_bytes``,
1 GiB, by default): the oldest rows are evicted first, the runs' summaries stay, and the drop is
counted per run (``runs()[i]["dropped"]``, :meth:`MetricsStore.stats`); see
:mod:`deepdive.telemetry.retention`. The file is ``auto_vacuum=INCREMENTAL`` and gives freed pages
back, so it shrinks after an eviction (a store from an earlier release is converted once, by a
``VACUUM`` when it is first opened); its ``-wal`` file is truncated to 8 MiB after checkpoints.

Tiers (the choice behind ``compact``)
-------------------------------------
* ``raw``: every sample as received, kept for **10 minutes** (``RAW_KEEP_S``): the live dashboard
  and a just-finished run show every step.
* ``1s``: 1-second aggregates, kept for **24 hours** (``SECOND_KEEP_S``): a day of history at the
  resolution a human reads a chart at.
* ``1m``: 1-minute aggregates, kept **indefinitely** (1,440 rows a day per rank and for the machine:
  about 150 MB per rank and year of continuous training).

An aggregate row's ``t`` is the start of its bucket (``floor(t)`` or ``floor(t / 60) * 60``); how
samples fold into one (means, maxima, last values, nested values) is in
:mod:`deepdive.telemetry.aggregate`.

Only buckets that lie wholly before the cut-off are folded, so a bucket is never split between two
tiers by one ``compact``; a late sample whose bucket was already folded is merged into it (the
existing row counts as the earlier data). ``compact`` is idempotent.

Rows
----
Engine samples are stored per ``(run, rank)``; machine samples (``MachineSampler``) under the
reserved run ``""`` and read back with :meth:`MetricsStore.query_machine`, so that a run's steps and
the machine share one time axis (``query_machine(since=run["started"], until=run["ended"])``).

Each run says what it is (``runs()[i]["kind"]``, one of :data:`KINDS`) and, when the engine ran a
script, which (``script``: the path its rank-0 ``setup`` event names), so that a dashboard lists
``digits.py · 14:02`` under training runs and a deep check or a search apart from them.

The store is not thread-safe by design but guards itself with a lock, so the daemon may call it
from its worker threads (``asyncio.to_thread``) one call at a time.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from deepdive.telemetry import retention
from deepdive.telemetry.aggregate import LAST_KEYS, aggregate, aggregate_rows, dumps, numeric
from deepdive.telemetry.retention import MAX_BYTES, RUN_MAX_BYTES, row_cost

__all__ = ["KINDS", "LAST_KEYS", "MACHINE_RUN", "RAW_KEEP_S", "RESOLUTIONS", "SECOND_KEEP_S", "MetricsStore",
           "aggregate", "aggregate_rows", "run_kind"]

RAW_KEEP_S = 600.0
SECOND_KEEP_S = 86_400.0
MACHINE_RUN = ""
RESOLUTIONS = ("auto", "raw", "1s", "1m")
_TIERS = (("raw", None), ("1s", 1.0), ("1m", 60.0))
_WIDTH = {"raw": None, "1s": 1.0, "1m": 60.0}
_COLUMNS = ("t", "run", "rank")
WAL_LIMIT_BYTES = 8 << 20
#: What a run is: a training run (the engine's loop), a hyperparameter search, a compression, a deep
#: environment check, or a plain script of the workspace (a daemon job that never set up the engine).
KINDS = ("train", "tune", "compress", "check", "script")
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    job TEXT,
    name TEXT,
    started REAL,
    ended REAL,
    outcome TEXT,
    kind TEXT,
    script TEXT
);
CREATE TABLE IF NOT EXISTS m_raw (run TEXT NOT NULL, rank INTEGER NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL,
                                  data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS m_raw_run_t ON m_raw (run, t);
CREATE INDEX IF NOT EXISTS m_raw_t ON m_raw (t);
CREATE TABLE IF NOT EXISTS m_1s (run TEXT NOT NULL, rank INTEGER NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL,
                                 data TEXT NOT NULL, PRIMARY KEY (run, rank, t));
CREATE INDEX IF NOT EXISTS m_1s_t ON m_1s (t);
CREATE TABLE IF NOT EXISTS m_1m (run TEXT NOT NULL, rank INTEGER NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL,
                                 data TEXT NOT NULL, PRIMARY KEY (run, rank, t));
"""




# ------------------------------------------------------------------------------------------------
# the store
# ------------------------------------------------------------------------------------------------


class MetricsStore:
    """Runs and their metrics in one SQLite file.

    Args:
        path (str | Path): the database file (created with its folder when missing).
        clock (Callable[[], float]): the time source (``time.time``); tests inject their own.
        max_bytes (int): the bound on the database's size (default 1 GiB); the oldest rows go first.
        run_max_bytes (int): the bound on one run's rows (default 256 MiB), at most ``max_bytes``.

    Raises:
        ValueError: a bound under 1 MiB, or ``run_max_bytes`` over ``max_bytes``.
        RuntimeError: the file is not a database this store can open.
    """

    def __init__(self, path: Union[str, Path], clock: Callable[[], float] = time.time, *,
                 max_bytes: int = MAX_BYTES, run_max_bytes: int = RUN_MAX_BYTES) -> None:
        retention.check_bounds(max_bytes, run_max_bytes)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.run_max_bytes = int(run_max_bytes)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
            self._open()
        except sqlite3.DatabaseError as exc:
            raise RuntimeError(
                f"cannot open the metrics store {self.path}: {exc} (move the file aside to start a new store)"
            ) from exc

    def _open(self) -> None:
        """Pragmas, schema, the byte accounting, and the bounds (which may have been lowered)."""
        db = self._db
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before WAL and the tables: a new file takes it at once
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            try:
                db.execute("VACUUM")  # a store from an earlier release: rewritten once, so it can shrink from now on
            except sqlite3.OperationalError as exc:  # e.g. no room for the copy VACUUM writes
                log.warning("metrics store %s: could not convert it to incremental vacuum (%s); its byte bounds "
                            "still hold, but the file will not shrink until a later start converts it", self.path, exc)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        counted = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'").fetchone()
        db.executescript(_SCHEMA + retention.USAGE_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        for column in ("kind", "script"):  # a store from an earlier release: its runs get them (NULL until known)
            if column not in columns:
                db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
        if counted is None:
            self._tx(retention.fill_usage)
        self._tx(lambda db: retention.enforce(db, self.max_bytes, self.run_max_bytes))

    # -- plumbing --------------------------------------------------------------------------------

    def _tx(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in one write transaction; then give free pages back when there are many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if retention.needs_shrink(self._db, self.max_bytes):
                self._db.executescript("PRAGMA incremental_vacuum")  # its own transaction: steps to the end
            return result

    def _insert(self, db: sqlite3.Connection, rows: list[tuple[str, int, float, str]]) -> None:
        """Insert raw rows, weigh them, and evict what the bounds require (inside the transaction)."""
        db.executemany("INSERT INTO m_raw (run, rank, t, n, data) VALUES (?, ?, ?, 1, ?)", rows)
        weights: dict[str, int] = {}
        for run, _, _, data in rows:
            weights[run] = weights.get(run, 0) + row_cost(run, data)
        retention.add_usage(db, weights)
        retention.enforce(db, self.max_bytes, self.run_max_bytes, weights)

    def stats(self) -> dict[str, Any]:
        """The store's size, its bounds and what they dropped.

        Returns:
            dict: ``db_bytes`` (the database: what the file holds after a checkpoint), ``used_bytes``
            and ``free_bytes`` (of it), ``wal_bytes`` (the ``-wal`` file now), ``max_bytes``,
            ``run_max_bytes``, ``dropped_rows``, ``dropped_samples`` (raw samples behind them) and
            ``dropped_bytes`` in all, and ``runs``: per run (``""`` is the machine) its ``bytes`` and
            the same three counts.
        """
        with self._lock:
            used, free = retention.pages(self._db)
            rows = self._db.execute(
                "SELECT run, bytes, dropped_rows, dropped_samples, dropped_bytes FROM usage").fetchall()
        wal = self.path.with_name(self.path.name + "-wal")
        runs = {run: {"bytes": b, "dropped_rows": r, "dropped_samples": n, "dropped_bytes": d}
                for run, b, r, n, d in rows}
        out: dict[str, Any] = {"db_bytes": used + free, "used_bytes": used, "free_bytes": free,
                               "wal_bytes": wal.stat().st_size if wal.exists() else 0,
                               "max_bytes": self.max_bytes, "run_max_bytes": self.run_max_bytes}
        for name in ("dropped_rows", "dropped_samples", "dropped_bytes"):
            out[name] = sum(run[name] for run in runs.values())
        out["runs"] = runs
        return out

    def close(self) -> None:
        """Close the database (committed rows are already on disk)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> "MetricsStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------------------

    def start_run(self, run: str, job: Optional[str] = None, name: Optional[str] = None,
                  started: Optional[float] = None, kind: Optional[str] = None) -> None:
        """Register a run (or fill in its job id, name and kind when samples already created it).

        Args:
            run (str): the run id (non-empty).
            job (str | None): the daemon's job id.
            name (str | None): a human name.
            started (float | None): start time (default: now for a new run; an existing run keeps
                its start).
            kind (str | None): what the run is, one of :data:`KINDS` (None: keep what is known).

        Raises:
            ValueError: an empty run id or an unknown kind.
        """
        _check_run(run)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"a run's kind must be one of {', '.join(KINDS)}, got {kind!r}")
        t = self._clock() if started is None else float(started)
        # An explicit start time wins; a defaulted one never moves an existing run's start.
        start_rule = "excluded.started" if started is not None else "started"

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO runs (run, job, name, started, kind) VALUES (?, ?, ?, ?, ?) ON CONFLICT(run) "
                       "DO UPDATE SET job = COALESCE(excluded.job, job), name = COALESCE(excluded.name, name), "
                       f"kind = COALESCE(excluded.kind, kind), started = {start_rule}", (run, job, name, t, kind))
        self._tx(work)

    def note_script(self, run: str, script: str, started: Optional[float] = None) -> None:
        """Record the script a run's engine runs (its rank-0 ``setup`` event), creating the run if new.

        A run that sets up the engine trains: a plain-script job or a run of unknown kind becomes a
        training run; a search or a compression keeps its kind (the engine runs inside them).

        Args:
            run (str): the run id.
            script (str): the script's path, as the engine saw it.
            started (float | None): when the run started (the event's time), used only for a new run.
        """
        _check_run(run)
        t = self._clock() if started is None else float(started)

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO runs (run, started, kind, script) VALUES (?, ?, 'train', ?) ON CONFLICT(run) "
                       "DO UPDATE SET script = excluded.script, "
                       "kind = CASE WHEN kind IS NULL OR kind = 'script' THEN 'train' ELSE kind END", (run, t, script))
        self._tx(work)

    def end_run(self, run: str, outcome: str, ended: Optional[float] = None) -> None:
        """Mark a run finished.

        Args:
            run (str): the run id.
            outcome (str): e.g. ``"succeeded"``, ``"failed"``, ``"cancelled"``.
            ended (float | None): end time (default: now).

        Raises:
            KeyError: when the store has no such run.
        """
        t = self._clock() if ended is None else float(ended)

        def work(db: sqlite3.Connection) -> int:
            return db.execute("UPDATE runs SET ended = ?, outcome = ? WHERE run = ?", (t, outcome, run)).rowcount
        if not self._tx(work):
            raise KeyError(f"no run {run!r} in the metrics store: start_run or add_samples first")

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Past and current runs, newest first.

        Args:
            limit (int): at most this many.

        Returns:
            list[dict]: ``{"run", "job", "name", "started", "ended", "outcome", "dropped", "kind",
            "script"}``; ``ended`` and ``outcome`` are None while a run is going on; ``dropped``
            counts the run's samples the byte bounds evicted or that never reached the store
            (:meth:`count_dropped`); 0 when it holds all it was given; ``kind`` is one of
            :data:`KINDS` (see :func:`run_kind` for runs nobody said it of); ``script`` is the path the
            engine's setup event named, or None.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT runs.run, job, name, started, ended, outcome, COALESCE(usage.dropped_samples, 0), kind, "
                "script FROM runs LEFT JOIN usage ON usage.run = runs.run ORDER BY started DESC, runs.rowid DESC "
                "LIMIT ?", (int(limit),)).fetchall()
        keys = ("run", "job", "name", "started", "ended", "outcome", "dropped", "kind", "script")
        out = [dict(zip(keys, row)) for row in rows]
        for r in out:
            r["kind"] = r["kind"] or run_kind(r["run"], r["name"])
        return out

    # -- writes ----------------------------------------------------------------------------------

    def add_samples(self, run: str, rank: int, samples: Iterable[dict[str, Any]]) -> int:
        """Store a batch of engine samples (one transaction); creates the run when it is new.

        Args:
            run (str): the run id.
            rank (int): the producer's rank.
            samples (Iterable[dict]): reporter samples; ``t`` (default: now), ``run``, ``rank``
                and ``type`` are taken out of the stored data.

        Returns:
            int: samples stored.
        """
        _check_run(run)
        rows = self._rows(run, int(rank), samples)
        if not rows:
            return 0

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO runs (run, started) VALUES (?, ?) ON CONFLICT(run) DO UPDATE "
                       "SET started = MIN(started, excluded.started)", (run, min(r[2] for r in rows)))
            self._insert(db, rows)
        self._tx(work)
        return len(rows)

    def count_dropped(self, run: str, samples: int) -> None:
        """Count ``samples`` of ``run`` lost before they reached the store (the daemon's write queue
        overflowed), so that ``runs()`` and :meth:`stats` report them with the store's own drops."""
        _check_run(run)

        def work(db: sqlite3.Connection) -> None:
            # a run all of whose samples were dropped still shows, with the time of this count as its start
            db.execute("INSERT INTO runs (run, started) VALUES (?, ?) ON CONFLICT(run) DO NOTHING",
                       (run, self._clock()))
            db.execute("INSERT INTO usage (run, dropped_samples) VALUES (?, ?) ON CONFLICT(run) DO UPDATE "
                       "SET dropped_samples = dropped_samples + excluded.dropped_samples", (run, int(samples)))
        self._tx(work)

    def add_machine(self, sample: Union[dict[str, Any], Iterable[dict[str, Any]]]) -> int:
        """Store one machine sample (or a batch of them).

        Returns:
            int: samples stored.
        """
        batch = [sample] if isinstance(sample, dict) else list(sample)
        rows = self._rows(MACHINE_RUN, 0, batch)
        if rows:
            self._tx(lambda db: self._insert(db, rows))
        return len(rows)

    def _rows(self, run: str, rank: int, samples: Iterable[dict[str, Any]]) -> list[tuple[str, int, float, str]]:
        now = self._clock()
        rows = []
        for sample in samples:
            t = numeric(sample.get("t"))
            t = now if t is None or not math.isfinite(t) else t
            data = {k: v for k, v in sample.items() if k not in _COLUMNS and k != "type"}
            rows.append((run, rank, t, dumps(data)))
        return rows

    # -- compaction ------------------------------------------------------------------------------

    def compact(self, now: Optional[float] = None) -> dict[str, int]:
        """Fold raw rows older than 10 minutes into 1 s rows, and 1 s rows older than 24 h into 1 min rows.

        Args:
            now (float | None): the current time (default: the store's clock).

        Returns:
            dict[str, int]: ``{"raw": rows folded, "1s": rows folded}``.
        """
        now = self._clock() if now is None else float(now)

        def work(db: sqlite3.Connection) -> dict[str, int]:
            return {
                "raw": _fold(db, "m_raw", "m_1s", 1.0, math.floor(now - RAW_KEEP_S)),
                "1s": _fold(db, "m_1s", "m_1m", 60.0, math.floor((now - SECOND_KEEP_S) / 60.0) * 60.0),
            }
        return self._tx(work)

    # -- reads -----------------------------------------------------------------------------------

    def query(self, run: str, fields: Optional[Sequence[str]] = None, since: Optional[float] = None,
              until: Optional[float] = None, resolution: str = "auto", rank: Optional[int] = None,
              ) -> list[dict[str, Any]]:
        """A run's samples, time-ordered.

        Args:
            run (str): the run id.
            fields (Sequence[str] | None): top-level keys to return (all when None).
            since (float | None): from this time on (inclusive).
            until (float | None): up to this time (inclusive).
            resolution (str): ``"raw"`` (whatever each tier holds: raw rows where they are still
                kept, aggregates where they were folded), ``"1s"`` or ``"1m"`` (finer rows are
                aggregated to that width on the fly), or ``"auto"``: ``raw`` for a span up to
                10 minutes, ``1s`` up to 3 hours, ``1m`` beyond.
            rank (int | None): only this rank.

        Returns:
            list[dict]: ``{"t", "rank", **fields}`` per row, ordered by time then rank.
        """
        return self._query(run, fields, since, until, resolution, rank)

    def query_machine(self, fields: Optional[Sequence[str]] = None, since: Optional[float] = None,
                      until: Optional[float] = None, resolution: str = "auto") -> list[dict[str, Any]]:
        """Machine samples, time-ordered (arguments as :meth:`query`); rows are ``{"t", **sample}``."""
        rows = self._query(MACHINE_RUN, fields, since, until, resolution, None)
        for row in rows:
            del row["rank"]
        return rows

    def _query(self, run: str, fields: Optional[Sequence[str]], since: Optional[float], until: Optional[float],
               resolution: str, rank: Optional[int]) -> list[dict[str, Any]]:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
        lo = -math.inf if since is None else float(since)
        hi = math.inf if until is None else float(until)
        where = "run = ? AND t >= ? AND t <= ?" + (" AND rank = ?" if rank is not None else "")
        args: tuple[Any, ...] = (run, lo, hi) + ((int(rank),) if rank is not None else ())
        with self._lock:
            if resolution == "auto":
                span = self._db.execute(
                    " UNION ALL ".join(f"SELECT MIN(t), MAX(t) FROM {table} WHERE {where}" for table in
                                       ("m_raw", "m_1s", "m_1m")), args * 3).fetchall()
                ts = [x for row in span for x in row if x is not None]
                width = (max(ts) - min(ts)) if ts else 0.0
                resolution = "raw" if width <= RAW_KEEP_S else "1s" if width <= 3 * 3600 else "1m"
            rows: list[tuple[int, float, int, str]] = []
            for table in ("m_raw", "m_1s", "m_1m"):
                rows += self._db.execute(f"SELECT rank, t, n, data FROM {table} WHERE {where}", args).fetchall()
        rows.sort(key=lambda r: (r[1], r[0]))
        width = _WIDTH[resolution]
        out: list[dict[str, Any]] = []
        if width is None:
            for rk, t, _, data in rows:
                out.append(_row(rk, t, json.loads(data), fields))
            return out
        buckets: dict[tuple[int, float], list[tuple[dict[str, Any], int]]] = {}
        for rk, t, n, data in rows:
            buckets.setdefault((rk, math.floor(t / width) * width), []).append((json.loads(data), n))
        for (rk, t), items in sorted(buckets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            out.append(_row(rk, t, aggregate_rows(items) if len(items) > 1 else items[0][0], fields))
        return out


def _row(rank: int, t: float, data: dict[str, Any], fields: Optional[Sequence[str]]) -> dict[str, Any]:
    if fields is not None:
        data = {k: data[k] for k in fields if k in data}
    return {"t": t, "rank": rank, **data}


def _fold(db: sqlite3.Connection, src: str, dst: str, width: float, cutoff: float) -> int:
    """Move rows of ``src`` with ``t < cutoff`` into ``width``-second buckets of ``dst``."""
    rows = db.execute(f"SELECT run, rank, t, n, data FROM {src} WHERE t < ? ORDER BY t, rowid", (cutoff,)).fetchall()
    if not rows:
        return 0
    buckets: dict[tuple[str, int, float], list[tuple[dict[str, Any], int]]] = {}
    weights: dict[str, int] = {}  # run -> change of its weight (retention's accounting)
    for run, rank, t, n, data in rows:
        buckets.setdefault((run, rank, math.floor(t / width) * width), []).append((json.loads(data), n))
        weights[run] = weights.get(run, 0) - row_cost(run, data)
    for (run, rank, t), items in buckets.items():
        existing = db.execute(f"SELECT n, data FROM {dst} WHERE run = ? AND rank = ? AND t = ?",
                              (run, rank, t)).fetchone()
        if existing is not None:
            items.insert(0, (json.loads(existing[1]), existing[0]))
            weights[run] -= row_cost(run, existing[1])
        total = sum(n for _, n in items)
        data = dumps(aggregate_rows(items) if len(items) > 1 else items[0][0])
        weights[run] += row_cost(run, data)
        db.execute(f"INSERT OR REPLACE INTO {dst} (run, rank, t, n, data) VALUES (?, ?, ?, ?, ?)",
                   (run, rank, t, total, data))
    db.execute(f"DELETE FROM {src} WHERE t < ?", (cutoff,))
    retention.add_usage(db, weights)
    return len(rows)


#: Job titles of the daemon's kinds (deepdive.jobs.kinds), for runs stored before runs had a kind.
_TITLE_KINDS = (("Deep environment check", "check"), ("tune ", "tune"), ("compress ", "compress"),
                ("python ", "script"))


def run_kind(run: str, name: Optional[str]) -> str:
    """The kind of a run nobody recorded one for: ``tune-<study>`` and ``compress-<model>`` ids are
    what ``deepdive tune`` and ``deepdive compress`` report under; a row from an earlier release is
    read by its job title; anything else sent engine samples, so it trains."""
    for prefix, kind in (("tune-", "tune"), ("compress-", "compress")):
        if run.startswith(prefix):
            return kind
    for title, kind in _TITLE_KINDS:
        if name and name.startswith(title):
            return kind
    return "train"


def _check_run(run: Any) -> None:
    if not isinstance(run, str) or not run:
        raise ValueError(f"a run id must be a non-empty string, got {run!r}")
