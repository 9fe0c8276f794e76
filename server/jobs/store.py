"""Job records in SQLite, so a restarted daemon still lists past jobs and how they ended.

Where: ``<workspace>/.deepdive/state.db`` for a trusted workspace the editor opened (the folder
gets a ``.gitignore`` of ``*`` so it never lands in the user's repository), otherwise
``$DEEPDIVE_HOME`` or ``$XDG_DATA_HOME/deepdive`` (``~/.local/share/deepdive``). See
:func:`state_dir`. WAL mode: several daemons (two editor windows) may share one file, so each job
also records who owns it (the owner's pid and start time) and a cancel request any of them can make.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Optional

import attrs

from deepdive.protocol import JobInfo, OutputLine

#: Bumped only for changes an older Deepdive cannot read; added columns (which it ignores) keep it.
SCHEMA_VERSION = 1
MAX_LINES_PER_JOB = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    argv TEXT NOT NULL,
    cwd TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    pid INTEGER,
    proc_started REAL,
    daemon_pid INTEGER,
    daemon_started REAL,
    cancel_reason TEXT,
    exit_code INTEGER,
    reason TEXT,
    progress REAL,
    message TEXT,
    result TEXT,
    options TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC);
CREATE TABLE IF NOT EXISTS job_output (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    t REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""

#: Columns added after schema 1 shipped: added in place to an older file when it is opened.
_ADDED_COLUMNS = {"daemon_started": "REAL", "cancel_reason": "TEXT", "options": "TEXT"}

_JOB_COLUMNS = (
    "id", "kind", "title", "state", "argv", "cwd", "created_at", "started_at", "ended_at", "pid",
    "exit_code", "reason", "progress", "message", "result", "options",
)


@attrs.frozen
class JobOwner:
    """Who runs a job: the owner process (pid, start time) and the job's process-group leader."""

    daemon_pid: Optional[int]
    daemon_started: Optional[float]
    pid: Optional[int]
    proc_started: Optional[float]
    cancel_reason: Optional[str]


def state_dir(workspace: Optional[str] = None) -> Path:
    """Where Deepdive keeps its state: the workspace's ``.deepdive/`` or a per-user folder."""
    if workspace:
        return Path(workspace) / ".deepdive"
    if os.environ.get("DEEPDIVE_HOME"):
        return Path(os.environ["DEEPDIVE_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "deepdive"


def workspace_of(start: Path) -> Optional[str]:
    """The workspace folder a command typed in ``start`` belongs to: the nearest folder, ``start`` or
    above, whose ``.deepdive/`` the editor's daemon made (it holds ``state.db``); None outside one."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / ".deepdive" / "state.db").is_file():
            return str(folder)
    return None


def cli_state_dir(start: Optional[Path] = None) -> Path:
    """The state folder a command line uses: ``$DEEPDIVE_STATE_DIR``, else the workspace's ``.deepdive/``
    when the current folder is in one the editor uses (so the CLI and the editor share jobs, runs,
    studies and one dashboard), else the per-user folder."""
    override = os.environ.get("DEEPDIVE_STATE_DIR")
    if override:
        return Path(override)
    return state_dir(workspace_of(start if start is not None else Path.cwd()))


class JobStore:
    """SQLite-backed job records. Use from one thread (the daemon's event loop)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        ignore = self.directory / ".gitignore"
        if self.directory.name == ".deepdive" and not ignore.exists():
            ignore.write_text("# Deepdive's local state: never commit it\n*\n", encoding="utf-8")
        self.path = self.directory / "state.db"
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} was written by a newer Deepdive (schema {version}); upgrade deepdive"
            )
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _add_missing_columns(self) -> None:
        """Bring a file an older Deepdive created up to date (two daemons may race: one adds, both see it)."""
        def missing() -> list[str]:
            have = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            return [name for name in _ADDED_COLUMNS if name not in have]

        if not missing():
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for name in missing():
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {_ADDED_COLUMNS[name]}")

    def close(self) -> None:
        self._db.close()

    # -- jobs ---------------------------------------------------------------------------------

    def insert(self, job: JobInfo, *, daemon_pid: int, daemon_started: Optional[float] = None) -> None:
        row = _job_row(job)
        row["daemon_pid"] = daemon_pid
        row["daemon_started"] = daemon_started
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        self._db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", row)

    def update(self, job: JobInfo, *, proc_started: Optional[float] = None) -> None:
        row = _job_row(job)
        sets = ", ".join(f"{c} = :{c}" for c in row if c != "id")
        if proc_started is not None:
            sets += ", proc_started = :proc_started"
            row["proc_started"] = proc_started
        self._db.execute(f"UPDATE jobs SET {sets} WHERE id = :id", row)

    def get(self, job_id: str) -> Optional[JobInfo]:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job_from_row(row) if row else None

    def list(self, limit: int = 50) -> list[JobInfo]:
        rows = self._db.execute(
            "SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (max(1, min(limit, 10_000)),)
        )
        return [_job_from_row(r) for r in rows]

    def running(self) -> list[tuple[JobInfo, JobOwner]]:
        """Jobs recorded as running, with who owns them."""
        rows = self._db.execute("SELECT * FROM jobs WHERE state = 'running'")
        return [(_job_from_row(r), _owner(r)) for r in rows]

    def owner(self, job_id: str) -> Optional[JobOwner]:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _owner(row) if row else None

    def end_if_running(self, job_id: str, state: str, reason: str, ended_at: float) -> bool:
        """Record how a job ended unless someone (its own manager) already has; True when this call did."""
        cursor = self._db.execute(
            "UPDATE jobs SET state = ?, reason = ?, ended_at = ? WHERE id = ? AND state = 'running'",
            (state, reason, ended_at, job_id),
        )
        return cursor.rowcount == 1

    def request_cancel(self, job_id: str, reason: str) -> None:
        """Ask for a job to be cancelled: its own manager records it so when its process ends."""
        self._db.execute("UPDATE jobs SET cancel_reason = ? WHERE id = ?", (reason, job_id))

    # -- output -------------------------------------------------------------------------------

    def append_output(self, job_id: str, first_seq: int, lines: Iterable[OutputLine]) -> None:
        rows = [(job_id, first_seq + i, ln.stream, ln.text, ln.t) for i, ln in enumerate(lines)]
        if not rows:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO job_output VALUES (?, ?, ?, ?, ?)", rows)
            last = rows[-1][1]
            if last >= MAX_LINES_PER_JOB and last % 500 < len(rows):
                self._db.execute(
                    "DELETE FROM job_output WHERE job_id = ? AND seq <= ?", (job_id, last - MAX_LINES_PER_JOB)
                )

    def output(self, job_id: str) -> tuple[list[OutputLine], bool]:
        rows = self._db.execute(
            "SELECT seq, stream, text, t FROM job_output WHERE job_id = ? ORDER BY seq DESC LIMIT ?",
            (job_id, MAX_LINES_PER_JOB),
        ).fetchall()
        rows.reverse()
        truncated = bool(rows) and rows[0]["seq"] > 0
        return [OutputLine(stream=r["stream"], text=r["text"], t=r["t"]) for r in rows], truncated


def _job_row(job: JobInfo) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "title": job.title, "state": job.state,
        "argv": json.dumps(job.argv), "cwd": job.cwd, "created_at": job.created_at,
        "started_at": job.started_at, "ended_at": job.ended_at, "pid": job.pid,
        "exit_code": job.exit_code, "reason": job.reason, "progress": job.progress,
        "message": job.message, "result": json.dumps(job.result) if job.result is not None else None,
        "options": json.dumps(job.options) if job.options is not None else None,
    }


def _owner(row: sqlite3.Row) -> JobOwner:
    return JobOwner(daemon_pid=row["daemon_pid"], daemon_started=row["daemon_started"], pid=row["pid"],
                    proc_started=row["proc_started"], cancel_reason=row["cancel_reason"])


def _job_from_row(row: sqlite3.Row) -> JobInfo:
    values = {c: row[c] for c in _JOB_COLUMNS}
    values["argv"] = json.loads(values["argv"])
    values["result"] = json.loads(values["result"]) if values["result"] else None
    values["options"] = json.loads(values["options"]) if values["options"] else None
    return JobInfo(**values)
