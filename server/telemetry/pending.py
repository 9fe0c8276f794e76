"""Samples waiting for their write to the metrics store, bounded in bytes, fair between runs.

The daemon writes what arrived once a second, in a worker thread. When the store falls behind (a
flood of large messages, a slow disk) the batches waiting would grow without bound; this queue
holds at most ``max_bytes`` of them (weighed by the JSON text they came in). Over it, the oldest
batch of the run holding the most bytes is dropped and counted against that run: a flood costs the
flooding run its oldest waiting samples, never another run's, and the newest samples are written.
"""

from __future__ import annotations

import collections
from typing import Any

Batch = tuple[str, int, list[dict[str, Any]]]  # run, rank, samples


class PendingWrites:
    """Batches of samples per run, oldest first, at most ``max_bytes`` in all.

    Args:
        max_bytes (int): the bound on the batches held.

    Attributes:
        nbytes (int): the bytes held now.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._runs: dict[str, collections.deque[tuple[int, list[dict[str, Any]], int]]] = {}
        self._run_bytes: dict[str, int] = {}
        self._dropped: dict[str, int] = {}

    def add(self, run: str, rank: int, samples: list[dict[str, Any]], nbytes: int) -> None:
        """Hold a batch; drop the heaviest run's oldest batches while over the bound."""
        self._runs.setdefault(run, collections.deque()).append((rank, samples, nbytes))
        self._run_bytes[run] = self._run_bytes.get(run, 0) + nbytes
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            heaviest = max(self._run_bytes, key=self._run_bytes.__getitem__)
            _, old, old_bytes = self._runs[heaviest].popleft()
            self._run_bytes[heaviest] -= old_bytes
            self.nbytes -= old_bytes
            self._dropped[heaviest] = self._dropped.get(heaviest, 0) + len(old)
            if not self._runs[heaviest]:
                del self._runs[heaviest], self._run_bytes[heaviest]

    def take(self) -> tuple[list[Batch], dict[str, int]]:
        """Everything held, oldest first per run, and the samples dropped per run since the last take."""
        batches = [(run, rank, samples) for run, queue in self._runs.items() for rank, samples, _ in queue]
        dropped = self._dropped
        self._runs, self._run_bytes, self._dropped, self.nbytes = {}, {}, {}, 0
        return batches, dropped
