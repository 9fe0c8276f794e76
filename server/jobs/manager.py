"""The job manager: every long task is a subprocess in its own process group.

A job's stdout and stderr are read line by line and handed to listeners in batches (at most every
:data:`FLUSH_INTERVAL_S`), so a job that prints a million lines cannot flood the editor; when a
listener falls behind, the oldest pending lines are dropped and the drop is counted in the next
batch. Structured events (progress, data, result) arrive on a separate pipe
(:mod:`deepdive.jobs.events`), so nothing the job prints can be mistaken for one. Cancel, a time
limit or a memory limit kill the whole process group: SIGTERM, a grace period (3 s; 30 s for
training, as torchrun gives its workers), then SIGKILL to the whole tree.

Each job's first process is :mod:`deepdive.jobs.supervise`, the leader of its group: it runs the
real command and stops the job's whole tree when the process that owns this manager dies, however
it dies (it holds the read end of a *lifeline* pipe whose write end only this process holds). A job
another manager runs (another window, ``deepdive train``) can be cancelled too: its process is found
from the store and checked to still be the job's before it is signalled.

All methods run on one asyncio event loop and never block it.

This module holds the jobs' lifecycle (start, supervise, cancel, reap); how their output and events
reach the listeners is :class:`~deepdive.jobs.output.JobOutput`, a base class of :class:`JobManager`
(its constants are re-exported here).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import psutil

from deepdive.jobs import events as job_events
from deepdive.jobs import processes
from deepdive.jobs.kinds import KINDS, TRAIN_GRACE_S, Context, JobRejected, Launch, build_launch
from deepdive.jobs.output import (FLUSH_INTERVAL_S, MAX_BATCH_LINES, MAX_LINE_CHARS, MAX_PENDING_LINES,
                                  PROGRESS_INTERVAL_S, READ_CHUNK, SPAWN_FAILURE, JobOutput)
from deepdive.jobs.store import JobOwner, JobStore
from deepdive.jobs.supervise import EXIT_CANNOT_START
from deepdive.protocol import JobEvent, JobInfo, JobKind, JobStartParams

__all__ = ["ENV_JOB_ID", "FLUSH_INTERVAL_S", "KILL_GRACE_S", "MAX_BATCH_LINES", "MAX_GRACE_S", "MAX_LINE_CHARS",
           "MAX_PENDING_LINES", "PROGRESS_INTERVAL_S", "READ_CHUNK", "SPAWN_FAILURE", "SUPERVISOR", "JobManager"]

log = logging.getLogger(__name__)

KILL_GRACE_S = 3.0
#: The longest grace any kind gives (a cancel from elsewhere does not know the job's own).
MAX_GRACE_S = max(KILL_GRACE_S, TRAIN_GRACE_S)
#: Past the supervisor's own grace, the manager SIGKILLs the tree itself (a supervisor that hangs).
SUPERVISOR_MARGIN_S = 2.0
#: How long a cancel from elsewhere waits for the job's own manager to record the outcome.
OWNER_RECORDS_S = 10.0
#: Run with ``python -I -S`` (standard library only): it starts in about 10 ms.
SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
WATCHDOG_INTERVAL_S = 0.5
ENV_JOB_ID = "DEEPDIVE_JOB_ID"

Listener = Callable[[JobEvent], None]


@attrs.define(eq=False)
class _Running:
    info: JobInfo
    proc: asyncio.subprocess.Process
    lifeline: int  # the write end: closed when this process dies, which tells the supervisor to stop the job
    timeout_s: Optional[float]
    memory_limit_bytes: Optional[int]
    grace_s: float = KILL_GRACE_S
    seq: int = 0
    out_seq: int = 0
    pending: deque = attrs.Factory(deque)
    dropped: int = 0
    progress_dirty: bool = False
    progress_sent_at: float = 0.0
    stop_reason: Optional[str] = None
    stop_state: Optional[str] = None
    spawn_error: Optional[str] = None
    #: The first ModuleNotFoundError on its stderr, with the pip line when an extra brings the module.
    missing_module: Optional[str] = None
    finished: asyncio.Event = attrs.Factory(asyncio.Event)


class JobManager(JobOutput):
    """Starts, watches, cancels and records jobs.

    Args:
        store (JobStore): where job records and output go.
        python (str): the interpreter jobs run with.
        workspace (str | None): the workspace folder (scripts are resolved against it).
        trusted (bool): whether the workspace is trusted; kinds that run its code need it.
        confine_to_workspace (bool): run only scripts inside the workspace (the daemon: its clients name
            paths); False for the command line, whose user typed the path themselves.
    """

    def __init__(self, store: JobStore, *, python: str = sys.executable, workspace: Optional[str] = None,
                 trusted: bool = True, confine_to_workspace: bool = True):
        self.store = store
        self.ctx = Context(python=python, workspace=workspace, trusted=trusted, confine=confine_to_workspace)
        self._started = processes.started(os.getpid())
        #: Environment every job gets on top of the daemon's (e.g. DEEPDIVE_HUB, set by the daemon).
        self.job_env: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._running: dict[str, _Running] = {}
        self._flusher: Optional[asyncio.Task[None]] = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- public -------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def kinds(self) -> list[JobKind]:
        return [k.describe() for k in KINDS.values()]

    def list(self, limit: int = 50) -> list[JobInfo]:
        jobs = self.store.list(limit)
        return [self._running[j.id].info if j.id in self._running else j for j in jobs]

    def get(self, job_id: str) -> Optional[JobInfo]:
        running = self._running.get(job_id)
        return running.info if running else self.store.get(job_id)

    def report_progress(self, job_id: str, fraction: Optional[float], message: str) -> None:
        """Progress learned outside the job's event pipe (a training job's telemetry); coalesced like its own."""
        run = self._running.get(job_id)
        if run is None:
            return
        run.info.progress = None if fraction is None else min(1.0, max(0.0, float(fraction)))
        run.info.message = message[:500]
        run.progress_dirty = True

    def is_running(self, job_id: str) -> bool:
        return job_id in self._running

    def running_pids(self) -> list[int]:
        """Process-group leaders of the running jobs (their trees are what a job uses)."""
        return [run.proc.pid for run in self._running.values()]

    async def start(self, params: JobStartParams) -> JobInfo:
        """Start a job; returns once its process runs (or has failed to start). Raises JobRejected."""
        spec, launch = build_launch(params.kind, params.options, self.ctx)
        timeout = params.timeout_s if params.timeout_s is not None else launch.timeout_s
        if timeout is not None and timeout <= 0:
            raise JobRejected("timeoutS must be positive")
        if params.memory_limit_mib is not None and params.memory_limit_mib <= 0:
            raise JobRejected("memoryLimitMib must be positive")
        memory_limit = (
            int(params.memory_limit_mib * 2**20)
            if params.memory_limit_mib is not None
            else int(psutil.virtual_memory().total * 0.9)
        )
        job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        info = JobInfo(
            id=job_id, kind=spec.name, title=params.title or launch.title, state="running",
            argv=launch.argv, cwd=launch.cwd, created_at=time.time(), options=dict(params.options),
        )
        read_fd, write_fd = os.pipe()
        life_r, life_w = os.pipe()  # not inheritable: no other child of this process holds the write end
        env = {**os.environ, **self.job_env, **launch.env, job_events.ENV_FD: str(write_fd), ENV_JOB_ID: job_id,
               "PYTHONUNBUFFERED": "1"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._supervised(launch, job_id, write_fd, life_r), cwd=launch.cwd, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, pass_fds=(write_fd, life_r), limit=2**20,
            )
        except OSError as exc:
            for fd in (read_fd, write_fd, life_r, life_w):
                os.close(fd)
            info.state, info.reason, info.ended_at = "failed", f"could not start: {exc}", time.time()
            self.store.insert(info, daemon_pid=os.getpid(), daemon_started=self._started)
            self._emit(JobEvent(job_id=job_id, type="finished", seq=0, job=info))
            return info
        os.close(write_fd)
        os.close(life_r)
        info.pid, info.started_at = proc.pid, time.time()
        self.store.insert(info, daemon_pid=os.getpid(), daemon_started=self._started)
        self.store.update(info, proc_started=processes.started(proc.pid))
        run = _Running(info=info, proc=proc, lifeline=life_w, timeout_s=timeout, memory_limit_bytes=memory_limit,
                       grace_s=_grace(launch))
        self._running[job_id] = run
        self._emit_job(run, "started")
        self._spawn(self._supervise(run, read_fd))
        self._ensure_flusher()
        return info

    def _supervised(self, launch: Launch, job_id: str, events_fd: int, lifeline_fd: int) -> list[str]:
        """The command line that runs the launch under the job supervisor (see :mod:`deepdive.jobs.supervise`)."""
        return [sys.executable, "-I", "-S", SUPERVISOR, "--lifeline", str(lifeline_fd), "--parent", str(os.getpid()),
                "--grace", f"{_grace(launch):g}", "--pass-fd", str(events_fd), "--store", str(self.store.path),
                "--job", job_id, "--", *launch.argv]

    async def cancel(self, job_id: str, reason: str = "cancelled by the user") -> JobInfo:
        """Cancel a job: this manager's own, or one another manager on the same store runs.

        Raises JobRejected when there is no such job or its process cannot be signalled.
        """
        run = self._running.get(job_id)
        if run is None:
            job = self.store.get(job_id)
            if job is None:
                raise JobRejected(f"no job {job_id!r}")
            if job.state != "running":
                return job  # already over: cancelling is a no-op
            return await self._cancel_elsewhere(job, reason)
        await self._stop(run, "cancelled", reason)
        await run.finished.wait()
        return run.info

    async def wait(self, job_id: str) -> JobInfo:
        run = self._running.get(job_id)
        if run is not None:
            await run.finished.wait()
            return run.info
        job = self.store.get(job_id)
        if job is None:
            raise JobRejected(f"no job {job_id!r}")
        return job

    async def shutdown(self) -> None:
        """Cancel every running job (the daemon is going away) and wait for them."""
        await asyncio.gather(
            *(self.cancel(job_id, "the Deepdive daemon shut down") for job_id in list(self._running)),
            return_exceptions=True,
        )
        if self._flusher:
            self._flusher.cancel()

    def kill_all_now(self, reason: str) -> None:
        """Synchronous SIGKILL of every running job's tree, for a daemon exiting in a hurry."""
        for run in list(self._running.values()):
            processes.kill_tree(run.proc.pid, signal.SIGKILL)
            run.info.state, run.info.reason, run.info.ended_at = "cancelled", reason, time.time()
            self.store.update(run.info)

    def reap_orphans(self) -> list[JobInfo]:
        """Mark jobs whose daemon died as lost, and kill whatever is left of their processes."""
        lost = []
        for job, owner in self.store.running():
            if job.id in self._running or processes.is_live_owner(owner.daemon_pid, owner.daemon_started):
                continue
            killed = processes.kill_tagged_processes(ENV_JOB_ID, job.id)
            job.state, job.ended_at = "lost", time.time()
            job.reason = "the Deepdive process that ran it exited" + (
                f"; killed {killed} leftover process(es)" if killed else "")
            self.store.update(job)
            lost.append(job)
        return lost

    # -- jobs another manager runs ------------------------------------------------------------

    async def _cancel_elsewhere(self, job: JobInfo, reason: str) -> JobInfo:
        """Stop a job another manager runs, once its recorded process is confirmed to still be the job's.

        The cancel request goes into the store first, so the job's own manager, seeing its process
        end, records it cancelled with ``reason`` (not failed by SIGTERM); when that manager is gone
        too, this one records the outcome.
        """
        owner = self.store.owner(job.id)
        assert owner is not None
        if job.pid is None or not processes.is_process(job.pid, owner.proc_started):
            # nothing to signal (a pid now used by another process is never signalled)
            reason = "its process is no longer running"
            if not processes.is_live_owner(owner.daemon_pid, owner.daemon_started):
                reason += " and the Deepdive process that ran it exited"
            return await self._settle(job.id, owner, "lost", reason)
        self.store.request_cancel(job.id, reason)
        try:
            os.killpg(job.pid, signal.SIGTERM)
        except PermissionError:
            raise JobRejected(f"cannot cancel job {job.id}: its process {job.pid} belongs to another user; "
                              "cancel it from the window that started it") from None
        except ProcessLookupError:
            pass
        if not await _ended(job.pid, owner.proc_started, MAX_GRACE_S + SUPERVISOR_MARGIN_S):
            processes.kill_tree(job.pid, signal.SIGKILL)
            await _ended(job.pid, owner.proc_started, 5.0)
        return await self._settle(job.id, owner, "cancelled", reason)

    async def _settle(self, job_id: str, owner: JobOwner, state: str, reason: str) -> JobInfo:
        """The job's record once it is over: its own manager's when that one is alive, else ours."""
        deadline = time.monotonic() + OWNER_RECORDS_S
        while processes.is_live_owner(owner.daemon_pid, owner.daemon_started) and time.monotonic() < deadline:
            job = self.store.get(job_id)
            if job is not None and job.state != "running":
                return job
            await asyncio.sleep(0.05)
        self.store.end_if_running(job_id, state, reason, time.time())
        job = self.store.get(job_id)
        assert job is not None
        return job

    # -- supervision --------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self, run: _Running, read_fd: int) -> None:
        proc = run.proc
        pumps = [
            asyncio.ensure_future(self._pump(run, proc.stdout, "stdout")),
            asyncio.ensure_future(self._pump(run, proc.stderr, "stderr")),
            asyncio.ensure_future(self._pump_events(run, read_fd)),
        ]
        watchdog = asyncio.ensure_future(self._watchdog(run))
        try:
            returncode = await proc.wait()
            # Descendants may still hold the pipes open: the job is over, so end them.
            processes.killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait(pumps, timeout=5.0)
        finally:
            watchdog.cancel()
            for pump in pumps:
                pump.cancel()
            os.close(run.lifeline)
        self._flush(run)
        info = run.info
        info.ended_at = time.time()
        info.exit_code = returncode
        if run.stop_state is None and returncode != 0:
            owner = self.store.owner(info.id)
            if owner is not None and owner.cancel_reason:  # cancelled from another manager
                run.stop_state, run.stop_reason = "cancelled", owner.cancel_reason
        if run.stop_state is not None:
            info.state, info.reason = run.stop_state, run.stop_reason  # type: ignore[assignment]
        elif returncode == 0:
            info.state, info.reason = "succeeded", None
            info.progress = 1.0
        elif returncode == EXIT_CANNOT_START and run.spawn_error:
            info.state, info.reason = "failed", f"could not start: {run.spawn_error}"
        else:
            info.state = "failed"
            info.reason = (
                f"killed by {signal.Signals(-returncode).name}" if returncode < 0
                else f"exit code {returncode}" + (f": {run.missing_module}" if run.missing_module else "")
            )
        self.store.update(info)
        del self._running[info.id]
        self._emit_job(run, "finished")
        run.finished.set()

    async def _watchdog(self, run: _Running) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            if run.timeout_s is not None and time.monotonic() - started > run.timeout_s:
                await self._stop(run, "failed", f"time limit of {run.timeout_s:g} s reached")
                return
            if run.memory_limit_bytes is not None:
                rss = processes.tree_rss(run.proc.pid)
                if rss > run.memory_limit_bytes:
                    await self._stop(
                        run, "failed",
                        f"memory limit reached: {rss / 2**20:.0f} MiB resident > {run.memory_limit_bytes / 2**20:.0f} MiB",
                    )
                    return

    async def _stop(self, run: _Running, state: str, reason: str) -> None:
        """SIGTERM to the group; the supervisor SIGKILLs what is left after the grace, we after a margin."""
        if run.stop_state is None:
            run.stop_state, run.stop_reason = state, reason
        pid = run.proc.pid
        processes.killpg(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(run.proc.wait()), run.grace_s + SUPERVISOR_MARGIN_S)
        except asyncio.TimeoutError:
            pass
        if run.proc.returncode is None:
            processes.kill_tree(pid, signal.SIGKILL)


# -- process helpers --------------------------------------------------------------------------


def _grace(launch: Launch) -> float:
    return launch.grace_s if launch.grace_s is not None else KILL_GRACE_S


async def _ended(pid: int, started: Optional[float], within: float) -> bool:
    """Wait (without blocking the loop) for a process that another manager runs to end."""
    deadline = time.monotonic() + within
    while processes.is_process(pid, started):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
