"""One message on its way from the hub to subscribers, held as JSON text and sized in bytes.

An :class:`Outgoing` is made once per message and shared by the history (the snapshot a new
subscriber gets) and by every subscriber's queue. It holds text only, never the parsed form: a
relayed producer message keeps the producer's own JSON of its ``samples`` and ``events`` when the
hub changed nothing in them, so nothing is encoded twice, and :attr:`Outgoing.nbytes` is the memory
those strings really take (``sys.getsizeof``), which is what the hub's byte bounds count.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Optional

_SEPARATORS = (",", ":")
_OBJECT_BYTES = 200  # the Outgoing itself, its slots and the ints and floats they point to


def encode(obj: Any) -> str:
    """Compact strict JSON; objects JSON cannot hold become their ``str``."""
    return json.dumps(obj, separators=_SEPARATORS, allow_nan=False, default=str)


def encode_lenient(obj: Any) -> str:
    """JSON of ``obj``; non-finite floats become ``"NaN"``/``"Infinity"``/``"-Infinity"``."""
    try:
        return encode(obj)
    except ValueError:
        return encode(_finite(obj))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


class Outgoing:
    """One outgoing message: its text, whom it concerns and what it weighs.

    Attributes:
        run (str | None): the run it belongs to (None: every run filter passes it).
        kind (str): ``"samples"`` for relayed producer messages, ``"snapshot"``, else the published type.
        weight (int): entries (samples + events, at least 1): what subscriber queues count.
        received (float): when the hub got or made it.
        samples (int), events (int): how many of each a ``samples`` message holds.
        nbytes (int): the memory its strings take, plus a fixed overhead.
    """

    __slots__ = ("run", "kind", "weight", "received", "samples", "events", "nbytes", "_head", "_samples", "_events")

    def __init__(self, run: Optional[str], kind: str, weight: int, received: float, head: str,
                 samples: str = "[]", events: str = "[]", counts: tuple[int, int] = (0, 0)) -> None:
        self.run = run
        self.kind = kind
        self.weight = weight
        self.received = received
        self.samples, self.events = counts
        self._head, self._samples, self._events = head, samples, events
        self.nbytes = _OBJECT_BYTES + sys.getsizeof(head) + sys.getsizeof(samples) + sys.getsizeof(events)

    @classmethod
    def relayed(cls, message: dict, received: float, raw: dict[str, str]) -> "Outgoing":
        """A producer's ``samples`` message (see the hub); ``raw`` holds the producer's own JSON of
        ``samples`` and ``events`` where the hub changed nothing in them."""
        samples, events = message["samples"], message["events"]
        head = encode_lenient({k: v for k, v in message.items() if k not in ("samples", "events")})[:-1]
        return cls(message["run"], "samples", max(1, len(samples) + len(events)), received, head,
                   raw.get("samples") or encode_lenient(samples), raw.get("events") or encode_lenient(events),
                   (len(samples), len(events)))

    @classmethod
    def published(cls, message: dict, run: Optional[str], received: float) -> "Outgoing":
        """A message given to ``Hub.publish``."""
        return cls(run, str(message["type"]), 1, received, encode_lenient(message)[:-1])

    @classmethod
    def snapshot(cls, text: str, received: float) -> "Outgoing":
        """A snapshot, already encoded without its closing brace."""
        return cls(None, "snapshot", 1, received, text)

    def body(self, samples: bool, events: bool) -> str:
        """The JSON text without its closing brace, ready for ``,"dropped":N}``.

        Args:
            samples (bool): include the samples (else ``[]``); only ``samples`` messages have parts.
            events (bool): include the events (else ``[]``).
        """
        if self.kind != "samples":
            return self._head
        return (self._head + ',"samples":' + (self._samples if samples else "[]")
                + ',"events":' + (self._events if events else "[]"))
