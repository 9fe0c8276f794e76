"""``--confirm K``: the search's top K trials re-trained with fresh seeds; the best mean is the study's answer.

Why: the search trains every trial once, with one seed (``--seed`` or 0), and its best value is the
maximum of many noisy draws, so it overstates what that configuration gives (the winner's curse) and
may belong to a configuration that was merely lucky. After the search ends normally, the top K
*distinct* complete trials (by value, in the study's direction) are each trained again with the seeds
S+1 … S+R (S: the search's seed), on the same warm workers, every parameter fixed to the trial's, no
pruning, the study's ``--patience`` applied as in the search and the value taken as in the search
(``--value``). The candidate with the best mean is the **answer** (:func:`confirmation`).

Re-trainings are not Optuna trials: they leave the study's trials, its budget and the sampler alone.
Each one is stored in the study's user attribute ``deepdive.confirm`` (:data:`CONFIRM_ATTR`) keyed by its
parameters and seed (:func:`run_key`), with the last confirmation's K, seeds and candidates, so that a
rerun, ``--apply`` alone and :func:`deepdive.tune.study.load_result` show it, and a rerun with
``--confirm`` re-trains only what is missing (a failed re-training counts as missing). A stored
confirmation whose candidates are no longer the study's top K (later trials ranked higher) is *stale*:
it is not the answer, and the result says so (:func:`stored_confirmation`).

:class:`Confirmation` is the phase's state in the coordinator: the re-trainings to run (each a job for a
warm worker, numbered -1, -2, … so that the worker's messages are told apart from trials'), the replies
to the worker's ``suggest``/``report`` messages, and the writes to the storage.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Optional

import attrs

from deepdive.protocol.hub_events import ConfirmCandidate, TuneConfirmation
from deepdive.tune.rounding import format_sig
from deepdive.tune.trials import LiveTrial

CONFIRM_ATTR = "deepdive.confirm"
"""The study's user attribute: ``{"k", "seeds", "numbers", "runs": {run_key: run}}`` (see :func:`run_key`)."""

# Student's t, two-sided 95 % (0.975 quantile), by degrees of freedom 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (a 95 % two-sided interval)."""
    if df < 1:
        raise ValueError("a t interval needs at least 2 values")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # beyond 30: the normal quantile with two Cornish-Fisher terms (error < 2e-4)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize(values: list[Optional[float]]) -> tuple[Optional[float], Optional[float], Optional[list[float]]]:
    """Mean, sample standard deviation and the mean's 95 % CI (Student's t) of the finished values (None: missing)."""
    done = [v for v in values if v is not None]
    if not done:
        return None, None, None
    mean = sum(done) / len(done)
    if len(done) < 2:
        return mean, None, None
    std = math.sqrt(sum((v - mean) ** 2 for v in done) / (len(done) - 1))
    half = t975(len(done) - 1) * std / math.sqrt(len(done))
    return mean, std, [mean - half, mean + half]


def run_key(params: dict[str, Any], seed: int) -> str:
    """A re-training's key in :data:`CONFIRM_ATTR`: its parameters and seed (JSON, keys sorted)."""
    return json.dumps({"params": params, "seed": seed}, sort_keys=True, default=str)


def params_key(params: dict[str, Any]) -> str:
    """Parameters as one comparable string (two trials with the same parameters are one candidate)."""
    return json.dumps(params, sort_keys=True, default=str)


def top_trials(trials: list[Any], direction: str, k: int) -> list[Any]:
    """The best ``k`` complete trials with distinct parameters, best first (ties: the older trial first)."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value)]
    sign = -1.0 if direction == "maximize" else 1.0
    complete.sort(key=lambda t: (sign * t.value, t.number))
    chosen, seen = [], set()
    for t in complete:
        key = params_key(dict(t.params))
        if key in seen:
            continue
        seen.add(key)
        chosen.append(t)
        if len(chosen) == k:
            break
    return chosen


def seeds_for(search_seed: int, r: int) -> list[int]:
    """The fresh training seeds: S+1 … S+R, S the seed the search trained every trial with."""
    return [search_seed + i for i in range(1, r + 1)]


def declared_form(dist: Any) -> Optional[dict[str, Any]]:
    """An Optuna distribution as the declaration the worker compares (:func:`deepdive.tune.worker.declared`)."""
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return {"kind": "categorical", "choices": list(dist.choices)}
    if isinstance(dist, optuna.distributions.IntDistribution):
        return {"kind": "int", "low": int(dist.low), "high": int(dist.high), "log": bool(dist.log),
                "step": int(dist.step)}
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return {"kind": "float", "low": float(dist.low), "high": float(dist.high), "log": bool(dist.log),
                "step": float(dist.step) if dist.step is not None else None}
    return None


def read_store(study: Any) -> dict[str, Any]:
    """The study's stored confirmation (:data:`CONFIRM_ATTR`), read from the storage now ({} if none)."""
    attrs_now = study._storage.get_study_user_attrs(study._study_id)
    stored = attrs_now.get(CONFIRM_ATTR)
    return dict(stored) if isinstance(stored, dict) else {}


def confirmation(direction: str, k: int, seeds: list[int], candidates: list[Any],
                 runs: dict[str, dict[str, Any]]) -> TuneConfirmation:
    """The confirmation of ``candidates`` (frozen trials, best search value first) from the stored ``runs``.

    The chosen trial has the best mean of its finished re-trainings in ``direction`` (a tie: the
    better search value); a candidate whose every re-training failed is not chosen.
    """
    rows = []
    for t in candidates:
        values = []
        for seed in seeds:
            run = runs.get(run_key(dict(t.params), seed))
            values.append(run["value"] if run and run.get("state") == "complete" else None)
        mean, std, ci = summarize(values)
        rows.append(ConfirmCandidate(number=t.number, params=dict(t.params), search_value=float(t.value),
                                     values=values, mean=mean, std=std, ci95=ci))
    sign = -1.0 if direction == "maximize" else 1.0
    ranked = sorted((r for r in rows if r.mean is not None), key=lambda r: sign * r.mean)  # stable: search order
    chosen = ranked[0] if ranked else None
    return TuneConfirmation(k=k, seeds=list(seeds), candidates=rows, chosen=chosen.number if chosen else None,
                            reason=_reason(rows, ranked, k, len(seeds)))


def _reason(rows: list[ConfirmCandidate], ranked: list[ConfirmCandidate], k: int, r: int) -> str:
    """Why the chosen trial is the answer, in one sentence (or why there is none)."""
    if not rows:
        return "no complete trial to confirm: the answer is none"
    if not ranked:
        return "no re-training finished: the answer stays the search's best, trial {}".format(rows[0].number)
    few = f" (only {len(rows)} distinct complete trial{'s' if len(rows) > 1 else ''} to confirm)" \
        if len(rows) < k else ""
    chosen, search_best = ranked[0], rows[0]

    def over(row: ConfirmCandidate) -> str:
        n = sum(1 for v in row.values if v is not None)
        return f"{format_sig(row.mean)} over {n} seed{'s' if n != 1 else ''}"

    if len(rows) == 1:
        return f"trial {chosen.number} re-trained: mean {over(chosen)}{few}"
    if chosen.number == search_best.number:
        runner = ranked[1] if len(ranked) > 1 else None
        text = f"trial {chosen.number}, the search's best, has the best re-trained mean, {over(chosen)}"
        if runner is not None:
            text += f", against trial {runner.number}'s {over(runner)}"
    else:
        text = f"trial {chosen.number}'s re-trained mean {over(chosen)} beats the search's best, trial " \
               f"{search_best.number} ({format_sig(search_best.search_value)} in the search), "
        text += f"whose mean is {over(search_best)}" if search_best.mean is not None else \
            "whose every re-training failed"
        runner = search_best if search_best.mean is not None else (ranked[1] if len(ranked) > 1 else None)
    if runner is not None and chosen.ci95 and runner.ci95 and chosen.ci95[0] <= runner.ci95[1] \
            and runner.ci95[0] <= chosen.ci95[1]:
        text += "; their 95 % intervals overlap, so the difference may be noise"
    return text + few


def stored_confirmation(study: Any, direction: str) -> tuple[Optional[TuneConfirmation], Optional[str]]:
    """The study's stored confirmation if it is current, else None and a note saying why it is not shown.

    Current: its candidates are still the study's top K (no later trial ranks among them).
    """
    stored = read_store(study)
    if not stored.get("numbers") and not stored.get("runs"):
        return None, None
    k, seeds, numbers = int(stored.get("k") or 0), list(stored.get("seeds") or []), list(stored.get("numbers") or [])
    top = top_trials(study.get_trials(deepcopy=False), direction, k) if k else []
    if [t.number for t in top] != numbers:
        return None, (f"the stored confirmation of trial{'s' if len(numbers) != 1 else ''} "
                      f"{', '.join(map(str, numbers))} is out of date (the study's top {k} changed since): "
                      f"rerun with --confirm {k} to re-train the new ones")
    return confirmation(direction, k, seeds, top, dict(stored.get("runs") or {})), None


@attrs.define
class Retraining:
    """One re-training: a candidate's parameters, a fresh seed, and the job's live state on a worker."""

    job: int
    """Its number in the worker's messages (negative: not a trial)."""
    number: int
    params: dict[str, Any]
    presampled: dict[str, Any]
    seed: int
    live: LiveTrial
    """The patience and best-so-far bookkeeping, as a trial's."""


class Confirmation:
    """The confirmation phase's state (see the module's docstring); the coordinator runs its loop.

    Args:
        study: the Optuna study (the candidates are read from it, the runs written to its user attributes).
        lock: the study's :class:`~deepdive.tune.storage.StudyLock` (runs are merged under it).
        direction, metric, value_mode, patience: the study's, as in the search.
        k, r: ``--confirm K``, ``--confirm-seeds R``; ``search_seed``: S (``--seed`` or 0).
        log_dir: where each re-training's output goes.
        emit: the study's event sink (``StudyOutput.emit``).
    """

    def __init__(self, study: Any, lock: Any, direction: str, metric: str, value_mode: str,
                 patience: Optional[int], k: int, r: int, search_seed: int, log_dir: Any,
                 emit: Callable[..., None], study_name: str):
        self.study, self.lock = study, lock
        self.direction, self.metric, self.value_mode, self.patience = direction, metric, value_mode, patience
        self.k, self.seeds = k, seeds_for(search_seed, r)
        self.log_dir, self.emit, self.study_name = log_dir, emit, study_name
        self.candidates = top_trials(study.get_trials(deepcopy=False), direction, k)
        with lock:
            stored = read_store(study)
            self.runs: dict[str, dict[str, Any]] = dict(stored.get("runs") or {})
            stored.update(k=k, seeds=self.seeds, numbers=[t.number for t in self.candidates], runs=self.runs)
            study.set_user_attr(CONFIRM_ATTR, stored)
        self.todo: list[Retraining] = []
        for t in self.candidates:
            presampled = {}
            for name, dist in t.distributions.items():
                form = declared_form(dist)
                if form is not None and name in t.params:
                    presampled[name] = {"value": t.params[name], "declared": form}
            for seed in self.seeds:
                run = self.runs.get(run_key(dict(t.params), seed))
                if run and run.get("state") == "complete":
                    continue  # stored by an earlier run: not trained twice
                job = -(len(self.todo) + 1)
                self.todo.append(Retraining(job, t.number, dict(t.params), presampled, seed, LiveTrial(job, None)))
        self.total = len(self.todo)
        self.running: dict[int, Retraining] = {}
        self.done = 0
        self.train_s = 0.0

    @property
    def finished(self) -> bool:
        """Every re-training ran (complete or failed)."""
        return not self.todo and not self.running

    def next_job(self) -> Optional[Retraining]:
        """The next re-training to hand to a free worker (None: none left to start)."""
        if not self.todo:
            return None
        retraining = self.todo.pop(0)
        retraining.live.started = time.monotonic()
        retraining.live.log = str(self.log_dir / f"confirm-{retraining.number}-seed{retraining.seed}.log")
        self.running[retraining.job] = retraining
        return retraining

    def answer(self, conn: Any, message: tuple) -> bool:
        """Reply to a re-training's ``suggest``/``used``/``report`` message; True for ``done`` (see :meth:`end`)."""
        kind, job = message[0], message[1]
        retraining = self.running.get(job)
        if retraining is None:
            return kind == "done"
        if kind == "suggest":
            param = message[2]
            problem = _fixed_value_problem(retraining, param)
            if problem:
                conn.send(("error", problem))
            else:
                conn.send(("value", retraining.params[param["name"]]))
        elif kind == "report":
            _, _, step, value = message
            live = retraining.live
            value = live.best_so_far(value, self.direction)  # counts the reports without a new best
            if self.patience is not None and live.stale >= self.patience:
                conn.send(("stop", f"stopped early: no better {self.metric} than {live.best_reported:.6g} in "
                                   f"{self.patience} reports (--patience {self.patience})"))
            else:
                conn.send(("prune", False))  # a re-training is never pruned
        return kind == "done"

    def end(self, job: int, state: str, value: Optional[float], reason: Optional[str],
            train_s: float = 0.0) -> None:
        """A re-training ended (``state`` complete or fail): stored at once, and its ``tune.confirm`` event."""
        retraining = self.running.pop(job, None)
        if retraining is None:
            return
        if state == "complete" and (value is None or not math.isfinite(value)):
            state, reason = "fail", reason or f"the value is {value} (not a finite number)"
        if state not in ("complete", "fail"):  # (a re-training is never pruned)
            state = "fail"
        if state != "complete":
            value = None
        reason = reason.replace("\n", " ")[:300] if reason else None
        self.train_s += train_s
        run = {"number": retraining.number, "params": retraining.params, "seed": retraining.seed, "state": state,
               "value": value, "reason": reason, "train_s": train_s, "value_mode": self.value_mode}
        key = run_key(retraining.params, retraining.seed)
        with self.lock:  # other processes on the study may store theirs: merge, never overwrite
            stored = read_store(self.study)
            runs = dict(stored.get("runs") or {})
            runs[key] = run
            stored["runs"] = runs
            self.study.set_user_attr(CONFIRM_ATTR, stored)
        self.runs = runs
        self.done += 1
        self.emit("tune.confirm", study=self.study_name, number=retraining.number, seed=retraining.seed,
                  state=state, value=value, reason=reason, done=self.done, total=self.total)

    def result(self) -> TuneConfirmation:
        """The confirmation from everything stored (this run's re-trainings and earlier ones)."""
        return confirmation(self.direction, self.k, self.seeds, self.candidates, self.runs)


def _fixed_value_problem(retraining: Retraining, param: dict[str, Any]) -> Optional[str]:
    """Why the trial's value cannot answer this declaration (None: it can): the script changed since the search."""
    name = param.get("name")
    if name not in retraining.params:
        return (f"the script declares {name!r}, which trial {retraining.number} did not have (the script "
                "changed since the search): rerun the search")
    value = retraining.params[name]
    if param.get("kind") == "categorical":
        ok = value in list(param.get("choices") or [])
    else:
        ok = isinstance(value, (int, float)) and float(param["low"]) <= value <= float(param["high"])
    if not ok:
        return (f"trial {retraining.number}'s {name}={value!r} is outside the script's declaration now (the "
                "script changed since the search): rerun the search")
    return None


def as_dict(confirmed: Optional[TuneConfirmation]) -> Optional[dict[str, Any]]:
    """The confirmation as plain data (snake_case keys, as the protocol class), for JSON and events."""
    return attrs.asdict(confirmed) if confirmed is not None else None
