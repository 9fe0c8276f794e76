"""A training job's progress, read from the telemetry its engine streams to the hub.

The workers of a ``train`` job run under torchrun, which does not pass the job's event pipe on, so the
engine cannot report progress the way other jobs do (:mod:`deepdive.jobs.events`). Its rank-0 samples
reach the daemon's hub with the job's id as the run id; this turns the newest one into the job's
progress (fraction of ``total_steps`` when the engine knows it, and a message with the epoch, the step
and the loss), which the editor's progress notification and the Jobs view show.
"""

from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["training_progress"]


def training_progress(message: dict[str, Any]) -> Optional[tuple[Optional[float], str]]:
    """``(fraction or None, text)`` from an ingest batch's newest step sample, or None without one."""
    if int(message.get("rank") or 0) != 0:
        return None
    steps = [s for s in message.get("samples") or () if isinstance(s, dict) and isinstance(s.get("step"), int)]
    if not steps:
        return None
    last = steps[-1]
    step = int(last["step"]) + 1
    total = last.get("total_steps")
    fraction = min(1.0, step / total) if isinstance(total, int) and total > 0 else None
    parts = []
    if isinstance(last.get("epoch"), int):
        parts.append(f"epoch {last['epoch'] + 1}")
    parts.append(f"step {step}/{total}" if fraction is not None else f"step {step}")
    loss = last.get("loss")
    if isinstance(loss, (int, float)) and math.isfinite(loss):
        parts.append(f"loss {loss:.4g}")
    return fraction, ", ".join(parts)
