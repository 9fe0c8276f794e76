"""Job records in SQLite."""

from __future__ import annotations

import sqlite3
import time

import pytest

from deepdive.jobs import store as store_mod
from deepdive.jobs.store import JobStore, state_dir
from deepdive.protocol import JobInfo, OutputLine


def _job(job_id: str, created: float) -> JobInfo:
    return JobInfo(id=job_id, kind="script", title="t", state="running", argv=["python", "x.py"], cwd="/",
                   created_at=created)


def test_jobs_persist_newest_first(tmp_path):
    store = JobStore(tmp_path)
    store.insert(_job("a", 1.0), daemon_pid=1)
    store.insert(_job("b", 2.0), daemon_pid=1)
    job = store.get("a")
    job.state, job.exit_code, job.result = "succeeded", 0, {"gflops": 1.5}
    store.update(job)
    store.close()
    again = JobStore(tmp_path)
    assert [j.id for j in again.list()] == ["b", "a"]
    assert again.get("a").result == {"gflops": 1.5} and again.get("a").state == "succeeded"


def test_output_keeps_the_last_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_LINES_PER_JOB", 1000)
    store = JobStore(tmp_path)
    store.insert(_job("a", time.time()), daemon_pid=1)
    seq = 0
    for _ in range(12):
        batch = [OutputLine(stream="stdout", text=f"line {seq + i}", t=0.0) for i in range(250)]
        store.append_output("a", seq, batch)
        seq += len(batch)
    lines, truncated = store.output("a")
    assert truncated and len(lines) == 1000
    assert lines[-1].text == f"line {seq - 1}" and lines[0].text == f"line {seq - 1000}"


def test_workspace_state_is_git_ignored(tmp_path):
    store = JobStore(state_dir(str(tmp_path)))
    assert store.path == tmp_path / ".deepdive" / "state.db"
    assert (tmp_path / ".deepdive" / ".gitignore").read_text().strip().endswith("*")


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path):
    JobStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(RuntimeError, match="newer Deepdive"):
        JobStore(tmp_path)


def test_per_user_state_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPDIVE_HOME", str(tmp_path / "home"))
    assert state_dir(None) == tmp_path / "home"
    monkeypatch.delenv("DEEPDIVE_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert state_dir(None) == tmp_path / "xdg" / "deepdive"


def test_a_file_from_before_owners_were_recorded_is_brought_up_to_date(tmp_path):
    """Schema 1 as first shipped (no owner start time, no cancel request): opened in place, nothing lost."""
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(store_mod._SCHEMA.replace("    daemon_started REAL,\n", "").replace("    cancel_reason TEXT,\n", ""))
    db.execute("INSERT INTO jobs (id, kind, title, state, argv, cwd, created_at, pid, proc_started, daemon_pid) "
               "VALUES ('old', 'script', 't', 'running', '[]', '/', 1.0, 42, 7.0, 43)")
    db.execute("PRAGMA user_version=1")
    assert {"daemon_started", "cancel_reason"}.isdisjoint(r[1] for r in db.execute("PRAGMA table_info(jobs)"))
    db.commit()
    db.close()
    store = JobStore(tmp_path)
    owner = store.owner("old")
    assert (owner.pid, owner.proc_started, owner.daemon_pid, owner.daemon_started) == (42, 7.0, 43, None)
    store.request_cancel("old", "from another window")
    assert store.owner("old").cancel_reason == "from another window"
    assert JobStore(tmp_path).get("old").state == "running", "a second opening changes nothing"
