"""Bayesian hyperparameter search over a training script, with Optuna: the entry points and the design.

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
One coordinator (:mod:`deepdive.tune.coordinator`, in the ``deepdive tune`` process) owns the study;
K warm workers (:mod:`deepdive.tune.worker`: torch imported once; :mod:`deepdive.tune.pool` starts
and replaces them) execute trials in-process with ``runpy``. A worker that dies (segfault, OOM
killer, ``kill``) fails its trial with the signal as reason and is replaced by a fresh process. With GPUs, each worker sees one (``CUDA_VISIBLE_DEVICES``): one trial
per GPU, extra trials wait with a reason; ``pack=True`` runs several per GPU, as many as the peak
memory measured on the first trial there allows.

Storage round trips (the design)
--------------------------------
The persistent storage (SQLite in ``.deepdive/tune.db`` by default, any RDB URL, or ``journal:PATH``)
is the truth that other machines share: trials are created there (``ask``), parameters sampled there
(define-by-run ``suggest`` goes to the real trial, so TPE sees every finished trial and, with
``constant_liar``, the running ones), and results written there. Intermediate values do not each go
there: the coordinator keeps a *mirror* study in memory (:mod:`deepdive.tune.ledger`) with the same name,
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
get Optuna heartbeats (:mod:`deepdive.tune.recovery`). On start, RUNNING trials whose owner process on this host is gone (a
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

The modules
-----------
This module holds :func:`run_study` and :func:`load_result` and re-exports the names callers import
from it. :mod:`~deepdive.tune.config` (the options), :mod:`~deepdive.tune.coordinator` (the run),
:mod:`~deepdive.tune.choices` (metric, direction, value mode), :mod:`~deepdive.tune.algorithms`
(sampler and pruner by name), :mod:`~deepdive.tune.ledger` (storage and mirror),
:mod:`~deepdive.tune.budget`, :mod:`~deepdive.tune.recovery`, :mod:`~deepdive.tune.pool` and
:mod:`~deepdive.tune.worker` (the processes), :mod:`~deepdive.tune.trials` (a running trial),
:mod:`~deepdive.tune.output` (events), :mod:`~deepdive.tune.importance`, :mod:`~deepdive.tune.result`,
:mod:`~deepdive.tune.confirm` (``--confirm K``: the top trials re-trained with fresh seeds, the study's answer).

The answer
----------
A study's answer (``StudyResult.chosen_number``/``chosen_params``, what ``--apply`` writes) is its best
trial, or, after ``confirm=K``, the candidate with the best mean over fresh seeds (the search's best is
the maximum of noisy draws and overstates, or misplaces, the best configuration).
"""

from __future__ import annotations

import time
from typing import Optional

from deepdive.tune.algorithms import PRUNERS, SAMPLERS, make_pruner
from deepdive.tune.budget import RETRY_ATTR
from deepdive.tune.choices import META_ATTR
from deepdive.tune.config import StudyConfig
from deepdive.tune.coordinator import Coordinator
from deepdive.tune.errors import TuneError
from deepdive.tune.importance import IMPORTANCE_MIN_COMPLETE
from deepdive.tune.ledger import STOPPED_ATTR, Ledger
from deepdive.tune.result import StudyResult
from deepdive.tune.storage import open_storage, redact

__all__ = ["IMPORTANCE_MIN_COMPLETE", "PRUNERS", "RETRY_ATTR", "SAMPLERS", "STOPPED_ATTR", "Coordinator", "Ledger",
           "StudyConfig", "StudyResult", "TuneError", "load_result", "make_pruner", "open_storage", "run_study"]


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
