"""The coordinator: one study's run in the ``deepdive tune`` process (the design: :mod:`deepdive.tune.study`).

:class:`Coordinator` opens the study (options and script checked, the storage opened, the study's
choices settled, orphans failed), then loops: it reserves trials within the study's budget
(:mod:`deepdive.tune.budget`), hands each to a free worker (:mod:`deepdive.tune.pool`), answers the
worker's ``suggest`` and ``report`` messages (:mod:`deepdive.tune.worker` describes them) through
the ledger (:mod:`deepdive.tune.ledger`: pruning decided on the in-memory mirror), ends the trial
in the storage, and shows all of it (:mod:`deepdive.tune.output`). The search ends when the study holds N
counted trials, at ``timeout``, or on Ctrl-C (running trials end failed, with that reason). With
``confirm`` (``--confirm K``), a search that ended without Ctrl-C is followed by the confirmation phase
(:mod:`deepdive.tune.confirm`): the top K trials re-trained with fresh seeds on the same workers, their
messages told apart from trials' by a negative number; the best mean is the study's answer.

One file (about 500 lines): the loop and the handling of the workers' messages share the study's live
state (reservations, running trials, the ledger), and splitting them would pass the coordinator around.
"""

from __future__ import annotations

import math
import os
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Optional

from deepdive.extras import module_not_found_in
from deepdive.tune.algorithms import make_pruner, make_sampler
from deepdive.tune.budget import NEVER_STARTED, Budget, finished_count
from deepdive.tune.choices import choose, record, recorded
from deepdive.tune.config import StudyConfig, check_config
from deepdive.tune.confirm import Confirmation, as_dict, stored_confirmation
from deepdive.tune.errors import TuneError
from deepdive.tune.importance import (IMPORTANCE_MIN_COMPLETE, BackgroundImportance, Importance, import_importance,
                                      importance)
from deepdive.tune.labels import pruner_label, sampler_label
from deepdive.tune.ledger import Ledger
from deepdive.tune.output import EMIT_PERIOD, StudyOutput
from deepdive.tune.pool import Worker, WorkerPool
from deepdive.tune.recovery import enqueue_retries, fail_orphans, owner
from deepdive.tune.result import StudyResult, final_states, trial_history
from deepdive.tune.storage import StudyLock, default_storage, open_storage, redact
from deepdive.tune.trials import LiveTrial
from deepdive.tune.worker import tail


class Coordinator:
    """One study's run (see the module's docstring): :meth:`run` opens it, runs trials, returns the result."""

    def __init__(self, config: StudyConfig):
        self.config = config
        self.script = str(Path(config.script).resolve())
        self.workspace = str(Path(config.workspace or os.getcwd()).resolve())
        self.storage_url = config.storage or default_storage(self.workspace)
        self.study_name = config.study_name or Path(self.script).stem
        self.trials: dict[int, LiveTrial] = {}
        self.pending: list[LiveTrial] = []
        self.orphaned: list[int] = []
        self.retried: list[int] = []
        self.script_seconds = 0.0
        self.startup_seconds: Optional[float] = None
        self.best: Optional[tuple[int, float]] = None
        self.completed_since_importance = 0
        self.started = time.time()
        self.output = StudyOutput(self.study_name, config.n_trials, config.on_event)
        self.log_dir = Path(self.workspace) / ".deepdive" / "tune-logs" / self.study_name
        self.pool = WorkerPool(config, self.workspace, self.study_name, self.log_dir)
        self._counted: Optional[int] = None
        self._counted_at = 0.0
        self.room: Optional[int] = None  # the budget's room at the last reservation (other processes' trials too)
        self._room_at = 0.0
        self.background_importance = BackgroundImportance()
        self.first_start: Optional[float] = None  # perf_counter of the first trial sent to a worker
        self.last_done: Optional[float] = None
        self.remote_suggests = 0
        self.stopped = 0  # trials that patience ended early (this session)
        self.confirming: Optional[Confirmation] = None  # the confirmation phase, once it has begun
        self.confirmed: Any = None  # its TuneConfirmation when it ended (None: no confirmation ran)
        self.confirm_note: Optional[str] = None
        self._pool_stopped = False

    @property
    def workers(self) -> list[Worker]:
        """The study's workers, ``workers[i].index == i`` (:class:`deepdive.tune.pool.WorkerPool`)."""
        return self.pool.workers

    # -- setup ----------------------------------------------------------------------------------

    def open(self) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        import warnings

        # heartbeats are recorded by this coordinator (ask/tell), not by Study.optimize: expected here
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.filterwarnings("ignore", message=".*fail_stale_trials.*")
        cfg = self.config
        check_config(cfg, self.script)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if cfg.warm:
            self.pool.start()  # torch imports in the workers while the storage opens here
        try:
            self._open_study()
        except BaseException:
            self.pool.stop()
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
        meta = recorded(existing)
        choices = choose(cfg, self.script, self.study_name, meta, existing)
        self.metric, self.direction, self.metric_source = choices.metric, choices.direction, choices.metric_source
        self.value_mode = choices.value_mode
        self.patience, self.patience_source = choices.patience, choices.patience_source
        self.study = optuna.create_study(storage=self.storage, study_name=self.study_name,
                                         direction=self.direction, sampler=sampler, pruner=pruner,
                                         load_if_exists=True)
        record(self.study, meta, choices, self.script)
        self.ledger = Ledger(self.study, self.rdb, direct=cfg.direct_reports)
        self.lock = StudyLock(self.storage_url, self.rdb, self.study_name)
        self.budget = Budget(self.study, self.lock, cfg.n_trials, self._recover, self.orphaned)
        with self.lock:  # with the other processes on the study: one recovers, one enqueues each retry
            self._recover()
            if cfg.retry_failed:
                self.retried.extend(enqueue_retries(self.study))
        self.output.connect()
        self.owner = owner()

    def _recover(self) -> None:
        """Fail RUNNING trials whose tune process is gone (:func:`deepdive.tune.recovery.fail_orphans`)."""
        self.orphaned.extend(fail_orphans(self.study, self.rdb, self.storage_url, self.config.grace_period))

    # -- counting -------------------------------------------------------------------------------

    def counted(self) -> int:
        """Finished trials toward n_trials: orphans and failures that were retried do not count.

        Read from the storage at most once a second (other processes may add trials), else kept here.
        """
        now = time.monotonic()
        if self._counted is None or now - self._counted_at > 1.0:
            self._counted = finished_count(self.study.get_trials(deepcopy=False), self.orphaned)
            self._counted_at = now
        return self._counted

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

    # -- telemetry ------------------------------------------------------------------------------

    def emit_trial(self, t: LiveTrial) -> None:
        """The trial's ``tune.trial`` event, now (its reports are then sent: not dirty)."""
        t.last_emit = time.monotonic()
        t.dirty = False
        self.output.trial(t.number, t.state, t.params, t.value, t.values, t.reason, t.worker, t.waiting_reason,
                          t.duration_s)

    def _progress(self) -> None:
        self.output.progress(self.counted(), self.best[1] if self.best else None)

    def _update_best(self) -> None:
        try:
            best = self.study.best_trial
        except ValueError:
            return
        if self.best is None or self.best[0] != best.number:
            self.best = (best.number, best.value)
            self.output.emit("tune.best", study=self.study_name, number=best.number, value=best.value,
                             params=dict(best.params))

    def importance(self, study: Any = None) -> Importance:
        """``study``'s parameter importances (default: this study's), or none and why (:mod:`.importance`)."""
        return importance(study or self.study)

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> StudyResult:
        self.open()
        cfg = self.config
        self.output.emit("tune.study", study=self.study_name, direction=self.direction, metric=self.metric,
                         sampler=cfg.sampler, pruner=cfg.pruner, n_trials=cfg.n_trials, parallel=cfg.parallel,
                         storage=redact(self.storage_url), metric_source=self.metric_source,
                         sampler_label=sampler_label(cfg.sampler, cfg.parallel), pruner_label=pruner_label(cfg.pruner),
                         patience=self.patience, patience_source=self.patience_source, value=self.value_mode,
                         importance_after=IMPORTANCE_MIN_COMPLETE)
        self.output.history(self.study)
        self._update_best()
        self._progress()
        deadline: Optional[float] = None  # --timeout counts from the first ready worker (not its start-up)
        last_heartbeat = time.monotonic()
        if self.counted() >= cfg.n_trials or self._budget_spent():  # a rerun of a finished study runs no trial
            self.pool.stop()  # (kept warm in this process: a confirmation takes them back)
            self._pool_stopped = True
        elif not self.workers:
            self.pool.start()
        # fANOVA's imports (scikit-learn, ~2 s of CPU) only for a study that can reach the trials importance
        # needs, and once the first trial trains (not while the workers start: on few cores they would
        # share the CPU with the workers' torch import, the start-up every study pays), not after the last
        self._imports_pending = cfg.n_trials >= IMPORTANCE_MIN_COMPLETE
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
                computed = self.background_importance.take()
                if computed is not None:
                    ready, note = computed
                    self.output.emit("tune.importance", study=self.study_name, importances=ready, note=note)
                if cfg.trial_timeout:
                    for w in self.workers:
                        if w.number is not None and time.monotonic() - w.started > cfg.trial_timeout:
                            self._worker_died(w, f"timed out after {cfg.trial_timeout:g} s (killed)")
            if cfg.confirm:
                self._confirm()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            busy = tuple(w.index for w in self.workers if w.number is not None)
            self.pool.stop(busy)
            for w in list(self.workers):
                if w.number is not None and w.number < 0:  # a re-training (--confirm): what it stored stays
                    w.number = None
                elif w.number is not None:
                    t = self.trials[w.number]
                    self._finish(t, "fail", None, "interrupted: the tune process stopped")
                    w.number = None
        for t in list(self.pending):
            self._finish(t, "fail", None, f"{NEVER_STARTED}: the study stopped (timeout or interrupt)")
        self.pending.clear()
        result = self.result()
        values, note = self.importance()
        self.output.emit("tune.importance", study=self.study_name, importances=values, note=note)
        self.output.emit("tune.done", study=self.study_name, n_complete=result.n_complete,
                         n_pruned=result.n_pruned, n_fail=result.n_fail, best_value=result.best_value,
                         best_params=result.best_params, seconds=result.seconds, trials=final_states(result.trials),
                         chosen_number=result.chosen_number, chosen_params=result.chosen_params,
                         confirmed=result.confirmed)
        self.output.close()
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _fill(self) -> None:
        """Ask for trials while a worker (or a waiting spot) is free."""
        # Ask only for a ready worker (a trial's clock starts at ask), or, once every worker is
        # ready, for trials that wait on a GPU (parallel > GPUs).
        idle = [w for w in self.workers if w.number is None and w.ready and not self.pool.gpu_busy(w.device)]
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
            t = LiveTrial(trial.number, trial, log=str(self.log_dir / f"trial-{trial.number}.log"),
                       values=self.ledger.values[trial.number], presampled=presampled)
            self.trials[t.number] = t
            self.pending.append(t)
            if free <= 0 and not prefetch:
                t.waiting_reason = self.pool.waiting_reason()
                self.emit_trial(t)
            free -= 1

    def _dispatch(self) -> None:
        for w in self.workers:
            if not self.pending:
                return
            if w.number is not None or not w.ready or self.pool.gpu_busy(w.device):
                continue
            t = self.pending.pop(0)
            t.state, t.worker, t.waiting_reason, t.started = "running", w.index, None, time.monotonic()
            w.number, w.started = t.number, time.monotonic()
            job = self._job(w, t.number, self._search_seed(), t.log, t.presampled)
            if self.first_start is None:
                self.first_start = time.perf_counter()
            if getattr(self, "_imports_pending", False):
                self._imports_pending = False
                threading.Thread(target=import_importance, name="deepdive-imports", daemon=True).start()
            try:
                w.conn.send(("run", job))
            except OSError:
                self._worker_died(w, None)
                continue
            self.emit_trial(t)

    def _search_seed(self) -> int:
        """The training seed of every search trial: ``--seed``, else 0 (re-trainings use the next ones)."""
        return self.config.seed if self.config.seed is not None else 0

    def _job(self, w: Worker, number: int, seed: int, log: Optional[str], presampled: dict[str, Any]) -> dict[str, Any]:
        """The ``run`` message's job for worker ``w`` (:mod:`deepdive.tune.worker`)."""
        return {"number": number, "script": self.script, "args": list(self.config.script_args),
                "cwd": self.workspace, "metric": self.metric, "direction": self.direction,
                "value": self.value_mode, "seed": seed, "log": log, "threads": int(w.threads),
                "presampled": presampled}

    # -- confirmation (--confirm K) ---------------------------------------------------------------

    def _confirm(self) -> None:
        """Re-train the top K trials with fresh seeds on the workers (:mod:`deepdive.tune.confirm`)."""
        cfg = self.config
        phase = Confirmation(self.study, self.lock, self.direction, self.metric, self.value_mode, self.patience,
                             cfg.confirm, cfg.confirm_seeds, self._search_seed(), self.log_dir, self.output.emit,
                             self.study_name)
        self.confirming = phase
        if phase.total:
            if self._pool_stopped or not self.workers:
                self.pool.start()
                self._pool_stopped = False
            self.output.confirm_progress(0, phase.total)
        while not phase.finished:
            for w in self.workers:
                if w.number is not None or not w.ready or self.pool.gpu_busy(w.device):
                    continue
                retraining = phase.next_job()
                if retraining is None:
                    break
                w.number, w.started = retraining.job, time.monotonic()
                job = self._job(w, retraining.job, retraining.seed, retraining.live.log, retraining.presampled)
                try:
                    w.conn.send(("run", job))
                except OSError:
                    self._worker_died(w, None)
            self._pump(0.1)
            if cfg.trial_timeout:
                for w in self.workers:
                    if w.number is not None and time.monotonic() - w.started > cfg.trial_timeout:
                        self._worker_died(w, f"timed out after {cfg.trial_timeout:g} s (killed)")
        self.confirmed = phase.result()
        self.output.emit("tune.confirmed", study=self.study_name, **as_dict(self.confirmed))

    def _confirm_message(self, w: Worker, message: tuple) -> None:
        """A re-training's message (its number is negative): answered by the phase; its end stored."""
        phase = self.confirming
        if phase is None:
            return
        if not phase.answer(w.conn, message):
            return
        _, job, outcome = message
        w.number = None
        reason = outcome.get("reason")
        if outcome["state"] == "fail":
            lines = _tail(phase.running[job].live.log if job in phase.running else None)
            if lines and reason and lines[-1] not in reason:
                reason = f"{reason} | {lines[-1]}"
        self._measured(w, outcome)
        phase.end(job, outcome["state"], outcome.get("value"), reason, float(outcome.get("train_s") or 0.0))
        self.output.confirm_progress(phase.done, phase.total)
        if outcome.get("oom") or not self.config.warm:
            self.pool.replace(w)

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

    def _handle(self, w: Worker, message: tuple) -> None:
        kind = message[0]
        if kind in ("suggest", "used", "report", "done") and message[1] < 0:
            self._confirm_message(w, message)
        elif kind == "ready":
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
                value = self.trials[number].best_so_far(value, self.direction)
            prune = self.ledger.report(number, step, value)
            t = self.trials[number]
            patience = self.patience
            if not prune and patience is not None and t.stale >= patience:
                self.stopped += 1
                self.ledger.mark_stopped(number)
                w.conn.send(("stop", f"stopped early: no better {self.metric} than {t.best_reported:.6g} in "
                                     f"{patience} report{'s' if patience > 1 else ''} (--patience {patience}"
                                     f"{', the default' if self.patience_source == 'the default' else ''})"))
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
            self._measured(w, outcome)
            state, value = outcome["state"], outcome.get("value")
            if t.problem and state == "complete":
                state, value, reason = "fail", None, t.problem
            self._finish(t, state, value, reason)
            if outcome.get("oom") or not self.config.warm:
                self.pool.replace(w)  # a fresh process after an out-of-memory error (or in cold mode)

    def _measured(self, w: Worker, outcome: dict[str, Any]) -> None:
        """A finished job's GPU memory (trial or re-training), for ``--pack``'s capacity on its GPU."""
        peak = outcome.get("peak_mem_mib")
        if peak and w.device is not None:
            self.pool.measured(w.device, peak, context=outcome.get("context_mib"),
                               total=outcome.get("device_total_mib"), note=outcome.get("context_note"))

    def _worker_died(self, w: Worker, reason: Optional[str]) -> None:
        if self.workers[w.index] is not w:
            return
        if reason is None:
            reason = w.exit_reason()
        if w.number is not None and w.number < 0 and self.confirming is not None:  # a re-training
            live = self.confirming.running.get(w.number)
            lines = _tail(live.live.log if live else None)
            if lines:
                reason = f"{reason} | {lines[-1]}"
            self.confirming.end(w.number, "fail", None, reason)
            self.output.confirm_progress(self.confirming.done, self.confirming.total)
            w.number = None
        elif w.number is not None:
            t = self.trials[w.number]
            lines = _tail(t.log)
            if lines:
                reason = f"{reason} | {lines[-1]}"
            w.number = None
            self._finish(t, "fail", None, reason)
        elif not w.ready:
            lines = _tail(str(self.pool.log_path(w.index)))
            last = lines[-1] if lines else reason
            raise TuneError(f"a tune worker could not start: {module_not_found_in(last) or last}")
        self.pool.replace(w)

    def _finish(self, t: LiveTrial, state: str, value: Optional[float], reason: Optional[str]) -> None:
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
                self.background_importance.start(self.study)
        self._progress()

    # -- results --------------------------------------------------------------------------------

    def result(self) -> StudyResult:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        history = trial_history(trials, {number: t.train_s for number, t in self.trials.items()})
        count = {state: sum(1 for t in trials if t.state == state) for state in TrialState}
        elsewhere = sum(1 for t in trials if t.state == TrialState.RUNNING and t.number not in self.trials)
        try:
            best = self.study.best_trial
            best_number, best_value, best_params = best.number, best.value, dict(best.params)
        except ValueError:
            best_number, best_value, best_params = None, None, {}
        importances, note = self.importance()
        confirmed, confirm_note = self.confirmed, self.confirm_note
        if confirmed is None and best_number is not None:  # one stored by an earlier run, if still current
            confirmed, confirm_note = stored_confirmation(self.study, self.direction)
        chosen_number, chosen_params = best_number, best_params
        if confirmed is not None and confirmed.chosen is not None:
            chosen_number = confirmed.chosen
            chosen_params = next(dict(c.params) for c in confirmed.candidates if c.number == confirmed.chosen)
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
            patience=getattr(self, "patience", None), patience_source=getattr(self, "patience_source", None),
            n_trials=self.config.n_trials if hasattr(self, "budget") else None,
            n_counted=finished_count(trials, self.orphaned), running_elsewhere=elsewhere,
            metric_source=getattr(self, "metric_source", None),
            sampler=sampler_label(self.config.sampler, self.config.parallel) if hasattr(self, "budget") else None,
            pruner=pruner_label(self.config.pruner) if hasattr(self, "budget") else None,
            chosen_number=chosen_number, chosen_params=chosen_params, confirmed=as_dict(confirmed),
            confirm_note=confirm_note,
            confirm_train_seconds=self.confirming.train_s if self.confirming is not None else 0.0,
        )


def _tail(path: Optional[str]) -> list[str]:
    """The last lines of a log file (a trial's, or a worker's), to explain a failure."""
    return tail(path) if path else []
