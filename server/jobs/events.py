"""Reporting from inside a job: progress, structured data and the result.

A job started by Deepdive's job manager inherits a pipe whose file descriptor is in the
environment variable ``DEEPDIVE_EVENTS_FD``; each call here writes one JSON line to it. Run the same
code outside Deepdive (plain ``python``) and every call is a no-op that costs nothing. This module
imports only the standard library, so any job can use it.

Example::

    from deepdive.jobs import events
    for i in range(steps):
        ...
        events.progress((i + 1) / steps, f"step {i + 1}/{steps}")
    events.result({"gflops": 812.5})
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Optional

ENV_FD = "DEEPDIVE_EVENTS_FD"
MAX_EVENT_BYTES = 64 * 1024

_lock = threading.Lock()
_stream = None
_opened = False


def _out():
    global _stream, _opened
    if not _opened:
        _opened = True
        fd = os.environ.get(ENV_FD)
        if fd and fd.isdigit():
            try:
                _stream = os.fdopen(int(fd), "w", buffering=1, encoding="utf-8", closefd=False)
            except OSError:
                _stream = None
    return _stream


def enabled() -> bool:
    """True when this process runs as a Deepdive job and events reach the daemon."""
    return _out() is not None


def emit(event_type: str, **fields: Any) -> None:
    """Send one event. ``event_type`` is ``progress``, ``result`` or ``data``."""
    stream = _out()
    if stream is None:
        return
    line = json.dumps({"type": event_type, **fields}, default=str, separators=(",", ":"))
    if len(line) > MAX_EVENT_BYTES:
        raise ValueError(f"event of {len(line)} bytes is over the {MAX_EVENT_BYTES}-byte limit")
    with _lock:
        try:
            stream.write(line + "\n")
        except (BrokenPipeError, OSError):
            pass  # the daemon went away; the job goes on and its stdout still tells the story


def progress(fraction: Optional[float] = None, message: Optional[str] = None) -> None:
    """Report how far the job is, 0..1 (None: indeterminate), with a short message."""
    if fraction is not None:
        fraction = min(1.0, max(0.0, float(fraction)))
    emit("progress", fraction=fraction, message=message)


def data(event: str, **fields: Any) -> None:
    """A structured event for the client (e.g. a benchmark figure as it is measured)."""
    emit("data", data={"event": event, **fields})


def result(value: dict[str, Any]) -> None:
    """The job's structured result; the last one sent is stored with the job."""
    emit("result", data=value)
