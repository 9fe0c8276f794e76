"""Running a job from the command line: the CLI's own job manager, a progress bar, the job's output.

``deepdive train`` and ``deepdive doctor --deep`` run their work as jobs of a job manager in this
process (the same one the daemon uses). Ctrl-C cancels the job. When the reader of our output goes
away (``deepdive train … 2>&1 | head -5``), the job is cancelled and the command ends with
:class:`OutputClosed`; ``main`` turns that into exit status 141, what a shell reports for a writer
that SIGPIPE ended. (rich's own answer to a broken pipe, ``SystemExit`` raised from whatever
printed, escaped the event loop from inside a job-event callback; ``asyncio.run`` then cancelled
every task at once, the job's supervisor among them, and waited forever for the job it had
cancelled to be recorded as over.)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from rich.console import Console

#: How long a cancelled job may take to be recorded as over before its tree is killed outright.
CANCEL_WAIT_S = 15.0


class OutputClosed(BrokenPipeError):
    """The reader of our stdout or stderr has gone (a pipe into ``head``, a closed terminal)."""


def silence_closed_output() -> None:
    """Point stdout and stderr at /dev/null, so that nothing later (a last message, the interpreter's
    flush at exit) fails on the closed pipe again; the Python documentation's recipe for SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
    finally:
        os.close(devnull)


class PipeConsole(Console):
    """A rich Console that, when its pipe's reader has gone, goes quiet and says so.

    Args:
        on_closed: called (from whichever thread printed) instead of raising; without it,
            :class:`OutputClosed` is raised where the print was.
    """

    def __init__(self, *args: Any, on_closed: Optional[Callable[[], None]] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_closed = on_closed

    def on_broken_pipe(self) -> None:
        self.quiet = True
        silence_closed_output()
        if self._on_closed is None:
            raise OutputClosed("the output pipe was closed")
        self._on_closed()


async def run_job(params: Any, label: str, quiet: bool, *, workspace: Optional[str] = None,
                  metrics: Optional[str] = None, echo: Optional[Callable[[Any], list[str]]] = None,
                  job_env: Optional[dict[str, str]] = None) -> Any:
    """Run a job in this process's own job manager, with a progress bar; Ctrl-C cancels it.

    The bar follows the job's progress events, or, for training (``metrics``), the steps the
    engine writes to its metrics file. Every output line goes to ``echo`` (which may keep it, e.g.
    in a log file, or hold it back), and the lines it returns are printed (without ``echo``: each
    line as it comes), unless ``quiet``.

    Raises:
        OutputClosed: our output's reader went away; the job was cancelled.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.jobs.manager import JobManager
    from deepdive.jobs.store import JobStore, cli_state_dir, state_dir
    from deepdive.protocol import JobEvent
    from deepdive.telemetry import discovery

    directory = cli_state_dir()  # a workspace the editor uses: its store and its daemon's hub
    store = JobStore(directory)
    manager = JobManager(store, workspace=workspace, confine_to_workspace=False)  # the user typed the path
    hub = (os.environ.get("DEEPDIVE_HUB") or discovery.ingest_url(directory)
           or discovery.ingest_url(state_dir(None)))  # a `deepdive dashboard` started outside any workspace
    if hub:
        manager.job_env["DEEPDIVE_HUB"] = hub
    manager.job_env.update(job_env or {})
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()
    console = PipeConsole(stderr=True, on_closed=lambda: _set_soon(loop, closed))
    progress = Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True,
        disable=quiet or not console.is_terminal,  # off a terminal a bar shows nothing but leaves a blank line
    )
    task = progress.add_task("starting", total=1.0)

    def on_event(event: JobEvent) -> None:
        if event.type == "progress" and event.progress is not None:
            progress.update(task, completed=event.progress.fraction or 0.0, description=event.progress.message or "")
        elif event.type == "output" and event.lines:
            for line in event.lines:
                for text in echo(line) if echo is not None else [line.text]:
                    if not quiet:
                        progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    manager.subscribe(on_event)
    try:
        with progress:
            job = await manager.start(params)
            follower = asyncio.ensure_future(follow_metrics(Path(metrics), progress, task)) if metrics else None
            try:
                job = await _wait_unless_closed(manager, job.id, closed)
            except asyncio.CancelledError:
                job = await _cancel(manager, job.id, "interrupted (Ctrl-C)")
            finally:
                if follower is not None:
                    follower.cancel()
    finally:
        store.close()
    if closed.is_set():
        raise OutputClosed(f"the output pipe was closed: job {job.id} {job.state}")
    return job


def _set_soon(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    """Set ``event`` from any thread (rich's refresh thread prints too)."""
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # the loop is closed: the job is over already
        pass


async def _wait_unless_closed(manager: Any, job_id: str, closed: asyncio.Event) -> Any:
    """The job once it is over, or, if our output closes first, once it has been cancelled."""
    waiter = asyncio.ensure_future(manager.wait(job_id))
    closer = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closer.cancel()
        if not waiter.done():
            waiter.cancel()
    if waiter.done() and not waiter.cancelled():
        return waiter.result()
    return await _cancel(manager, job_id, "the command's output was closed (a pipe whose reader exited)")


async def _cancel(manager: Any, job_id: str, reason: str) -> Any:
    """Cancel the job and wait until it is recorded as over; if that never comes, kill it outright."""
    try:
        return await asyncio.wait_for(manager.cancel(job_id, reason), CANCEL_WAIT_S)
    except asyncio.TimeoutError:
        manager.kill_all_now(reason)
        return manager.get(job_id)


async def follow_metrics(path: Any, progress: Any, task: Any) -> None:
    """Tail the engine's metrics file and move the bar with its step samples."""
    offset = 0
    while True:
        await asyncio.sleep(0.25)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            continue
        complete = chunk[: chunk.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.splitlines():
            try:
                sample = json.loads(line)
            except ValueError:
                continue
            # rank 0's, as the status bar and the dashboard show (every rank may write to this one file)
            if sample.get("type") == "sample" and sample.get("total_steps") and not sample.get("rank"):
                done = (sample["step"] + 1) / sample["total_steps"]
                loss = sample.get("loss")
                text = f"step {sample['step'] + 1}/{sample['total_steps']}"
                text += f"  loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
                text += _speed(sample)
                progress.update(task, completed=min(1.0, done), description=text)


def _speed(sample: dict[str, Any]) -> str:
    """``  11,748 samples/s (last 10 s)``: the engine's figure as the sample carries it (the status bar and
    the dashboard show the same one; deepdive.throughput), or nothing."""
    from deepdive.throughput import window_text

    speed, window = sample.get("samples_per_s"), sample.get("samples_per_s_window_s")
    if not isinstance(speed, (int, float)) or isinstance(speed, bool):
        return ""
    over = f" (last {window_text(window)})" if isinstance(window, (int, float)) and window > 0 else ""
    return f"  {speed:,.0f} samples/s{over}"
