"""Crash safety: who owns a running trial, and failing the trials whose owner is gone.

Each trial is tagged, as soon as it is created, with its owner: the ``deepdive tune`` process's
host, pid and process start time (:func:`owner`; the start time tells a reused pid apart). When a
study opens, and inside every budget reservation (:mod:`deepdive.tune.budget`), RUNNING trials
whose owner process on this host is gone (a ``kill -9`` of an earlier ``deepdive tune``) are marked
FAIL, *orphaned*, as are, on RDB storages, trials whose Optuna heartbeat is stale (their process
died on any machine). Orphans free their places of ``--trials N``. With ``retry_failed``, the
parameters of each failed trial are enqueued once more (:func:`enqueue_retries`; the failure then
no longer counts, its retry does). Optuna loads with the study.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

from deepdive.tune.budget import ORPHANED, REASON_ATTR, RETRY_ATTR, fail_stale

OWNER_ATTR = "deepdive:owner"
UNTAGGED_ORPHAN_S = 2.0  # a RUNNING trial with no owner this old (file storages): its creator died


def process_started(pid: int) -> Optional[float]:
    """When process ``pid`` started (seconds since the epoch), or None when there is none (or no psutil)."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def owner() -> dict[str, Any]:
    """This process as the owner of the trials it creates (a trial's ``deepdive:owner`` attribute)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_started(os.getpid())}


def fail_orphans(study: Any, rdb: Any, storage_url: str, grace_period: int) -> list[int]:
    """Fail RUNNING trials whose tune process is gone (this host) or whose heartbeat is stale.

    Returns the numbers of the trials it failed (the orphans, which do not count toward N).
    """
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    storage = study._storage
    now = time.time()
    orphaned: list[int] = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = frozen.system_attrs.get(OWNER_ATTR)
        if tag is None and (rdb is None or storage_url.startswith("sqlite")) \
                and frozen.datetime_start is not None \
                and now - frozen.datetime_start.timestamp() > UNTAGGED_ORPHAN_S:
            # created (ask) but never tagged: its process died between the two writes. Only a
            # file on this machine can say so (journal, SQLite); server databases have heartbeats.
            pid = None
        elif not isinstance(tag, dict) or tag.get("host") != host:
            continue
        else:
            pid = tag.get("pid")
            alive = isinstance(pid, int) and process_started(pid) is not None and (
                tag.get("started") is None or abs((process_started(pid) or 0) - tag["started"]) < 1.0)
            if alive:
                continue
        reason = (f"{ORPHANED}: its tune process (pid {pid}) ended while it ran (killed?)" if pid is not None
                  else f"{ORPHANED}: its tune process ended before the trial started (killed?)")
        try:
            storage.set_trial_system_attr(frozen._trial_id, REASON_ATTR, reason)
            storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
            orphaned.append(frozen.number)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # finished meanwhile
    if rdb is not None:
        orphaned.extend(fail_stale(study, grace_period))
    return orphaned


def enqueue_retries(study: Any) -> list[int]:
    """Enqueue the parameters of each failed trial not retried yet; returns the failed trials' numbers."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get(RETRY_ATTR) for t in trials} | {
        t.user_attrs.get(RETRY_ATTR) for t in trials}
    numbers = []
    for frozen in trials:
        if frozen.state == TrialState.FAIL and frozen.number not in retried and frozen.params:
            study.enqueue_trial(frozen.params, user_attrs={RETRY_ATTR: frozen.number}, skip_if_exists=False)
            numbers.append(frozen.number)
    return numbers
