"""Job records in SQLite, so a restarted daemon still lists past jobs and how they ended.

Where: ``<workspace>/.deepdive/state.db`` for a trusted workspace the editor opened (the folder
gets a ``.gitignore`` of ``*`` so it never lands in the user's repository), otherwise
``$DEEPDIVE_HOME`` or ``$XDG_DATA_HOME/deepdive`` (``~/.local/share/deepdive``). See
:func:`state_dir`. WAL mode: several daemons (two editor windows) may share one file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Optional

from deepdive.protocol import JobInfo, OutputLine

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
    exit_code INTEGER,
    reason TEXT,
    progress REAL,
    message TEXT,
    result TEXT
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

_JOB_COLUMNS = (
    "id", "kind", "title", "state", "argv", "cwd", "created_at", "started_at", "ended_at", "pid",
    "exit_code", "reason", "progress", "message", "result",
)


def state_dir(workspace: Optional[str] = None) -> Path:
    """Where Deepdive keeps its state: the workspace's ``.deepdive/`` or a per-user folder."""
    if workspace:
        return Path(workspace) / ".deepdive"
    if os.environ.get("DEEPDIVE_HOME"):
        return Path(os.environ["DEEPDIVE_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "deepdive"


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
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # -- jobs ---------------------------------------------------------------------------------

    def insert(self, job: JobInfo, *, daemon_pid: int) -> None:
        row = _job_row(job)
        row["daemon_pid"] = daemon_pid
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

    def running(self) -> list[tuple[JobInfo, Optional[int], Optional[float]]]:
        """Jobs recorded as running, with the daemon pid and process start time that own them."""
        rows = self._db.execute("SELECT * FROM jobs WHERE state = 'running'")
        return [(_job_from_row(r), r["daemon_pid"], r["proc_started"]) for r in rows]

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
    }


def _job_from_row(row: sqlite3.Row) -> JobInfo:
    values = {c: row[c] for c in _JOB_COLUMNS}
    values["argv"] = json.loads(values["argv"])
    values["result"] = json.loads(values["result"]) if values["result"] else None
    return JobInfo(**values)
