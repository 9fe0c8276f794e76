"""Bayesian hyperparameter search over a training script, with Optuna: the coordinator.

``deepdive tune SCRIPT`` (and :func:`run_study`) runs the script once per trial. The search space
lives in the script (define-by-run): each ``run.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3)``
asks the study's sampler for the trial's value when the script reaches it. ``run.log(<metric>=v)``
reports an intermediate value (step = the number of earlier reports of the metric: the epoch index
for a script that evaluates once per epoch, comparable whatever the batch size); the pruner may stop the trial there
(the engine raises ``TrialPruned``; the trial ends cleanly, marked pruned).

The trial's value
-----------------
The last value the script reported for the metric with ``run.log`` (so a ``run.log(accuracy=...)``
after training is the value); when it reported none, the metric's figure in ``run.finish()``'s
summary (e.g. ``--metric final_loss``); otherwise the trial fails ("never reported"). With
``value="best"`` (``--value best``) it is the best value reported in the study's direction instead:
the epoch that early stopping (keep the best checkpoint) would keep, which ranks configurations of a
model that overfits by what they can reach rather than by where they stopped. The study records its
choice, so a rerun continues with the same one. The intermediate values are then the best so far
too, so the pruner compares trials at a step by what each will be judged on, and a trial that dips
for an epoch after a good one is not pruned for the dip (the pruning curves are monotone).

Processes
---------
One coordinator (this module, in the ``deepdive tune`` process) owns the study; K warm workers
(:mod:`deepdive.tune.worker`: torch imported once) execute trials in-process with ``runpy``. A
worker that dies (segfault, OOM killer, ``kill``) fails its trial with the signal as reason and is
replaced by a fresh process. With GPUs, each worker sees one (``CUDA_VISIBLE_DEVICES``): one trial
per GPU, extra trials wait with a reason; ``pack=True`` runs several per GPU, as many as the peak
memory measured on the first trial there allows.

Storage round trips (the design)
--------------------------------
The persistent storage (SQLite in ``.deepdive/tune.db`` by default, any RDB URL, or ``journal:PATH``)
is the truth that other machines share: trials are created there (``ask``), parameters sampled there
(define-by-run ``suggest`` goes to the real trial, so TPE sees every finished trial and, with
``constant_liar``, the running ones), and results written there. Intermediate values do not each go
there: the coordinator keeps a *mirror* study in memory (:class:`Ledger`) with the same name,
direction and trial numbers, holding every trial's intermediate values; a report is appended to the
mirror and the real Optuna pruner decides on the mirror (``pruner.prune(mirror, trial)``, which is
exactly what ``Trial.should_prune`` does). Trials of other processes are copied into the mirror at
each ``ask``. At trial end the intermediate values (and what the pruner marked on the trial, e.g.
successive halving's rungs) go to the persistent storage in one batch (one transaction for RDB
storages), then the final state. Other processes sharing the storage see a trial's intermediate
values when it ends. Pruning decisions are thus
the ones Optuna makes with direct reporting on the same values (tested), while a report costs a
pipe round trip instead of a database commit.

Crash safety
------------
Each trial records its owner (host, pid, process start time) as a system attribute, and RDB storages
get Optuna heartbeats. On start, RUNNING trials whose owner process on this host is gone (a
``kill -9`` of a previous ``deepdive tune``) are marked FAIL ("orphaned"), as are trials with a stale
heartbeat (RDB storages: their process died on any machine). Orphans do not count toward ``n_trials``,
so a rerun continues the study to N finished trials. ``retry_failed`` enqueues the parameters of failed
trials once more (a retried failure no longer counts).

The budget
----------
``n_trials`` is the study's, not this process's: any number of ``deepdive tune`` processes on one
storage and study end with N trials between them, and none creates trial N+1. Trials are created
only inside a reservation under the study's lock (:mod:`deepdive.tune.budget`, which defines what
counts; :mod:`deepdive.tune.storage` for the lock), where every process's running trials hold places.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Optional

import attrs

from deepdive.extras import module_not_found_in, pip_command
from deepdive.tune.budget import NEVER_STARTED, ORPHANED, REASON_ATTR, RETRY_ATTR, Budget, fail_stale, finished_count
from deepdive.tune.errors import TuneError
from deepdive.tune.labels import pruner_label, sampler_label
from deepdive.tune.metric import guess_direction
from deepdive.tune.rounding import format_sig
from deepdive.tune.storage import StudyLock, default_storage, open_storage, redact

log = logging.getLogger("deepdive.tune")

SAMPLERS = ("auto", "tpe", "gp", "cmaes", "random")
PRUNERS = ("auto", "hyperband", "asha", "median", "none")
OWNER_ATTR = "deepdive:owner"
STOPPED_ATTR = "deepdive:stopped"  # ended by --patience: complete, but shorter than the script's full run
META_ATTR = "deepdive"
VALUE_MODES = ("last", "best")
UNTAGGED_ORPHAN_S = 2.0  # a RUNNING trial with no owner this old (file storages): its creator died
MAX_INTERMEDIATE = 200
FINAL_STATES = 2000  # trials whose final state tune.done carries (the dashboard keeps as many)
EMIT_PERIOD = 0.2  # at most 5 tune.trial events a second per trial for intermediate values
IMPORTANCE_MIN_COMPLETE = 20
"""Complete trials before parameter importance is shown: with fewer, fANOVA named the most important
of four parameters right in about a third of random studies (chance: a quarter); 60% at 20, 80% at 30
(README, *Hyperparameter search*)."""


@attrs.define
class StudyConfig:
    """What to search. ``script_args`` go to the script after its own name."""

    script: str
    n_trials: int = 20
    script_args: list[str] = attrs.Factory(list)
    parallel: int = 1
    storage: Optional[str] = None
    study_name: Optional[str] = None
    sampler: str = "auto"
    pruner: str = "auto"
    metric: Optional[str] = None
    direction: Optional[str] = None
    value: Optional[str] = None
    """``"last"`` (the last reported value is the trial's value) or ``"best"`` (the best one in the
    direction); default: the study's recorded choice, else ``"last"``."""
    patience: Optional[int] = None
    """Early stopping inside a trial: end it, complete and valued at its best report, when this many
    reports in a row have not improved on its best (needs ``value="best"``, which it implies)."""
    timeout: Optional[float] = None
    seed: Optional[int] = None
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


@attrs.define
class StudyResult:
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

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


# ---------------------------------------------------------------------------------------------
# storage, sampler, pruner
# ---------------------------------------------------------------------------------------------


def make_sampler(name: str, parallel: int, seed: Optional[int]) -> Any:
    import optuna

    if name in ("auto", "tpe"):
        return optuna.samplers.TPESampler(multivariate=True, constant_liar=parallel > 1, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":  # Gaussian-process Bayesian optimisation: for small budgets; running trials count as pending
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise TuneError(f"the gp sampler needs scipy: {pip_command('tune')}") from None
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise TuneError(f"the CMA-ES sampler needs the cmaes package: {pip_command('tune')}") from None
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise TuneError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


def make_pruner(name: str) -> Any:
    import optuna

    if name in ("auto", "hyperband"):
        from deepdive.tune.pruners import LearntHyperbandPruner

        # auto: the first rung after a quarter of a full trial's reports; hyperband: Optuna's schedule
        # (after the second report). Both learn a full trial's length from trials --patience did not end.
        return LearntHyperbandPruner(first_rung_share=4 if name == "auto" else None)
    if name == "asha":  # successive halving, one bracket: every trial is judged at every rung
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TuneError(f"pruner must be one of {', '.join(PRUNERS)}, got {name!r}")


# ---------------------------------------------------------------------------------------------
# the ledger: persistent study + in-memory mirror for pruning
# ---------------------------------------------------------------------------------------------


class Ledger:
    """The study's trials, persistent (``study``) and mirrored in memory for pruning decisions.

    ``begin`` asks the persistent study for a trial; ``report`` records an intermediate value in
    the mirror and returns Optuna's pruning decision there; ``finish`` writes the intermediate
    values in one batch and the final state to the persistent storage.
    """

    def __init__(self, study: Any, rdb: Any = None, direct: bool = False):
        import optuna

        self.direct = direct  # the naive way (benchmark baseline): every report to the storage
        self.study = study
        self.rdb = rdb
        self.pruner = study.pruner
        self.mirror_storage = optuna.storages.InMemoryStorage()
        self.mirror = optuna.create_study(storage=self.mirror_storage, study_name=study.study_name,
                                          directions=study.directions, pruner=self.pruner,
                                          sampler=optuna.samplers.RandomSampler(seed=0))
        self._mirror_id = self.mirror._study_id
        self.live: dict[int, Any] = {}       # number -> optuna.Trial (persistent), ours and running
        self.values: dict[int, dict[int, float]] = {}
        self._synced: set[int] = set()       # numbers whose mirror copy is final
        self.writes = 0                      # persistent write calls (for the benchmark)

    # -- mirror sync ----------------------------------------------------------------------------

    def _mirror_trial_id(self, number: int) -> int:
        return self.mirror_storage.get_trial_id_from_study_id_trial_number(self._mirror_id, number)

    def sync(self, upto: Optional[int] = None) -> None:
        """Copy the persistent trials into the mirror (numbers kept equal), refreshing others' trials."""
        import optuna
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        have = len(self.mirror_storage.get_all_trials(self._mirror_id, deepcopy=False))
        for frozen in trials:
            number = frozen.number
            if upto is not None and number > upto:
                break
            if number < have:
                if number in self._synced or number in self.live:
                    continue
                if frozen.state == TrialState.RUNNING:
                    self._refresh_running(number, frozen)
                    continue
                self._replace_finished(number, frozen)
                continue
            finished = frozen.state.is_finished() and number not in self.live
            template = optuna.trial.create_trial(
                state=frozen.state if finished else TrialState.RUNNING,
                params=frozen.params, distributions=frozen.distributions,
                intermediate_values=dict(frozen.intermediate_values),
                value=frozen.value if finished and frozen.state == TrialState.COMPLETE else None,
                system_attrs={} if number in self.live else dict(frozen.system_attrs),
            )
            self.mirror_storage.create_new_trial(self._mirror_id, template_trial=template)
            have += 1
            if finished:
                self._synced.add(number)

    def _refresh_running(self, number: int, frozen: Any) -> None:
        trial_id = self._mirror_trial_id(number)
        mirror = self.mirror_storage.get_trial(trial_id)
        for step, value in frozen.intermediate_values.items():
            if step not in mirror.intermediate_values:
                self.mirror_storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in frozen.system_attrs.items():  # e.g. a pruner's completed_rung_N marks
            if mirror.system_attrs.get(key) != value:
                self.mirror_storage.set_trial_system_attr(trial_id, key, value)

    def _replace_finished(self, number: int, frozen: Any) -> None:
        from optuna.trial import TrialState

        trial_id = self._mirror_trial_id(number)
        self._refresh_running(number, frozen)
        for name, dist in frozen.distributions.items():
            if name not in self.mirror_storage.get_trial(trial_id).params:
                self.mirror_storage.set_trial_param(trial_id, name, dist.to_internal_repr(frozen.params[name]), dist)
        values = frozen.values if frozen.state == TrialState.COMPLETE else None
        self.mirror_storage.set_trial_state_values(trial_id, frozen.state, values)
        self._synced.add(number)

    # -- one trial ------------------------------------------------------------------------------

    def create(self, owner: Optional[dict[str, Any]] = None) -> Any:
        """Ask the persistent study for a trial, tagged with its owner (inside a budget reservation)."""
        trial = self.study.ask()
        self.writes += 1
        if owner is not None:  # at once: a trial without its owner is an orphan only after a grace time
            self.study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner)
            self.writes += 1
        return trial

    def begin(self, owner: Optional[dict[str, Any]] = None,
              trial: Any = None) -> tuple[Any, dict[str, dict[str, Any]]]:
        """Take a trial (``trial``, made by :meth:`create`; else a new one) and mirror it (and everything before it).

        Returns the trial and its presampled parameters (see :mod:`deepdive.tune.worker`): the
        sampler's relative sample, drawn now, keyed by name, each with the declaration it is for.
        """
        if trial is None:
            trial = self.create(owner)
        self.live[trial.number] = trial
        self.values[trial.number] = {}
        if self.direct:
            return trial, {}
        self.sync(upto=trial.number)
        return trial, self._presample(trial)

    def _presample(self, trial: Any) -> dict[str, dict[str, Any]]:
        """The sampler's values for the parameters the script will declare, drawn now.

        Relative (joint) samples come from ``trial.relative_params``. Parameters outside the
        relative space that earlier trials declared (every parameter in TPE's random start-up
        trials) are sampled independently now and pinned as the trial's fixed values, so that
        recording them later stores the same value.
        """
        import optuna
        from optuna.trial import TrialState

        fixed = getattr(trial, "_fixed_params", None)
        if fixed is None or fixed:
            return {}  # an enqueued trial (a retry): its fixed values go through suggest
        try:
            sample = dict(trial.relative_params)  # e.g. multivariate TPE's joint sample
        except Exception:  # noqa: BLE001 - a sampler that cannot sample yet: every suggest asks
            return {}
        space = dict(trial.relative_search_space or {})
        known = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        frozen = getattr(trial, "_cached_frozen_trial", None)
        if known and frozen is not None:
            filter_study = getattr(optuna.pruners, "_filter_study", None)
            study = filter_study(self.study, frozen) if filter_study else self.study
            for name, dist in known[-1].distributions.items():
                if name in sample or dist.single():
                    continue
                try:
                    value = self.study.sampler.sample_independent(study, frozen, name, dist)
                except Exception:  # noqa: BLE001 - left to the script's own suggest
                    continue
                fixed[name] = value  # Trial._suggest takes it when the parameter is recorded
                sample[name], space[name] = value, dist
        ready: dict[str, dict[str, Any]] = {}
        for name, value in sample.items():
            dist = space.get(name)
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                form = {"kind": "categorical", "choices": list(dist.choices)}
            elif isinstance(dist, optuna.distributions.IntDistribution):
                form = {"kind": "int", "low": int(dist.low), "high": int(dist.high), "log": bool(dist.log),
                        "step": int(dist.step)}
            elif isinstance(dist, optuna.distributions.FloatDistribution):
                form = {"kind": "float", "low": float(dist.low), "high": float(dist.high), "log": bool(dist.log),
                        "step": float(dist.step) if dist.step is not None else None}
            else:
                continue
            if dist.single():
                continue
            ready[name] = {"value": value.item() if hasattr(value, "item") else value, "declared": form}
        return ready

    def suggest(self, number: int, param: dict[str, Any]) -> Any:
        """Define-by-run: the real trial's value for a declaration made by the script."""
        trial = self.live[number]
        name = param["name"]
        if param["kind"] == "categorical":
            value = trial.suggest_categorical(name, param["choices"])
        elif param["kind"] == "int":
            step = int(param["step"]) if param.get("step") else 1
            value = trial.suggest_int(name, int(param["low"]), int(param["high"]), step=step, log=param["log"])
        else:
            value = trial.suggest_float(name, float(param["low"]), float(param["high"]),
                                        step=param.get("step"), log=param["log"])
        self.writes += 1  # the parameter is stored with the trial
        if self.direct:
            return value
        frozen = self.study._storage.get_trial(trial._trial_id)
        trial_id = self._mirror_trial_id(number)
        if name not in self.mirror_storage.get_trial(trial_id).params:
            dist = frozen.distributions[name]
            self.mirror_storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
        return value

    def report(self, number: int, step: int, value: float) -> bool:
        """Record an intermediate value in the mirror; Optuna's pruner decides there. True: prune."""
        seen = self.values[number]
        if step in seen:
            return False
        seen[step] = value
        if self.direct:
            trial = self.live[number]
            trial.report(value, step)
            self.writes += 1
            return bool(trial.should_prune())
        trial_id = self._mirror_trial_id(number)
        self.mirror_storage.set_trial_intermediate_value(trial_id, step, value)
        frozen = self.mirror_storage.get_trial(trial_id)
        return bool(self.pruner.prune(self.mirror, frozen))

    def finish(self, number: int, state: str, value: Optional[float] = None, reason: Optional[str] = None) -> None:
        """Write the trial's intermediate values (one batch) and its end state to the persistent storage."""
        from optuna.trial import TrialState

        trial = self.live.pop(number)
        values = self.values.pop(number, {})
        attrs_out: dict[str, Any] = {}
        if not self.direct:
            # what the pruner marked on the mirror's trial (e.g. successive halving's rungs) is
            # part of the study: other processes' pruners read it
            attrs_out.update(self.mirror_storage.get_trial(self._mirror_trial_id(number)).system_attrs)
        if reason:
            attrs_out[REASON_ATTR] = reason[:500]
        self._write_batch(trial._trial_id, values, attrs_out)
        optuna_state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}[state]
        if state == "complete" and (value is None or not math.isfinite(value)):
            optuna_state = TrialState.FAIL
        self.study.tell(trial, value if optuna_state == TrialState.COMPLETE else None, state=optuna_state)
        self.writes += 1
        if self.direct:
            return
        trial_id = self._mirror_trial_id(number)
        mirror_values = [value] if optuna_state == TrialState.COMPLETE else None
        self.mirror_storage.set_trial_state_values(trial_id, optuna_state, mirror_values)
        self._synced.add(number)

    def mark_stopped(self, number: int) -> None:
        """The trial ends early by --patience: Hyperband must not learn a full trial's length from it."""
        if self.direct:
            self.study._storage.set_trial_system_attr(self.live[number]._trial_id, STOPPED_ATTR, True)
        else:  # written to the storage with the trial's other marks when it ends
            self.mirror_storage.set_trial_system_attr(self._mirror_trial_id(number), STOPPED_ATTR, True)

    def _write_batch(self, trial_id: int, values: dict[int, float], system_attrs: dict[str, Any]) -> None:
        """Intermediate values and system attributes: one transaction on RDB storages."""
        if not values and not system_attrs:
            return
        if self.rdb is not None:
            try:
                from optuna.storages._rdb import models
                from optuna.storages._rdb.storage import _create_scoped_session

                with _create_scoped_session(self.rdb.scoped_session, True) as session:
                    for step, value in values.items():
                        self.rdb._set_trial_intermediate_value_without_commit(session, trial_id, step, value)
                    for key, value in system_attrs.items():
                        self.rdb._set_trial_attr_without_commit(session, models.TrialSystemAttributeModel,
                                                                trial_id, key, value)
                self.writes += 1
                return
            except (ImportError, AttributeError):
                pass  # another Optuna: one call per item below
        for step, value in values.items():
            self.study._storage.set_trial_intermediate_value(trial_id, step, value)
            self.writes += 1
        for key, value in system_attrs.items():
            self.study._storage.set_trial_system_attr(trial_id, key, value)
            self.writes += 1


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------


@attrs.define
class _Worker:
    index: int
    proc: subprocess.Popen
    conn: Connection
    device: Optional[str]  # a GPU index or None (CPU)
    threads: str = "1"
    ready: bool = False
    number: Optional[int] = None  # the trial it runs
    started: float = 0.0


@attrs.define
class _Trial:
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


def _gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return []


def _gpu_total_mib(device: str) -> Optional[float]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(device))
            return pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def _process_started(pid: int) -> Optional[float]:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


_POOL: list[_Worker] = []  # warm workers kept between studies of this process


def _stop(workers: list[_Worker], busy: tuple[int, ...] = ()) -> None:
    for worker in workers:
        if worker.index in busy or not worker.ready:  # a trial to abandon, or still importing torch
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            continue
        try:
            worker.conn.send(("stop",))
        except OSError:
            pass
    deadline = time.time() + 5
    for worker in workers:
        try:
            worker.proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            worker.proc.wait()
        try:
            worker.conn.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# the coordinator
# ---------------------------------------------------------------------------------------------


class Coordinator:
    def __init__(self, config: StudyConfig):
        self.config = config
        self.script = str(Path(config.script).resolve())
        self.workspace = str(Path(config.workspace or os.getcwd()).resolve())
        self.storage_url = config.storage or default_storage(self.workspace)
        self.study_name = config.study_name or Path(self.script).stem
        self.trials: dict[int, _Trial] = {}
        self.workers: list[_Worker] = []
        self.pending: list[_Trial] = []
        self.orphaned: list[int] = []
        self.retried: list[int] = []
        self.script_seconds = 0.0
        self.startup_seconds: Optional[float] = None
        self.best: Optional[tuple[int, float]] = None
        self.completed_since_importance = 0
        self.started = time.time()
        self.reporter: Any = None
        self.log_dir = Path(self.workspace) / ".deepdive" / "tune-logs" / self.study_name
        self.gpu_capacity: dict[str, int] = {}
        self.gpu_peak: dict[str, float] = {}
        self._counted: Optional[int] = None
        self._counted_at = 0.0
        self.room: Optional[int] = None  # the budget's room at the last reservation (other processes' trials too)
        self._room_at = 0.0
        self._importance_thread: Optional[threading.Thread] = None
        self.first_start: Optional[float] = None  # perf_counter of the first trial sent to a worker
        self.last_done: Optional[float] = None
        self.remote_suggests = 0
        self.stopped = 0  # trials that patience ended early (this session)
        self._importance_ready: Optional[tuple[dict[str, float], Optional[str]]] = None

    # -- setup ----------------------------------------------------------------------------------

    def open(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        import warnings

        # heartbeats are recorded by this coordinator (ask/tell), not by Study.optimize: expected here
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.filterwarnings("ignore", message=".*fail_stale_trials.*")
        cfg = self.config
        if cfg.n_trials < 1:
            raise TuneError("--trials must be at least 1")
        if cfg.parallel < 1:
            raise TuneError("--parallel must be at least 1")
        if cfg.patience is not None and cfg.patience < 1:
            raise TuneError(f"--patience must be at least 1 (reports without a new best), got {cfg.patience}")
        if cfg.direction not in (None, "minimize", "maximize"):
            raise TuneError(f"direction must be minimize or maximize, got {cfg.direction!r}")
        if not Path(self.script).is_file():
            raise TuneError(f"no such script: {cfg.script}")
        from deepdive.tune.apply import find_suggest_names

        try:
            names = find_suggest_names(Path(self.script).read_text(encoding="utf-8"))
        except SyntaxError as exc:
            raise TuneError(f"{cfg.script} does not parse: {exc.msg} (line {exc.lineno})") from None
        if not names:
            raise TuneError(f"{cfg.script} declares no hyperparameter: add run.suggest(\"lr\", 1e-4, 1e-1, "
                            "log=True, default=3e-3) calls (the search space lives in the script)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if cfg.warm:
            self._start_workers()  # torch imports in the workers while the storage opens here
        try:
            self._open_study()
        except BaseException:
            self._stop_workers()
            raise

    def _open_study(self) -> None:
        import optuna

        cfg = self.config
        self.storage = open_storage(self.storage_url, cfg.heartbeat_interval, cfg.grace_period)
        self.rdb = self.storage if isinstance(self.storage, optuna.storages.RDBStorage) else None
        pruner = make_pruner(cfg.pruner)
        existing = None
        try:
            existing = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:
            pass
        # A resumed study with the same seed would replay the first run's random start-up
        # samples: offset the seed by the trials already there (still reproducible).
        seed = cfg.seed
        if seed is not None and existing is not None:
            seed += len(existing.get_trials(deepcopy=False))
        sampler = make_sampler(cfg.sampler, cfg.parallel, seed)
        meta = dict(existing.user_attrs.get(META_ATTR, {})) if existing else {}
        self.metric, direction, self.metric_source = self._metric_and_direction(meta, existing)
        if existing is not None and existing.direction.name.lower() != direction:
            raise TuneError(f"study {self.study_name!r} exists with direction {existing.direction.name.lower()}: "
                            f"use another --study name or --direction {existing.direction.name.lower()}")
        self.direction = direction
        value = cfg.value or meta.get("value") or ("best" if cfg.patience else "last")
        if value not in VALUE_MODES:
            raise TuneError(f"--value must be one of {', '.join(VALUE_MODES)}, got {value!r}")
        if cfg.patience is not None and value != "best":
            raise TuneError(f"--patience ends a trial at its best report, but this study scores trials by their "
                            f"{value} one: use --value best (a new --study name if it has results)")
        if existing is not None and meta and meta.get("value", "last") != value and any(
                t.state.name == "COMPLETE" for t in existing.get_trials(deepcopy=False)):
            raise TuneError(f"study {self.study_name!r} scores each trial by its {meta.get('value', 'last')} value: "
                            f"use --value {meta.get('value', 'last')} or another --study name")
        self.value_mode = value
        self.study = optuna.create_study(storage=self.storage, study_name=self.study_name, direction=direction,
                                         sampler=sampler, pruner=pruner, load_if_exists=True)
        if meta.get("metric") != self.metric or meta.get("value", "last") != value:
            self.study.set_user_attr(META_ATTR, {"metric": self.metric, "direction": direction, "value": value,
                                                 "script": Path(self.script).name})
        self.ledger = Ledger(self.study, self.rdb, direct=cfg.direct_reports)
        self.lock = StudyLock(self.storage_url, self.rdb, self.study_name)
        self.budget = Budget(self.study, self.lock, cfg.n_trials, self._recover, self.orphaned)
        with self.lock:  # with the other processes on the study: one recovers, one enqueues each retry
            self._recover()
            if cfg.retry_failed:
                self._enqueue_retries()
        from deepdive.engine.reporter import Reporter

        self.reporter = Reporter.from_env(f"tune-{self.study_name}", 0)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_started(os.getpid())}

    def _metric_and_direction(self, meta: dict[str, Any], existing: Any) -> tuple[str, str, str]:
        """The study's metric and direction, and where they came from: the options, else the study's
        record, else the script (:func:`deepdive.tune.metric.default_metric`: not the batch loss)."""
        from deepdive.tune.metric import default_metric

        cfg = self.config
        if cfg.metric:
            metric, source = cfg.metric, "--metric"
        elif meta.get("metric"):
            metric, source = meta["metric"], "the study's recorded metric"
        else:
            choice = default_metric(Path(self.script).read_text(encoding="utf-8"))
            if cfg.direction is None and not meta.get("direction") and existing is None:
                return choice.metric, choice.direction, f"from the script: {choice.source}"
            metric, source = choice.metric, f"from the script: {choice.source}"
        if cfg.direction:
            return metric, cfg.direction, f"{source}; --direction"
        if meta.get("direction"):
            return metric, meta["direction"], f"{source}; the study's direction"
        if existing is not None:
            return metric, existing.direction.name.lower(), f"{source}; the existing study's direction"
        return metric, guess_direction(metric), f"{source}; direction guessed from the name"

    def _recover(self) -> None:
        """Fail RUNNING trials whose tune process is gone (this host) or whose heartbeat is stale."""
        import optuna
        from optuna.trial import TrialState

        host = socket.gethostname()
        storage = self.study._storage
        now = time.time()
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = frozen.system_attrs.get(OWNER_ATTR)
            if owner is None and (self.rdb is None or self.storage_url.startswith("sqlite")) \
                    and frozen.datetime_start is not None \
                    and now - frozen.datetime_start.timestamp() > UNTAGGED_ORPHAN_S:
                # created (ask) but never tagged: its process died between the two writes. Only a
                # file on this machine can say so (journal, SQLite); server databases have heartbeats.
                pid = None
            elif not isinstance(owner, dict) or owner.get("host") != host:
                continue
            else:
                pid = owner.get("pid")
                alive = isinstance(pid, int) and _process_started(pid) is not None and (
                    owner.get("started") is None or abs((_process_started(pid) or 0) - owner["started"]) < 1.0)
                if alive:
                    continue
            reason = (f"{ORPHANED}: its tune process (pid {pid}) ended while it ran (killed?)" if pid is not None
                      else f"{ORPHANED}: its tune process ended before the trial started (killed?)")
            try:
                storage.set_trial_system_attr(frozen._trial_id, REASON_ATTR, reason)
                storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
                self.orphaned.append(frozen.number)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # finished meanwhile
        if self.rdb is not None:
            self.orphaned.extend(fail_stale(self.study, self.config.grace_period))

    def _emit_history(self, most: int = 200) -> None:
        """The study's finished trials (a resumed study), so that the dashboard shows all of it."""
        for frozen in self.study.get_trials(deepcopy=False)[-most:]:
            if not frozen.state.is_finished():
                continue
            duration = (frozen.datetime_complete - frozen.datetime_start).total_seconds() \
                if frozen.datetime_complete and frozen.datetime_start else None
            inter = [[step, value] for step, value in sorted(frozen.intermediate_values.items())][-MAX_INTERMEDIATE:]
            self.emit("tune.trial", study=self.study_name, number=frozen.number, state=frozen.state.name.lower(),
                      params=dict(frozen.params), value=frozen.value, intermediate=inter,
                      reason=frozen.system_attrs.get(REASON_ATTR), worker=None, waiting_reason=None,
                      duration_s=duration)

    def _enqueue_retries(self) -> None:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        retried = {t.system_attrs.get(RETRY_ATTR) for t in trials} | {
            t.user_attrs.get(RETRY_ATTR) for t in trials}
        for frozen in trials:
            if frozen.state == TrialState.FAIL and frozen.number not in retried and frozen.params:
                self.study.enqueue_trial(frozen.params, user_attrs={RETRY_ATTR: frozen.number},
                                         skip_if_exists=False)
                self.retried.append(frozen.number)

    # -- counting -------------------------------------------------------------------------------

    def counted(self) -> int:
        """Finished trials toward n_trials: orphans and failures that were retried do not count.

        Read from the storage at most once a second (other processes may add trials), else kept here.
        """
        now = time.monotonic()
        if self._counted is None or now - self._counted_at > 1.0:
            self._counted, self._counted_at = self._count(), now
        return self._counted

    def _count(self) -> int:
        return finished_count(self.study.get_trials(deepcopy=False), self.orphaned)

    def _reserve(self, want: int) -> list[Any]:
        """Up to ``want`` new trials, within the study's budget (shared with other processes)."""
        made, self.room = self.budget.reserve(want, lambda: self.ledger.create(self.owner))
        self._room_at = time.monotonic()
        self._counted = None  # the reservation may have failed orphans
        return made

    def _budget_spent(self) -> bool:
        """No room for another trial in the study: its N trials are finished or running (any process).

        Looks again (under the study's lock) at most once a second.
        """
        if self.room is None or (self.room <= 0 and time.monotonic() - self._room_at > 1.0):
            self._reserve(0)
        return self.room is not None and self.room <= 0

    # -- workers --------------------------------------------------------------------------------

    def _slots(self) -> list[Optional[str]]:
        """One entry per worker: the GPU it sees, or None on CPU."""
        gpus = _gpus()
        k = self.config.parallel
        if not gpus:
            return [None] * k
        if self.config.pack:
            return [gpus[i % len(gpus)] for i in range(k)]
        return [gpus[i] for i in range(min(k, len(gpus)))]

    def _spawn(self, index: int, device: Optional[str]) -> _Worker:
        import socket as sock

        parent, child = sock.socketpair()
        env = dict(os.environ)
        for key in ("DEEPDIVE_HUB", "DEEPDIVE_EVENTS_FD", "DEEPDIVE_METRICS_OUT"):
            env.pop(key, None)
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1)
                                                                            // self.config.parallel))
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device  # this worker's trials see one GPU
        env["DEEPDIVE_RUN_ID"] = f"tune-{self.study_name}-w{index}"
        argv = [sys.executable, "-P", "-m", "deepdive.tune.worker", str(child.fileno())]
        if not self.config.warm:
            argv.append("--once")
        out = open(self.log_dir / f"worker-{index}.log", "ab")
        try:
            proc = subprocess.Popen(argv, pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, cwd=self.workspace, start_new_session=True)
        finally:
            out.close()
            child.close()
        conn = Connection(parent.detach())
        return _Worker(index, proc, conn, device, threads=env["OMP_NUM_THREADS"])

    def _start_workers(self) -> None:
        self.workers = []
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // self.config.parallel))
        for i, device in enumerate(self._slots()):
            kept = next((w for w in _POOL if w.device == device and w.proc.poll() is None),
                        None) if self.config.warm else None
            if kept is not None:
                _POOL.remove(kept)
                kept.index, kept.number, kept.threads = i, None, threads
                self.workers.append(kept)
            else:
                self.workers.append(self._spawn(i, device))

    def _replace(self, worker: _Worker) -> None:
        try:
            worker.conn.close()
        except OSError:
            pass
        if worker.proc.poll() is None:
            try:
                os.killpg(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        worker.proc.wait()
        self.workers[worker.index] = self._spawn(worker.index, worker.device)

    def _stop_workers(self, busy: tuple[int, ...] = ()) -> None:
        if self.config.reuse_workers and self.config.warm:
            keep = [w for w in self.workers if w.index not in busy and w.ready and w.proc.poll() is None]
            _POOL.extend(keep)
            self.workers = [w for w in self.workers if w not in keep]
        _stop(self.workers, busy)

    def _gpu_busy(self, device: Optional[str]) -> bool:
        if device is None or not self.config.pack:
            return False
        running = sum(1 for w in self.workers if w.device == device and w.number is not None)
        capacity = self.gpu_capacity.get(device, 1)
        return running >= capacity

    # -- telemetry ------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        if self.reporter is not None and self.reporter.enabled:
            self.reporter.event(kind, **fields)
        if self.config.on_event is not None:
            self.config.on_event(kind, fields)

    def _best_so_far(self, number: int, value: float) -> float:
        """The trial's best reported value in the study's direction, this one included (NaN never wins)."""
        from deepdive.engine.hparams import improves  # torch-free

        t = self.trials[number]
        if improves(value, t.best_reported, self.direction):
            t.best_reported, t.stale = value, 0
        elif t.best_reported is not None:  # patience counts from the first real value (NaN never is one)
            t.stale += 1
        return value if t.best_reported is None else t.best_reported

    def emit_trial(self, t: _Trial) -> None:
        inter = [[step, value] for step, value in sorted(t.values.items())][-MAX_INTERMEDIATE:]
        t.last_emit = time.monotonic()
        t.dirty = False
        self.emit("tune.trial", study=self.study_name, number=t.number, state=t.state, params=dict(t.params),
                  value=t.value, intermediate=inter, reason=t.reason, worker=t.worker,
                  waiting_reason=t.waiting_reason, duration_s=t.duration_s)

    def _progress(self) -> None:
        from deepdive.jobs import events

        done = self.counted()
        best = f" · best {format_sig(self.best[1])}" if self.best else ""
        fraction = min(1.0, done / self.config.n_trials)
        events.progress(fraction, f"trial {min(done + 1, self.config.n_trials)}/{self.config.n_trials}{best}"
                        if done < self.config.n_trials else f"{done}/{self.config.n_trials} trials{best}")
        if self.config.on_event is not None:
            self.config.on_event("progress", {"done": done, "total": self.config.n_trials,
                                              "best": self.best[1] if self.best else None})

    def _update_best(self) -> None:
        try:
            best = self.study.best_trial
        except ValueError:
            return
        if self.best is None or self.best[0] != best.number:
            self.best = (best.number, best.value)
            self.emit("tune.best", study=self.study_name, number=best.number, value=best.value,
                      params=dict(best.params))

    def importance(self, study: Any = None) -> tuple[dict[str, float], Optional[str]]:
        import optuna
        from optuna.trial import TrialState

        study = study or self.study
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) < IMPORTANCE_MIN_COMPLETE:
            return {}, (f"importance appears after {IMPORTANCE_MIN_COMPLETE} completed trials ({len(complete)} so far): "
                        "with fewer, fANOVA's ranking of the parameters is mostly chance")
        try:
            values = optuna.importance.get_param_importances(study)
        except Exception as exc:  # e.g. every complete trial has the same parameters
            return {}, f"parameter importance unavailable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return {name: float(v) for name, v in values.items()}, None

    def _emit_importance(self) -> None:
        values, note = self.importance()
        self.emit("tune.importance", study=self.study_name, importances=values, note=note)

    def _importance_later(self) -> None:
        """Importance of the finished trials so far, computed in a thread (fANOVA takes a while):
        the coordinator keeps answering its workers; the loop emits the result when it is there."""
        import optuna
        from optuna.trial import TrialState

        if self._importance_thread is not None and self._importance_thread.is_alive():
            return
        snapshot = optuna.create_study(directions=self.study.directions)
        snapshot.add_trials([t for t in self.study.get_trials(deepcopy=True) if t.state == TrialState.COMPLETE])

        def compute() -> None:
            self._importance_ready = self.importance(snapshot)

        self._importance_thread = threading.Thread(target=compute, name="deepdive-importance", daemon=True)
        self._importance_thread.start()

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> StudyResult:
        self.open()
        cfg = self.config
        self.emit("tune.study", study=self.study_name, direction=self.direction, metric=self.metric,
                  sampler=cfg.sampler, pruner=cfg.pruner, n_trials=cfg.n_trials, parallel=cfg.parallel,
                  storage=redact(self.storage_url), metric_source=self.metric_source,
                  sampler_label=sampler_label(cfg.sampler, cfg.parallel), pruner_label=pruner_label(cfg.pruner),
                  importance_after=IMPORTANCE_MIN_COMPLETE)
        self._emit_history()
        self._update_best()
        self._progress()
        deadline: Optional[float] = None  # --timeout counts from the first ready worker (not its start-up)
        last_heartbeat = time.monotonic()
        if self.counted() >= cfg.n_trials or self._budget_spent():  # a rerun of a finished study runs no trial
            self._stop_workers()
        elif not self.workers:
            self._start_workers()
        # fANOVA's imports (scikit-learn, ~2 s) while the workers start, not after the last trial
        threading.Thread(target=_import_importance, name="deepdive-imports", daemon=True).start()
        interrupted = False
        try:
            while True:
                if self.startup_seconds is None and any(w.ready for w in self.workers):
                    self.startup_seconds = time.time() - self.started
                if cfg.timeout and deadline is None and any(w.ready for w in self.workers):
                    deadline = time.monotonic() + cfg.timeout
                stopping = deadline is not None and time.monotonic() >= deadline
                running = [w for w in self.workers if w.number is not None]
                in_flight = len(running) + len(self.pending)
                if not stopping and self.counted() + in_flight < cfg.n_trials:
                    self._fill()
                if not any(w.number is not None for w in self.workers) and not self.pending:
                    if stopping or self.counted() >= cfg.n_trials or self._budget_spent():
                        break
                self._dispatch()
                self._pump(0.1)
                now = time.monotonic()
                if self.rdb is not None and now - last_heartbeat >= cfg.heartbeat_interval:
                    for t in self.trials.values():
                        if t.state in ("running", "waiting"):  # a prepared trial waits a whole trial's time
                            self.storage.record_heartbeat(t.trial._trial_id)
                    last_heartbeat = now
                for t in self.trials.values():
                    if t.dirty and now - t.last_emit >= EMIT_PERIOD:
                        self.emit_trial(t)
                if self._importance_ready is not None:
                    (ready, note), self._importance_ready = self._importance_ready, None
                    self.emit("tune.importance", study=self.study_name, importances=ready, note=note)
                if cfg.trial_timeout:
                    for w in self.workers:
                        if w.number is not None and time.monotonic() - w.started > cfg.trial_timeout:
                            self._worker_died(w, f"timed out after {cfg.trial_timeout:g} s (killed)")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            busy = tuple(w.index for w in self.workers if w.number is not None)
            self._stop_workers(busy)
            for w in list(self.workers):
                if w.number is not None:
                    t = self.trials[w.number]
                    self._finish(t, "fail", None, "interrupted: the tune process stopped")
                    w.number = None
        for t in list(self.pending):
            self._finish(t, "fail", None, f"{NEVER_STARTED}: the study stopped (timeout or interrupt)")
        self.pending.clear()
        result = self.result()
        self._emit_importance()
        self.emit("tune.done", study=self.study_name, n_complete=result.n_complete, n_pruned=result.n_pruned,
                  n_fail=result.n_fail, best_value=result.best_value, best_params=result.best_params,
                  seconds=result.seconds, trials=_final_states(result.trials))
        if self.reporter is not None:
            self.reporter.close()
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _fill(self) -> None:
        """Ask for trials while a worker (or a waiting spot) is free."""
        # Ask only for a ready worker (a trial's clock starts at ask), or, once every worker is
        # ready, for trials that wait on a GPU (parallel > GPUs).
        idle = [w for w in self.workers if w.number is None and w.ready and not self._gpu_busy(w.device)]
        free = len(idle) - len(self.pending)
        if all(w.ready for w in self.workers):
            want = self.config.parallel - sum(1 for w in self.workers if w.number is not None) - len(self.pending)
        else:
            want = free
        prefetch = False
        # (not under --timeout: a prepared trial the deadline leaves unstarted would stay in the study, failed)
        if want <= 0 and not self.pending and self.config.prefetch and self.config.warm \
                and not self.config.timeout and all(w.ready for w in self.workers):
            want, prefetch = 1, True  # the next trial, ready for the first worker to finish
        want = min(want, self.config.n_trials - self.counted() - sum(
            1 for w in self.workers if w.number is not None) - len(self.pending))
        if want <= 0 or (self.room is not None and self.room <= 0 and time.monotonic() - self._room_at < 1.0):
            return  # (no room a moment ago: the other processes' trials are running; look again later)
        for made in self._reserve(want):
            trial, presampled = self.ledger.begin(trial=made)
            if self.rdb is not None:
                self.storage.record_heartbeat(trial._trial_id)
            t = _Trial(trial.number, trial, log=str(self.log_dir / f"trial-{trial.number}.log"),
                       values=self.ledger.values[trial.number], presampled=presampled)
            self.trials[t.number] = t
            self.pending.append(t)
            if free <= 0 and not prefetch:
                gpus = len({w.device for w in self.workers})
                if not self.config.pack:
                    t.waiting_reason = (f"every GPU runs a trial ({gpus} GPU(s), one trial each; --pack shares a "
                                        "GPU by measured peak memory)")
                elif any(w.device not in self.gpu_capacity for w in self.workers):
                    t.waiting_reason = "waiting for a first trial on each GPU to measure its peak memory"
                else:
                    t.waiting_reason = ("every GPU is full: " + ", ".join(
                        f"GPU {d} fits {c} trial(s) of {self.gpu_peak.get(d, 0):.0f} MiB peak"
                        for d, c in sorted(self.gpu_capacity.items())))
                self.emit_trial(t)
            free -= 1

    def _dispatch(self) -> None:
        for w in self.workers:
            if not self.pending:
                return
            if w.number is not None or not w.ready or self._gpu_busy(w.device):
                continue
            t = self.pending.pop(0)
            t.state, t.worker, t.waiting_reason, t.started = "running", w.index, None, time.monotonic()
            w.number, w.started = t.number, time.monotonic()
            job = {"number": t.number, "script": self.script, "args": list(self.config.script_args),
                   "cwd": self.workspace, "metric": self.metric, "direction": self.direction,
                   "value": self.value_mode,
                   "seed": self.config.seed if self.config.seed is not None else 0, "log": t.log,
                   "threads": int(w.threads), "presampled": t.presampled}
            if self.first_start is None:
                self.first_start = time.perf_counter()
            try:
                w.conn.send(("run", job))
            except OSError:
                self._worker_died(w, None)
                continue
            self.emit_trial(t)

    def _pump(self, timeout: float) -> None:
        conns = {w.conn: w for w in self.workers}
        try:
            ready = wait(list(conns), timeout=timeout)
        except OSError:
            ready = []
        for conn in ready:
            w = conns[conn]
            # answer everything the worker has said (suggest/report are request-reply)
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    self._worker_died(w, None)
                    break
                self._handle(w, message)
                if self.workers[w.index] is not w or not conn.poll():
                    break
        for w in list(self.workers):
            if w.proc.poll() is not None:
                self._worker_died(w, None)

    def _handle(self, w: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            w.ready = True
        elif kind == "suggest":
            _, number, param = message
            self.remote_suggests += 1
            if param.get("name") in self.trials[number].presampled:
                # declared otherwise than presampled (e.g. a range changed in the script): the
                # value pinned for it is void; the sampler draws for the new declaration
                fixed = getattr(self.trials[number].trial, "_fixed_params", None)
                if fixed:
                    fixed.pop(param["name"], None)
            try:
                value = self.ledger.suggest(number, param)
                w.conn.send(("value", value))
            except Exception as exc:
                w.conn.send(("error", f"suggest({param.get('name')!r}): {exc}"))
                return
            t = self.trials[number]
            t.params[param["name"]] = value
            self.emit_trial(t)
        elif kind == "used":  # a presampled value the script took; no answer is awaited
            _, number, param = message
            t = self.trials[number]
            try:
                value = self.ledger.suggest(number, param)
            except Exception as exc:  # noqa: BLE001 - e.g. the storage refused the write
                t.problem = f"could not record parameter {param.get('name')!r}: {type(exc).__name__}: {exc}"[:300]
                return
            expected = t.presampled.get(param["name"], {}).get("value")
            if value != expected:
                t.problem = (f"parameter {param.get('name')!r}: the storage holds {value!r}, the trial ran with "
                             f"{expected!r}")
            t.params[param["name"]] = value
            self.emit_trial(t)
        elif kind == "report":
            _, number, step, value = message
            if self.value_mode == "best":  # the pruner compares trials by what they are judged on
                value = self._best_so_far(number, value)
            prune = self.ledger.report(number, step, value)
            t = self.trials[number]
            patience = self.config.patience
            if not prune and patience is not None and t.stale >= patience:
                self.stopped += 1
                self.ledger.mark_stopped(number)
                w.conn.send(("stop", f"stopped early: no better {self.metric} than {t.best_reported:.6g} in "
                                     f"{patience} report{'s' if patience > 1 else ''} (--patience {patience})"))
            else:
                w.conn.send(("prune", prune))
            t.dirty = True
            if time.monotonic() - t.last_emit >= EMIT_PERIOD:
                self.emit_trial(t)
        elif kind == "done":
            _, number, outcome = message
            self.last_done = time.perf_counter()
            w.number = None
            t = self.trials[number]
            if self.config.warm and not outcome.get("oom"):
                self._dispatch()  # a prepared trial starts now; this one is booked while it runs
            t.train_s = float(outcome.get("train_s") or 0.0)
            self.script_seconds += float(outcome.get("script_s") or 0.0)
            reason = outcome.get("reason")
            if outcome["state"] == "fail":
                lines = _tail(t.log)
                if lines and reason and lines[-1] not in reason:
                    reason = f"{reason} | {lines[-1]}"
            peak = outcome.get("peak_mem_mib")
            if peak and w.device is not None:
                self._measured(w.device, peak)
            state, value = outcome["state"], outcome.get("value")
            if t.problem and state == "complete":
                state, value, reason = "fail", None, t.problem
            self._finish(t, state, value, reason)
            if outcome.get("oom") or not self.config.warm:
                self._replace(w)  # a fresh process after an out-of-memory error (or in cold mode)

    def _measured(self, device: str, peak: float) -> None:
        self.gpu_peak[device] = max(self.gpu_peak.get(device, 0.0), peak)
        total = _gpu_total_mib(device)
        if total:
            self.gpu_capacity[device] = max(1, int(0.9 * total // max(self.gpu_peak[device], 1.0)))

    def _worker_died(self, w: _Worker, reason: Optional[str]) -> None:
        if self.workers[w.index] is not w:
            return
        code = w.proc.poll()
        if reason is None:
            if code is None:
                try:
                    code = w.proc.wait(2)
                except subprocess.TimeoutExpired:
                    code = None
            if code is not None and code < 0:
                name = _signal_name(code)
                reason = f"the worker process was killed by {name}" + (
                    " (out of memory? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else "")
            else:
                reason = f"the worker process exited with status {code}"
        if w.number is not None:
            t = self.trials[w.number]
            lines = _tail(t.log)
            if lines:
                reason = f"{reason} | {lines[-1]}"
            w.number = None
            self._finish(t, "fail", None, reason)
        elif not w.ready:
            lines = _tail(str(self.log_dir / f"worker-{w.index}.log"))
            last = lines[-1] if lines else reason
            raise TuneError(f"a tune worker could not start: {module_not_found_in(last) or last}")
        self._replace(w)

    def _finish(self, t: _Trial, state: str, value: Optional[float], reason: Optional[str]) -> None:
        if t.number not in self.ledger.live:
            return
        if state == "complete" and (value is None or not math.isfinite(value)):
            state, reason = "fail", reason or f"the trial's value is {value} (not a finite number)"
        self.ledger.finish(t.number, state, value, reason)
        self._counted = None
        t.state, t.value, t.reason = state, (value if state == "complete" else None), reason
        t.duration_s = time.monotonic() - t.started if t.started is not None else None
        if reason:
            t.reason = reason.replace("\n", " ")[:300]
        self.emit_trial(t)
        if state == "complete":
            self._update_best()
            self.completed_since_importance += 1
            if self.completed_since_importance >= 10:
                self.completed_since_importance = 0
                self._importance_later()
        self._progress()

    # -- results --------------------------------------------------------------------------------

    def result(self) -> StudyResult:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        history = []
        for frozen in trials:
            duration = (frozen.datetime_complete - frozen.datetime_start).total_seconds() \
                if frozen.datetime_complete and frozen.datetime_start else None
            history.append({
                "number": frozen.number, "state": frozen.state.name.lower(), "value": frozen.value,
                "params": dict(frozen.params), "reason": frozen.system_attrs.get(REASON_ATTR),
                "duration_s": duration, "intermediate": [[s, v] for s, v in sorted(frozen.intermediate_values.items())],
                "retry_of": frozen.user_attrs.get(RETRY_ATTR),
                "train_s": self.trials[frozen.number].train_s if frozen.number in self.trials else None,
            })
        count = {state: sum(1 for t in trials if t.state == state) for state in TrialState}
        elsewhere = sum(1 for t in trials if t.state == TrialState.RUNNING and t.number not in self.trials)
        try:
            best = self.study.best_trial
            best_number, best_value, best_params = best.number, best.value, dict(best.params)
        except ValueError:
            best_number, best_value, best_params = None, None, {}
        importances, note = self.importance()
        return StudyResult(
            study=self.study_name, storage=redact(self.storage_url), metric=self.metric, direction=self.direction,
            n_complete=count[TrialState.COMPLETE], n_pruned=count[TrialState.PRUNED], n_fail=count[TrialState.FAIL],
            best_number=best_number, best_value=best_value, best_params=best_params, importances=importances,
            importance_note=note, trials=history, seconds=time.time() - self.started, orphaned=self.orphaned,
            retried=self.retried, train_seconds=sum(t.train_s or 0.0 for t in self.trials.values()),
            script_seconds=self.script_seconds,
            storage_writes=self.ledger.writes if hasattr(self, "ledger") else 0,
            session_trials=sum(1 for t in self.trials.values() if t.started is not None),
            startup_seconds=self.startup_seconds, remote_suggests=self.remote_suggests,
            trials_span_seconds=(self.last_done - self.first_start) if self.first_start and self.last_done else None,
            value_mode=getattr(self, "value_mode", "last"), n_stopped=self.stopped,
            n_trials=self.config.n_trials if hasattr(self, "budget") else None,
            n_counted=finished_count(trials, self.orphaned), running_elsewhere=elsewhere,
            metric_source=getattr(self, "metric_source", None),
            sampler=sampler_label(self.config.sampler, self.config.parallel) if hasattr(self, "budget") else None,
            pruner=pruner_label(self.config.pruner) if hasattr(self, "budget") else None,
        )


def _final_states(history: list[dict[str, Any]]) -> list[list[Any]]:
    """``[number, state, value]`` of the study's newest trials as the storage holds them at the end.

    The dashboard settles each trial's state from this (a trial's last live event may have been
    dropped on the way); a trial another process still runs stays ``running``. Bounded like the
    dashboard's own trial list (``MAX_TRIALS`` in extension/webview/tune.ts).
    """
    return [[t["number"], t["state"], t["value"]] for t in history[-FINAL_STATES:]]


def _import_importance() -> None:
    try:
        import optuna.importance  # noqa: F401
    except Exception:  # noqa: BLE001 - importance() reports the problem when it runs
        return


@atexit.register
def _stop_pool() -> None:
    workers, _POOL[:] = list(_POOL), []
    _stop(workers)


def _tail(path: Optional[str]) -> list[str]:
    if not path:
        return []
    from deepdive.tune.worker import tail

    return tail(path)


def run_study(config: StudyConfig) -> StudyResult:
    """Run (or continue) a study; see the module's docstring.

    Raises:
        TuneError: bad input (no script, no suggest() in it, bad storage URL, bad option).
    """
    return Coordinator(config).run()


def load_result(script: str, storage: Optional[str] = None, study_name: Optional[str] = None,
                workspace: Optional[str] = None) -> StudyResult:
    """The result of an existing study (nothing runs).

    Raises:
        TuneError: no such study in the storage, or a storage that cannot be opened.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    coordinator = Coordinator(StudyConfig(script, storage=storage, study_name=study_name, workspace=workspace))
    coordinator.storage = open_storage(coordinator.storage_url, None, None)
    try:
        coordinator.study = optuna.load_study(study_name=coordinator.study_name, storage=coordinator.storage)
    except KeyError:
        raise TuneError(f"no study {coordinator.study_name!r} in {redact(coordinator.storage_url)}: run "
                        f"`deepdive tune {script} --trials N` first") from None
    meta = coordinator.study.user_attrs.get(META_ATTR, {})
    coordinator.metric = meta.get("metric", "?")
    coordinator.metric_source = "the study's recorded metric" if meta.get("metric") else None
    coordinator.value_mode = meta.get("value", "last")
    coordinator.direction = coordinator.study.direction.name.lower()
    coordinator.started = time.time()
    return coordinator.result()
