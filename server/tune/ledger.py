"""The ledger: the study's trials in the persistent storage, mirrored in memory for pruning.

Why a mirror (the design, in :mod:`deepdive.tune.study`): a report is appended to an in-memory
copy of the study, and Optuna's real pruner decides there (``pruner.prune(mirror, trial)``, what
``Trial.should_prune`` does), instead of a database commit per report; the intermediate values and
what the pruner marked reach the persistent storage in one batch when the trial ends. Trials of
other processes are copied into the mirror at each ``begin``. ``direct=True`` is the naive way
(every report to the storage), kept as the benchmark's baseline. Optuna loads when a ledger is made.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from deepdive.tune.budget import REASON_ATTR
from deepdive.tune.recovery import OWNER_ATTR

STOPPED_ATTR = "deepdive:stopped"  # ended by --patience: complete, but shorter than the script's full run


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
