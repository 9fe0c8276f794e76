"""The study's trial budget is shared: several ``deepdive tune --trials N`` on one study end with N trials.

Real ``deepdive tune`` processes (the command line, warm workers, the slow test script) started together
on one storage and one ``--study``; each trial takes a couple of seconds, so that the processes run
trials at the same time (at least two must take part). Before the shared reservation each process counted only
the trials it saw finished plus its own running ones, and two processes ended with 11 or 12 trials.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest


pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def _tune_together(cwd: Path, trials: int, parallel: int, storage: str | None = None,
                   processes: int = 2) -> list[tuple[int, str, str]]:
    """Start ``processes`` ``deepdive tune`` on study "shared" at once; their (code, stdout, stderr).

    The first ones print JSON; the last one prints the tables (its summary line is checked too).
    """
    env = dict(os.environ, SLOW_STEPS="4", SLOW_SLEEP="0.4")  # 1.6 s a trial
    argv = [sys.executable, "-m", "deepdive", "tune", str(SCRIPTS / "slow.py"), "--trials", str(trials),
            "--parallel", str(parallel), "--metric", "score", "--direction", "maximize", "--pruner", "none",
            "--study", "shared"] + (["--storage", storage] if storage else [])
    procs = [subprocess.Popen(argv + (["--json"] if i < processes - 1 else []), cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
             for i in range(processes)]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            outs.append((proc.returncode, out.decode(), err.decode()))
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return outs


def _check_exactly(outs: list[tuple[int, str, str]], storage: str, trials: int) -> None:
    """The study holds ``trials`` finished trials, none beyond, run by the processes between them."""
    import optuna

    from deepdive.tune.study import open_storage

    for code, out, err in outs:
        assert code == 0, err[-3000:]
    study = optuna.load_study(study_name="shared", storage=open_storage(storage, None, None))
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert len(states) == trials, f"{len(states)} trials in the study for --trials {trials}: {states}"
    assert states == ["COMPLETE"] * trials
    results = [json.loads(out) for _, out, _ in outs[:-1]]
    ran = [r["session_trials"] for r in results]
    last = " ".join(outs[-1][1].split())
    # the table summary of the last process: "the study has its 10 trials; 4 of them ran in this process"
    # (or, when it ended first: "... 9 finished, 1 still running in another process ...")
    mine = int(last.split(" of them ran in this process")[0].rsplit(" ", 1)[1])
    ran.append(mine)
    assert f"the study's {trials} trials" in last or f"the study has its {trials} trials" in last, last[-1500:]
    # between them they ran the N trials, and at least two of them ran some at the same time
    assert sum(ran) == trials and sum(1 for n in ran if n) >= 2, (ran, outs[-1][2][-2000:])
    for r in results:
        assert r["n_trials"] == trials
        assert r["n_complete"] + r["running_elsewhere"] == trials, r


def test_two_tune_processes_share_the_trial_budget_sqlite(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / '.deepdive' / 'tune.db'}"
    (tmp_path / ".deepdive").mkdir()
    optuna.create_study(storage=storage, study_name="shared", direction="maximize")  # (not two creating it)
    outs = _tune_together(tmp_path, trials=10, parallel=1)
    _check_exactly(outs, storage, 10)


def test_two_tune_processes_with_two_workers_each_share_the_budget(tmp_path):
    """Also: the storage is new, so both processes create its tables at the same moment."""
    outs = _tune_together(tmp_path, trials=10, parallel=2)
    _check_exactly(outs, f"sqlite:///{tmp_path / '.deepdive' / 'tune.db'}", 10)


OPEN_AT_ONCE = """
import sys, time
from deepdive.tune.study import open_storage
print("ready", flush=True)
start, folder = float(sys.stdin.readline()), sys.argv[1]
for i in range(5):  # five new databases, each opened by every process at the same instant
    time.sleep(max(0.0, start + 0.5 * i - time.time()))
    open_storage(f"sqlite:///{folder}/new-{i}.db")
"""


def test_processes_that_open_a_new_storage_at_once_all_open_it(tmp_path):
    """Each creates the tables; the losers of that race used to fail (UNIQUE constraint failed: alembic_version)."""
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for proc in procs:  # every process has imported Optuna
            assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=60)[1][-1500:]
        start = time.time() + 0.5
        for proc in procs:
            proc.stdin.write(f"{start}\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-1500:]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _running_of(db: Path, pid: int) -> tuple[list[int], int]:
    """Numbers of the RUNNING trials that process ``pid`` owns, and the study's complete trials (read-only SQL)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute("SELECT t.number, t.state, a.value_json FROM trials t LEFT JOIN "
                               "trial_system_attributes a ON a.trial_id = t.trial_id AND a.key = 'deepdive:owner'"
                               ).fetchall()
    except sqlite3.Error:
        return [], 0
    mine = [n for n, state, owner in rows if state == "RUNNING" and owner and json.loads(owner).get("pid") == pid]
    return mine, sum(1 for _, state, _ in rows if state == "COMPLETE")


def test_a_killed_process_frees_its_places_for_the_one_still_running(tmp_path):
    """kill -9 of one of two processes: its running trials are orphans (they do not count toward N); the
    other process, still running, fails them at its next reservation and runs N trials that count."""
    import optuna

    db = tmp_path / ".deepdive" / "tune.db"
    storage = f"sqlite:///{db}"
    db.parent.mkdir()
    optuna.create_study(storage=storage, study_name="shared", direction="maximize")
    env = dict(os.environ, SLOW_STEPS="4", SLOW_SLEEP="0.4")
    argv = [sys.executable, "-m", "deepdive", "tune", str(SCRIPTS / "slow.py"), "--trials", "8", "--metric", "score",
            "--direction", "maximize", "--pruner", "none", "--study", "shared", "--json"]
    victim, survivor = (subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True) for _ in range(2))
    try:
        deadline = time.time() + 200
        killed: list[int] = []
        while time.time() < deadline and victim.poll() is None:
            time.sleep(0.2)
            killed, complete = _running_of(db, victim.pid)
            if killed and complete >= 1:
                os.killpg(victim.pid, signal.SIGKILL)
                break
        assert killed, f"the first process never ran a trial: {victim.communicate(timeout=60)[1].decode()[-2000:]}"
        victim.wait()
        out, err = survivor.communicate(timeout=300)
    finally:
        for proc in (victim, survivor):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    assert survivor.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    # what the killed process left running (one may have ended between the look and the kill)
    orphans = [n for n in killed if trials[n].state.name == "FAIL"]
    assert orphans and set(orphans) <= set(result["orphaned"])
    assert all(trials[n].system_attrs["deepdive:reason"].startswith("orphaned") for n in orphans)
    others = [t for n, t in trials.items() if n not in orphans]
    assert [t.state.name for t in others] == ["COMPLETE"] * 8, [(t.number, t.state.name) for t in trials.values()]
    assert (result["n_counted"], result["running_elsewhere"]) == (8, 0)


def test_three_tune_processes_share_the_budget_on_a_journal(tmp_path):
    storage = f"journal:{tmp_path / 'shared' / 'study.log'}"
    outs = _tune_together(tmp_path, trials=9, parallel=1, storage=storage, processes=3)
    _check_exactly(outs, storage, 9)


def test_two_tune_processes_share_the_budget_on_postgres(postgres_url, tmp_path):
    outs = _tune_together(tmp_path, trials=8, parallel=1, storage=postgres_url)
    _check_exactly(outs, postgres_url, 8)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_failed_for_a_stale_heartbeat_does_not_count_for_any_process(tmp_path, monkeypatch):
    """A trial whose process died on another machine (RDB heartbeat stale) is an orphan for every process.

    The process that fails it used to be the only one not to count it: the next run counted it as a
    result and stopped one trial short of N.
    """
    import optuna

    from deepdive.tune.study import StudyConfig, run_study

    monkeypatch.setenv("SLOW_STEPS", "2")
    monkeypatch.setenv("SLOW_SLEEP", "0.1")
    (tmp_path / ".deepdive").mkdir()
    url = f"sqlite:///{tmp_path / '.deepdive' / 'tune.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="slow", direction="maximize")
    lost = study.ask()  # a trial of a process on another machine that died
    storage.set_trial_system_attr(lost._trial_id, "deepdive:owner", {"host": "elsewhere", "pid": 1, "started": 0.0})
    storage.record_heartbeat(lost._trial_id)
    time.sleep(4)

    def tune(n: int):
        return run_study(StudyConfig(str(SCRIPTS / "slow.py"), n_trials=n, metric="score", workspace=str(tmp_path),
                                     heartbeat_interval=1, grace_period=3, pruner="none", reuse_workers=False))

    first = tune(1)
    second = tune(2)  # another process (a rerun): it does not count the orphan either, and runs a second trial
    assert first.orphaned == [lost.number] and first.session_trials == 1
    assert second.session_trials == 1 and second.n_complete == 2, second.trials
    frozen = study.get_trials(deepcopy=False)[lost.number]
    assert frozen.state.name == "FAIL" and frozen.system_attrs["deepdive:reason"].startswith("orphaned: no heartbeat")
    assert second.n_counted == 2


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_prepared_trial_keeps_its_heartbeat_while_it_waits(tmp_path, monkeypatch):
    """The next trial is created while the current one runs; each reservation fails stale trials, so the
    waiting one must beat too, or a trial longer than the grace period would orphan its successor."""
    from deepdive.tune.study import StudyConfig, run_study

    monkeypatch.setenv("SLOW_STEPS", "4")
    monkeypatch.setenv("SLOW_SLEEP", "1.0")  # 4 s a trial, twice the grace period
    result = run_study(StudyConfig(str(SCRIPTS / "slow.py"), n_trials=3, metric="score", workspace=str(tmp_path),
                                   heartbeat_interval=1, grace_period=2, pruner="none", study_name="beats",
                                   reuse_workers=False))
    assert [t["state"] for t in result.trials] == ["complete"] * 3, result.trials
    assert result.orphaned == []
