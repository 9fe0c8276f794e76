"""The hub's recent messages, for the snapshot a new subscriber gets: bounded by age, entries and bytes.

Messages are kept per key: per run for producers' ``samples`` messages, per ``type`` (or per run,
when they carry one) for published ones. Four bounds apply, and the oldest messages go first:

* age: nothing older than ``seconds``;
* entries: at most ``entries`` samples + events per key;
* bytes per key: at most ``key_bytes`` of message text per key;
* bytes in total: at most ``total_bytes`` over all keys; over it, the oldest message of any key goes.

Bytes are :attr:`deepdive.telemetry.outgoing.Outgoing.nbytes`: the memory of the JSON text the hub
holds for a message (it holds no parsed form). A message larger than a bound on its own is not kept
(it was still relayed live and handed to the store). Messages evicted by the entry and byte bounds
are counted (:attr:`History.evicted`); those that merely aged out are not: the snapshot is a window
of ``seconds``, and everything in it also reached live subscribers and the store.
"""

from __future__ import annotations

import collections
from typing import Iterator

from deepdive.telemetry.outgoing import Outgoing


class _Key:
    __slots__ = ("queue", "entries", "nbytes")

    def __init__(self) -> None:
        self.queue: collections.deque[Outgoing] = collections.deque()
        self.entries = 0
        self.nbytes = 0


class History:
    """Recent messages per key, oldest first, under the four bounds of the module docstring.

    Args:
        seconds (float): the longest age kept.
        entries (int): the most entries (samples + events; 1 per published message) per key.
        key_bytes (int): the most bytes per key.
        total_bytes (int): the most bytes over all keys.

    Attributes:
        nbytes (int): the bytes held now.
        evicted (dict[str, int]): ``messages``, ``entries`` and ``bytes`` evicted so far by the entry and
            byte bounds.
    """

    def __init__(self, seconds: float, entries: int, key_bytes: int, total_bytes: int) -> None:
        self.seconds = seconds
        self.entries = entries
        self.key_bytes = key_bytes
        self.total_bytes = total_bytes
        self.nbytes = 0
        self.evicted = {"messages": 0, "entries": 0, "bytes": 0}
        self._keys: dict[tuple[str, str], _Key] = {}

    def add(self, kind: str, key: str, out: Outgoing, now: float) -> None:
        """Keep ``out`` as the newest message of ``(kind, key)``, then evict what the bounds require."""
        hkey = (kind, key)
        held = self._keys.get(hkey)
        if held is None:
            held = self._keys[hkey] = _Key()
        held.queue.append(out)
        held.entries += out.weight
        held.nbytes += out.nbytes
        self.nbytes += out.nbytes
        horizon = now - self.seconds
        while held.queue and held.queue[0].received < horizon:
            self._pop(hkey, held, counted=False)
        while held.queue and (held.entries > self.entries or held.nbytes > self.key_bytes):
            self._pop(hkey, held, counted=True)
        while self.nbytes > self.total_bytes:
            oldest = min(self._keys.items(), key=lambda item: item[1].queue[0].received)
            self._pop(*oldest, counted=True)

    def expire(self, horizon: float) -> None:
        """Forget every message received before ``horizon``: keys that went quiet free their memory."""
        for hkey, held in list(self._keys.items()):
            while held.queue and held.queue[0].received < horizon:
                self._pop(hkey, held, counted=False)

    def _pop(self, hkey: tuple[str, str], held: _Key, counted: bool) -> None:
        out = held.queue.popleft()
        held.entries -= out.weight
        held.nbytes -= out.nbytes
        self.nbytes -= out.nbytes
        if counted:
            self.evicted["messages"] += 1
            self.evicted["entries"] += out.weight
            self.evicted["bytes"] += out.nbytes
        if not held.queue:
            del self._keys[hkey]

    def messages(self, horizon: float) -> Iterator[Outgoing]:
        """Every message received at or after ``horizon``, key by key (not in time order)."""
        for held in self._keys.values():
            for out in held.queue:
                if out.received >= horizon:
                    yield out

    def keys(self, kind: str) -> set[str]:
        """The keys of ``kind`` that hold messages."""
        return {key for k, key in self._keys if k == kind}

    def detail(self) -> list[dict]:
        """One dict per key: ``kind``, ``key``, ``messages``, ``entries``, ``bytes``."""
        return [{"kind": kind, "key": key, "messages": len(held.queue), "entries": held.entries, "bytes": held.nbytes}
                for (kind, key), held in self._keys.items()]
