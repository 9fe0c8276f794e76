"""One trial of this session as the coordinator tracks it (:class:`LiveTrial`), beside Optuna's.

Optuna's trial (``trial``) is the storage's record; a :class:`LiveTrial` adds what only this
process knows while the trial waits and runs: the worker it runs on, why it waits, the values the
sampler drew ahead (``presampled``), its intermediate values (the ledger's dict, shared), the best
report so far and how long since (for ``value="best"`` and ``patience``), and when its last
``tune.trial`` event went out. Nothing here imports Optuna.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs


@attrs.define
class LiveTrial:
    number: int
    trial: Any
    state: str = "waiting"
    params: dict[str, Any] = attrs.Factory(dict)
    value: Optional[float] = None
    reason: Optional[str] = None
    worker: Optional[int] = None
    waiting_reason: Optional[str] = None
    started: Optional[float] = None
    presampled: dict[str, Any] = attrs.Factory(dict)
    problem: Optional[str] = None  # a presampled parameter that could not be recorded: the trial fails
    duration_s: Optional[float] = None
    last_emit: float = 0.0
    dirty: bool = False
    log: Optional[str] = None
    values: dict[int, float] = attrs.Factory(dict)
    best_reported: Optional[float] = None  # with value="best": the best intermediate value so far
    stale: int = 0  # reports since the best last improved (for patience)
    train_s: Optional[float] = None  # the training steps' time the worker measured (``run.batches``)

    def best_so_far(self, value: float, direction: str) -> float:
        """The best value reported in ``direction``, this one included (NaN never wins); counts
        the reports since the best last improved (``stale``, for patience)."""
        from deepdive.engine.hparams import improves  # torch-free

        if improves(value, self.best_reported, direction):
            self.best_reported, self.stale = value, 0
        elif self.best_reported is not None:  # patience counts from the first real value (NaN never is one)
            self.stale += 1
        return value if self.best_reported is None else self.best_reported
