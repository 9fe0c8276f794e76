"""What a study returns: :class:`StudyResult`, and the per-trial records it and ``tune.done`` carry.

The coordinator (:mod:`deepdive.tune.coordinator`) fills one at the end of a run, and
:func:`deepdive.tune.study.load_result` from a stored study without running; the terminal tables
(:mod:`deepdive.tune.report`) and ``--json`` show it. Nothing here imports Optuna.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from deepdive.tune.budget import REASON_ATTR, RETRY_ATTR

FINAL_STATES = 2000  # trials whose final state tune.done carries (the dashboard keeps as many)


@attrs.define
class StudyResult:
    """A study at the end of a run (or as stored): its counts, best trial, importances, every trial, timings."""

    study: str
    storage: str
    metric: str
    direction: str
    n_complete: int
    n_pruned: int
    n_fail: int
    best_number: Optional[int]
    best_value: Optional[float]
    best_params: dict[str, Any]
    importances: dict[str, float]
    importance_note: Optional[str]
    trials: list[dict[str, Any]]
    seconds: float
    orphaned: list[int] = attrs.Factory(list)
    retried: list[int] = attrs.Factory(list)
    train_seconds: float = 0.0
    """Sum of the training steps' time (``run.batches``) of this session's trials."""
    script_seconds: float = 0.0
    """Sum of the scripts' run time in the workers (after the imports), this session's trials."""
    storage_writes: int = 0
    """Write calls (transactions) to the persistent storage for this session's trials."""
    session_trials: int = 0
    """Trials this session ran (started in a worker)."""
    value_mode: str = "last"
    """How a trial's value was taken from its reports: ``last`` or ``best`` (``--value``)."""
    startup_seconds: Optional[float] = None
    """From the start of this session to its first ready worker (opening the study, starting workers)."""
    trials_span_seconds: Optional[float] = None
    """From this session's first trial start to its last trial's end (the steady state, without start-up)."""
    remote_suggests: int = 0
    """``run.suggest`` calls that waited for the coordinator (the rest took a presampled value)."""
    n_stopped: int = 0
    """This session's trials that ``patience`` ended early (complete, counted in ``n_complete`` too)."""
    patience: Optional[int] = None
    """Reports without a new best that ended a trial in this session (None: off)."""
    patience_source: Optional[str] = None
    """Where ``patience`` came from, in words (``"the default"``, ``"--patience 3"``, ``"off: --patience 0"``)."""
    n_trials: Optional[int] = None
    """The study's budget, N of ``--trials N`` (None: a result read without running, ``load_result``)."""
    n_counted: int = 0
    """The study's finished trials that count toward N (:mod:`deepdive.tune.budget`: not the orphaned,
    never started or retried failures)."""
    running_elsewhere: int = 0
    """The study's trials still running in other processes when this one ended (they hold places of N)."""
    metric_source: Optional[str] = None
    """Where the metric and direction came from (``--metric``, the study, or the script: see :mod:`deepdive.tune.metric`)."""
    sampler: Optional[str] = None
    """What ``--sampler`` ran, in words (:mod:`deepdive.tune.labels`); None for a result read without running."""
    pruner: Optional[str] = None
    """What ``--pruner`` ran, in words; None for a result read without running."""
    chosen_number: Optional[int] = None
    """The study's answer: the confirmed winner (``--confirm``: the best re-trained mean), else the
    search's best trial (``best_number``). ``--apply`` writes its parameters."""
    chosen_params: dict[str, Any] = attrs.Factory(dict)
    """The answer's parameters."""
    confirmed: Optional[dict[str, Any]] = None
    """The confirmation (:class:`deepdive.protocol.hub_events.TuneConfirmation` as a dict, snake_case
    keys): this run's, or one stored by an earlier run while its candidates are still the top K."""
    confirm_note: Optional[str] = None
    """Why a stored confirmation is not shown (the study's top K changed since it ran), else None."""
    confirm_train_seconds: float = 0.0
    """Sum of the training steps' time of this session's re-trainings (``--confirm``)."""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def trial_history(trials: list[Any], train_s: dict[int, Optional[float]]) -> list[dict[str, Any]]:
    """One record per stored trial (``StudyResult.trials``), oldest first.

    ``train_s`` holds the training time the workers measured for this session's trials; the
    others' is None (another process, or an earlier run, ran them).
    """
    history = []
    for frozen in trials:
        duration = (frozen.datetime_complete - frozen.datetime_start).total_seconds() \
            if frozen.datetime_complete and frozen.datetime_start else None
        history.append({
            "number": frozen.number, "state": frozen.state.name.lower(), "value": frozen.value,
            "params": dict(frozen.params), "reason": frozen.system_attrs.get(REASON_ATTR),
            "duration_s": duration, "intermediate": [[s, v] for s, v in sorted(frozen.intermediate_values.items())],
            "retry_of": frozen.user_attrs.get(RETRY_ATTR),
            "train_s": train_s.get(frozen.number),
        })
    return history


def final_states(history: list[dict[str, Any]]) -> list[list[Any]]:
    """``[number, state, value]`` of the study's newest trials as the storage holds them at the end.

    The dashboard settles each trial's state from this (a trial's last live event may have been
    dropped on the way); a trial another process still runs stays ``running``. Bounded like the
    dashboard's own trial list (``MAX_TRIALS`` in extension/webview/tune.ts).
    """
    return [[t["number"], t["state"], t["value"]] for t in history[-FINAL_STATES:]]
