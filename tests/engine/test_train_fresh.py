"""`deepdive train --fresh` end to end: earlier checkpoints ignored, the job's own restarts still resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.engine.ckpt import Store

SCRIPT = Path(__file__).resolve().parent / "dist_scripts" / "resumable.py"
TIMEOUT = 300


def deepdive_train(cwd: Path, *args: str, script_args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPDIVE_HOME": str(cwd / "home"), "DEEPDIVE_HUB": "",
           "COLUMNS": "2000"}   # the job's output lines unwrapped
    return subprocess.run([sys.executable, "-m", "deepdive", "train", "train.py", *args, "--", *script_args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd)


def losses(path: Path) -> list[tuple[int, str]]:
    words = path.read_text().split()
    return [(int(step), loss) for step, loss in zip(words[::2], words[1::2])]


def _corrupt_every_checkpoint(root: Path) -> None:
    store = Store(root)
    for checkpoint in store.list():
        entry = next(e for e in store.manifest(checkpoint.step)["tensors"] if e["path"] == "model.0.weight")
        chunk = root / "chunks" / entry["chunks"][0][0][:2] / entry["chunks"][0][0]
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0x10
        chunk.write_bytes(bytes(data))


@pytest.mark.slow
def test_fresh_ignores_earlier_checkpoints_and_its_restart_resumes_its_own(tmp_path: Path):
    shutil.copy(SCRIPT, tmp_path / "train.py")
    ckpt = tmp_path / "ckpt"
    first = deepdive_train(tmp_path, "--checkpoint-dir", "ckpt", script_args=["--ckpt", str(ckpt), "--out", "a"])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    expected = losses(tmp_path / "a.rank0")
    assert [s for s, _ in expected] == list(range(1, 40))
    assert [c.step for c in Store(ckpt).list()] == [26, 39]        # keep_last=2

    # without --fresh a rerun resumes after step 39 and trains nothing more
    again = deepdive_train(tmp_path, "--checkpoint-dir", "ckpt", script_args=["--ckpt", str(ckpt), "--out", "again"])
    assert again.returncode == 0 and "done 39 steps" in again.stdout + again.stderr, again.stderr[-2000:]
    assert losses(tmp_path / "again.rank0") == []

    # --fresh: from step 0, SIGTERM at step 7, torchrun restarts the worker, which resumes after step 7
    fresh = deepdive_train(tmp_path, "--checkpoint-dir", "ckpt", "--fresh", "--max-restarts", "1",
                           script_args=["--ckpt", str(ckpt), "--out", "b", "--sigterm-at", "7"])
    assert fresh.returncode == 0, fresh.stdout[-2000:] + fresh.stderr[-2000:]
    output = fresh.stdout + fresh.stderr
    assert "starting fresh: 2 checkpoint(s) saved in" in output and "ignored (--fresh)" in output
    assert losses(tmp_path / "b.rank0") == expected                # 1..7, then 8..39 after the restart: bitwise
    assert [c.step for c in Store(ckpt).list()] == [26, 39]

    # every checkpoint damaged: the run stops with one line naming the fixes; --fresh starts over
    _corrupt_every_checkpoint(ckpt)
    broken = deepdive_train(tmp_path, "--checkpoint-dir", "ckpt", script_args=["--ckpt", str(ckpt), "--out", "c"])
    assert broken.returncode != 0
    lines = [line for line in (broken.stdout + broken.stderr).splitlines() if "cannot resume from" in line]
    assert lines and all("no checkpoint there loads" in line and "deepdive train --fresh" in line
                         and "resume=False" in line and "model.0.weight" in line for line in lines)
    restarted = deepdive_train(tmp_path, "--checkpoint-dir", "ckpt", "--fresh",
                               script_args=["--ckpt", str(ckpt), "--out", "d"])
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert losses(tmp_path / "d.rank0") == expected
    assert Store(ckpt).verify() == []          # the damaged chunks were written again by the new saves


def test_the_train_job_passes_fresh_as_the_jobs_start_time(tmp_path: Path):
    import time

    from deepdive.jobs.kinds import Context, JobRejected, build_launch

    (tmp_path / "train.py").write_text("import deepdive.engine as dd\n")
    context = Context(python="/py", workspace=str(tmp_path), trusted=True)
    before = time.time()
    _, job = build_launch("train", {"path": "train.py", "fresh": True}, context)
    assert before <= float(job.env["DEEPDIVE_CHECKPOINT_FRESH_SINCE"]) <= time.time()
    _, job = build_launch("train", {"path": "train.py", "fresh": False}, context)
    assert "DEEPDIVE_CHECKPOINT_FRESH_SINCE" not in job.env
    with pytest.raises(JobRejected, match="option 'fresh' must be true or false"):
        build_launch("train", {"path": "train.py", "fresh": "yes"}, context)


def test_a_bad_fresh_time_in_the_environment_is_a_one_line_error(tmp_path: Path, monkeypatch):
    import deepdive.engine as dd

    monkeypatch.setenv("DEEPDIVE_CHECKPOINT_FRESH_SINCE", "1")   # a time: 1 s after 1970 ignores nothing
    run = dd.setup(device="cpu", precision="fp32", checkpoint_dir=str(tmp_path / "ck"))
    assert run.ckpt is not None and run.ckpt.fresh_since == 1.0
    run.finish()
    monkeypatch.setenv("DEEPDIVE_CHECKPOINT_FRESH_SINCE", "yes")
    with pytest.raises(ValueError, match="DEEPDIVE_CHECKPOINT_FRESH_SINCE must be a Unix time") as info:
        dd.setup(device="cpu", precision="fp32", checkpoint_dir=str(tmp_path / "ck"))
    assert "\n" not in str(info.value)
