"""``--confirm K`` (issue #24): the top K trials re-trained with fresh seeds, the best mean the study's answer.

Real Optuna, real SQLite, real warm workers. ``scripts/noisy.py`` is a fake objective with known noise:
with the search's seed (0) the configuration "lucky" scores 0.9 (true value 0.5) and wins the search;
with seeds 1..3 every configuration is within 0.01 of its true value, so re-training reveals "good" (0.7).
"""

import json
import math
from pathlib import Path

import optuna
import pytest

from deepdive.protocol import from_wire
from deepdive.protocol.hub_events import TuneConfirmedEvent, TuneConfirmEvent, TuneDoneEvent
from deepdive.tune.confirm import CONFIRM_ATTR, summarize, t975
from deepdive.tune.study import StudyConfig, TuneError, load_result, run_study

SCRIPTS = Path(__file__).resolve().parent / "scripts"
TRUE = {"lucky": 0.5, "good": 0.7, "poor": 0.3}

pytestmark = pytest.mark.slow


def _noisy(tmp_path: Path) -> tuple[str, str]:
    """The noisy script in ``tmp_path`` and a storage whose study will run lucky, good, poor as trials 0, 1, 2."""
    script = tmp_path / "noisy.py"
    script.write_text((SCRIPTS / "noisy.py").read_text())
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    study = optuna.create_study(storage=storage, study_name="noisy", direction="maximize")
    for cfg in ("lucky", "good", "poor"):
        study.enqueue_trial({"cfg": cfg})
    return str(script), storage


def _run(script: str, storage: str, events: list, **options) -> object:
    options.setdefault("pruner", "none")  # every trial completes (the default, asha, would cut "poor" at its second report)
    config = StudyConfig(script, n_trials=options.pop("n_trials", 3), storage=storage, metric="score",
                         workspace=str(Path(script).parent),
                         on_event=lambda kind, fields: events.append((kind, json.loads(json.dumps(fields)))),
                         **options)
    return run_study(config)


def _wire(kind_fields: tuple[str, dict], cls: type) -> object:
    """An event as the hub would carry it (the reporter adds t, run, rank), read strictly with its protocol class."""
    return from_wire({**kind_fields[1], "kind": kind_fields[0], "t": 0.0, "run": "tune-noisy", "rank": 0}, cls,
                     what="event")


def test_the_answer_is_the_best_retrained_mean_not_the_lucky_search_best(tmp_path):
    script, storage = _noisy(tmp_path)
    events: list = []
    result = _run(script, storage, events, confirm=2)
    assert result.best_number == 0 and result.best_params == {"cfg": "lucky"}  # the search was fooled
    assert result.chosen_number == 1 and result.chosen_params == {"cfg": "good"}  # re-training was not
    confirmed = result.confirmed
    assert confirmed["k"] == 2 and confirmed["seeds"] == [1, 2, 3] and confirmed["chosen"] == 1
    lucky, good = confirmed["candidates"]
    assert (lucky["number"], good["number"]) == (0, 1)  # best search value first
    assert lucky["search_value"] == pytest.approx(0.9) and good["search_value"] == pytest.approx(0.7)
    assert lucky["mean"] == pytest.approx(0.5, abs=0.011) and good["mean"] == pytest.approx(0.7, abs=0.011)
    assert all(v == pytest.approx(0.7, abs=0.011) for v in good["values"]) and len(good["values"]) == 3
    assert good["ci95"][0] <= good["mean"] <= good["ci95"][1] and good["std"] > 0
    assert confirmed["reason"].startswith("trial 1's re-trained mean 0.7 over 3 seeds beats the search's best, "
                                          "trial 0 (0.9 in the search)")
    # re-trainings are not trials: the study holds its 3, the sampler never saw the others
    assert len(optuna.load_study(study_name="noisy", storage=storage).trials) == 3
    # events: one tune.confirm per re-training, then tune.confirmed, then tune.done with the answer
    kinds = [k for k, _ in events]
    confirms = [e for e in events if e[0] == "tune.confirm"]
    assert [(f["done"], f["total"]) for _, f in confirms] == [(i, 6) for i in range(1, 7)]
    assert sorted((f["number"], f["seed"]) for _, f in confirms) == [(n, s) for n in (0, 1) for s in (1, 2, 3)]
    assert all(f["state"] == "complete" and f["reason"] is None for _, f in confirms)
    assert kinds.index("tune.confirmed") > max(i for i, k in enumerate(kinds) if k == "tune.confirm")
    assert kinds[-1] == "tune.done"
    for event in confirms:
        _wire(event, TuneConfirmEvent)
    _wire(next(e for e in events if e[0] == "tune.confirmed"), TuneConfirmedEvent)
    done = _wire(events[-1], TuneDoneEvent)
    assert done.chosen_number == 1 and done.chosen_params == {"cfg": "good"} and done.confirmed.chosen == 1
    assert done.best_params == {"cfg": "lucky"}
    # the CLI's bar: the progress switches to the confirmation phase, done/total of the re-trainings
    phases = [f for k, f in events if k == "progress" and f.get("phase") == "confirming"]
    assert phases[0] == {"phase": "confirming", "done": 0, "total": 6} and phases[-1]["done"] == 6


def test_without_confirm_the_answer_is_the_search_best(tmp_path):
    """--confirm 0 is off: no re-training, and the answer is the (here lucky) search best."""
    script, storage = _noisy(tmp_path)
    events: list = []
    result = _run(script, storage, events, confirm=0)
    assert result.confirmed is None and result.chosen_number == result.best_number == 0
    assert result.chosen_params == {"cfg": "lucky"}
    assert not any(k.startswith("tune.confirm") for k, _ in events)
    assert CONFIRM_ATTR not in optuna.load_study(study_name="noisy", storage=storage).user_attrs


def test_a_stored_confirmation_is_shown_again_never_retrained_and_applied(tmp_path, capsys, monkeypatch):
    script, storage = _noisy(tmp_path)
    first = _run(script, storage, [], confirm=2)
    events: list = []
    again = _run(script, storage, events, confirm=2)  # the study is finished: no trial, no re-training
    assert not [e for e in events if e[0] == "tune.confirm"]
    assert again.confirmed == first.confirmed and again.chosen_number == 1
    # a rerun without --confirm and load_result (--apply alone) show the stored confirmation too
    assert _run(script, storage, [], confirm=0).confirmed == first.confirmed
    loaded = load_result(script, storage=storage)
    assert loaded.chosen_number == 1 and loaded.confirmed == first.confirmed
    # K larger than the study's complete trials: every one is confirmed; only the new one is re-trained
    events = []
    wider = _run(script, storage, events, confirm=5)
    assert sorted((f["number"], f["seed"]) for k, f in events if k == "tune.confirm") == [(2, 1), (2, 2), (2, 3)]
    assert [c["number"] for c in wider.confirmed["candidates"]] == [0, 1, 2] and wider.confirmed["k"] == 5
    assert wider.confirmed["candidates"][2]["mean"] == pytest.approx(0.3, abs=0.011)
    assert wider.confirmed["reason"].endswith("(only 3 distinct complete trials to confirm)")
    assert wider.chosen_number == 1
    # --apply alone writes the answer's parameters, not the search best's
    from deepdive.cli import main

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["tune", script, "--storage", storage, "--apply"]) == 0
    out = capsys.readouterr().out
    assert 'run.suggest("cfg", choices=["lucky", "good", "poor"], default=\'good\')' in Path(script).read_text()
    assert "Confirmed (top 5 re-trained with seeds 1..3)" in out and "applied to" in out and "cfg" in out


def test_a_failed_retraining_is_shown_and_the_mean_is_over_the_rest(tmp_path):
    script, storage = _noisy(tmp_path)
    events: list = []
    result = _run(script, storage, events, confirm=2, parallel=2, script_args=["--fail-seed", "2"])
    good = next(c for c in result.confirmed["candidates"] if c["number"] == 1)
    assert good["values"][1] is None and good["values"][0] is not None and good["values"][2] is not None
    assert good["mean"] == pytest.approx((good["values"][0] + good["values"][2]) / 2)
    assert result.chosen_number == 1
    failed = [f for k, f in events if k == "tune.confirm" and f["state"] == "fail"]
    assert len(failed) == 1 and (failed[0]["number"], failed[0]["seed"]) == (1, 2)
    assert failed[0]["value"] is None and "RuntimeError: diverged with seed 2" in failed[0]["reason"]
    stored = optuna.load_study(study_name="noisy", storage=storage).user_attrs[CONFIRM_ATTR]
    assert sorted(r["state"] for r in stored["runs"].values()) == ["complete"] * 5 + ["fail"]
    # a rerun re-trains the failed one (it is missing a value), and only it
    events = []
    fixed = _run(script, storage, events, confirm=2)
    assert [(f["number"], f["seed"], f["state"]) for k, f in events if k == "tune.confirm"] == [(1, 2, "complete")]
    assert all(v is not None for v in next(c for c in fixed.confirmed["candidates"] if c["number"] == 1)["values"])


def test_retrainings_follow_the_searchs_recipe_patience_included(tmp_path):
    """--patience ends a re-training as it ends a trial (part of the recipe): the deterministic echo
    script re-trained gives its search value (best report before patience ran out), not its last report."""
    echo = str(SCRIPTS / "echo.py")
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    events: list = []
    result = run_study(StudyConfig(echo, n_trials=2, patience=2, seed=1, confirm=1, confirm_seeds=2, storage=storage,
                                   script_args=["--curve", "1,3,2,3,5"], workspace=str(tmp_path), metric="score",
                                   on_event=lambda kind, fields: events.append((kind, fields))))
    (candidate,) = result.confirmed["candidates"]
    assert result.confirmed["seeds"] == [2, 3]  # S+1..S+R with --seed 1
    assert candidate["values"] == [candidate["search_value"]] * 2  # 5 (the last report) would mean no patience
    assert result.n_stopped == 2
    # a study that gains a better trial after its confirmation: the stored one is out of date, not the answer
    study = optuna.load_study(study_name="echo", storage=storage)
    study.enqueue_trial({"x": 1.0, "n": 8, "c": "c"})  # the top of echo's space
    later = run_study(StudyConfig(echo, n_trials=3, patience=2, seed=1, storage=storage, workspace=str(tmp_path),
                                  script_args=["--curve", "1,3,2,3,5"], metric="score"))
    assert later.best_number == 2 and later.confirmed is None and later.chosen_number == 2
    assert later.confirm_note.startswith("the stored confirmation of trial ") and "--confirm 1" in later.confirm_note


def test_bad_confirm_values_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    from deepdive.cli import main

    monkeypatch.chdir(tmp_path)
    script = str(SCRIPTS / "noisy.py")
    for args, message in ((["--trials", "2", "--confirm", "-1"], "--confirm must be 0 (off) or a number"),
                          (["--trials", "2", "--confirm", "2", "--confirm-seeds", "1"],
                           "--confirm-seeds must be at least 2"),
                          (["--confirm", "2", "--apply"], "--confirm runs after a search: give --trials N")):
        capsys.readouterr()
        assert main(["tune", script, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(TuneError, match="--confirm-seeds must be at least 2"):
        run_study(StudyConfig(script, n_trials=1, confirm=1, confirm_seeds=1, workspace=str(tmp_path)))
    with pytest.raises(TuneError, match="--confirm must be 0"):
        run_study(StudyConfig(script, n_trials=1, confirm=-2, workspace=str(tmp_path)))


def test_the_tune_job_passes_confirm_to_the_command_line(tmp_path):
    from deepdive.cli import build_parser
    from deepdive.jobs.kinds import Context, build_launch

    (tmp_path / "train.py").write_text("import deepdive.engine as dd\n")
    ctx = Context(python="/py", workspace=str(tmp_path), trusted=True)
    _, job = build_launch("tune", {"path": "train.py", "trials": 5, "confirm": 3, "confirm_seeds": 4}, ctx)
    args = build_parser().parse_args(job.argv[4:])
    assert (args.confirm, args.confirm_seeds) == (3, 4)
    _, job = build_launch("tune", {"path": "train.py", "trials": 5}, ctx)
    assert "--confirm" not in job.argv


def test_the_interval_is_students_t():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 29, 30, 31, 60, 200):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3), df
    mean, std, ci = summarize([0.5, None, 0.7, 0.6])
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1)
    assert ci == pytest.approx([0.6 - 4.303 * 0.1 / math.sqrt(3), 0.6 + 4.303 * 0.1 / math.sqrt(3)])
    assert summarize([0.4, None]) == (0.4, None, None) and summarize([None]) == (None, None, None)


def test_a_script_that_seeds_itself_trains_with_the_fresh_seeds(tmp_path):
    """``dd.setup(seed=0)`` in the script would reseed torch with 0 and undo the worker's seed: every
    re-training would repeat the search's run. Under a trial the engine takes the trial's seed."""
    script = tmp_path / "selfseed.py"
    script.write_text((SCRIPTS / "selfseed.py").read_text())
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    study = optuna.create_study(storage=storage, study_name="selfseed", direction="maximize")
    for cfg in ("a", "b"):
        study.enqueue_trial({"cfg": cfg})
    result = run_study(StudyConfig(str(script), n_trials=2, storage=storage, metric="score", seed=5, confirm=1,
                                   confirm_seeds=2, workspace=str(tmp_path)))
    assert result.best_value == pytest.approx(5.5)  # the search trained with the study's seed, not the script's 0
    (candidate,) = result.confirmed["candidates"]
    assert result.confirmed["seeds"] == [6, 7] and candidate["values"] == pytest.approx([6.5, 7.5])
