"""The one definition of a training run's throughput, shown by the status bar, the dashboard and the terminal.

**samples/s over the last 10 s, all ranks**: the samples of the newest steps whose wall time adds up to
at least :data:`WINDOW_S` seconds (every step so far in a younger run), divided by that wall time, times
the number of processes. A step's wall time is the time waiting on the data loader plus the step itself,
so the figure is what the run achieves, not what its compute alone could; the short last batch of an
epoch counts as the few samples it has. "All ranks" is this rank's count times the world size: data
parallel ranks step together on equal shards of each global batch (``DistributedSampler``).

The engine computes it (:class:`ThroughputWindow`) at every step and sends it in each sample as
``samples_per_s`` with ``samples_per_s_window_s``, the seconds it covers, and in its summary; the
daemon, the dashboard and the CLI show that figure with :func:`label` as they got it, none computes its
own. Pure Python: the engine imports it and the daemon may, without torch.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple, Optional

WINDOW_S = 10.0
"""Seconds of the newest steps the throughput covers."""
FALLBACK_STEPS = 10
"""Without a sample count (a producer other than the engine): steps/s over this many newest step samples."""


class ThroughputWindow:
    """The newest steps of one rank covering :data:`WINDOW_S`, with their running sums.

    Args:
        world_size (int): processes that each process a shard of every step (the figure is for all).
        window_s (float): seconds of steps the figure covers.
    """

    def __init__(self, world_size: int = 1, window_s: float = WINDOW_S):
        self.world_size = max(1, int(world_size))
        self.window_s = float(window_s)
        self._steps: collections.deque[tuple[int, float]] = collections.deque()
        self._samples = 0
        self._seconds = 0.0
        self._updates = 0

    def add(self, samples: int, seconds: float) -> None:
        """One step: the samples this rank processed and the step's wall time (loader wait + step)."""
        self._steps.append((int(samples), float(seconds)))
        self._samples += int(samples)
        self._seconds += float(seconds)
        while len(self._steps) > 1 and self._seconds - self._steps[0][1] >= self.window_s:
            old_samples, old_seconds = self._steps.popleft()
            self._samples -= old_samples
            self._seconds -= old_seconds
        self._updates += 1
        if self._updates >= max(64, len(self._steps)):  # subtraction drifts: add up afresh now and then
            self._updates = 0
            self._seconds = sum(s for _, s in self._steps)

    @property
    def covered_s(self) -> float:
        """The wall time of the steps in the window (less than the window early in a run)."""
        return self._seconds

    def rate(self) -> Optional[float]:
        """Samples per second of all ranks over the window; None before a step with samples."""
        if self._samples <= 0 or self._seconds <= 0:
            return None
        return self.world_size * self._samples / self._seconds

    def figures(self) -> dict[str, Optional[float]]:
        """What a sample and the summary carry: ``samples_per_s`` and ``samples_per_s_window_s``."""
        rate = self.rate()
        return {"samples_per_s": rate, "samples_per_s_window_s": self._seconds if rate is not None else None}


def window_text(seconds: float) -> str:
    """``10 s``, ``2.3 s``: the window as the labels say it (the dashboard formats it the same way)."""
    return f"{seconds:.0f} s" if seconds >= 9.95 else f"{seconds:.1f} s"


def label(window_s: Optional[float]) -> str:
    """``samples/s over the last 10 s, all ranks``: what the figure is, with the window it covers."""
    if window_s is None:
        return "samples/s, all ranks"
    return f"samples/s over the last {window_text(window_s)}, all ranks"


def describe(rate: Optional[float], window_s: Optional[float]) -> str:
    """``11,748 samples/s over the last 10 s, all ranks``, or ``-`` without a figure (the CLI's summary)."""
    if rate is None:
        return "-"
    return f"{rate:,.0f} {label(window_s)}"


class Newest(NamedTuple):
    """The figure a consumer shows for a run now."""

    value: float
    unit: str
    step: Optional[int]
    label: str


def newest(samples: list[dict[str, Any]]) -> Optional[Newest]:
    """The newest step sample's throughput, as the engine computed it (the status bar's figure).

    A producer that sends no ``samples_per_s`` gets steps/s over its newest :data:`FALLBACK_STEPS`
    step samples (loader wait included), labelled as such. None without a step sample.
    """
    steps = [s for s in samples if _positive(s.get("step_time_s"))]
    if not steps:
        return None
    last = steps[-1]
    step = last.get("step") if isinstance(last.get("step"), int) else None
    rate = last.get("samples_per_s")
    if _positive(rate):
        window = last.get("samples_per_s_window_s")
        return Newest(round(float(rate), 2), "samples/s", step, label(window if _positive(window) else None))
    recent = steps[-FALLBACK_STEPS:]
    wall = sum(float(s["step_time_s"]) + max(0.0, _number(s.get("data_wait_s"))) for s in recent)
    return Newest(round(len(recent) / wall, 3), "steps/s", step,
                  f"steps/s over the newest {len(recent)} steps, loader wait included")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
