"""The study's trial budget: ``--trials N`` is the study's total, shared by every process on it.

What counts toward N
--------------------
A finished trial (complete, pruned or failed), except a failure that

- was *orphaned*: its tune process died while it ran (``kill -9``, a lost machine), or
- *never started*: the study stopped (``--timeout``, Ctrl-C) before a worker took it, or
- was *retried* (``--retry-failed``): its retry counts instead.

A failure otherwise counts: the trial ran and its parameters failed, which is a result.

The reservation
---------------
A running trial of any process holds its place: it ends finished (and counts) unless its process
dies. So a process creates trials only inside :meth:`Budget.reserve`, which, under the study's lock
(:class:`deepdive.tune.storage.StudyLock`, one holder at a time across processes and machines),

1. fails the orphans it can see (trials of a dead process on this host; RDB trials whose heartbeat
   is stale: their process died on any machine), which frees their places,
2. counts the trials that count plus every RUNNING trial, of every process, and
3. creates at most N minus that many trials (Optuna ``ask``), tagged with their owner.

No process creates trial N+1, whatever the number of processes; nothing is created and then thrown
away. A process that finds no room ends once its own trials have ended, possibly before the study's
last trials (running in other processes) have finished; its result says how many still run there
(``running_elsewhere``). If such a trial's process dies, the trial is orphaned and its place is
free: a process that reserves later (a rerun, or one still running) takes it.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable

REASON_ATTR = "deepdive:reason"
RETRY_ATTR = "deepdive:retry_of"
ORPHANED = "orphaned"
NEVER_STARTED = "never started"


def finished_count(trials: Iterable[Any], orphaned: Collection[int] = ()) -> int:
    """Finished trials that count toward N (see the module's docstring).

    ``orphaned``: numbers this process failed as orphans (older studies hold some without a reason).
    """
    from optuna.trial import TrialState

    trials = list(trials)
    retried = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    n = 0
    for t in trials:
        if not t.state.is_finished():
            continue
        reason = str(t.system_attrs.get(REASON_ATTR, ""))
        if t.state == TrialState.FAIL and (reason.startswith((ORPHANED, NEVER_STARTED))
                                           or t.number in retried or t.number in orphaned):
            continue
        n += 1
    return n


def running(trials: Iterable[Any]) -> list[Any]:
    """The RUNNING trials (every process's): each holds a place in the budget."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state == TrialState.RUNNING]


def fail_stale(study: Any, heartbeat_s: float) -> list[int]:
    """Fail the trials whose heartbeat is stale (RDB storages), with an ``orphaned`` reason.

    Optuna's ``fail_stale_trials`` does the same without a reason, and then only the process that
    failed them knows not to count them; with the reason every process sharing the study agrees.

    Returns:
        The numbers of the trials failed here.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled
    from optuna.trial import TrialState

    storage = study._storage
    stale_ids = getattr(storage, "_get_stale_trial_ids", None)
    if stale_ids is None or not is_heartbeat_enabled(storage):
        return []
    failed = []
    reason = f"{ORPHANED}: no heartbeat from its tune process for over {heartbeat_s:g} s (it died?)"
    for trial_id in stale_ids(study._study_id):
        try:
            storage.set_trial_system_attr(trial_id, REASON_ATTR, reason)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(storage.get_trial(trial_id).number)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # finished meanwhile (its process was alive after all, or another one failed it)
    return failed


class Budget:
    """``n_trials`` places in the study, shared through its storage (see the module's docstring).

    Args:
        study: the persistent Optuna study.
        lock: the study's lock (a context manager; :class:`deepdive.tune.storage.StudyLock`).
        n_trials: N.
        recover: fails the orphans this process can see (called under the lock).
        orphaned: the numbers this process failed as orphans (the same list, kept up to date).
    """

    def __init__(self, study: Any, lock: Any, n_trials: int, recover: Callable[[], None],
                 orphaned: Collection[int]):
        self.study = study
        self.lock = lock
        self.n_trials = n_trials
        self.recover = recover
        self.orphaned = orphaned

    def taken(self, trials: Iterable[Any]) -> int:
        """Places taken: trials that count, and running ones."""
        trials = list(trials)
        return finished_count(trials, self.orphaned) + len(running(trials))

    def reserve(self, want: int, create: Callable[[], Any]) -> tuple[list[Any], int]:
        """Create up to ``want`` trials, as many as the budget has room for (``want=0``: only look).

        ``create`` makes one trial in the storage (ask, owner tag) and returns it.

        Returns:
            The trials created, and the room left after them (0 or less: the budget is spent).
        """
        with self.lock:
            self.recover()
            room = self.n_trials - self.taken(self.study.get_trials(deepcopy=False))
            made = [create() for _ in range(max(0, min(want, room)))]
        return made, room - len(made)
