"""Running the user's script for a given number of optimizer steps, measured or only timed.

The script runs in this process as ``python SCRIPT ARGS...`` would run it: ``runpy`` with
``__name__ == "__main__"``, ``sys.argv = [SCRIPT, *ARGS]``, ``sys.path[0]`` its folder, the working
directory unchanged. Steps are counted with the global optimizer step post hook
(``torch.optim.optimizer.register_optimizer_step_post_hook``), which every ``torch.optim`` optimizer
calls after its ``step()`` (``deepdive.engine``'s ``run.step`` and AMP's ``GradScaler.step`` call
``optimizer.step()`` too). A step is the time from one optimizer step's end to the next one's.

After ``warmup`` steps the measurement starts (the profiler and the line tracer in the measured
mode, a clock in the timing mode); after ``steps`` more the hook records the last boundary, stops
the measurement and raises :class:`StepsDone`, a ``BaseException`` (an ``except Exception`` in the
script does not swallow it; its ``finally`` blocks and context managers still run), which
:func:`run_script` catches. A script that ends first (returns, ``sys.exit``, an error) leaves fewer
steps; what was measured is kept and :attr:`Capture.ended` says how it ended.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from deepdive.diagnose.measure.breakdown import ITER_SPAN
from deepdive.diagnose.measure.lines import LineTracer
from deepdive.diagnose.measure.trace import MARKER


PROFILE_MEMORY_LIMIT = 128 << 20
"""The measurement stops early once the process has grown this much (bytes) while profiling: the profiler keeps
every event in memory (about 0.6 kB each; a step of 1,000 per-element ``.item()`` calls has over 4,000), and reading
them back takes about ten times that again (measured on torch 2.13: such a step grows the process by 2.4 MB while
profiled, and 107 of them came to 2.4 GB once read). At this limit the analysis stays near 1.5 GB."""


def _rss() -> int:
    """This process's resident memory in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class StepsDone(BaseException):
    """The steps asked for are measured: the script is stopped here (raised from the optimizer step hook)."""


@dataclass
class Capture:
    """What one run of the script left to analyse."""

    steps_seen: int = 0
    """Optimizer steps the script took (warm-up included)."""
    boundaries: list[int] = field(default_factory=list)
    """perf_counter_ns at the start of the first measured step and at the end of each measured step (the
    measured mode also stamps each into the profile)."""
    ended: str = "steps"
    """``steps`` (stopped after the steps asked for), ``memory`` (stopped early: the profile grew past
    :data:`PROFILE_MEMORY_LIMIT`), ``returned``, ``exit N`` or ``error``."""
    error: Optional[str] = None
    """The script's own error, as its traceback's last line."""
    error_traceback: Optional[str] = None
    raw_events: Any = None
    """The profiler's raw results (``_ProfilerResult``), measured mode only."""
    tracer: Optional[LineTracer] = None
    native_tid: Optional[int] = None
    """The training thread's system thread id (CUDA runtime calls are recorded under it)."""
    device: str = "cpu"
    wall_s: float = 0.0

    @property
    def measured(self) -> int:
        return max(0, len(self.boundaries) - 1)


def _stamper() -> Callable[[str], None]:
    """Records a zero-length profiler span by name, with as little Python as can be: ``_RecordFunctionFast``
    (C++; torch 2.2+) where there is one, else ``record_function``."""
    import torch

    fast = getattr(torch._C._profiler, "_RecordFunctionFast", None)
    if fast is None:
        from torch.profiler import record_function as fast

    def stamp(name: str) -> None:
        span = fast(name)
        span.__enter__()
        span.__exit__(None, None, None)

    return stamp


def _record_loader_iter() -> Callable[[], None]:
    """Record ``iter(loader)`` of every DataLoader as an :data:`ITER_SPAN` span while profiling: the profiler
    itself records only ``__next__``, so the time a loader without persistent workers spends starting its
    worker processes each epoch would otherwise show as idle. Returns the undo."""
    from torch.profiler import record_function
    from torch.utils.data import DataLoader

    original = DataLoader.__iter__

    def recorded_iter(self: Any) -> Any:
        with record_function(ITER_SPAN):
            return original(self)

    DataLoader.__iter__ = recorded_iter  # type: ignore[method-assign]

    def undo() -> None:
        DataLoader.__iter__ = original  # type: ignore[method-assign]

    return undo


class _Session:
    def __init__(self, script: str, steps: int, warmup: int, profile: bool,
                 on_step: Optional[Callable[[int, int], None]]) -> None:
        self.script = script
        self.steps = steps
        self.warmup = warmup
        self.profile = profile
        self.on_step = on_step
        self.capture = Capture()
        self.prof: Any = None
        self.tracer: Optional[LineTracer] = None
        self.stamp: Callable[[str], None] = lambda name: None
        self.running = False
        self.done = False
        self.rss_at_start = 0
        self.out_of_memory = False
        self.unpatch: Callable[[], None] = lambda: None

    # -- the measurement --------------------------------------------------------------------------

    def start(self, frame: Any) -> None:
        if self.profile:
            import torch
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(ProfilerActivity.CUDA)
                self.capture.device = f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
            # with_stack stays off: in torch 2.13 it adds no line to an op (see deepdive.diagnose.measure.lines)
            # and its Python events make every Python call slower; the line tracer below places the ops.
            self.prof = profile(activities=activities, record_shapes=True, with_stack=False)
            self.prof.start()
            self.unpatch = _record_loader_iter()
            self.stamp = _stamper()
            self.tracer = LineTracer(os.path.dirname(self.script), self.stamp)
            self.tracer.start(frame)
        self.capture.native_tid = threading.get_native_id()
        self.rss_at_start = _rss()
        self.running = True
        self.boundary()

    def boundary(self) -> None:
        self.capture.boundaries.append(time.perf_counter_ns())
        if self.profile:
            self.stamp(MARKER)  # the boundary on the profiler's clock, which the analysis uses
            self.prof.step()

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        if self.tracer is not None:
            self.tracer.stop()
            self.capture.tracer = self.tracer
        self.unpatch()
        if self.prof is not None:
            self.prof.stop()
            self.capture.raw_events = self.prof.profiler.kineto_results.events() \
                if self.prof.profiler.kineto_results is not None else []

    # -- the hook ---------------------------------------------------------------------------------

    def hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.done:
            raise StepsDone()
        self.capture.steps_seen += 1
        seen = self.capture.steps_seen
        if seen == self.warmup and not self.running:
            self.start(sys._getframe(1))
        elif self.running:
            self.boundary()
            if self.on_step is not None:
                self.on_step(self.capture.measured, self.steps)
        if self.running and self.profile and self.capture.measured < self.steps and self.rss_at_start \
                and _rss() - self.rss_at_start > PROFILE_MEMORY_LIMIT:
            self.out_of_memory = True
        if self.running and (self.capture.measured >= self.steps or self.out_of_memory):
            self.stop()
            self.done = True
            raise StepsDone()


def run_script(script: str, args: list[str], *, steps: int, warmup: int, profile: bool = True,
               on_step: Optional[Callable[[int, int], None]] = None) -> Capture:
    """Run ``script`` with ``args`` until ``warmup`` + ``steps`` optimizer steps are done (or it ends).

    ``profile``: the measured mode (torch.profiler and the line tracer); else only the step boundaries'
    times. ``on_step(measured, steps)`` is called after each measured step.
    """
    import torch.optim.optimizer as optim

    script = os.path.abspath(script)
    session = _Session(script, steps, warmup, profile, on_step)
    handle = optim.register_optimizer_step_post_hook(session.hook)
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    sys.argv = [script, *args]
    if sys.path:
        sys.path[0] = os.path.dirname(script)
    else:
        sys.path.insert(0, os.path.dirname(script))
    t0 = time.perf_counter()
    capture = session.capture
    try:
        if warmup == 0:
            session.start(sys._getframe(0))
        runpy.run_path(script, run_name="__main__")
        capture.ended = "returned"
    except StepsDone:
        capture.ended = "steps"
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) or exc.code is None else 1
        capture.ended = f"exit {code or 0}"
        if code:
            capture.error = f"the script exited with status {code}"
    except Exception as exc:  # the script's own error: reported with what was measured before it
        capture.ended = "error"
        capture.error = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
        capture.error_traceback = traceback.format_exc()
        sys.stderr.write(capture.error_traceback)  # the user's own error, as python would show it
    finally:
        session.stop()
        handle.remove()
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
        capture.wall_s = time.perf_counter() - t0
    if capture.ended != "steps" and capture.measured >= steps:
        capture.ended = "steps"
    if session.out_of_memory and capture.ended == "steps":
        capture.ended = "memory"
    return capture
