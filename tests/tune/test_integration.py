"""The tune job kind's command line and the daemon's deepdive/tune/applyBest handler (no processes)."""

import asyncio
from pathlib import Path

import pytest

from deepdive.jobs.kinds import Context, JobRejected, build_launch
from deepdive.protocol import TuneApplyParams

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def test_tune_job_kind_builds_the_cli(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")
    ctx = Context(python="/py", workspace=str(tmp_path), trusted=True)
    kind, launch = build_launch("tune", {"path": "train.py", "trials": 30, "parallel": 2, "metric": "accuracy",
                                         "seed": 3, "retry_failed": True, "storage": "journal:/shared/j.log",
                                         "patience": 2, "sampler": "gp", "args": ["--epochs", "3"]}, ctx)
    assert kind.runs_user_code
    assert launch.argv == ["/py", "-P", "-m", "deepdive", "tune", str(script), "--trials", "30", "--parallel", "2",
                           "--sampler", "gp", "--storage", "journal:/shared/j.log", "--metric", "accuracy",
                           "--seed", "3", "--patience", "2", "--retry-failed", "--", "--epochs", "3"]
    assert launch.cwd == str(tmp_path)
    with pytest.raises(JobRejected, match="sampler"):
        build_launch("tune", {"path": "train.py", "sampler": "grid"}, ctx)
    with pytest.raises(JobRejected, match="option 'patience' must be a whole number from 0"):
        build_launch("tune", {"path": "train.py", "patience": -1}, ctx)
    _, off = build_launch("tune", {"path": "train.py", "trials": 3, "patience": 0}, ctx)  # 0: off, said to the CLI
    assert off.argv[off.argv.index("--patience") + 1] == "0"
    with pytest.raises(JobRejected, match="unknown option"):
        build_launch("tune", {"path": "train.py", "bogus": 1}, ctx)
    with pytest.raises(JobRejected, match="trust"):
        build_launch("tune", {"path": "train.py"}, Context(python="/py", workspace=str(tmp_path), trusted=False))


def test_apply_best_handler(tmp_path):
    from deepdive.daemon import server

    script = tmp_path / "modes.py"
    script.write_bytes((SCRIPTS / "modes.py").read_bytes())

    class FakeServer:
        workspace_root = str(tmp_path)

    result = asyncio.run(server.on_tune_apply(FakeServer(), TuneApplyParams(path="modes.py",
                                                                            params={"x": 0.25, "lr": 1.0})))
    assert result.changed == ["x"] and result.missing == ["lr"] and len(result.edits) == 1
    edit = result.edits[0]
    line = (SCRIPTS / "modes.py").read_text().splitlines()[edit.start_line]
    assert line[edit.start_character:edit.end_character] == "0.5" and edit.new_text == "0.25"
    assert script.read_bytes() == (SCRIPTS / "modes.py").read_bytes()  # the editor applies the edits, not the daemon
    # unsaved text wins over the file
    result = asyncio.run(server.on_tune_apply(FakeServer(), TuneApplyParams(
        path="modes.py", params={"x": 0.5}, text="x = run.suggest('x', 0.0, 1.0, default=0.1)\n")))
    assert result.changed == ["x"] and result.edits[0].start_character == len("x = run.suggest('x', 0.0, 1.0, default=")
    with pytest.raises(JobRejected, match="no such script"):
        asyncio.run(server.on_tune_apply(FakeServer(), TuneApplyParams(path="nope.py", params={})))
    with pytest.raises(JobRejected, match="does not parse"):
        asyncio.run(server.on_tune_apply(FakeServer(), TuneApplyParams(path="x.py", params={}, text="def (")))
