"""The telemetry reporter's background thread: its asyncio loop, and the drain of the queues into the sinks.

:class:`ReporterThread` is the half of :class:`deepdive.engine.reporter.Reporter` that runs on the
daemon thread: every ``interval`` it takes what the training thread queued, encodes it, appends the
JSONL lines to the file and fills the hub's buffers, which :class:`deepdive.engine.reporter_hub.HubSender`
sends. The state it works on is the reporter's, set in ``Reporter.__init__``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import Any, Optional

from deepdive.engine.reporter_encoding import encode

__all__ = ["ReporterThread"]

log = logging.getLogger("deepdive.engine.reporter")  # one logger for the whole reporter: the name users filter on


class ReporterThread:
    """The background thread's side of :class:`deepdive.engine.reporter.Reporter`: the loop, the drain, the file."""

    def _thread_main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug here must not take training down, and must not pass unseen
            log.exception("telemetry reporter stopped: no more telemetry from this process")
            self.enabled = False
        finally:
            try:
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        tasks = [asyncio.ensure_future(self._drain_loop())]
        if self._hub_url:
            tasks.append(asyncio.ensure_future(self._hub_loop()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._drain_once()
            self._close_file()
            if self._hub_url:
                unsent_samples = len(self._hub_samples) + (self._pending[1] if self._pending else 0)
                unsent_events = len(self._hub_events) + (self._pending[2] if self._pending else 0)
                self._sink_dropped += unsent_samples
                self._sink_dropped_events += unsent_events
                self._hub_samples.clear()
                self._hub_events.clear()
                self._pending = None
                if unsent_samples or unsent_events:
                    log.warning("telemetry hub %s: %d samples and %d events unsent at close",
                                self.hub, unsent_samples, unsent_events)

    async def _drain_loop(self) -> None:
        while not self._stop_requested:
            try:
                await asyncio.wait_for(self._stop_event.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._drain_once()
        self._drain_once()
        self._final_drained = True
        self._hub_ready.set()

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _encode_one(self, entry: Any, what: str) -> Optional[str]:
        """``entry`` (an event dict or a sample's ``(t, dict)``) as JSON, or None (with a one-time
        warning) when it cannot be sent."""
        if isinstance(entry, tuple):
            t, sample = entry
            entry = {"t": t, "run": self.run_id, "rank": self.rank}
            entry.update(sample)
        if "type" in entry:
            entry = {key: value for key, value in entry.items() if key != "type"}
            self._warn_once(f"type-{what}", "telemetry: the key 'type' is reserved; removed it from %ss", what)
        try:
            text = encode(entry)
        except (TypeError, ValueError, RecursionError) as exc:
            self._warn_once(f"bad-{what}", "telemetry: dropped a %s that cannot be made JSON (%s): record "
                            "numbers, strings, lists and dicts with string keys", what, exc)
            return None
        if self._hub_url and len(text) > self._item_limit:
            self._warn_once(f"big-{what}", "telemetry: dropped a %s of %d bytes, over the hub's %d-byte "
                            "message limit: record scalars, not large arrays", what, len(text), self._max_bytes)
            return None
        return text

    def _encode_all(self, entries: collections.deque, what: str) -> tuple[list[str], int]:
        out = []
        for entry in entries:
            text = self._encode_one(entry, what)
            if text is not None:
                out.append(text)
        return out, len(entries) - len(out)

    def _drain_once(self) -> None:
        """Move everything queued to the sinks: write the JSONL lines, fill the hub's buffers.

        With a JSONL file, entries are encoded here once for both sinks. With the hub alone they go
        to its buffers as they are and are encoded when a message is built, so a hub that lags costs no
        encoding of the samples that its full buffer then drops.
        """
        fresh_samples = collections.deque(maxlen=self._queue_size)
        fresh_events = collections.deque(maxlen=self._event_queue_size)
        with self._lock:
            samples, self._samples = self._samples, fresh_samples
            events, self._events = self._events, fresh_events
            queue_dropped, queue_dropped_events = self._queue_dropped, self._queue_dropped_events
        new_dropped = queue_dropped - self._seen_dropped
        new_dropped_events = queue_dropped_events - self._seen_dropped_events
        self._seen_dropped, self._seen_dropped_events = queue_dropped, queue_dropped_events
        if not (samples or events or new_dropped or new_dropped_events):
            return

        if self._fd is not None:
            samples, bad_samples = self._encode_all(samples, "sample")
            events, bad_events = self._encode_all(events, "event")
            self._sink_dropped += bad_samples
            self._sink_dropped_events += bad_events
            new_dropped += bad_samples
            new_dropped_events += bad_events
            lines = []
            if new_dropped or new_dropped_events:
                lines.append(encode({"type": "dropped", "t": time.time(), "run": self.run_id, "rank": self.rank,
                                     "samples": new_dropped, "events": new_dropped_events}))
            lines.extend('{"type":"event",' + text[1:] for text in events)
            lines.extend('{"type":"sample",' + text[1:] for text in samples)
            self._write_lines(lines)

        if self._hub_url:
            overflow = max(0, len(self._hub_samples) + len(samples) - self._queue_size)
            overflow_events = max(0, len(self._hub_events) + len(events) - self._event_queue_size)
            self._hub_samples.extend(samples)  # bounded deques: the oldest fall out
            self._hub_events.extend(events)
            self._sink_dropped += overflow
            self._sink_dropped_events += overflow_events
            self._hub_dropped += new_dropped + overflow
            self._hub_dropped_events += new_dropped_events + overflow_events
            self._hub_ready.set()

    def _write_lines(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:  # one write of whole lines; the loop only matters after a partial write
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            log.warning("telemetry: writing %s failed (%s); no more lines go to this file: free space or "
                        "choose another --metrics-out", self.metrics_out, exc)
            self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass
