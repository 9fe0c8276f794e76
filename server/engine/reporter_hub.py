"""The telemetry reporter's hub sink: batching into ``/ingest`` messages, sending, reconnecting with backoff.

:class:`HubSender` is the half of :class:`deepdive.engine.reporter.Reporter` that talks to the hub,
on the reporter's background thread: it builds messages from the buffers that
:class:`deepdive.engine.reporter_thread.ReporterThread` fills (oldest first, within the size
limits), sends them, resends an unsent one after a reconnect with its ``seq``, gives up on a message
that keeps failing, and logs the hub's error messages. The message format is the contract in
:mod:`deepdive.engine.reporter`. The state it works on is the reporter's, set in ``Reporter.__init__``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import random
from typing import Any, Optional

__all__ = ["CLOSE_TIMEOUT", "HEAD_ROOM", "SCHEMA_VERSION", "HubSender"]

log = logging.getLogger("deepdive.engine.reporter")  # one logger for the whole reporter: the name users filter on

SCHEMA_VERSION = 1
BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0
OPEN_TIMEOUT = 5.0
CLOSE_TIMEOUT = 1.0
MAX_SEND_FAILURES = 3  # a message whose send fails this many times in a row is dropped and counted

# Bytes of a hub message that are not samples or events: its head (run_id is at most 512 bytes of
# JSON, the numbers a few dozen) and brackets.
HEAD_ROOM = 1024

_CONNECT_HAS_PROXY: Optional[bool] = None


class HubSender:
    """The hub's side of :class:`deepdive.engine.reporter.Reporter`: messages, sending, reconnecting."""

    def _hub_has_work(self) -> bool:
        return bool(self._pending or self._hub_samples or self._hub_events
                    or self._hub_dropped or self._hub_dropped_events)

    def _take(self, buffer: collections.deque, what: str, budget: int, most: int) -> tuple[list[str], int, int]:
        """Pop encoded entries from ``buffer`` while they fit ``budget`` bytes and ``most`` entries.

        Returns:
            tuple[list[str], int, int]: the texts, the budget left, and entries dropped as unsendable.
        """
        out: list[str] = []
        bad = 0
        while buffer and len(out) < most:
            item = buffer[0]
            if not isinstance(item, str):
                text = self._encode_one(item, what)
                if text is None:
                    buffer.popleft()
                    bad += 1
                    continue
                buffer[0] = item = text
            if len(item) + 1 > budget:
                break
            out.append(buffer.popleft())
            budget -= len(item) + 1
        return out, budget, bad

    def _build_message(self) -> Optional[tuple[str, int, int]]:
        """The next hub message from the buffers (oldest first), or None when there is nothing to say."""
        if not self._hub_has_work():
            return None
        budget = self._max_bytes - HEAD_ROOM
        events, budget, bad_events = self._take(self._hub_events, "event", budget, self._event_queue_size)
        samples, budget, bad_samples = self._take(self._hub_samples, "sample", budget, self._max_samples)
        self._sink_dropped += bad_samples
        self._sink_dropped_events += bad_events
        dropped, self._hub_dropped = self._hub_dropped + bad_samples, 0
        dropped_events, self._hub_dropped_events = self._hub_dropped_events + bad_events, 0
        if not (events or samples or dropped or dropped_events):
            return None
        text = (f'{{"type":"samples","v":{SCHEMA_VERSION},"run":{json.dumps(self.run_id)},"rank":{self.rank},'
                f'"seq":{self._seq},"dropped":{dropped},"dropped_events":{dropped_events},'
                f'"events":[{",".join(events)}],"samples":[{",".join(samples)}]}}')
        self._seq += 1
        return text, len(samples), len(events)

    def _connect(self):
        global _CONNECT_HAS_PROXY
        from websockets.asyncio.client import connect

        if _CONNECT_HAS_PROXY is None:
            _CONNECT_HAS_PROXY = "proxy" in inspect.signature(connect.__init__).parameters
        options: dict[str, Any] = dict(compression=None, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                                       max_size=64 * 1024, max_queue=4)
        if _CONNECT_HAS_PROXY:
            options["proxy"] = None  # loopback: never through an HTTP proxy from the environment
        return connect(self._hub_url, **options)

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(self._token, "…") if self._token else text

    async def _hub_loop(self) -> None:
        from websockets.exceptions import WebSocketException

        delay = BACKOFF_MIN
        while True:
            if self._final_drained and not self._hub_has_work():
                return
            sent_before = self.messages_sent
            try:
                ws = await self._connect()
                self.connects += 1
                reader = asyncio.ensure_future(self._hub_read(ws))
                try:
                    await self._hub_send_all(ws)
                    # Everything sent: a polite close, but bounded (a hub that stopped reading
                    # would keep websockets' close waiting for the socket to drain forever).
                    try:
                        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
                    except asyncio.TimeoutError:
                        ws.transport.abort()
                except BaseException:
                    ws.transport.abort()  # cancelled by close() or failed: never wait on the socket
                    raise
                finally:
                    reader.cancel()
                return
            except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
                if self.messages_sent > sent_before:  # the connection worked for a while
                    delay = BACKOFF_MIN
                if not self._hub_down:  # once per outage
                    self._hub_down = True
                    log.warning("%s", self._outage_message(exc))
            if self._stop_requested:
                return  # a failed attempt after close(): what is left is counted as dropped
            try:
                await asyncio.wait_for(self._stop_event.wait(), delay * random.uniform(0.8, 1.2))
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, BACKOFF_MAX)

    def _outage_message(self, exc: BaseException) -> str:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return (f"telemetry hub {self.hub} refused this process's token (HTTP {status}): DEEPDIVE_HUB must be "
                    "the URL the running Deepdive daemon gave, and its token changes at each daemon start; "
                    "retrying with backoff")
        return (f"telemetry hub {self.hub} unreachable ({self._describe(exc)}); retrying with backoff while the "
                f"newest {self._queue_size} samples wait and older ones are dropped and counted")

    async def _hub_send_all(self, ws) -> None:
        while True:
            if self._pending is None:
                self._pending = self._build_message()
            if self._pending is None:
                if self._final_drained:
                    return
                self._hub_ready.clear()
                await self._hub_ready.wait()
                continue
            try:
                await ws.send(self._pending[0])
            except Exception as exc:
                self._pending_failures += 1
                if self._pending_failures >= MAX_SEND_FAILURES:
                    # The hub keeps closing the connection on this very message (too big for
                    # it, or malformed in its eyes): give up on it rather than on everything.
                    _, samples, events = self._pending
                    self._pending, self._pending_failures = None, 0
                    self._sink_dropped += samples
                    self._sink_dropped_events += events
                    self._hub_dropped += samples
                    self._hub_dropped_events += events
                    self._warn_once("send-failures", "telemetry hub %s: dropped a message of %d samples that failed "
                                    "to send %d times in a row (%s); later ones are dropped alike, counted",
                                    self.hub, samples, MAX_SEND_FAILURES, self._describe(exc))
                raise
            self._pending, self._pending_failures = None, 0
            self.messages_sent += 1
            if self._hub_down:
                self._hub_down = False
                log.warning("telemetry hub %s: reconnected", self.hub)

    async def _hub_read(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("type") == "error":
                    log.warning("telemetry hub %s: %s", self.hub, message.get("message"))
        except ConnectionClosed:
            pass
