"""The study's persistent storage: opening it, and the lock that the processes sharing it take.

The storage (SQLite in ``.deepdive/tune.db`` by default, any RDB URL, or ``journal:PATH``) is the
truth that every ``deepdive tune`` process on the study shares. Two things need more than Optuna's
own calls when several processes start at once:

- Opening a storage that does not exist yet: each process creates the schema, and the loser of
  that race gets an integrity error (``UNIQUE constraint failed: alembic_version``). The opening is
  retried; the second attempt finds the schema.
- Reserving trials of the study's budget (:mod:`deepdive.tune.budget`): counting the trials and
  creating the new ones must be one step for all the processes, or two of them both take the last
  trial. :class:`StudyLock` makes it one: a POSIX lock on a file beside a SQLite database or a
  journal (``<file>.trials.lock``; released by the kernel if the process dies; NFS supports it
  with its lock manager), a transaction-level advisory lock on PostgreSQL (released if the process
  dies: the server ends its connection), ``GET_LOCK`` on MySQL. The SQLite, journal and PostgreSQL
  locks are tested with concurrent processes; the MySQL one is not (no server in the tests).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from deepdive.tune.errors import TuneError

OPEN_ATTEMPTS = 5
# what a process sees when another one created the schema at the same time (SQLite, PostgreSQL, MySQL)
_SCHEMA_RACE = ("unique constraint", "already exists", "duplicate key", "duplicate entry", "database is locked")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    if url.startswith("journal:") or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def default_storage(workspace: str) -> str:
    folder = Path(workspace) / ".deepdive"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'tune.db'}"


def open_storage(url: str, heartbeat_interval: Optional[int] = 10, grace_period: Optional[int] = 60) -> Any:
    """An Optuna storage for ``url``: an RDB URL (sqlite, postgresql, mysql) or ``journal:PATH``.

    Raises:
        TuneError: a URL Optuna cannot open (one line, password hidden).
    """
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        if not path:
            raise TuneError("journal storage needs a file: journal:/shared/path/study.log")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(path))
        except OSError as exc:
            raise TuneError(f"cannot open journal storage {path}: {exc.strerror or exc}") from None
    if "://" not in url:
        raise TuneError(f"storage {url!r} is not a database URL: use sqlite:///path/tune.db, "
                        "postgresql://user:pass@host/db, mysql://... or journal:PATH")
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return _open_rdb(url, heartbeat_interval, grace_period)
        except Exception as exc:  # sqlalchemy: no such dialect, no driver, cannot connect
            if attempt + 1 < OPEN_ATTEMPTS and _schema_race(exc):
                time.sleep(0.2 * (attempt + 1))  # another process is creating the schema: it is there next time
                continue
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TuneError(f"cannot open storage {redact(url)}: {type(exc).__name__}: {text}"[:300]) from None
    raise AssertionError("unreachable")


def _open_rdb(url: str, heartbeat_interval: Optional[int], grace_period: Optional[int]) -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)


def _schema_race(exc: BaseException) -> bool:
    """True for the errors of two processes creating a storage's tables at once."""
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:
        return False
    if not isinstance(exc, (sa_exc.IntegrityError, sa_exc.OperationalError, sa_exc.ProgrammingError)):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _SCHEMA_RACE)


def _lock_key(study_name: str) -> int:
    """A stable signed 64-bit key for the study (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.sha1(f"deepdive.tune:{study_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class StudyLock:
    """Mutual exclusion between the processes that share a study's storage (``with lock: ...``).

    Held only while trials are counted and created (milliseconds). An in-memory SQLite database (no
    other process sees it) needs no lock. An RDB other than SQLite, PostgreSQL and MySQL gets none:
    the count still holds every process's running trials, but two processes reserving at the same
    instant could both take the last place.
    """

    def __init__(self, url: str, rdb: Any, study_name: str):
        self.rdb = rdb
        self.study_name = study_name
        self.path: Optional[str] = None
        self.dialect: Optional[str] = None
        self._fd: Optional[int] = None
        self._conn: Any = None
        self._tx: Any = None
        if url.startswith("journal:"):
            self.path = url[len("journal:"):]
        elif rdb is not None:
            self.dialect = rdb.engine.dialect.name
            if self.dialect == "sqlite":
                database = rdb.engine.url.database
                in_memory = not database or database == ":memory:" or database.startswith("file::memory")
                self.path = None if in_memory else database  # (a database in memory: no other process sees it)
                self.dialect = None
        if self.path is not None:
            self.path = str(Path(self.path).resolve()) + ".trials.lock"

    def __enter__(self) -> "StudyLock":
        if self.path is not None:
            import fcntl

            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise TuneError(f"cannot create the study's lock file {self.path}: {exc.strerror or exc} (the "
                                "storage's folder must be writable)") from None
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX)  # POSIX lock: NFS has them too; gone when the process dies
            except OSError as exc:
                os.close(self._fd)
                self._fd = None
                raise TuneError(f"cannot lock {self.path}: {exc.strerror or exc} (a file system without locks? "
                                "use a database storage, postgresql://...)") from None
        elif self.dialect in ("postgresql", "mysql"):
            import sqlalchemy as sa

            self._conn = self.rdb.engine.connect()
            try:
                if self.dialect == "postgresql":  # released at the end of this transaction (or connection)
                    self._tx = self._conn.begin()
                    self._conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                       {"key": _lock_key(self.study_name)})
                else:  # MySQL's named lock is the session's: released explicitly below (or at disconnect)
                    self._conn.execute(sa.text("SELECT GET_LOCK(:name, -1)"), {"name": self._mysql_name()})
            except BaseException:
                self._conn.close()
                self._conn = None
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            import fcntl

            try:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        elif self._conn is not None:
            import sqlalchemy as sa

            try:
                if self._tx is not None:
                    self._tx.commit()
                else:
                    self._conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": self._mysql_name()})
            except BaseException:
                self._conn.invalidate()  # never back to the pool holding the lock
                raise
            finally:
                self._conn.close()
                self._conn, self._tx = None, None

    def _mysql_name(self) -> str:
        return f"deepdive.tune:{_lock_key(self.study_name):x}"[:64]
