"""A job's output and events on their way to the listeners: read, cut into lines, batched, coalesced.

:class:`JobOutput` is a base class of :class:`deepdive.jobs.manager.JobManager` and holds no state of
its own: it uses the manager's ``store``, ``_listeners``, ``_running`` and ``_flusher``. Its methods
read a job's stdout and stderr in chunks (:data:`READ_CHUNK`) and its event pipe
(:mod:`deepdive.jobs.events`), and send output in batches of at most :data:`MAX_BATCH_LINES` every
:data:`FLUSH_INTERVAL_S`, progress at most every :data:`PROGRESS_INTERVAL_S`; past
:data:`MAX_PENDING_LINES` the oldest lines are dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Optional

import attrs

from deepdive.extras import module_not_found_in
from deepdive.jobs import events as job_events
from deepdive.protocol import JobEvent, JobProgress, OutputLine

if TYPE_CHECKING:
    from deepdive.jobs.manager import _Running

#: The manager's logger: one log for a job's whole lifecycle.
log = logging.getLogger("deepdive.jobs.manager")

FLUSH_INTERVAL_S = 0.05
PROGRESS_INTERVAL_S = 0.1
MAX_BATCH_LINES = 500
MAX_PENDING_LINES = 10_000
MAX_LINE_CHARS = 8_192
READ_CHUNK = 256 * 1024
#: How the supervisor's stderr starts when it could not start the job's command.
SPAWN_FAILURE = "deepdive: could not start "


class JobOutput:
    """The output half of ``JobManager``; see the module docstring."""

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
        if name == "stderr" and run.spawn_error is None and text.startswith(SPAWN_FAILURE):
            run.spawn_error = text[len(SPAWN_FAILURE):]
        if name == "stderr" and run.missing_module is None and "No module named" in text:
            run.missing_module = module_not_found_in(text)
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
