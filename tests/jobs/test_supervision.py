"""A job never outlives the process that owns its JobManager, and still behaves as its own command.

The owner (the daemon, or ``deepdive train`` on a terminal) is played by ``_owner.py``, a real
process with a real JobManager; the tests kill it with SIGKILL, which leaves it no chance to clean up,
and watch the job's whole process tree: the script, the child it started, torchrun and its workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from deepdive.jobs.manager import KILL_GRACE_S, JobManager
from deepdive.jobs.store import JobStore
from deepdive.protocol import JobInfo, JobStartParams, from_wire

OWNER = Path(__file__).with_name("_owner.py")

# A script that starts a child of its own (a grandchild of the job), records both pids, and sleeps.
FAMILY = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=NEW_SESSION)
with open("pids.tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace("pids.tmp", "pids")
time.sleep(600)
"""

# A training script for torchrun: each worker records its pid, then sleeps (no torch import: quick on 2 cores).
WORKER = """
import os, time
with open(f"rank{os.environ['RANK']}.tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(f"rank{os.environ['RANK']}.tmp", f"rank{os.environ['RANK']}.pid")
time.sleep(600)
"""


def start_owner(state: Path, ws: Path, kind: str, options: dict) -> tuple[subprocess.Popen, JobInfo]:
    owner = subprocess.Popen([sys.executable, str(OWNER), str(state), str(ws), kind, json.dumps(options)],
                             stdout=subprocess.PIPE, text=True)
    job = from_wire(json.loads(owner.stdout.readline()), JobInfo)
    assert job.state == "running", job.reason
    return owner, job


def wait_for_files(*paths: Path, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"the job did not write {[str(p) for p in paths]}"
        time.sleep(0.05)
    return [p.read_text() for p in paths]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after ``seconds`` (an empty list once they have all gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def kill_all(pids: list[int]) -> None:
    for pid in pids:  # so that a failing test leaves nothing behind
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def family(new_session: bool = False) -> str:
    return FAMILY.replace("NEW_SESSION", str(new_session))


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "own-session"])
def test_a_killed_owner_takes_the_jobs_whole_tree_with_it(tmp_path: Path, new_session: bool):
    """The grandchild is in the job's group, or (as torchrun's workers are) in a session of its own."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "family.py").write_text(family(new_session))
    owner, job = start_owner(tmp_path / "state", ws, "script", {"path": "family.py"})
    script, grandchild = map(int, wait_for_files(ws / "pids")[0].split())
    tree = [job.pid, script, grandchild]
    assert all(alive(p) for p in tree)
    try:
        owner.kill()  # SIGKILL: the owner cannot clean up
        owner.wait()
        left = gone_within(tree, KILL_GRACE_S + 2)
        assert not left, f"processes of the job outlived its owner: {left}"
        # and the record says so at once, without waiting for another daemon to start
        store = JobStore(tmp_path / "state")
        record = store.get(job.id)
        assert record.state == "lost" and "exited" in record.reason and str(owner.pid) in record.reason
    finally:
        kill_all(tree)


@pytest.mark.slow
def test_a_killed_owner_takes_torchrun_and_its_workers_with_it(tmp_path: Path):
    """torchrun starts each worker in a session of its own: a kill of the job's group alone misses them."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "worker.py").write_text(WORKER)
    owner, job = start_owner(tmp_path / "state", ws, "train", {"path": "worker.py", "nproc": 2})
    workers = [int(t) for t in wait_for_files(ws / "rank0.pid", ws / "rank1.pid", timeout=120)]
    tree = [job.pid, *(p.pid for p in psutil.Process(job.pid).children(recursive=True))]
    assert set(workers) <= set(tree) and all(alive(p) for p in workers)
    try:
        owner.kill()
        owner.wait()
        left = gone_within(tree, KILL_GRACE_S + 5)
        assert not left, f"processes of the training job outlived its owner: {left}"
    finally:
        kill_all(tree)


async def run_job(ws: Path, tmp_path: Path, body: str, **params) -> tuple[JobManager, JobInfo]:
    (ws / "job.py").write_text(body)
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    job = await manager.start(JobStartParams(kind="script", options={"path": "job.py"}, **params))
    return manager, await manager.wait(job.id)


async def test_the_job_ends_with_its_commands_exit_code_events_and_output(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    manager, job = await run_job(ws, tmp_path, "import sys\nfrom deepdive.jobs import events\n"
                                 "events.result({'answer': 42})\nprint('about to fail')\nsys.exit(3)\n")
    assert (job.state, job.exit_code, job.reason) == ("failed", 3, "exit code 3")
    assert job.result == {"answer": 42}, "events still reach the manager"
    assert [line.text for line in manager.store.output(job.id)[0]] == ["about to fail"]
    assert job.argv[1:] == [str(ws / "job.py")], "the job's command line is the command's, not the supervisor's"


async def test_a_command_killed_by_a_signal_is_recorded_as_such(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    _, job = await run_job(ws, tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGUSR1)\n")
    assert (job.state, job.reason) == ("failed", "killed by SIGUSR1")


async def test_cancel_reaches_the_commands_own_sigterm_handler(tmp_path: Path):
    """A training script that checkpoints on SIGTERM gets to do it when the user cancels."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "job.py").write_text(
        "import signal, sys, time\n"
        "def stop(*_):\n    open('checkpointed', 'w').close()\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\nopen('ready', 'w').close()\ntime.sleep(600)\n")
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    job = await manager.start(JobStartParams(kind="script", options={"path": "job.py"}))
    for _ in range(400):
        if (ws / "ready").exists():
            break
        await asyncio.sleep(0.05)
    cancelled = await manager.cancel(job.id)
    assert cancelled.state == "cancelled" and (ws / "checkpointed").exists()


async def test_a_command_that_cannot_start_fails_with_the_reason(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "job.py").write_text("print('never runs')\n")
    manager = JobManager(JobStore(tmp_path / "state"), python=str(tmp_path / "no-python"), workspace=str(ws))
    job = await manager.wait((await manager.start(JobStartParams(kind="script", options={"path": "job.py"}))).id)
    assert job.state == "failed"
    assert job.reason == f"could not start: {tmp_path / 'no-python'}: No such file or directory"


async def test_a_command_that_ignores_sigterm_gets_its_grace_then_sigkill(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "job.py").write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                               "open('ready', 'w').close()\ntime.sleep(600)\n")
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    job = await manager.start(JobStartParams(kind="script", options={"path": "job.py"}))
    for _ in range(400):
        if (ws / "ready").exists():
            break
        await asyncio.sleep(0.05)
    started = time.monotonic()
    cancelled = await manager.cancel(job.id)
    took = time.monotonic() - started
    assert cancelled.state == "cancelled" and cancelled.exit_code == -signal.SIGKILL
    assert KILL_GRACE_S - 0.2 < took < KILL_GRACE_S + 2, f"SIGKILL came after {took:.1f} s"


LEAKY_OWNER = """
import os, sys, time
from deepdive.jobs.manager import SUPERVISOR
r, w = os.pipe()
os.set_inheritable(r, True)
argv = [sys.executable, "-I", "-S", SUPERVISOR, "--lifeline", str(r), "--parent", str(os.getpid()), "--",
        sys.executable, "-c", "import time; time.sleep(600)"]
pid = os.posix_spawn(sys.executable, argv, os.environ, setsid=True)
os.close(r)
if os.fork() == 0:  # a child forked without exec keeps a copy of the lifeline's write end
    time.sleep(600)
    os._exit(0)
print(pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_owners_death_is_noticed_even_when_a_forked_child_keeps_the_lifeline_open(tmp_path: Path):
    (tmp_path / "owner.py").write_text(LEAKY_OWNER)
    owner = subprocess.Popen([sys.executable, str(tmp_path / "owner.py")], stdout=subprocess.PIPE, text=True)
    supervisor = int(owner.stdout.readline())
    deadline = time.monotonic() + 10
    while not psutil.Process(supervisor).children():
        assert time.monotonic() < deadline, "the supervisor did not start its command"
        time.sleep(0.05)
    tree = [supervisor, *(p.pid for p in psutil.Process(supervisor).children(recursive=True))]
    forked = [p.pid for p in psutil.Process(owner.pid).children() if p.pid != supervisor]
    try:
        owner.kill()
        owner.wait()
        assert not gone_within(tree, KILL_GRACE_S + 2), "the job outlived its owner"
    finally:
        kill_all(tree + forked)
