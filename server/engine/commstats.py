"""The communication figures of a DDP module: :class:`CommStats` and the overlap arithmetic behind them.

:class:`deepdive.engine.compression.GradCompression`'s hook tells :class:`CommStats` when each bucket
arrives and when each collective starts and ends; :meth:`CommStats.end_step` turns that into the
step's ``comm_*`` figures (bytes, time in collectives, the part backward did not hide). The clocks
are wall time on CPU and CUDA events on the GPU, where NCCL work does not block the CPU.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional, Sequence, Union

import torch

__all__ = ["CommStats", "CudaClock", "WallClock", "split_comm_time"]

# --------------------------------------------------------------------------------------------
# Clocks: wall time on CPU, CUDA events on the GPU (NCCL work does not block the CPU)
# --------------------------------------------------------------------------------------------


class WallClock:
    """Wall time (seconds): the clock of CPU runs."""

    cuda = False

    def mark(self) -> float:
        return time.perf_counter()


class CudaClock:
    """CUDA events on the current stream: the clock of GPU runs (NCCL work does not block the CPU)."""

    cuda = True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event


# --------------------------------------------------------------------------------------------
# Interval arithmetic for the overlap figures
# --------------------------------------------------------------------------------------------


def _union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(merged: Sequence[tuple[float, float]]) -> float:
    return sum(end - start for start, end in merged)


def _intersection(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    total = 0.0
    for s1, e1 in a:
        for s2, e2 in b:
            total += max(0.0, min(e1, e2) - max(s1, s2))
    return total


def _subtract(window: tuple[float, float], holes: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    pieces = [window]
    for hs, he in holes:
        nxt = []
        for s, e in pieces:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if hs > s:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        pieces = nxt
    return [(s, e) for s, e in pieces if e > s]


def split_comm_time(
    begin: float, last_hook: float, comms: Sequence[tuple[float, float, bool]]
) -> tuple[float, float, float]:
    """Splits one step's communication into hidden and exposed time.

    Args:
        begin (float): when backward started (seconds, any origin).
        last_hook (float): when the last bucket's hook was called; every gradient exists by then,
            so backward compute ends there.
        comms (Sequence[tuple[float, float, bool]]): ``(start, end, blocking)`` of each collective;
            ``blocking`` is True when the hook waited for it, i.e. backward compute stood still.

    Returns:
        tuple[float, float, float]: ``(comm_time, hidden, exposed)``: wall time with at least one
        collective in flight; the part of it during which backward compute could run (inside
        ``[begin, last_hook]`` and outside every blocking wait); the rest.
    """
    comm = _union([(s, e) for s, e, _ in comms])
    total = _length(comm)
    blocked = _union([(s, e) for s, e, blocking in comms if blocking])
    window = _subtract((begin, max(begin, last_hook)), blocked)
    hidden = min(total, _intersection(comm, window))
    return total, hidden, max(0.0, total - hidden)


# --------------------------------------------------------------------------------------------
# CommStats
# --------------------------------------------------------------------------------------------


class _Step:
    __slots__ = ("begin", "hooks", "comms", "bytes_uncompressed", "bytes_sent", "buckets", "mode", "warmup")

    def __init__(self, begin: Any) -> None:
        self.begin = begin
        self.hooks: list[Any] = []
        self.comms: list[tuple[Any, Any, bool]] = []
        self.bytes_uncompressed = 0
        self.bytes_sent = 0
        self.buckets = 0
        self.mode: Optional[str] = None
        self.warmup = False


class CommStats:
    """Per-step communication figures of a DDP module, filled in by :class:`GradCompression`'s hook.

    Call :meth:`begin_step` when backward starts and :meth:`end_step` after it returns; the hook
    records every bucket in between. Figures of one step (the keys :meth:`end_step` returns):

    - ``comm_bytes_uncompressed`` (int): bytes of the gradient buckets (what a plain allreduce
      would contribute).
    - ``comm_bytes_sent`` (int): payload this rank contributes to collectives (the tensors it
      passes to allreduce/all_gather); the bytes on the wire depend on the backend's algorithm
      (a ring allreduce moves ``2 (N-1)/N`` times this).
    - ``comm_time_s`` (float): wall time during which at least one of the step's collectives was
      in flight, from issue to completion (the union of the intervals, so collectives queued
      behind each other are not counted twice). It includes waiting for the slowest rank to
      reach the collective. On CUDA the times come from CUDA events on the streams, since NCCL
      work does not block the CPU.
    - ``comm_exposed_s`` (float): the part of ``comm_time_s`` that backward compute did not hide:
      communication after the last bucket's hook was called (all gradients exist by then; what is
      left is waiting), plus communication the hook waited for itself (PowerSGD's first
      allreduce), during which backward stood still.
    - ``comm_overlap`` (float): ``1 - comm_exposed_s / comm_time_s``, the share of communication
      hidden by backward (0.0 when nothing was communicated).
    - ``comm_buckets`` (int): hook calls (buckets) this step.
    - ``comm_mode`` (str): the mode the hook ran; ``comm_warmup`` (int) is 1 while PowerSGD runs
      its uncompressed warm-up steps.

    Attributes:
        steps (int): steps closed by :meth:`end_step`.
        last (dict | None): the figures of the last closed step.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock: Union[WallClock, CudaClock] = WallClock()
        self._step: Optional[_Step] = None
        self._mode = "none"
        self.steps = 0
        self.last: Optional[dict[str, Any]] = None
        self._tot_uncompressed = 0
        self._tot_sent = 0
        self._tot_comm = 0.0
        self._tot_exposed = 0.0
        self._tot_buckets = 0

    def begin_step(self) -> None:
        """Starts a step: call it just before ``loss.backward()``."""
        with self._lock:
            self._step = _Step(self._clock.mark())

    def end_step(self) -> dict[str, Any]:
        """Closes the step (call it after backward returns) and returns its figures.

        Without a preceding :meth:`begin_step` the step starts at the first hook call. On CUDA
        this waits for the device to finish the step's queued work, to read the event times.

        Returns:
            dict[str, Any]: the keys listed in the class docstring.
        """
        with self._lock:
            step, self._step = self._step, None
        if step is None or not step.hooks:
            figures = self._figures(step, 0.0, 0.0, 0.0)
        else:
            comm, hidden, exposed = self._resolve(step)
            figures = self._figures(step, comm, hidden, exposed)
        self.steps += 1
        self._tot_uncompressed += figures["comm_bytes_uncompressed"]
        self._tot_sent += figures["comm_bytes_sent"]
        self._tot_comm += figures["comm_time_s"]
        self._tot_exposed += figures["comm_exposed_s"]
        self._tot_buckets += figures["comm_buckets"]
        self.last = figures
        return figures

    def totals(self) -> dict[str, Any]:
        """Running totals over every closed step.

        Returns:
            dict[str, Any]: ``steps``, ``bytes_uncompressed``, ``bytes_sent``, ``comm_time_s``,
            ``comm_exposed_s``, ``buckets``, ``overlap`` (hidden share of all communication) and
            ``compression_ratio`` (uncompressed / sent bytes; 1.0 before anything was sent).
        """
        comm = self._tot_comm
        return {
            "steps": self.steps,
            "bytes_uncompressed": self._tot_uncompressed,
            "bytes_sent": self._tot_sent,
            "comm_time_s": comm,
            "comm_exposed_s": self._tot_exposed,
            "buckets": self._tot_buckets,
            "overlap": (1.0 - self._tot_exposed / comm) if comm > 0 else 0.0,
            "compression_ratio": (self._tot_uncompressed / self._tot_sent) if self._tot_sent else 1.0,
        }

    # -- used by GradCompression's hook (any thread) ----------------------------------------

    def _use_clock(self, clock: Union[WallClock, CudaClock]) -> None:
        self._clock = clock

    def _current(self) -> _Step:
        if self._step is None:
            self._step = _Step(None)
        return self._step

    def _on_hook(self, bytes_uncompressed: int, mode: str, warmup: bool) -> None:
        mark = self._clock.mark()
        with self._lock:
            step = self._current()
            step.hooks.append(mark)
            step.buckets += 1
            step.bytes_uncompressed += bytes_uncompressed
            step.mode = mode
            step.warmup = step.warmup or warmup

    def _comm_begin(self) -> Any:
        return self._clock.mark()

    def _comm_end(self, start: Any, bytes_sent: int, *, blocking: bool) -> None:
        end = self._clock.mark()
        with self._lock:
            step = self._current()
            step.comms.append((start, end, blocking))
            step.bytes_sent += bytes_sent

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self, step: _Step) -> tuple[float, float, float]:
        if self._clock.cuda:
            torch.cuda.synchronize(self._clock.device)
            origin = step.begin if step.begin is not None else step.hooks[0]

            def seconds(mark: Any) -> float:
                return origin.elapsed_time(mark) / 1e3

        else:
            origin_t = step.begin if step.begin is not None else step.hooks[0]

            def seconds(mark: Any) -> float:
                return mark - origin_t

        last_hook = max(seconds(m) for m in step.hooks)
        comms = [(seconds(s), seconds(e), blocking) for s, e, blocking in step.comms]
        return split_comm_time(0.0, last_hook, comms)

    def _figures(self, step: Optional[_Step], comm: float, hidden: float, exposed: float) -> dict[str, Any]:
        return {
            "comm_bytes_uncompressed": step.bytes_uncompressed if step else 0,
            "comm_bytes_sent": step.bytes_sent if step else 0,
            "comm_time_s": comm,
            "comm_exposed_s": exposed,
            "comm_overlap": (hidden / comm) if comm > 0 else 0.0,
            "comm_buckets": step.buckets if step else 0,
            "comm_mode": (step.mode if step and step.mode else self._mode),
            "comm_warmup": int(bool(step and step.warmup)),
        }
