"""What a study is asked to do: :class:`StudyConfig`, the options of ``deepdive tune`` as one object.

``deepdive tune`` (``cli.py``) and the Python API (:func:`deepdive.tune.study.run_study`) build one;
:func:`check_config` refuses bad values and scripts in one line (:class:`~deepdive.tune.errors.TuneError`)
before anything starts. Nothing here imports Optuna.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import attrs

from deepdive.tune.errors import TuneError
from deepdive.vocabulary import TUNE_DIRECTIONS, TUNE_PRUNERS, TUNE_SAMPLERS
from deepdive.vocabulary import TUNE_VALUES as VALUE_MODES  # how a trial's value is taken from its reports

DEFAULT_PATIENCE = 2
"""Reports without a new best that end a trial by default (a fixed choice, measured with the default
pruner by ``bench/bench_tune_quality.py``: see the README's *Search quality*)."""


@attrs.define
class StudyConfig:
    """What to search. ``script_args`` go to the script after its own name."""

    script: str
    n_trials: int = 20
    script_args: list[str] = attrs.Factory(list)
    parallel: int = 1
    storage: Optional[str] = None
    study_name: Optional[str] = None
    sampler: str = TUNE_SAMPLERS[0]
    """The default, ``tpe``, is a fixed choice named as what it runs (the vocabulary's first sampler)."""
    pruner: str = TUNE_PRUNERS[0]
    """The default, ``asha``: successive halving, one bracket (a fixed choice; ``bench/bench_tune_quality.py``)."""
    metric: Optional[str] = None
    direction: Optional[str] = None
    value: Optional[str] = None
    """``"last"`` (the last reported value is the trial's value) or ``"best"`` (the best one in the
    direction); default: the study's recorded choice, else ``"best"`` with patience on, ``"last"`` without."""
    patience: Optional[int] = None
    """Early stopping inside a trial: end it, complete and valued at its best report, when this many
    reports in a row have not improved on its best (needs ``value="best"``, which it implies). ``None``:
    the default, :data:`DEFAULT_PATIENCE` reports, except in a study that scores trials by their last
    report (``value="last"``, given or recorded), where it is off; ``0``: off."""
    timeout: Optional[float] = None
    seed: Optional[int] = None
    confirm: int = 0
    """After a search that ended without Ctrl-C, re-train the top ``confirm`` distinct complete trials
    with ``confirm_seeds`` fresh seeds each; the best mean is the study's answer (0: off;
    :mod:`deepdive.tune.confirm`)."""
    confirm_seeds: int = 3
    """Fresh training seeds per confirmed trial: S+1 … S+R, S the search's seed (``seed`` or 0)."""
    retry_failed: bool = False
    pack: bool = False
    workspace: Optional[str] = None
    trial_timeout: Optional[float] = None
    warm: bool = True
    """Warm workers that run trials in-process (False: a fresh process per trial)."""
    direct_reports: bool = False
    """Each intermediate value straight to the persistent storage (the naive way; for comparison)."""
    heartbeat_interval: int = 10
    grace_period: int = 60
    on_event: Optional[Callable[[str, dict[str, Any]], None]] = None
    """Called with every telemetry event (kind, fields), e.g. for a progress bar."""
    reuse_workers: bool = True
    """Keep the warm workers for the next study in this process (they stop at exit)."""
    prefetch: bool = True
    """Prepare the next trial (ask + sampling) while the workers are busy, so that a worker that
    finishes starts the next trial at once; the sampler then sees results up to one trial behind.
    Not with ``timeout`` (a prepared trial the deadline leaves unstarted would stay in the study)."""


def check_config(config: StudyConfig, script: str) -> None:
    """Refuse, in one line, options out of range and a script that is missing, does not parse or
    declares no hyperparameter (``script``: its resolved path). Before any worker starts."""
    if config.n_trials < 1:
        raise TuneError("--trials must be at least 1")
    if config.parallel < 1:
        raise TuneError("--parallel must be at least 1")
    if config.patience is not None and config.patience < 0:
        raise TuneError(f"--patience must be a number of reports without a new best (0: off), got {config.patience}")
    if config.confirm < 0:
        raise TuneError(f"--confirm must be 0 (off) or a number of top trials to re-train, got {config.confirm}")
    if config.confirm_seeds < 2:
        raise TuneError(f"--confirm-seeds must be at least 2 (a mean over one seed is the search's noise again), "
                        f"got {config.confirm_seeds}")
    if config.direction is not None and config.direction not in TUNE_DIRECTIONS:
        raise TuneError(f"direction must be minimize or maximize, got {config.direction!r}")
    if not Path(script).is_file():
        raise TuneError(f"no such script: {config.script}")
    from deepdive.tune.apply import find_suggest_names

    try:
        names = find_suggest_names(Path(script).read_text(encoding="utf-8"))
    except SyntaxError as exc:
        raise TuneError(f"{config.script} does not parse: {exc.msg} (line {exc.lineno})") from None
    if not names:
        raise TuneError(f"{config.script} declares no hyperparameter: add run.suggest(\"lr\", 1e-4, 1e-1, "
                        "log=True, default=3e-3) calls (the search space lives in the script)")
