"""The store's vocabulary: its format tag, checkpoint names, errors and the records it returns.

Held apart from :mod:`deepdive.engine.ckpt.store` so that every part of the store (catalog,
reading, gc, entries) and its callers (resume, export, dcp) name the same errors and records
without importing the store itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

FORMAT = "deepdive-ckpt/1"
NAME_PATTERN = re.compile(r"^step-(\d{10,})$")
"""A checkpoint's name (its manifest's file name without ``.json``)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in bytes, called from the thread that called the store."""


class CheckpointError(Exception):
    """A checkpoint that cannot be saved, found or trusted. The message is one line and names the fix."""


class StateMismatch(CheckpointError):
    """An intact checkpoint that does not fit what it is loaded into (another model or optimizer).
    A resume stops here instead of trying older checkpoints: they would not fit either."""


class ManifestUnusable(CheckpointError):
    """A checkpoint whose manifest is unreadable, fails its checksum or disagrees with its file name.

    Attributes:
        name (str): the checkpoint.
        reason (str): what is wrong, as a predicate of "its manifest".
    """

    def __init__(self, name: str, reason: str, root: Path):
        fix = "" if "upgrade deepdive" in reason else f"; load another checkpoint (`deepdive ckpt ls {root}` lists them)"
        super().__init__(f"checkpoint {name}: its manifest {reason}{fix}")
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class Checkpoint:
    """One saved checkpoint, as its manifest describes it. Sizes in bytes."""

    name: str
    step: int
    time: float
    metrics: dict[str, float]
    meta: dict[str, Any]
    lossy: Optional[str]
    tensors: int
    raw_bytes: int        # the tensors' bytes, uncompressed (as stored: bf16 when lossy="bf16")
    stored_bytes: int     # the chunks it references, on disk (shared chunks counted in full)
    new_bytes: int        # the chunks this save wrote (what it added to the store)
    chunks: int
    new_chunks: int
    seconds: float        # how long the save took


@dataclass(frozen=True)
class Problem:
    """One corrupt or missing piece found by :meth:`Store.verify`."""

    checkpoint: str
    tensor: str
    chunk: str
    reason: str

    def __str__(self) -> str:
        where = f"tensor '{self.tensor}'" if self.tensor else "manifest"
        chunk = f" (chunk {self.chunk[:12]})" if self.chunk else ""
        return f"{self.checkpoint}: {where}{chunk}: {self.reason}"


@dataclass
class GcResult:
    """What :meth:`Store.gc` kept and removed (or would, with ``dry_run``)."""

    kept: list[str]
    best: list[str]
    deleted: list[str]
    deleted_chunks: int
    freed_bytes: int
    dry_run: bool
    temp_files: int = 0
    unreadable: list[str] = field(default_factory=list)


def checkpoint_name(step: int) -> str:
    return f"step-{step:010d}"


def check_metrics(metrics: Optional[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if hasattr(value, "item") and callable(value.item):
            value = value.item()
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"metrics must map names to finite numbers; {key!r}: {value!r} is not")
        out[key] = float(value) if isinstance(value, float) else value
    return out


def checkpoint_record(m: dict[str, Any]) -> Checkpoint:
    s = m["stats"]
    return Checkpoint(name=m["name"], step=m["step"], time=m["time"], metrics=m.get("metrics", {}),
                      meta=m.get("meta", {}), lossy=m.get("lossy"), tensors=s["tensors"], raw_bytes=s["raw_bytes"],
                      stored_bytes=s["stored_bytes"], new_bytes=s["new_bytes"], chunks=s["chunks"],
                      new_chunks=s["new_chunks"], seconds=s.get("seconds", 0.0))


def as_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    return asdict(checkpoint)
