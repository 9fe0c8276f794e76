"""The job manager: every long task is a subprocess in its own process group.

A job's stdout and stderr are read line by line and handed to listeners in batches (at most every
:data:`FLUSH_INTERVAL_S`), so a job that prints a million lines cannot flood the editor; when a
listener falls behind, the oldest pending lines are dropped and the drop is counted in the next
batch. Structured events (progress, data, result) arrive on a separate pipe
(:mod:`deepdive.jobs.events`), so nothing the job prints can be mistaken for one. Cancel, a time
limit or a memory limit kill the whole process group: SIGTERM, a grace period, then SIGKILL.

All methods run on one asyncio event loop and never block it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections import deque
from typing import Any, Callable, Optional

import attrs
import psutil

from deepdive.jobs import events as job_events
from deepdive.jobs.kinds import KINDS, Context, JobRejected, build_launch
from deepdive.jobs.store import JobStore
from deepdive.protocol import JobEvent, JobInfo, JobKind, JobProgress, JobStartParams, OutputLine

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.05
PROGRESS_INTERVAL_S = 0.1
MAX_BATCH_LINES = 500
MAX_PENDING_LINES = 10_000
MAX_LINE_CHARS = 8_192
READ_CHUNK = 256 * 1024
KILL_GRACE_S = 3.0
WATCHDOG_INTERVAL_S = 0.5
ENV_JOB_ID = "DEEPDIVE_JOB_ID"

Listener = Callable[[JobEvent], None]


@attrs.define(eq=False)
class _Running:
    info: JobInfo
    proc: asyncio.subprocess.Process
    timeout_s: Optional[float]
    memory_limit_bytes: Optional[int]
    seq: int = 0
    out_seq: int = 0
    pending: deque = attrs.Factory(deque)
    dropped: int = 0
    progress_dirty: bool = False
    progress_sent_at: float = 0.0
    stop_reason: Optional[str] = None
    stop_state: Optional[str] = None
    finished: asyncio.Event = attrs.Factory(asyncio.Event)


class JobManager:
    """Starts, watches, cancels and records jobs.

    Args:
        store (JobStore): where job records and output go.
        python (str): the interpreter jobs run with.
        workspace (str | None): the workspace folder (scripts are resolved against it).
        trusted (bool): whether the workspace is trusted; kinds that run its code need it.
    """

    def __init__(self, store: JobStore, *, python: str = sys.executable, workspace: Optional[str] = None,
                 trusted: bool = True):
        self.store = store
        self.ctx = Context(python=python, workspace=workspace, trusted=trusted)
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
            argv=launch.argv, cwd=launch.cwd, created_at=time.time(),
        )
        read_fd, write_fd = os.pipe()
        env = {**os.environ, **self.job_env, **launch.env, job_events.ENV_FD: str(write_fd), ENV_JOB_ID: job_id,
               "PYTHONUNBUFFERED": "1"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv, cwd=launch.cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, pass_fds=(write_fd,), limit=2**20,
            )
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            info.state, info.reason, info.ended_at = "failed", f"could not start: {exc}", time.time()
            self.store.insert(info, daemon_pid=os.getpid())
            self._emit(JobEvent(job_id=job_id, type="finished", seq=0, job=info))
            return info
        os.close(write_fd)
        info.pid, info.started_at = proc.pid, time.time()
        try:
            proc_started: Optional[float] = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            proc_started = None
        self.store.insert(info, daemon_pid=os.getpid())
        self.store.update(info, proc_started=proc_started)
        run = _Running(info=info, proc=proc, timeout_s=timeout, memory_limit_bytes=memory_limit)
        self._running[job_id] = run
        self._emit_job(run, "started")
        self._spawn(self._supervise(run, read_fd))
        self._ensure_flusher()
        return info

    async def cancel(self, job_id: str, reason: str = "cancelled by the user") -> JobInfo:
        run = self._running.get(job_id)
        if run is None:
            job = self.store.get(job_id)
            if job is None:
                raise JobRejected(f"no job {job_id!r}")
            return job  # already over: cancelling is a no-op
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
        """Synchronous SIGKILL of every running job's group, for a daemon exiting in a hurry."""
        for run in list(self._running.values()):
            _killpg(run.proc.pid, signal.SIGKILL)
            run.info.state, run.info.reason, run.info.ended_at = "cancelled", reason, time.time()
            self.store.update(run.info)

    def reap_orphans(self) -> list[JobInfo]:
        """Mark jobs whose daemon died as lost, and kill whatever is left of their processes."""
        lost = []
        for job, daemon_pid, _ in self.store.running():
            if job.id in self._running or (daemon_pid and _is_live_daemon(daemon_pid)):
                continue
            killed = _kill_tagged_processes(job.id)
            job.state, job.ended_at = "lost", time.time()
            job.reason = "the daemon that ran it exited" + (f"; killed {killed} leftover process(es)" if killed else "")
            self.store.update(job)
            lost.append(job)
        return lost

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
            _killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait(pumps, timeout=5.0)
        finally:
            watchdog.cancel()
            for pump in pumps:
                pump.cancel()
        self._flush(run)
        info = run.info
        info.ended_at = time.time()
        info.exit_code = returncode
        if run.stop_state is not None:
            info.state, info.reason = run.stop_state, run.stop_reason  # type: ignore[assignment]
        elif returncode == 0:
            info.state, info.reason = "succeeded", None
            info.progress = 1.0
        else:
            info.state = "failed"
            info.reason = (
                f"killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exit code {returncode}"
            )
        self.store.update(info)
        del self._running[info.id]
        self._emit_job(run, "finished")
        run.finished.set()

    async def _pump(self, run: _Running, stream: Optional[asyncio.StreamReader], name: str) -> None:
        """Read a pipe in chunks and split lines here: far cheaper than a readline per line."""
        assert stream is not None
        partial = b""
        while True:
            chunk = await stream.read(READ_CHUNK)
            if not chunk:
                if partial:
                    self._add_line(run, name, partial)
                return
            pieces = (partial + chunk).split(b"\n")
            partial = pieces.pop()
            if len(partial) > MAX_LINE_CHARS * 4:  # a line that never ends: cut it
                pieces.append(partial)
                partial = b""
            for raw in pieces:
                self._add_line(run, name, raw)

    def _add_line(self, run: _Running, name: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + f"… [{len(text) - MAX_LINE_CHARS} more characters]"
        if len(run.pending) >= MAX_PENDING_LINES:
            run.pending.popleft()
            run.dropped += 1
        run.pending.append(OutputLine(stream=name, text=text, t=time.time()))  # type: ignore[arg-type]

    async def _pump_events(self, run: _Running, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 * job_events.MAX_EVENT_BYTES)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    log.warning("job %s sent an event over the size limit; ignored", run.info.id)
                    await reader.read(2 * job_events.MAX_EVENT_BYTES)
                    continue
                if not raw:
                    return
                self._handle_event(run, raw)
        finally:
            transport.close()

    def _handle_event(self, run: _Running, raw: bytes) -> None:
        try:
            event = json.loads(raw)
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("job %s sent a malformed event: %r", run.info.id, raw[:200])
            return
        info = run.info
        if kind == "progress":
            fraction = event.get("fraction")
            info.progress = float(fraction) if isinstance(fraction, (int, float)) else None
            info.message = str(event["message"])[:500] if event.get("message") is not None else info.message
            run.progress_dirty = True  # coalesced: sent by the flush loop at most every PROGRESS_INTERVAL_S
        elif kind in ("data", "result") and isinstance(event.get("data"), dict):
            if kind == "result":
                info.result = event["data"]
                payload = {"event": "result", **event["data"]}
            else:
                payload = event["data"]
            self._flush(run)
            run.seq += 1
            self._emit(JobEvent(job_id=info.id, type="data", seq=run.seq, data=payload))
        else:
            log.warning("job %s sent an unknown event type %r", info.id, kind)

    async def _watchdog(self, run: _Running) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(WATCHDOG_INTERVAL_S)
            if run.timeout_s is not None and time.monotonic() - started > run.timeout_s:
                await self._stop(run, "failed", f"time limit of {run.timeout_s:g} s reached")
                return
            if run.memory_limit_bytes is not None:
                rss = _tree_rss(run.proc.pid)
                if rss > run.memory_limit_bytes:
                    await self._stop(
                        run, "failed",
                        f"memory limit reached: {rss / 2**20:.0f} MiB resident > {run.memory_limit_bytes / 2**20:.0f} MiB",
                    )
                    return

    async def _stop(self, run: _Running, state: str, reason: str) -> None:
        if run.stop_state is None:
            run.stop_state, run.stop_reason = state, reason
        pid = run.proc.pid
        _killpg(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(run.proc.wait()), KILL_GRACE_S)
        except asyncio.TimeoutError:
            pass
        _killpg(pid, signal.SIGKILL)

    # -- output batching ----------------------------------------------------------------------

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._running:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            now = time.monotonic()
            for run in list(self._running.values()):
                self._flush(run, progress=now - run.progress_sent_at >= PROGRESS_INTERVAL_S, drain=False)

    def _flush(self, run: _Running, progress: bool = True, drain: bool = True) -> None:
        """Send pending output lines, then the latest progress (when asked and changed).

        The flush loop sends one batch per tick (``drain=False``), which caps a job's output at
        ``MAX_BATCH_LINES / FLUSH_INTERVAL_S`` lines a second; past that the pending queue
        overflows and the oldest lines are dropped and counted, never silently.
        """
        while run.pending or run.dropped:
            batch = [run.pending.popleft() for _ in range(min(MAX_BATCH_LINES, len(run.pending)))]
            self.store.append_output(run.info.id, run.out_seq, batch)
            run.out_seq += len(batch)
            run.seq += 1
            dropped, run.dropped = run.dropped, 0
            self._emit(JobEvent(job_id=run.info.id, type="output", seq=run.seq, lines=batch,
                                dropped_lines=dropped or None))
            if not drain:
                break
        if progress and run.progress_dirty:
            run.progress_dirty = False
            run.progress_sent_at = time.monotonic()
            run.seq += 1
            self._emit(JobEvent(job_id=run.info.id, type="progress", seq=run.seq,
                                progress=JobProgress(fraction=run.info.progress, message=run.info.message)))

    def _emit_job(self, run: _Running, kind: str) -> None:
        run.seq += 1
        self._emit(JobEvent(job_id=run.info.id, type=kind, seq=run.seq, job=attrs.evolve(run.info)))  # type: ignore[arg-type]

    def _emit(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("job event listener failed")


# -- process helpers --------------------------------------------------------------------------


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def _is_live_daemon(pid: int) -> bool:
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return "deepdive" in cmdline


def _kill_tagged_processes(job_id: str) -> int:
    """Kill processes whose environment says they belong to ``job_id`` (our own user's only)."""
    killed = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(ENV_JOB_ID) == job_id:
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed
