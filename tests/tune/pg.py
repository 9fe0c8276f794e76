"""A real, throw-away PostgreSQL server for the tests: ``initdb`` in a temporary folder, started on a free
port of 127.0.0.1 (its unix socket in that folder too), one database, stopped and removed afterwards.

Needs the server binaries (Debian/Ubuntu: ``apt-get install -y postgresql``; found on PATH or under
``/usr/lib/postgresql/<version>/bin``) and a Python driver (``pip install 'psycopg[binary]'``, or
psycopg2). ``initdb`` refuses to run as root: as root the server runs as the ``postgres`` user (which
the Debian package creates) through ``runuser``. When something is missing, :func:`unavailable`
says what, in one line, and the tests skip with that reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, Optional

INSTALL_HINT = "apt-get install -y postgresql (Debian/Ubuntu)"
USER = "deepdive"
DATABASE = "optuna"


def bindir() -> Optional[Path]:
    """The folder of ``initdb``/``pg_ctl``: PATH first, then the newest /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: [int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()])
    return Path(versions[-1]).parent if versions else None


def driver() -> Optional[str]:
    """The SQLAlchemy dialect+driver for the installed PostgreSQL driver, or None."""
    for module, name in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            __import__(module)
            return name
        except ImportError:
            continue
    return None


def _run_as() -> Optional[list[str]]:
    """The command prefix that runs the server as a non-root user ([] when not root), None when impossible."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"]
    setpriv = shutil.which("setpriv")
    if setpriv:
        entry = pwd.getpwnam("postgres")
        return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
    return None


def unavailable() -> Optional[str]:
    """Why a test server cannot be started here (one line), or None when it can."""
    if bindir() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
    if driver() is None:
        return "no PostgreSQL driver for SQLAlchemy: pip install 'psycopg[binary]>=3.1'"
    if _run_as() is None:
        return "running as root without a 'postgres' user (and runuser) to run initdb as: " + INSTALL_HINT
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check(cmd: list[str], what: str, log: Optional[Path] = None, timeout: float = 60) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        if log is not None and log.exists():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} failed ({proc.returncode}): {detail}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield a SQLAlchemy URL of an empty database on it; stop it and remove its folder.

    Raises:
        RuntimeError: the binaries are there but the server did not start (with its log).
    """
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    bins, prefix, url_scheme = bindir(), _run_as(), driver()
    assert bins is not None and prefix is not None and url_scheme is not None
    root = Path(tempfile.mkdtemp(prefix="deepdive-pg-"))
    data, log = root / "data", root / "server.log"
    if prefix:  # as root: the folder belongs to the user the server runs as
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        _check([*prefix, str(bins / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync"], "initdb")
        port = _free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        _check([*prefix, str(bins / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "30",
                "start"], "pg_ctl start", log)
        started = True
        _check([str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE], "createdb", log)
        yield f"{url_scheme}://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            subprocess.run([*prefix, str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30",
                            "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
