"""Cancelling a job that another JobManager runs (two editor windows, or the daemon and `deepdive train`).

The job's process is found from the store (its pid and start time), checked to still be the job's,
stopped, and the job recorded cancelled, by its own manager when that one is alive, else by the
canceller. A pid that now belongs to another process is never signalled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from deepdive.jobs.manager import JobManager
from deepdive.jobs.store import JobStore
from deepdive.protocol import JobInfo, from_wire
from tests.jobs.test_supervision import alive, family, gone_within, kill_all, start_owner, wait_for_files


def sleeper() -> subprocess.Popen:
    """A process group of our own that no job manager knows about."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def record(store: JobStore, job_id: str, pid: int, proc_started: float, daemon_pid: int) -> None:
    """A job recorded as running by a daemon that is gone (what a crashed daemon leaves behind)."""
    job = JobInfo(id=job_id, kind="script", title="python x.py", state="running", argv=["python", "x.py"],
                  cwd="/", created_at=time.time(), pid=pid, started_at=time.time())
    store.insert(job, daemon_pid=daemon_pid)
    store.update(job, proc_started=proc_started)


async def test_a_second_manager_cancels_the_first_ones_job(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "family.py").write_text(family(new_session=True))
    owner, job = start_owner(tmp_path / "state", ws, "script", {"path": "family.py"})
    script, grandchild = map(int, wait_for_files(ws / "pids")[0].split())
    tree = [job.pid, script, grandchild]
    try:
        other = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
        cancelled = await other.cancel(job.id, "cancelled from another window")
        assert (cancelled.state, cancelled.reason) == ("cancelled", "cancelled from another window")
        assert not gone_within(tree, 2.0), "the job's whole tree is stopped"
        # the manager that ran it records the same outcome, not "failed: killed by SIGTERM"
        ended = from_wire(json.loads(owner.stdout.readline()), JobInfo)
        assert (ended.state, ended.reason) == ("cancelled", "cancelled from another window")
        assert owner.wait(10) == 0
        assert other.store.get(job.id).state == "cancelled"
    finally:
        owner.kill()
        kill_all(tree)


async def test_a_job_left_running_by_a_dead_daemon_is_found_stopped_and_recorded(tmp_path: Path):
    job_proc = sleeper()
    try:
        store = JobStore(tmp_path)
        record(store, "j1", job_proc.pid, psutil.Process(job_proc.pid).create_time(), daemon_pid=dead_pid())
        cancelled = await JobManager(store).cancel("j1")
        assert (cancelled.state, cancelled.reason) == ("cancelled", "cancelled by the user")
        assert job_proc.wait(5) is not None
        assert store.get("j1").state == "cancelled"
    finally:
        job_proc.kill()


async def test_a_pid_now_used_by_another_process_is_left_alone(tmp_path: Path):
    stranger = sleeper()
    try:
        store = JobStore(tmp_path)
        started = psutil.Process(stranger.pid).create_time()
        record(store, "j1", stranger.pid, started - 1000.0, daemon_pid=dead_pid())  # the job's process was older
        outcome = await JobManager(store).cancel("j1")
        time.sleep(0.2)
        assert alive(stranger.pid), "a process that is not the job's is never signalled"
        assert outcome.state == "lost" and "no longer running" in outcome.reason
        assert "\n" not in outcome.reason
    finally:
        stranger.kill()
        stranger.wait()

