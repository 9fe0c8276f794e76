"""`deepdive tune SCRIPT`: a hyperparameter study over the script's ``run.suggest()`` calls, with a progress
bar; ``--confirm K`` re-trains the top K trials with fresh seeds (the best mean is the answer);
``--apply`` writes the answer's parameters into the script's defaults.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from deepdive.vocabulary import TUNE_DIRECTIONS, TUNE_PRUNERS, TUNE_SAMPLERS, TUNE_VALUES


def add_parser(sub: Any) -> None:
    """Register ``tune`` on the top-level subparsers ``sub``."""
    p = sub.add_parser("tune", help="Bayesian hyperparameter search (Optuna) over the script's run.suggest() calls",
                       description="Run SCRIPT once per trial with the values Optuna suggests for its run.suggest(...) "
                                   "declarations; run.log(<metric>=...) reports intermediate values (pruning) and the "
                                   "last one (or with --value best, the best one) is the trial's value. The study is stored (default "
                                   ".deepdive/tune.db) and a rerun continues it. Arguments after '--' go to the script.")
    p.add_argument("script", help="the training script (it declares its hyperparameters with run.suggest)")
    p.add_argument("--trials", type=int, default=None, help="finished trials the study should hold (required unless --apply alone)")
    p.add_argument("--parallel", type=int, default=1, help="trials at once (default 1; one GPU each when there are GPUs)")
    p.add_argument("--pack", action="store_true", help="with GPUs: several trials per GPU, packed by measured peak memory")
    p.add_argument("--storage", default=None, help="sqlite:///..., postgresql://..., mysql://... or journal:PATH "
                                                     "(default: sqlite in .deepdive/tune.db)")
    p.add_argument("--study", default=None, help="study name (default: the script's name without .py)")
    p.add_argument("--sampler", default=TUNE_SAMPLERS[0], choices=TUNE_SAMPLERS,
                   help="default tpe: multivariate TPE (constant liar when parallel), a fixed choice; gp: Gaussian "
                        "process, for small budgets of slow trials")
    p.add_argument("--pruner", default=TUNE_PRUNERS[0], choices=TUNE_PRUNERS,
                   help="default asha: successive halving, one bracket, the top quarter of each rung goes on (a fixed "
                        "choice, measured with --patience 2: README, Search quality); hyperband-quarter = Hyperband "
                        "whose first rung waits for a quarter of a trial's reports; hyperband = Optuna's schedule")
    p.add_argument("--metric", default=None, help="the metric the script logs (default: the study's, else read from the script: "
                        "setup(keep_best=...)'s, else its first evaluation metric such as val_loss or accuracy, "
                        "not the training loss; the run says where it came from)")
    p.add_argument("--direction", default=None, choices=TUNE_DIRECTIONS,
                   help="default: maximize for accuracy-like names, else minimize")
    p.add_argument("--value", default=None, choices=TUNE_VALUES,
                   help="a trial's value: its best report of the metric (the default with --patience: the epoch "
                        "early stopping keeps) or its last one (the default with --patience 0); a study keeps its choice")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="early stopping: end a trial, complete and valued at its best report, after N reports "
                        "without a new best (default 2, a fixed choice; off in a study that scores trials by their "
                        "last report; 0: off)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials this many seconds after the first worker is ready")
    p.add_argument("--trial-timeout", type=float, default=None, help="kill (fail) a trial after this many seconds")
    p.add_argument("--seed", type=int, default=None, help="seed the sampler (and every trial's RNGs) for reproducible studies")
    p.add_argument("--retry-failed", action="store_true", help="run the failed trials' parameters once more")
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="after the search, re-train the top K trials with fresh seeds (S+1..S+R, S = --seed or 0); "
                        "the best mean is the study's answer (default 0: off; stored, a rerun re-trains only what is missing)")
    p.add_argument("--confirm-seeds", type=int, default=3, metavar="R",
                   help="fresh seeds per confirmed trial (default 3, at least 2)")
    p.add_argument("--apply", action="store_true", help="write the study's answer (the best trial, or with --confirm the "
                                                        "best re-trained mean) into the script's suggest() defaults")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def cmd_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.cli import UsageError
    from deepdive.tune.report import study_line
    from deepdive.tune.rounding import format_sig
    from deepdive.tune.study import StudyConfig, TuneError, load_result, run_study

    if args.trials is None and not args.apply:
        raise UsageError("give --trials N (how many trials the study should hold), or --apply to write the best "
                         "parameters of an existing study into the script")
    if args.trials is not None and args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if args.patience is not None and args.patience < 0:
        raise UsageError("--patience must be a number of reports without a new best (0: off)")
    if args.confirm < 0:
        raise UsageError(f"--confirm must be 0 (off) or a number of top trials to re-train, got {args.confirm}")
    if args.confirm_seeds < 2:
        raise UsageError(f"--confirm-seeds must be at least 2 (a mean over one seed is the search's noise again), "
                         f"got {args.confirm_seeds}")
    if args.confirm and args.trials is None:
        raise UsageError("--confirm runs after a search: give --trials N too (a finished study's rerun with the same "
                         "N runs no new trial, only the missing re-trainings)")
    for name in ("timeout", "trial_timeout"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if not Path(args.script).is_file():
        raise UsageError(f"no such script: {args.script}")
    console = Console(stderr=True, highlight=False)
    import signal

    def on_term(signum: int, frame: Any) -> None:  # a cancelled job: running trials end as failed, reason given
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if args.trials is None:
            result = load_result(args.script, args.storage, args.study)
        else:
            progress = Progress(TextColumn("[bold]tune"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                disable=args.json, transient=True)
            task = progress.add_task("starting workers", total=args.trials)

            def on_event(kind: str, fields: dict[str, Any]) -> None:
                if kind == "progress" and fields.get("phase") == "confirming":  # --confirm: the re-trainings
                    progress.update(task, total=fields["total"], completed=fields["done"], description="confirming")
                elif kind == "tune.confirm" and fields["state"] == "fail" and not args.json:
                    progress.console.print(f"  re-training of trial {fields['number']} (seed {fields['seed']}) "
                                           f"failed: {fields['reason']}", markup=False)
                elif kind == "progress":
                    best = fields.get("best")
                    progress.update(task, completed=min(fields["done"], fields["total"]),
                                    description=f"best {format_sig(best)}" if isinstance(best, (int, float)) else "")
                elif kind == "tune.study" and not args.json:  # what is optimised, and where that came from
                    progress.console.print(study_line(fields), markup=False, soft_wrap=True)
                elif kind == "tune.trial" and fields["state"] in ("pruned", "fail") and not args.json:
                    progress.console.print(f"  trial {fields['number']} {fields['state']}: {fields['reason']}",
                                           markup=False)

            config = StudyConfig(args.script, n_trials=args.trials, script_args=list(args.script_args),
                                 parallel=args.parallel, storage=args.storage, study_name=args.study,
                                 sampler=args.sampler, pruner=args.pruner, metric=args.metric,
                                 direction=args.direction, value=args.value, patience=args.patience,
                                 timeout=args.timeout, seed=args.seed, confirm=args.confirm,
                                 confirm_seeds=args.confirm_seeds,
                                 retry_failed=args.retry_failed, pack=args.pack, trial_timeout=args.trial_timeout,
                                 on_event=on_event)
            with progress:
                result = run_study(config)
    except TuneError as exc:
        raise UsageError(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    applied = None
    if args.apply:
        from deepdive.tune.apply import apply_to_file

        if not result.chosen_params:
            raise UsageError(f"study {result.study!r} has no complete trial yet: nothing to apply")
        try:
            applied = apply_to_file(args.script, result.chosen_params)
        except SyntaxError as exc:
            raise UsageError(f"{args.script} does not parse: {exc.msg} (line {exc.lineno})") from None
    if args.json:
        out = result.to_json()
        if applied is not None:
            out["applied"] = applied
        print(json.dumps(out, default=str))
    else:
        from deepdive.tune.report import print_result

        print_result(result, console=Console(highlight=False))
        if applied is not None:
            what = ", ".join(applied["changed"]) or "nothing (the defaults already are the answer's)"
            print(f"applied to {args.script}: {what}"
                  + (f"; not in the script: {', '.join(applied['missing'])}" if applied["missing"] else ""))
    from deepdive.jobs import events

    events.result({"study": result.study, "bestValue": result.best_value, "bestParams": result.best_params,
                   "nComplete": result.n_complete, "nPruned": result.n_pruned, "nFail": result.n_fail,
                   "chosenNumber": result.chosen_number, "chosenParams": result.chosen_params,
                   "confirmed": result.confirmed})
    return 0 if result.n_complete or args.trials is None else 1
