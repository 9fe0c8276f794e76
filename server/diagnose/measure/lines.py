"""Which line of the user's code runs when: a line tracer limited to the script's own files.

Why not the profiler's stacks: in torch 2.13 ``with_stack=True`` gives an op no stack of its own
(``FunctionEvent.stack`` stays empty); the Python tracer it turns on records every Python call as an
event named ``file(N): function`` where ``N`` is the line the frame was at when the call began (for a
function, its ``def`` line; for a running loop, the line where profiling started), so no op can be
placed on the line that called it. ``sys.settrace`` can: its ``line`` events say where each of the
user's frames is. Only frames of the user's files are traced line by line (the global trace function
returns None for torch's and the standard library's frames), so the cost is one cheap call per Python
function call elsewhere and one per line executed in the user's code.

Each change of the innermost user line is stamped *into the profile* as a zero-length span named
``deepdive::line#K`` (``K`` indexes :attr:`LineTracer.places`; ``deepdive::line#-``: no user frame is
running), so lines and ops are ordered by one clock, the profiler's. (Stamping with
``time.perf_counter_ns()`` and aligning the clocks afterwards was tried: the alignment is good to a
microsecond or two, and a per-element ``.item()`` lasts less than that, so calls landed on the line
before.) A stamp costs a microsecond or two of Python, counted as idle time, never as an op's.
:func:`Timeline` reads the stamps back: "from ``t`` on, the innermost frame of the user's code is at
``file:line``".
"""

from __future__ import annotations

import bisect
import os
import sys
from types import CodeType, FrameType
from typing import Any, Callable, Optional


def is_user_file(path: str, root: str) -> bool:
    """``path`` is the user's code: a file under the script's folder ``root``, not an installed package."""
    if not path or path.startswith("<"):
        return False
    full = os.path.abspath(path)
    if not full.startswith(root.rstrip(os.sep) + os.sep):
        return False
    parts = full.split(os.sep)
    return "site-packages" not in parts and "dist-packages" not in parts


LINE_PREFIX = "deepdive::line#"


class LineTracer:
    """Stamps the innermost user line into the profile each time it changes, on the thread that calls
    :meth:`start`; ``stamp(name)`` records a zero-length profiler span named ``name``."""

    def __init__(self, root: str, stamp: Callable[[str], None]) -> None:
        self.root = os.path.abspath(root)
        self.stamp = stamp
        self.places: list[tuple[str, int]] = []
        self._names: dict[tuple[str, int], str] = {}
        self._stack: list[list[Any]] = []  # [file, line] of the user's frames, outermost first
        self._user_code: dict[CodeType, bool] = {}
        self._on = False
        self._pid = os.getpid()

    # -- tracing ---------------------------------------------------------------------------------

    def _is_user(self, code: CodeType) -> bool:
        known = self._user_code.get(code)
        if known is None:
            known = self._user_code[code] = is_user_file(code.co_filename, self.root)
        return known

    def _mark(self) -> None:
        if not self._stack:
            self.stamp(LINE_PREFIX + "-")
            return
        top = self._stack[-1]
        place = (top[0], top[1])
        name = self._names.get(place)
        if name is None:
            name = self._names[place] = f"{LINE_PREFIX}{len(self.places)}"
            self.places.append(place)
        self.stamp(name)

    def _global(self, frame: FrameType, event: str, arg: Any) -> Optional[Callable[..., Any]]:
        if event != "call" or os.getpid() != self._pid or not self._is_user(frame.f_code):
            return None
        self._stack.append([frame.f_code.co_filename, frame.f_lineno])
        self._mark()
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Optional[Callable[..., Any]]:
        if not self._on or os.getpid() != self._pid:  # off, or a forked child (a DataLoader worker)
            return None
        if event == "line":
            if self._stack:
                self._stack[-1][1] = frame.f_lineno
            self._mark()
        elif event == "return":
            if self._stack:
                self._stack.pop()
            self._mark()
        return self._local

    def start(self, frame: Optional[FrameType] = None) -> None:
        """Trace from now on; the user's frames already running (those of ``frame`` and its callers) are
        traced too, from their current lines."""
        running: list[FrameType] = []
        walk = frame if frame is not None else sys._getframe(1)
        while walk is not None:
            if self._is_user(walk.f_code):
                running.append(walk)
            walk = walk.f_back
        self._stack = [[f.f_code.co_filename, f.f_lineno] for f in reversed(running)]
        self._on = True
        sys.settrace(self._global)
        for f in running:
            f.f_trace = self._local
            f.f_trace_lines = True
        self._mark()

    def stop(self) -> None:
        """Stop tracing (the frames still running keep their trace function, which now does nothing)."""
        self._on = False
        sys.settrace(None)
        self._mark()



class Timeline:
    """The innermost user line over time, from the line stamps of a profile (times on the profiler's clock)."""

    def __init__(self, stamps: list[tuple[int, str]], places: list[tuple[str, int]]) -> None:
        stamps = sorted(stamps)
        self.times = [t for t, _ in stamps]
        self.places: list[Optional[tuple[str, int]]] = []
        for _, name in stamps:
            key = name[len(LINE_PREFIX):]
            self.places.append(places[int(key)] if key.isdigit() and int(key) < len(places) else None)

    def place_at(self, t: int) -> Optional[tuple[str, int]]:
        """The innermost user line at ``t``, or None."""
        i = bisect.bisect_right(self.times, t) - 1
        return self.places[i] if i >= 0 else None

    def changes_between(self, start: int, end: int) -> list[int]:
        """The times strictly inside (start, end) at which the line changes."""
        lo = bisect.bisect_right(self.times, start)
        hi = bisect.bisect_left(self.times, end)
        return self.times[lo:hi]
