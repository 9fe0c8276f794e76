"""Runs that report to the daemon's hub from a process the daemon did not start.

The extension gives every integrated terminal the hub's ingest URL (``DEEPDIVE_HUB``, with the
token), so ``deepdive train`` or ``python train.py`` typed there streams to the editor's dashboard.
This module turns those runs into entries of the Jobs view: the engine's rank-0 ``setup`` event names
the script, its pid and host; its ``summary`` event ends the run; a run that stops reporting without
a summary is marked ``lost`` after :data:`SILENT_S`. They are listed with kind ``terminal``; the
daemon cannot cancel them (the terminal that started one can: Ctrl-C), and says so.

Runs the daemon started itself (its jobs) are left out: their job is already listed.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
from typing import Any, Callable, Optional

import attrs

from deepdive.protocol import JobEvent, JobInfo

__all__ = ["TerminalRuns", "KIND", "SILENT_S", "NOT_CANCELLABLE"]

KIND = "terminal"
#: A terminal run with no message for this long and no summary is marked lost.
SILENT_S = 120.0
#: At most this many terminal runs are remembered (the oldest finished ones go first).
MAX_RUNS = 200
#: How many runs' "is it a daemon job?" answers are remembered (the oldest go first).
DECIDED_RUNS = 4096
NOT_CANCELLABLE = ("a run started in a terminal is not the daemon's to stop: press Ctrl-C in its terminal "
                   "(the engine checkpoints on SIGINT when it has a checkpoint folder)")


class TerminalRuns:
    """The hub's runs that are not daemon jobs, as :class:`JobInfo` entries of kind ``terminal``.

    Args:
        is_daemon_job (callable): True for a run id that is one of the daemon's own jobs.
        on_event (callable): gets a ``started`` or ``finished`` :class:`JobEvent` as a terminal run
            appears or ends (the daemon sends it to the editor as ``deepdive/jobs/event``).
        clock (callable): the time (tests pass their own).
    """

    def __init__(self, is_daemon_job: Callable[[str], bool], on_event: Callable[[JobEvent], None], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._is_daemon_job = is_daemon_job
        self._on_event = on_event
        self._clock = clock
        self._runs: dict[str, JobInfo] = {}
        self._seen: dict[str, float] = {}
        self._seq: dict[str, int] = {}
        self._decided: collections.OrderedDict[str, bool] = collections.OrderedDict()
        self._lock = threading.Lock()

    def observe(self, message: dict[str, Any]) -> None:
        """One ingest batch from a reporter (the hub's ``on_batch``)."""
        run = str(message.get("run") or "")
        if not run or self._daemon_job(run):
            return
        now = self._clock()
        events: list[JobEvent] = []
        with self._lock:
            if run in self._runs:
                self._seen[run] = now
            if int(message.get("rank") or 0) != 0:
                return
            for event in message.get("events") or ():
                if not isinstance(event, dict):
                    continue
                if event.get("kind") == "setup" and run not in self._runs:
                    events.append(self._start(run, event, now))
                elif event.get("kind") == "summary" and run in self._runs and self._runs[run].state == "running":
                    events.append(self._end(run, "succeeded", None, float(event.get("t") or now)))
        for e in events:
            self._on_event(e)

    def _daemon_job(self, run: str) -> bool:
        """Whether ``run`` is one of the daemon's jobs, asked once per run (the answer is a store
        lookup, and batches arrive several times a second per process)."""
        known = self._decided.get(run)
        if known is None:
            known = self._decided[run] = self._is_daemon_job(run)
            while len(self._decided) > DECIDED_RUNS:
                self._decided.popitem(last=False)
        return known

    def expire(self) -> None:
        """Marks runs lost that stopped reporting without a summary (called about once a second)."""
        now = self._clock()
        with self._lock:
            silent = [run for run, job in self._runs.items()
                      if job.state == "running" and now - self._seen.get(run, now) > SILENT_S]
            events = [self._end(run, "lost", f"stopped reporting for {SILENT_S:.0f} s without a summary "
                                             "(killed, or its terminal closed)", now) for run in silent]
        for e in events:
            self._on_event(e)

    def jobs(self) -> list[JobInfo]:
        """The terminal runs, newest first."""
        with self._lock:
            return sorted(self._runs.values(), key=lambda j: j.created_at, reverse=True)

    def get(self, run: str) -> Optional[JobInfo]:
        with self._lock:
            return self._runs.get(run)

    # -- inside the lock ----------------------------------------------------------------------

    def _start(self, run: str, event: dict[str, Any], now: float) -> JobEvent:
        script = str(event.get("script") or "")
        name = os.path.basename(script) or "a script"
        host = event.get("host")
        where = f" on {host}" if host and host != _hostname() else ""
        pid = event.get("pid")
        job = JobInfo(id=run, kind=KIND, title=f"train {name} (terminal{where})", state="running",
                      argv=[str(a) for a in event.get("argv") or ([script] if script else [])],
                      cwd=str(event.get("cwd") or ""), created_at=float(event.get("t") or now),
                      pid=int(pid) if isinstance(pid, int) else None, started_at=float(event.get("t") or now),
                      message=f"{int(event.get('world_size') or 1)} process(es), {event.get('precision') or '?'}")
        self._runs[run] = job
        self._seen[run] = now
        self._forget_oldest()
        return self._event(run, "started", job)

    def _end(self, run: str, state: str, reason: Optional[str], t: float) -> JobEvent:
        job = self._runs[run]
        job.state = state  # type: ignore[assignment]
        job.ended_at = t
        job.reason = reason
        return self._event(run, "finished", job)

    def _event(self, run: str, kind: str, job: JobInfo) -> JobEvent:
        self._seq[run] = self._seq.get(run, -1) + 1
        return JobEvent(job_id=run, type=kind, seq=self._seq[run], job=attrs.evolve(job))  # type: ignore[arg-type]

    def _forget_oldest(self) -> None:
        if len(self._runs) <= MAX_RUNS:
            return
        done = sorted((j.created_at, r) for r, j in self._runs.items() if j.state != "running")
        for _, run in done[: len(self._runs) - MAX_RUNS]:
            self._runs.pop(run, None)
            self._seen.pop(run, None)
            self._seq.pop(run, None)


def _hostname() -> str:
    return socket.gethostname()
