"""What a study shows and writes (issue #20, finding 6): the default metric read from the script,
numbers rounded to what matters, importance hidden until it means something, named algorithms,
and a done event that settles every trial's state."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from deepdive.tune.apply import apply_best
from deepdive.tune.labels import pruner_label, sampler_label
from deepdive.tune.metric import default_metric
from deepdive.tune.report import print_result
from deepdive.tune.rounding import format_params, format_sig, round_sig
from deepdive.tune.study import (IMPORTANCE_MIN_COMPLETE, PRUNERS, SAMPLERS, Coordinator, StudyConfig,
                                 load_result)

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
CASES = json.loads((Path(__file__).resolve().parent / "shared_cases.json").read_text())


# -- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, shown, rounded", CASES["numbers"])
def test_numbers_are_shown_and_rounded_to_four_significant_digits(value, shown, rounded):
    assert format_sig(value) == shown
    assert round_sig(value) == rounded and type(round_sig(value)) is type(rounded)  # a float stays a float


def test_params_read_as_a_person_writes_them():
    assert format_params({"lr": 0.052341873920147, "hidden": 256, "act": "gelu"}) == "lr=0.05234, hidden=256, act=gelu"


def _apply(line: str, params: dict) -> str:
    source = f"run = dd.setup()\n{line}\n"
    return apply_best(source, params)[0].splitlines()[1]


def test_apply_writes_four_significant_digits_not_the_samplers_seventeen():
    assert _apply("lr = run.suggest('lr', 1e-4, 1e-1, log=True, default=3e-3)", {"lr": 0.052341873920147}) \
        == "lr = run.suggest('lr', 1e-4, 1e-1, log=True, default=0.05234)"
    # the script already holds the rounded best: nothing to change
    source = "lr = run.suggest('lr', 1e-4, 1e-1, log=True, default=0.05234)\n"
    _, edits, changed, unchanged, _ = apply_best(source, {"lr": 0.052341873920147})
    assert (edits, changed, unchanged) == ([], [], ["lr"])


def test_apply_keeps_more_digits_where_rounding_would_leave_the_declaration():
    # 0.1234 is below low: the fewest digits that stay in the range
    assert _apply("x = run.suggest('x', 0.12341, 1.0, default=0.5)", {"x": 0.123412}).endswith("default=0.12341)")
    # 0.1235 is off the step's grid (0.00003 + k * 0.00002)
    assert _apply("x = run.suggest('x', 0.00003, 1.0, step=0.00002, default=0.5)", {"x": 0.12345000000000002}) \
        .endswith("default=0.12345)")
    # a choice is written as the choice
    assert _apply("wd = run.suggest('wd', choices=[0.123456, 0.5], default=0.5)", {"wd": 0.123456}) \
        .endswith("default=0.123456)")
    # a range it cannot read: exactly
    assert _apply("lr = run.suggest('lr', LOW, 1e-1, default=3e-3)", {"lr": 0.052341873920147}) \
        .endswith("default=0.052341873920147)")


def test_the_terminal_table_shows_rounded_values(tmp_path):
    from rich.console import Console

    result = _result_with(tmp_path, [0.052341873920147, 0.0987654321, 1.2345678e-05])
    console = Console(record=True, width=200)
    print_result(result, console=console)
    text = console.export_text()
    assert "x=0.05234" in text and "x=0.09877" in text and "0.052341873920147" not in text
    assert "x=1.235e-5" in text  # the editor's and the dashboard's form too (not Python's 1.235e-05)
    assert "best: trial 1 · score 0.09877" in text


def _result_with(workspace: Path, xs: list[float]):
    storage = f"sqlite:///{workspace / 'tune.db'}"
    study = optuna.create_study(storage=storage, study_name="modes", direction="maximize")
    for x in xs:
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions={"x": FloatDistribution(0, 1)},
                                                  value=x))
    study.set_user_attr("deepdive", {"metric": "score", "direction": "maximize", "value": "last"})
    return load_result(str(SCRIPTS / "modes.py"), storage=storage, workspace=str(workspace))


# -- the default metric ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES["metrics"], ids=lambda c: c.get("file") or c["text"][:30])
def test_the_default_metric_is_read_from_the_script(case):
    text = (ROOT / case["file"]).read_text() if "file" in case else case["text"]
    choice = default_metric(text)
    assert (choice.metric, choice.direction, choice.source) == (case["metric"], case["direction"], case["source"])


def test_the_direction_is_guessed_from_the_name_and_a_loss_is_never_maximized():
    from deepdive.tune.metric import guess_direction

    for direction, names in CASES["directions"].items():
        for name in names:
            assert guess_direction(name) == direction, name


def _opened(script: Path, workspace: Path, **options) -> Coordinator:
    coordinator = Coordinator(StudyConfig(str(script), workspace=str(workspace), **options))
    coordinator._open_study()  # the study's choices only: no worker starts
    return coordinator


def test_a_study_without_metric_optimises_the_scripts_evaluation_not_the_batch_loss(tmp_path):
    digits = _opened(ROOT / "server/examples/digits.py", tmp_path)
    assert (digits.metric, digits.direction) == ("accuracy", "maximize")
    assert digits.metric_source == "from the script: keep_best='accuracy:max' in setup() at line 112"
    polarity = _opened(ROOT / "server/examples/polarity.py", tmp_path)
    assert (polarity.metric, polarity.direction) == ("val_acc", "maximize")
    assert polarity.metric_source.startswith("from the script: run.log(val_acc=...) at line 250")
    # the options win, and say so; a rerun keeps the study's record
    given = _opened(ROOT / "server/examples/digits.py", tmp_path, study_name="other", metric="loss")
    assert (given.metric, given.direction, given.metric_source) == (
        "loss", "minimize", "--metric; direction guessed from the name")
    again = _opened(ROOT / "server/examples/digits.py", tmp_path)
    assert (again.metric, again.metric_source) == ("accuracy", "the study's recorded metric; the study's direction")


# -- importance ------------------------------------------------------------------------------------


def test_importance_is_hidden_until_enough_trials_complete_and_says_why(tmp_path):
    coordinator = Coordinator(StudyConfig(str(SCRIPTS / "modes.py"), workspace=str(tmp_path)))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    dists = {"a": FloatDistribution(0, 1), "b": FloatDistribution(0, 1)}
    for i in range(IMPORTANCE_MIN_COMPLETE - 1):
        a, b = (i * 0.37) % 1, (i * 0.61) % 1
        study.add_trial(optuna.trial.create_trial(params={"a": a, "b": b}, distributions=dists, value=3 * a + b))
    values, note = coordinator.importance(study)
    assert values == {}
    assert note == (f"importance appears after {IMPORTANCE_MIN_COMPLETE} completed trials "
                    f"({IMPORTANCE_MIN_COMPLETE - 1} so far): with fewer, fANOVA's ranking of the parameters is "
                    "mostly chance")
    study.add_trial(optuna.trial.create_trial(params={"a": 0.5, "b": 0.5}, distributions=dists, value=2.0))
    values, note = coordinator.importance(study)
    assert set(values) == {"a", "b"} and note is None


# -- sampler and pruner, named ---------------------------------------------------------------------


def test_every_sampler_and_pruner_is_named_and_the_defaults_say_what_they_run():
    assert (SAMPLERS[0], PRUNERS[0]) == ("tpe", "asha")  # fixed defaults, named as what they run
    assert "auto" not in SAMPLERS and "auto" not in PRUNERS
    assert sampler_label("tpe") == "TPE (multivariate)"
    assert sampler_label("tpe", parallel=4) == "TPE (multivariate, constant liar)"
    assert pruner_label("hyperband-quarter") == "Hyperband, first rung at a quarter of a trial's reports"
    assert pruner_label("asha") == "successive halving (ASHA, one bracket; the top quarter of each rung goes on)"
    for name in SAMPLERS:
        assert sampler_label(name) != name or name == "random", name
    for name in PRUNERS:
        assert pruner_label(name) != name, name


# -- a real run: what the terminal and the dashboard get -------------------------------------------


@pytest.mark.slow
def test_a_real_study_names_its_choices_rounds_its_numbers_and_settles_its_trials(tmp_path):
    script = tmp_path / "modes.py"
    script.write_text((SCRIPTS / "modes.py").read_text())
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    study = optuna.create_study(storage=storage, study_name="modes", direction="maximize")
    for x in (0.123456789, 0.987654321):
        study.enqueue_trial({"mode": "ok", "x": x})
    events_file = tmp_path / "events.jsonl"
    env = dict(os.environ, DEEPDIVE_METRICS_OUT=str(events_file), COLUMNS="400")  # tables unwrapped
    env.pop("DEEPDIVE_HUB", None)
    out = subprocess.run([sys.executable, "-m", "deepdive", "tune", str(script), "--trials", "2", "--storage", storage,
                          "--apply"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    source = "run.log(score=...) at line 14, the first evaluation metric the script logs"
    assert (f"tuning modes: maximize score (from the script: {source}; the existing study's direction); "
            "sampler TPE (multivariate); pruner successive halving (ASHA, one bracket; the top quarter of each rung "
            "goes on); patience 2 (the default)") in out.stderr
    assert "x=0.9877" in out.stdout and "0.987654321" not in out.stdout  # the table
    assert "best: trial 1 · score 2.963" in out.stdout
    assert "importance appears after 20 completed trials (2 so far)" in out.stdout
    assert ("sampler: TPE (multivariate); pruner: successive halving (ASHA, one bracket; the top quarter of each "
            "rung goes on); patience: 2 reports (the default)") in out.stdout
    assert "run.suggest(\"x\", 0.0, 1.0, default=0.9877)" in script.read_text()  # written rounded
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    events = [e for e in events if e.get("type") == "event"]
    start = next(e for e in events if e["kind"] == "tune.study")
    assert start["sampler"] == "tpe" and start["sampler_label"] == "TPE (multivariate)"
    assert start["pruner"] == "asha" and start["pruner_label"].startswith("successive halving (ASHA")
    assert (start["patience"], start["patience_source"], start["value"]) == (2, "the default", "best")
    assert start["importance_after"] == 20 and start["metric_source"].startswith("from the script: run.log(score=")
    done = events[-1]
    assert done["kind"] == "tune.done"
    assert [t[:2] for t in done["trials"]] == [[0, "complete"], [1, "complete"]]
    assert done["trials"][1][2] == pytest.approx(3 * 0.987654321)
    importance = [e for e in events if e["kind"] == "tune.importance"][-1]
    assert importance["importances"] == {} and importance["note"].startswith("importance appears after 20")
