"""The hub's ``/stream`` subscribers: each one's filters, bounded queue, counters and sender.

Every subscriber has its own queue and sender task (:meth:`Subscriber.send_loop`), so a dashboard
that stops reading loses its own oldest messages (:func:`fan_out` drops them, counted, and the next
message it gets says how many) and slows nobody else. A subscriber first gets its :func:`snapshot` of
the hub's history, then live messages; the hub (:mod:`deepdive.telemetry.hub`) registers subscribers
and hands every live message to :func:`fan_out`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Iterable, Optional

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from deepdive.protocol import StreamSnapshot
from deepdive.protocol.hub import message_type
from deepdive.telemetry.outgoing import Outgoing, encode

log = logging.getLogger("deepdive.telemetry.hub")

SNAPSHOT = message_type(StreamSnapshot)


class Subscriber:
    """One /stream connection: its filters, its bounded queue and its counters."""

    __slots__ = ("id", "ws", "runs", "kinds", "queue", "queued", "queued_bytes", "dropped", "unsent_dropped", "wake",
                 "task", "sent")

    def __init__(self, ident: int, ws: ServerConnection, runs: Optional[frozenset], kinds: Optional[frozenset]):
        self.id = ident
        self.ws = ws
        self.runs = runs
        self.kinds = kinds
        self.queue: collections.deque = collections.deque()
        self.queued = 0  # entries in the queue
        self.queued_bytes = 0  # their Outgoing.nbytes
        self.dropped = 0  # entries dropped so far
        self.unsent_dropped = 0  # dropped since the last message sent
        self.sent = 0
        self.wake = asyncio.Event()
        self.task: Optional[asyncio.Task] = None

    def wants(self, out: Outgoing) -> Optional[tuple[bool, bool]]:
        """Which parts of ``out`` this subscriber takes (samples, events), or None for nothing."""
        if self.runs is not None and out.run is not None and out.run not in self.runs:
            return None
        if out.kind == "samples":
            if self.kinds is None:
                return True, True
            samples, events = "samples" in self.kinds, "events" in self.kinds
            if not (samples and out.samples) and not (events and out.events):
                return None
            return samples, events
        if self.kinds is None or "machine" in self.kinds or out.kind in self.kinds:
            return True, True
        return None

    async def send_loop(self) -> None:
        """Send the queue's messages, each with the count dropped since the previous one, until closed."""
        queue = self.queue
        try:
            while True:
                if not queue:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                out, parts = queue.popleft()
                self.queued -= out.weight
                self.queued_bytes -= live_bytes(out)
                dropped, self.unsent_dropped = self.unsent_dropped, 0
                await self.ws.send(f'{out.body(*parts)},"dropped":{dropped}}}')
                self.sent += 1
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("telemetry hub: sending to subscriber %d failed; closing it", self.id)
            self.ws.transport.abort()


def fan_out(subscribers: Iterable[Subscriber], out: Outgoing, cap: int, cap_bytes: int) -> int:
    """Queue ``out`` for every subscriber that wants it, dropping their oldest messages over the bounds.

    Args:
        subscribers (Iterable[Subscriber]): the connected subscribers.
        out (Outgoing): the message.
        cap (int): entries a subscriber's queue may hold.
        cap_bytes (int): bytes of live messages it may hold.

    Returns:
        int: the entries dropped, over all subscribers.
    """
    dropped_total = 0
    for sub in subscribers:
        parts = sub.wants(out)
        if parts is None:
            continue
        queue = sub.queue
        queue.append((out, parts))
        sub.queued += out.weight
        sub.queued_bytes += out.nbytes
        while (sub.queued > cap or sub.queued_bytes > cap_bytes) and len(queue) > 1:
            old, _ = queue.popleft()
            sub.queued -= old.weight
            sub.queued_bytes -= live_bytes(old)
            sub.dropped += old.weight
            sub.unsent_dropped += old.weight
            dropped_total += old.weight
        sub.wake.set()
    return dropped_total


def snapshot(sub: Subscriber, history: Iterable[Outgoing], now: float) -> Outgoing:
    """The snapshot for ``sub``: its share of ``history``, oldest first, from encoded parts."""
    chosen: list[tuple[float, Outgoing, tuple[bool, bool]]] = []
    for out in history:
        parts = sub.wants(out)
        if parts is not None:
            chosen.append((out.received, out, parts))
    chosen.sort(key=lambda item: item[0])
    text = (encode({"type": SNAPSHOT, "t": now})[:-1] + ',"messages":['
            + ",".join(out.body(*parts) + "}" for _, out, parts in chosen) + "]")
    return Outgoing.snapshot(text, now)


def live_bytes(out: Outgoing) -> int:
    """What ``out`` weighs against ``subscriber_queue_bytes``: its bytes, but nothing for the snapshot,
    which ``history_bytes`` bounds (so a full snapshot is never dropped for its own size)."""
    return 0 if out.kind == "snapshot" else out.nbytes


def split_filter(values: Optional[list[str]]) -> Optional[frozenset]:
    """The items of a ``run=``/``kinds=`` query parameter (repeated or comma-separated), None for all."""
    if not values:
        return None
    items = frozenset(item.strip() for value in values for item in value.split(",") if item.strip())
    return items or None
