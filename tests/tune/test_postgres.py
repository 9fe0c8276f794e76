"""Optuna's RDB storage on a real PostgreSQL server: a study with 2 workers, then a second run continues it.

The server is started by the test (tests/tune/pg.py: initdb in a temporary folder, a free port on
127.0.0.1) and removed afterwards. Skipped, with the reason, when the server binaries or a driver are
missing (install: ``apt-get install -y postgresql`` and ``pip install 'psycopg[binary]'``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tune import pg


pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCRIPT = '''\
import time

import deepdive.engine as dd

run = dd.setup(precision="fp32", device="cpu")
x = run.suggest("x", -2.0, 2.0, default=0.0)
width = run.suggest("width", choices=[8, 16, 32], default=16)
for step in range(6):
    time.sleep(0.02)
    run.log(score=-(x - 0.5) ** 2 - 0.01 * width / (step + 1))
run.finish()
'''


def test_study_on_postgres_with_two_workers_then_continued(postgres_url, tmp_path):
    import optuna
    import sqlalchemy as sa

    from deepdive.tune import StudyConfig, run_study

    script = tmp_path / "quad.py"
    script.write_text(SCRIPT)
    config = StudyConfig(str(script), n_trials=6, parallel=2, storage=postgres_url, study_name="pg-quad",
                         metric="score", direction="maximize", seed=0, workspace=str(tmp_path))
    first = run_study(config)
    assert first.storage == postgres_url  # no password to hide here
    assert first.n_complete + first.n_pruned == 6 and first.n_fail == 0, first.trials
    assert first.session_trials == 6

    # what is in PostgreSQL itself, read by Optuna and by SQL
    study = optuna.load_study(study_name="pg-quad", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    assert all(set(t.params) == {"x", "width"} for t in trials)
    assert all(t.intermediate_values for t in trials)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(len(t.intermediate_values) == 6 for t in complete)
    assert study.best_value == pytest.approx(first.best_value)
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select current_setting('server_version_num')::int")).scalar() > 0
            rows = conn.execute(sa.text(
                "select count(*) from trials t join studies s using (study_id) where s.study_name = 'pg-quad'")).scalar()
            values = conn.execute(sa.text("select count(*) from trial_intermediate_values")).scalar()
    finally:
        engine.dispose()
    assert rows == 6
    assert values == sum(len(t.intermediate_values) for t in trials)

    # a second run (the CLI, another process) continues the same study to 10 trials
    out = subprocess.run([sys.executable, "-m", "deepdive", "tune", str(script), "--trials", "10", "--parallel", "2",
                          "--storage", postgres_url, "--study", "pg-quad", "--metric", "score",
                          "--direction", "maximize", "--seed", "0", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    second = json.loads(out.stdout)
    assert second["study"] == "pg-quad"
    assert second["n_complete"] + second["n_pruned"] == 10 and second["n_fail"] == 0
    numbers = sorted(t["number"] for t in second["trials"])
    assert numbers == list(range(10))
    # the first run's trials are still there, unchanged
    again = {t.number: t for t in optuna.load_study(study_name="pg-quad", storage=postgres_url).trials}
    for t in trials:
        assert again[t.number].params == t.params and again[t.number].value == t.value
    # the resumed study's best is at least the first run's
    assert second["best_value"] >= first.best_value


def test_fixture_reports_why_it_cannot_run(monkeypatch):
    """Without binaries the reason names the install command (what a skipped run prints)."""
    monkeypatch.setattr(pg, "bindir", lambda: None)
    reason = pg.unavailable()
    assert reason is not None and "apt-get install -y postgresql" in reason
    monkeypatch.undo()
    monkeypatch.setattr(pg, "driver", lambda: None)
    if pg.bindir() is not None:
        assert "psycopg" in pg.unavailable()
