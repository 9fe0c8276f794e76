"""The train job kind: torchrun's command line and the workers' environment (no process is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.jobs.kinds import Context, JobRejected, build_launch


def launch(ws: Path, **options):
    (ws / "train.py").write_text("import deepdive.engine as dd\n")
    return build_launch("train", {"path": "train.py", **options}, Context(python="/py", workspace=str(ws), trusted=True))


def test_restarts_and_the_checkpoint_folder_reach_torchrun_and_the_workers(tmp_path: Path):
    _, job = launch(tmp_path, nproc=2, max_restarts=3, checkpoint_dir="ckpt", args=["--epochs", "5"])
    assert job.argv[:8] == ["/py", "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", "3",
                            "--standalone"]
    assert job.argv[8:] == [str(tmp_path / "train.py"), "--epochs", "5"]
    # dd.setup() reads it as its default checkpoint_dir: the restarted group resumes from there
    assert job.env["DEEPDIVE_CHECKPOINT_DIR"] == str(tmp_path / "ckpt")
    _, job = launch(tmp_path)
    assert "DEEPDIVE_CHECKPOINT_DIR" not in job.env


@pytest.mark.parametrize("options, message", [
    ({"checkpoint_dir": ""}, "option 'checkpoint_dir' must be a folder path"),
    ({"checkpoint_dir": 3}, "option 'checkpoint_dir' must be a folder path"),
    ({"max_restarts": -1}, "max_restarts"),
])
def test_one_line_refusals(tmp_path: Path, options: dict, message: str):
    with pytest.raises(JobRejected, match=message) as info:
        launch(tmp_path, **options)
    assert "\n" not in str(info.value)


def test_precision_and_compression_reach_the_workers_as_the_launchers_choice(tmp_path: Path):
    _, job = launch(tmp_path, precision="bf16", grad_compression="powersgd")
    assert job.env["DEEPDIVE_PRECISION"] == "bf16" and job.env["DEEPDIVE_GRAD_COMPRESSION"] == "powersgd"
    _, job = launch(tmp_path, precision="auto")  # auto: the script's own choice stands
    assert "DEEPDIVE_PRECISION" not in job.env and "DEEPDIVE_GRAD_COMPRESSION" not in job.env
    with pytest.raises(JobRejected, match="option 'precision' must be one of auto, fp32, bf16, fp16, got 'fp8'"):
        launch(tmp_path, precision="fp8")


def test_the_protocols_vocabularies_are_the_engines():
    from deepdive.engine.precision import PRECISIONS
    from deepdive.engine.run import COMPRESSIONS
    from deepdive.protocol import VOCABULARIES

    assert VOCABULARIES["trainPrecisions"] == PRECISIONS and VOCABULARIES["gradCompressions"] == COMPRESSIONS
