"""What a part runs with and how it ends: :class:`Context`, :class:`Skip`, :class:`CheckFailed`, :class:`Outcome`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import attrs


class Skip(Exception):
    """The part cannot run here; the message says why (and what to install)."""


class CheckFailed(Exception):
    """Something the part checks did not hold: the message in one line, the facts gathered so far."""

    def __init__(self, message: str, detail: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.detail = detail or {}


@attrs.define
class Context:
    """What a part runs with.

    Attributes:
        part (str): the part's name.
        device (str): ``cuda`` or ``cpu``.
        out_dir (Path): the run's output folder (the NVML fixture is written there).
        work_dir (Path): scratch space, removed after the part.
        rank (int): this process's rank under torchrun (figures come from rank 0 only).
        lines (list[dict]): the figures measured so far.
    """

    part: str
    device: str
    out_dir: Path
    work_dir: Path
    rank: int = 0
    lines: list[dict[str, Any]] = attrs.Factory(list)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def measure(self, metric: str, value: float, unit: str, **extra: Any) -> None:
        """A bench-style line: ``{"bench": "gpu-check", "check", "metric", "value", "unit", ...}``."""
        if self.rank == 0:
            self.lines.append({"bench": "gpu-check", "check": self.part, "metric": metric,
                               "value": float(f"{value:.6g}"), "unit": unit, "device": self.device, **extra})

    def expect(self, condition: bool, message: str, **detail: Any) -> None:
        """Raise :class:`CheckFailed` with ``message`` unless ``condition``."""
        if not condition:
            raise CheckFailed(message, detail)


@attrs.define
class Outcome:
    ok: bool
    skipped: bool
    detail: Any
