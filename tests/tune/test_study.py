"""Real studies with real worker processes: digits with pruning, failures, retries, kill -9 and resume, CLI."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from deepdive.tune.study import RETRY_ATTR, STOPPED_ATTR, StudyConfig, TuneError, run_study

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
DIGITS = ROOT / "server/examples/digits.py"

pytestmark = pytest.mark.slow


def _db(workspace: Path) -> str:
    return f"sqlite:///{workspace / '.deepdive' / 'tune.db'}"


def test_digits_study_with_pruning_and_two_parallel_workers(tmp_path):
    events: list[tuple[str, dict]] = []
    config = StudyConfig(str(DIGITS), n_trials=10, parallel=2, metric="accuracy", seed=1, workspace=str(tmp_path),
                         script_args=["--epochs", "4", "--precision", "fp32", "--batch-size", "128"],
                         reuse_workers=False,  # both workers start together: a warm one left by an earlier
                         # test would run every trial before a cold one had imported torch
                         on_event=lambda kind, fields: events.append((kind, json.loads(json.dumps(fields)))))
    result = run_study(config)
    assert result.direction == "maximize" and result.storage == _db(tmp_path)
    assert result.n_complete >= 2 and result.n_pruned >= 1, result.trials
    assert result.n_complete + result.n_pruned + result.n_fail == 10 and result.n_fail == 0
    assert 0.85 < result.best_value <= 1.0
    assert set(result.best_params) == {"lr", "weight_decay", "hidden", "dropout"}
    # 10 trials are too few for fANOVA to rank parameters: hidden, and the note says why
    assert result.importances == {} and result.importance_note.startswith(
        f"importance appears after 20 completed trials ({result.n_complete} so far)")
    # pruned trials stopped early: fewer intermediate values than a full run (the pruner decides at a
    # report, the last one included); a complete trial ran them all, or patience ended it
    full = max(len(t["intermediate"]) for t in result.trials)
    complete = [t for t in result.trials if t["state"] == "complete"]
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert all(len(p["intermediate"]) <= full for p in pruned) and any(len(p["intermediate"]) < full for p in pruned)
    assert all(len(t["intermediate"]) == full or (t["reason"] or "").startswith("stopped early") for t in complete), [
        (len(t["intermediate"]), t["reason"]) for t in result.trials]
    assert all(p["reason"].startswith("pruned at step") for p in pruned)
    # the storage has it all
    study = optuna.load_study(study_name="digits", storage=_db(tmp_path))
    assert len(study.trials) == 10 and study.best_value == result.best_value
    # telemetry: the Tune view's events
    kinds = [k for k, _ in events]
    assert kinds[0] == "tune.study" and kinds[-1] == "tune.done"
    start = events[0][1]
    assert start == {"study": "digits", "direction": "maximize", "metric": "accuracy", "sampler": "tpe",
                     "pruner": "asha", "n_trials": 10, "parallel": 2, "storage": _db(tmp_path),
                     "metric_source": "--metric; direction guessed from the name",
                     "sampler_label": "TPE (multivariate, constant liar)",
                     "pruner_label": "successive halving (ASHA, one bracket; the top quarter of each rung goes on)",
                     "patience": 2, "patience_source": "the default", "value": "best",
                     "importance_after": 20}
    trial_events = [f for k, f in events if k == "tune.trial"]
    assert set(trial_events[0]) == {"study", "number", "state", "params", "value", "intermediate", "reason", "worker",
                                    "waiting_reason", "duration_s"}
    assert {f["worker"] for f in trial_events} == {0, 1}  # both workers ran trials
    finals = {f["number"]: f for f in trial_events if f["state"] in ("complete", "pruned", "fail")}
    assert len(finals) == 10 and all(isinstance(f["duration_s"], float) for f in finals.values())
    assert any(f["intermediate"] for f in trial_events if f["state"] == "running")
    best = [f for k, f in events if k == "tune.best"]
    assert best and best[-1]["value"] == result.best_value and best[-1]["params"] == result.best_params
    importance = [f for k, f in events if k == "tune.importance"]
    assert importance and importance[-1]["importances"] == result.importances == {}
    assert importance[-1]["note"] == result.importance_note
    done = events[-1][1]
    assert (done["n_complete"], done["n_pruned"], done["n_fail"]) == (result.n_complete, result.n_pruned, 0)
    assert done["trials"] == [[t["number"], t["state"], t["value"]] for t in result.trials]  # the storage's states
    # overlapping trials: the two workers ran at once
    running = {}
    overlap = False
    for kind, f in events:
        if kind == "tune.trial" and f["state"] == "running":
            running[f["number"]] = True
        elif kind == "tune.trial":
            running.pop(f["number"], None)
        overlap = overlap or len(running) >= 2
    assert overlap
    # warm workers: the trials' own time is most of the wall time of the trials
    assert result.train_seconds > 0
    # each trial's own training time (the compute a benchmark compares), summing to the study's
    assert all(t["train_s"] > 0 for t in result.trials)
    assert sum(t["train_s"] for t in result.trials) == pytest.approx(result.train_seconds)


def _enqueue(workspace: Path, name: str, params: list[dict]) -> None:
    (workspace / ".deepdive").mkdir(exist_ok=True)
    study = optuna.create_study(storage=_db(workspace), study_name=name, direction="maximize")
    for p in params:
        study.enqueue_trial(p)


def test_failures_are_recorded_and_the_study_goes_on_then_retry(tmp_path):
    (tmp_path / ".deepdive").mkdir()
    _enqueue(tmp_path, "modes", [{"mode": "raise", "x": 0.9}, {"mode": "kill", "x": 0.1}, {"mode": "ok", "x": 0.3},
                                 {"mode": "ok", "x": 0.7}])
    config = StudyConfig(str(SCRIPTS / "modes.py"), n_trials=4, metric="score", workspace=str(tmp_path),
                         sampler="random", seed=0)
    result = run_study(config)
    by_number = {t["number"]: t for t in result.trials}
    assert by_number[0]["state"] == "fail" and "ValueError: x=0.900 is not allowed here (modes.py:" in by_number[0]["reason"]
    assert by_number[1]["state"] == "fail" and "killed by SIGKILL" in by_number[1]["reason"]
    assert by_number[2]["state"] == "complete" and by_number[2]["value"] == pytest.approx(0.9)
    assert by_number[3]["state"] == "complete" and result.best_value == pytest.approx(2.1)
    assert (result.n_complete, result.n_fail) == (2, 2)
    # --retry-failed: the failed trials' parameters run again (the "raise" one works now)
    (tmp_path / "fixed").write_text("")
    result = run_study(StudyConfig(str(SCRIPTS / "modes.py"), n_trials=4, metric="score", workspace=str(tmp_path),
                                   retry_failed=True, sampler="random", seed=0))
    assert sorted(result.retried) == [0, 1]
    retries = [t for t in result.trials if t["retry_of"] is not None]
    assert sorted(t["retry_of"] for t in retries) == [0, 1]
    again = {t["retry_of"]: t for t in retries}
    assert again[0]["state"] == "complete" and again[0]["params"] == {"mode": "raise", "x": 0.9}
    assert again[1]["state"] == "fail"  # kill is deterministic
    assert len(result.trials) == 6  # the retries replaced the failures: no new trials beyond them


def test_kill_9_then_resume_fails_orphans_and_continues(tmp_path):
    env = dict(os.environ, SLOW_STEPS="8", SLOW_SLEEP="0.3")
    argv = [sys.executable, "-m", "deepdive", "tune", str(SCRIPTS / "slow.py"), "--trials", "5", "--metric", "score",
            "--direction", "maximize", "--parallel", "2", "--seed", "0", "--json"]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    db = _db(tmp_path)
    path = tmp_path / ".deepdive" / "tune.db"
    deadline = time.time() + 240
    seen = False
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if not path.exists():
                continue
            try:  # a light read-only look, as another machine would: no Optuna schema work
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as con:
                    states = [row[0] for row in con.execute("SELECT state FROM trials")]
            except sqlite3.Error:
                continue
            if "COMPLETE" in states and "RUNNING" in states:
                seen = True
                break
        if not seen:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            raise AssertionError(f"the study never had a complete and a running trial: {err.decode()[-2000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    time.sleep(2.5)  # a trial created but not yet tagged with its owner counts as orphaned after 2 s
    study = optuna.load_study(study_name="slow", storage=db)
    # what the killed process left running (a trial may have ended between the poll and the kill)
    running = [t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    assert running
    events: list[dict] = []
    result = run_study(StudyConfig(str(SCRIPTS / "slow.py"), n_trials=5, metric="score", workspace=str(tmp_path),
                                   seed=0, parallel=2,
                                   on_event=lambda k, f: events.append(dict(f)) if k == "tune.trial" else None))
    assert set(running) <= set(result.orphaned)
    # the dashboard hears about the earlier trials too, the orphans as failed with the reason
    shown = {e["number"]: e for e in events if e["number"] in running}
    assert all(e["state"] == "fail" and e["reason"].startswith("orphaned") for e in shown.values()) and shown
    orphans = [t for t in result.trials if t["number"] in result.orphaned]
    assert all(t["state"] == "fail" and t["reason"].startswith("orphaned") for t in orphans)
    counted = [t for t in result.trials if t["number"] not in result.orphaned]
    assert len(counted) == 5 and all(t["state"] in ("complete", "pruned") for t in counted)
    assert not any(t["state"] == "running" for t in result.trials)


def _cli(*args: str, cwd: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    """`deepdive tune ...` in this process (its warm workers are reused), in folder ``cwd``."""
    from deepdive.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(["tune", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_line_errors(tmp_path, capsys, monkeypatch):
    def cli(*args):
        return _cli(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)

    code, _, err = cli("missing.py", "--trials", "2")
    assert code == 2 and err.strip() == "deepdive: error: no such script: missing.py"
    (tmp_path / "plain.py").write_text("print('no search space here')\n")
    code, _, err = cli("plain.py", "--trials", "2")
    assert code == 2 and "declares no hyperparameter" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(str(SCRIPTS / "modes.py"), "--trials", "2", "--storage", "bogus://user:secret@host/db")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "cannot open storage" in lines[0] and "secret" not in lines[0], err
    code, _, err = cli(str(SCRIPTS / "modes.py"), "--trials", "2", "--storage", "nothing-like-a-url")
    assert code == 2 and "not a database URL" in err
    code, _, err = cli(str(SCRIPTS / "modes.py"))
    assert code == 2 and "--trials" in err
    code, _, err = cli(str(SCRIPTS / "modes.py"), "--trials", "0")
    assert code == 2 and "at least 1" in err
    code, _, err = cli(str(SCRIPTS / "modes.py"), "--trials", "2", "--patience", "-1")
    assert code == 2 and err.strip() == "deepdive: error: --patience must be a number of reports without a new best (0: off)"
    code, _, err = cli(str(SCRIPTS / "modes.py"), "--trials", "2", "--patience", "2", "--value", "last")
    assert code == 2 and "use --value best" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(TuneError, match="no such script"):
        run_study(StudyConfig(str(tmp_path / "nope.py"), n_trials=1))
    # and as a real command line: one line, exit status 2
    out = subprocess.run([sys.executable, "-m", "deepdive", "tune", "missing.py", "--trials", "2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "deepdive: error: no such script: missing.py"


def test_cli_json_and_apply(tmp_path, capsys, monkeypatch):
    script = tmp_path / "modes.py"
    script.write_text((SCRIPTS / "modes.py").read_text())
    _enqueue(tmp_path, "modes", [{"mode": "ok", "x": 0.75}, {"mode": "ok", "x": 0.25}])
    metrics = tmp_path / "telemetry.jsonl"
    monkeypatch.setenv("DEEPDIVE_METRICS_OUT", str(metrics))  # the reporter's file sink: same events as the hub's
    from deepdive.jobs import events as job_events

    read_fd, write_fd = os.pipe()  # as under the daemon's job manager: job events on an inherited pipe
    monkeypatch.setenv("DEEPDIVE_EVENTS_FD", str(write_fd))
    monkeypatch.setattr(job_events, "_opened", False)
    monkeypatch.setattr(job_events, "_stream", None)
    code, out, err = _cli(str(script), "--trials", "2", "--metric", "score", "--json", "--apply", cwd=tmp_path,
                          capsys=capsys, monkeypatch=monkeypatch)
    job_events._stream.close()
    monkeypatch.setattr(job_events, "_opened", True)
    monkeypatch.setattr(job_events, "_stream", None)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        progress = [json.loads(line) for line in pipe]
    monkeypatch.delenv("DEEPDIVE_METRICS_OUT")
    assert code == 0, err
    steps = [(e["fraction"], e["message"]) for e in progress if e["type"] == "progress"]
    assert steps[0] == (0.0, "trial 1/2") and steps[-1] == (1.0, "2/2 trials · best 2.25")
    assert (0.5, "trial 2/2 · best 2.25") in steps
    assert progress[-1] == {"type": "result", "data": {"study": "modes", "bestValue": 2.25,
                                                        "bestParams": {"mode": "ok", "x": 0.75}, "nComplete": 2,
                                                        "nPruned": 0, "nFail": 0, "chosenNumber": 0,
                                                        "chosenParams": {"mode": "ok", "x": 0.75}, "confirmed": None}}
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    events = [e for e in lines if e["type"] == "event"]
    assert {e["run"] for e in events} == {"tune-modes"}
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "tune.study" and kinds[-1] == "tune.done" and "tune.best" in kinds and "tune.importance" in kinds
    finals = [e for e in events if e["kind"] == "tune.trial" and e["state"] == "complete"]
    assert [e["intermediate"] for e in finals][0] == [[0, 0.75], [1, 1.5], [2, 2.25]]
    data = json.loads(out)
    assert data["best_params"] == {"mode": "ok", "x": 0.75} and data["applied"]["changed"] == ["x"]
    text = script.read_text()
    assert text == (SCRIPTS / "modes.py").read_text().replace("1.0, default=0.5)", "1.0, default=0.75)")
    # --apply alone: from the stored study, nothing runs; already applied
    code, out, err = _cli(str(script), "--apply", "--json", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    assert json.loads(out)["applied"]["unchanged"] == ["mode", "x"]
    # the table output
    code, out, err = _cli(str(script), "--apply", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0 and "best: trial 0" in out and "applied to" in out


def test_one_trial_per_gpu_and_the_others_wait_with_a_reason(tmp_path, monkeypatch):
    # Two GPUs as CUDA_VISIBLE_DEVICES names them (no GPU is needed: the trials run on the CPU)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("GPU_ENV_OUT", str(tmp_path))
    events: list[dict] = []
    result = run_study(StudyConfig(str(SCRIPTS / "gpu_env.py"), n_trials=5, parallel=3, metric="score",
                                   workspace=str(tmp_path), sampler="random", seed=0, reuse_workers=False,
                                   on_event=lambda kind, f: events.append(dict(f)) if kind == "tune.trial" else None))
    assert result.n_complete == 5
    seen = [p.read_text() for p in tmp_path.iterdir() if p.is_file() and "-" in p.name and p.suffix != ".db"]
    assert sorted(set(seen)) == ["0", "1"] and len(seen) == 5
    waiting = [e for e in events if e["state"] == "waiting"]
    assert waiting and all("every GPU runs a trial (2 GPU(s), one trial each" in e["waiting_reason"] for e in waiting)
    assert {e["worker"] for e in events if e["state"] == "running"} == {0, 1}


def test_timeout_stops_starting_trials_and_a_finished_study_reruns_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOW_STEPS", "3")
    monkeypatch.setenv("SLOW_SLEEP", "0.2")
    config = StudyConfig(str(SCRIPTS / "slow.py"), n_trials=50, metric="score", workspace=str(tmp_path),
                         timeout=0.5, seed=0)
    result = run_study(config)
    assert 1 <= len(result.trials) < 50 and not any(t["state"] == "running" for t in result.trials)
    done = len(result.trials)
    again = run_study(StudyConfig(str(SCRIPTS / "slow.py"), n_trials=done, metric="score", workspace=str(tmp_path)))
    assert len(again.trials) == done and again.session_trials == 0


def test_presampled_parameters_are_the_ones_stored_and_a_changed_range_is_honoured(tmp_path):
    """The script takes the sampler's values without asking (after the first trials); the storage
    holds exactly what each trial ran with; a range changed in the script gets values in the new range."""
    echo = str(SCRIPTS / "echo.py")
    first = run_study(StudyConfig(echo, n_trials=14, metric="score", direction="maximize", seed=3,
                                  workspace=str(tmp_path), pruner="none"))
    assert first.n_complete == 14
    # every trial but the first two (nothing sampled before them to presample from) took all three
    # values locally: 3 x 2 round trips at most
    assert first.remote_suggests <= 6, first.remote_suggests
    study = optuna.load_study(study_name="echo", storage=_db(tmp_path))
    for frozen in study.trials:  # the value the script computed from the parameters it got
        p = frozen.params
        assert frozen.value == pytest.approx(p["x"] + p["n"] + 10 * "abc".index(p["c"]) + 1)
        assert 0.1 <= p["x"] <= 1.0 and p["n"] in (0, 2, 4, 6, 8)

    # x now in [10, 100]: a new declaration (the same warm workers run it)
    second = run_study(StudyConfig(echo, n_trials=18, metric="score", direction="maximize", script_args=["--high", "100"],
                                   workspace=str(tmp_path), pruner="none"))
    assert second.session_trials == 4 and second.n_fail == 0, second.trials
    new = [t for t in optuna.load_study(study_name="echo", storage=_db(tmp_path)).trials if t.number >= 14]
    assert len(new) == 4
    for frozen in new:
        assert 10.0 <= frozen.params["x"] <= 100.0, frozen.params
        assert frozen.distributions["x"].high == 100.0
        p = frozen.params
        assert frozen.value == pytest.approx(p["x"] + p["n"] + 10 * "abc".index(p["c"]) + 1)


def test_value_best_scores_a_trial_by_its_best_report_and_the_study_keeps_the_choice(tmp_path):
    """--value best: the trial's value is its best report in the direction (here the first of two,
    the second falls by 6), not the last, and so are its intermediate values; a rerun keeps the
    study's choice and refuses another."""
    echo = str(SCRIPTS / "echo.py")
    config = dict(metric="score", direction="maximize", workspace=str(tmp_path), pruner="none", script_args=["--peak"])
    first = run_study(StudyConfig(echo, n_trials=3, value="best", seed=1, **config))
    assert first.n_complete == 3 and first.value_mode == "best"
    for t in first.trials:
        p = t["params"]
        base = p["x"] + p["n"] + 10 * "abc".index(p["c"])
        # the intermediate values are the best so far: what the pruner compares is what the trial is judged on
        assert [v for _, v in t["intermediate"]] == pytest.approx([base + 1, base + 1])
        assert t["value"] == pytest.approx(base + 1)  # the best report, not the last
    again = run_study(StudyConfig(echo, n_trials=4, **config))  # no --value: the study's choice
    assert again.value_mode == "best" and again.n_complete == 4
    last = [t for t in again.trials if t["number"] == 3][0]
    assert last["value"] == pytest.approx(last["intermediate"][0][1])
    with pytest.raises(TuneError, match="--value best"):
        run_study(StudyConfig(echo, n_trials=5, value="last", **config))
    with pytest.raises(TuneError, match="--value must be one of last, best"):
        run_study(StudyConfig(echo, n_trials=5, value="max", study_name="other", **config))


def test_patience_ends_a_trial_complete_at_its_best_report(tmp_path):
    """--patience 2: a trial whose score has not improved for two reports ends there, complete and
    valued at its best report (the later, higher report never runs); --patience implies --value
    best and refuses a study that scores trials by their last report."""
    echo = str(SCRIPTS / "echo.py")
    config = dict(metric="score", direction="maximize", workspace=str(tmp_path), pruner="none")
    result = run_study(StudyConfig(echo, n_trials=3, patience=2, seed=1, script_args=["--curve", "1,3,2,3,5"],
                                   **config))
    assert result.value_mode == "best" and result.n_complete == 3 and result.n_stopped == 3, result.trials
    for t in result.trials:
        p = t["params"]
        base = p["x"] + p["n"] + 10 * "abc".index(p["c"])
        # reports 1, 3 (best), 2, 3 (not better: stale twice): the fifth (5) never comes
        assert [v for _, v in t["intermediate"]] == pytest.approx([base + 1, base + 3, base + 3, base + 3])
        assert t["value"] == pytest.approx(base + 3)
        assert t["reason"].startswith("stopped early: no better score than") and "--patience 2" in t["reason"]
        log = (tmp_path / ".deepdive" / "tune-logs" / "echo" / f"trial-{t['number']}.log").read_text()
        assert "finished all" not in log  # the script did not run on after the stop
    # the storage marks them, so that Hyperband does not take their length for a full trial's
    stored = optuna.load_study(study_name="echo", storage=_db(tmp_path)).trials
    assert all(frozen.system_attrs.get(STOPPED_ATTR) is True for frozen in stored)
    # a trial that keeps improving runs to its end
    rising = run_study(StudyConfig(echo, n_trials=2, patience=1, study_name="rising",
                                   script_args=["--curve", "1,2,3"], **config))
    assert rising.n_complete == 2 and rising.n_stopped == 0
    assert not any(STOPPED_ATTR in f.system_attrs for f in optuna.load_study(study_name="rising",
                                                                              storage=_db(tmp_path)).trials)
    assert all(len(t["intermediate"]) == 3 and not t["reason"] for t in rising.trials), rising.trials
    # a NaN before any real value starts no count: stopped after the first report that is not better
    nan_first = run_study(StudyConfig(echo, n_trials=1, patience=1, study_name="nan", seed=1,
                                      script_args=["--curve", "nan,1,0,5"], **config))
    t = nan_first.trials[0]
    assert nan_first.n_stopped == 1 and len(t["intermediate"]) == 3, nan_first.trials
    assert t["value"] == pytest.approx(t["params"]["x"] + t["params"]["n"] + 10 * "abc".index(t["params"]["c"]) + 1)
    with pytest.raises(TuneError, match="--patience ends a trial at its best report.*--value best"):
        run_study(StudyConfig(echo, n_trials=2, patience=2, value="last", study_name="last", **config))
    with pytest.raises(TuneError, match=r"--patience must be a number of reports without a new best \(0: off\)"):
        run_study(StudyConfig(echo, n_trials=2, patience=-1, study_name="negative", **config))


def test_patience_2_is_the_default_off_with_0_or_in_a_study_scored_by_its_last_report(tmp_path):
    """No --patience: trials end after 2 reports without a new best, valued at their best, and the run
    says it is the default; --patience 0 turns it off (a trial runs its course, valued at its last
    report); a study that scores trials by their last report (--value last, or recorded) has it off."""
    echo = str(SCRIPTS / "echo.py")
    config = dict(metric="score", direction="maximize", workspace=str(tmp_path), pruner="none",
                  script_args=["--curve", "1,3,2,3,5"])
    default = run_study(StudyConfig(echo, n_trials=2, seed=1, study_name="default", **config))
    assert (default.patience, default.patience_source, default.value_mode) == (2, "the default", "best")
    assert default.n_stopped == 2 and all(len(t["intermediate"]) == 4 for t in default.trials), default.trials
    assert all(t["reason"].endswith("(--patience 2, the default)") for t in default.trials), default.trials
    off = run_study(StudyConfig(echo, n_trials=2, seed=1, patience=0, study_name="off", **config))
    assert (off.patience, off.patience_source, off.value_mode, off.n_stopped) == (None, "off: --patience 0", "last", 0)
    assert all(len(t["intermediate"]) == 5 for t in off.trials), off.trials
    again = run_study(StudyConfig(echo, n_trials=3, seed=2, study_name="off", **config))  # recorded: --value last
    assert (again.patience, again.value_mode, again.n_stopped) == (None, "last", 0)
    assert again.patience_source == "off: the study scores trials by their last report"
    last = run_study(StudyConfig(echo, n_trials=1, seed=1, value="last", study_name="last-given", **config))
    assert (last.patience, last.patience_source, last.n_stopped) == (None, "off: --value last", 0)


def test_gp_sampler_runs_a_study_and_stores_what_each_trial_ran_with(tmp_path):
    """--sampler gp (Optuna's Gaussian-process sampler): after its ten random start-up trials it
    proposes the parameters jointly; each trial's stored value is the one its parameters give."""
    echo = str(SCRIPTS / "echo.py")
    result = run_study(StudyConfig(echo, n_trials=13, sampler="gp", metric="score", direction="maximize", seed=2,
                                   workspace=str(tmp_path), pruner="none"))
    assert result.n_complete == 13 and result.n_fail == 0, result.trials
    study = optuna.load_study(study_name="echo", storage=_db(tmp_path))
    for frozen in study.trials:
        p = frozen.params
        assert frozen.value == pytest.approx(p["x"] + p["n"] + 10 * "abc".index(p["c"]) + 1)
    # the model-based trials find the maximum (c="c", n=8, x=1: 30) at once; random sampling would
    # need luck: one chance in about 300 per trial to come within 1 of it
    assert max(t.value for t in study.trials[10:]) >= 29, [t.value for t in study.trials]


def test_cmaes_sampler_draws_the_trials_after_its_start_up(tmp_path):
    """--sampler cmaes (Optuna's CMA-ES, the cmaes package of the tune extra): from the third trial on,
    the numeric parameters come from a CMA-ES generation (Optuna records it on the trial); the
    categorical one, which CMA-ES cannot model, is sampled independently. Each stored value is the
    one the trial's parameters give."""
    echo = str(SCRIPTS / "echo.py")
    result = run_study(StudyConfig(echo, n_trials=8, sampler="cmaes", metric="score", direction="maximize", seed=0,
                                   workspace=str(tmp_path), pruner="none"))
    assert result.n_complete == 8 and result.n_fail == 0, result.trials
    study = optuna.load_study(study_name="echo", storage=_db(tmp_path))
    assert all("cma:generation" in t.system_attrs for t in study.trials[2:]), [t.system_attrs for t in study.trials]
    for frozen in study.trials:
        p = frozen.params
        assert frozen.value == pytest.approx(p["x"] + p["n"] + 10 * "abc".index(p["c"]) + 1)


def test_trial_timeout_kills_and_fails_a_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    # each trial would sleep 8 x 0.5 s; --trial-timeout 1 kills it after a second
    monkeypatch.setenv("SLOW_STEPS", "8")
    monkeypatch.setenv("SLOW_SLEEP", "0.5")
    result = run_study(StudyConfig(str(SCRIPTS / "slow.py"), n_trials=3, metric="score", workspace=str(tmp_path),
                                   trial_timeout=1.0, seed=0))
    assert result.n_fail == 3 and len(result.trials) == 3, result.trials
    assert all(t["reason"].startswith("timed out after 1 s (killed)") for t in result.trials), result.trials
    assert all(len(t["intermediate"]) < 8 for t in result.trials)  # killed before its eight reports
    # the kill took the trial's worker with it; a fresh one ran the next trial, and the study can go on
    monkeypatch.setenv("SLOW_STEPS", "2")
    monkeypatch.setenv("SLOW_SLEEP", "0.05")
    again = run_study(StudyConfig(str(SCRIPTS / "slow.py"), n_trials=4, metric="score", workspace=str(tmp_path),
                                  trial_timeout=30.0))
    assert again.n_complete == 1 and again.n_fail == 3
