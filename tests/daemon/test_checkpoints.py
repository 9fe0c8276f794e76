"""`deepdive/checkpoints/*` through a real daemon and pygls client, on stores the engine's own Store wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pygls.exceptions import JsonRpcException

from deepdive.engine.ckpt import Store
from deepdive.lspclient import DaemonClient
from deepdive.protocol import (
    CHECKPOINTS_EXPORT, CHECKPOINTS_LIST, CHECKPOINTS_RESUME, CHECKPOINTS_VERIFY, JOBS_EVENT, JOBS_LOG, JOBS_START,
    CheckpointExportParams, CheckpointListParams, CheckpointResumeParams, CheckpointVerifyParams, JobIdParams,
    JobStartParams,
)
from tests.conftest import write_script

STEPS = (10, 20, 30)


def save_run(root: Path) -> dict[int, dict]:
    """Three checkpoints of a model whose backbone is frozen: only the head changes between saves."""
    store = Store(root, chunk_size=8192)
    g = torch.Generator().manual_seed(0)
    backbone = {f"encoder.{i}.weight": torch.randn(64, 64, generator=g) for i in range(3)}
    states = {}
    for step in STEPS:
        model = {**backbone, "head.weight": torch.randn(10, 64, generator=g)}
        states[step] = {"model": model, "epoch": step // 10}
        store.save(states[step], step=step, metrics={"val_loss": 1.0 / step})
    store.close()
    return states


def disk_bytes(root: Path) -> int:
    files = [*(root / "chunks").glob("*/*"), *(root / "manifests").glob("*.json")]
    return sum(p.stat().st_size for p in files if not p.name.startswith("."))


def only_chunk_of(root: Path, step: int, tensor: str) -> Path:
    manifest = Store(root, create=False).manifest(step)
    (entry,) = [e for e in manifest["tensors"] if e["path"] == tensor]
    key = entry["chunks"][0][0]
    return root / "chunks" / key[:2] / key


async def test_list_shows_each_run_with_its_steps_sizes_and_dedup_ratio(daemon: DaemonClient, workspace: Path):
    save_run(workspace / "exp1" / "ckpt")
    save_run(workspace / "exp2" / "nested" / "ckpt")
    (workspace / "node_modules" / "x" / "ckpt").mkdir(parents=True)     # not a store: a STORE.json is what counts
    answer = await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())
    assert [r.name for r in answer.runs] == ["exp1/ckpt", "exp2/nested/ckpt"]
    run = answer.runs[0]
    root = workspace / "exp1" / "ckpt"
    assert run.path == str(root) and run.error is None and not run.damaged
    expected = {c.name: c for c in Store(root, create=False).list()}
    assert [c.step for c in run.checkpoints] == list(STEPS)
    for got in run.checkpoints:
        want = expected[got.name]
        assert (got.time, got.stored_bytes, got.new_bytes, got.raw_bytes, got.tensors) == \
            (want.time, want.stored_bytes, want.new_bytes, want.raw_bytes, want.tensors)
        assert got.metrics == {"val_loss": pytest.approx(1.0 / got.step)}
        assert got.verified is None and got.latest == (got.step == 30)
    assert run.checkpoints[1].new_bytes < run.checkpoints[1].stored_bytes / 2   # the frozen backbone was not written again
    assert run.disk_bytes == disk_bytes(root)
    assert run.raw_bytes == sum(c.raw_bytes for c in expected.values())
    assert run.ratio == pytest.approx(run.raw_bytes / run.disk_bytes) and run.ratio > 2


async def test_list_takes_stores_outside_the_workspace_and_says_why_one_cannot_be_read(
        daemon: DaemonClient, workspace: Path, tmp_path: Path):
    save_run(tmp_path / "scratch" / "ckpt")
    (tmp_path / "notastore").mkdir()
    answer = await daemon.request(CHECKPOINTS_LIST, CheckpointListParams(
        paths=[str(tmp_path / "scratch" / "ckpt"), str(tmp_path / "notastore")]))
    runs = {r.path: r for r in answer.runs}
    assert [c.step for c in runs[str(tmp_path / "scratch" / "ckpt")].checkpoints] == list(STEPS)
    bad = runs[str(tmp_path / "notastore")]
    assert not bad.checkpoints and "no checkpoint store" in bad.error and "\n" not in bad.error


@pytest.mark.slow
async def test_verify_is_remembered_per_checkpoint_and_names_the_corrupt_tensor(daemon: DaemonClient, workspace: Path):
    root = workspace / "ckpt"
    save_run(root)
    result = await daemon.request(CHECKPOINTS_VERIFY, CheckpointVerifyParams(store=str(root)))
    assert result.ok and not result.problems and len(result.checkpoints) == 3
    run = (await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())).runs[0]
    assert [c.verified for c in run.checkpoints] == ["ok", "ok", "ok"]

    chunk = only_chunk_of(root, 30, "model.head.weight")        # the head of step 30 only
    data = bytearray(chunk.read_bytes())
    data[-7] ^= 0xFF
    chunk.write_bytes(bytes(data))
    result = await daemon.request(CHECKPOINTS_VERIFY, CheckpointVerifyParams(store=str(root)))
    assert not result.ok
    assert [(p.checkpoint, p.tensor) for p in result.problems] == [("step-0000000030", "model.head.weight")]
    run = (await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())).runs[0]
    assert [c.verified for c in run.checkpoints] == ["ok", "ok", "corrupt"]
    assert "model.head.weight" in run.checkpoints[2].problem

    Store(root).save({"w": torch.ones(3)}, step=30)       # saved again: the old verdict no longer applies
    run = (await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())).runs[0]
    assert [c.verified for c in run.checkpoints] == ["ok", "ok", None]


async def test_verify_of_a_folder_that_is_no_store_is_one_line(daemon: DaemonClient, workspace: Path):
    (workspace / "empty").mkdir()
    with pytest.raises(JsonRpcException, match="no checkpoint store at") as info:
        await daemon.request(CHECKPOINTS_VERIFY, CheckpointVerifyParams(store=str(workspace / "empty")))
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


@pytest.mark.slow
async def test_export_writes_the_models_state_dict_to_the_chosen_file(daemon: DaemonClient, workspace: Path):
    root = workspace / "ckpt"
    states = save_run(root)
    result = await daemon.request(CHECKPOINTS_EXPORT, CheckpointExportParams(
        store=str(root), checkpoint="20", out="model-20.pt", key="model"))
    out = workspace / "model-20.pt"
    assert result.path == str(out) and result.checkpoint == "step-0000000020" and result.tensors == 4
    loaded = torch.load(out, weights_only=True)
    assert set(loaded) == set(states[20]["model"])
    assert all(torch.equal(loaded[k], v) for k, v in states[20]["model"].items())
    with pytest.raises(JsonRpcException, match="exists: pass --force"):
        await daemon.request(CHECKPOINTS_EXPORT, CheckpointExportParams(store=str(root), checkpoint="20",
                                                                        out=str(out), key="model"))
    with pytest.raises(JsonRpcException, match="name it \\*.pt or \\*.safetensors"):
        await daemon.request(CHECKPOINTS_EXPORT, CheckpointExportParams(store=str(root), checkpoint="latest",
                                                                        out="model.txt"))


TRAIN = """
import os, sys
import numpy as np
from deepdive.engine.ckpt import Store
folder = os.environ["DEEPDIVE_CHECKPOINT_DIR"]
store = Store(folder)
step = len(store.list()) + 1
store.save({"w": np.full(16, float(step))}, step=step)
print("saved", step, "in", folder, "args", sys.argv[1:], flush=True)
print("precision", os.environ.get("DEEPDIVE_PRECISION"), "compression", os.environ.get("DEEPDIVE_GRAD_COMPRESSION"),
      flush=True)
"""


async def finished(daemon: DaemonClient, job_id: str):
    done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job_id and e.type == "finished", 120)
    assert done.job.state == "succeeded", done.job.reason
    return done.job


@pytest.mark.slow
async def test_resume_this_run_starts_the_train_job_that_saved_there_again(daemon: DaemonClient, workspace: Path):
    write_script(workspace, "train.py", TRAIN)
    job = await daemon.request(JOBS_START, JobStartParams(
        kind="train", options={"path": "train.py", "args": ["--epochs", "2"], "checkpoint_dir": "ckpt",
                               "precision": "fp32", "grad_compression": "none"}))
    await finished(daemon, job.id)
    run = (await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())).runs[0]
    assert run.name == "ckpt" and [c.step for c in run.checkpoints] == [1]
    assert run.script == str(workspace / "train.py") and run.args == ["--epochs", "2"] and run.nproc == 1

    resumed = await daemon.request(CHECKPOINTS_RESUME, CheckpointResumeParams(store=run.path))
    assert resumed.kind == "train" and str(workspace / "train.py") in resumed.argv
    await finished(daemon, resumed.id)
    log = await daemon.request(JOBS_LOG, JobIdParams(id=resumed.id))
    assert any(line.text == f"saved 2 in {workspace / 'ckpt'} args ['--epochs', '2']" for line in log.lines), log.lines
    # precision and gradient compression reach a train job as environment variables, not on its command line:
    # the resumed run gets the ones the saving job was started with
    assert any(line.text == "precision fp32 compression none" for line in log.lines), log.lines
    assert resumed.options["precision"] == "fp32" and resumed.options["grad_compression"] == "none"
    run = (await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())).runs[0]
    assert [c.step for c in run.checkpoints] == [1, 2]


async def test_resume_without_a_known_script_asks_for_one(daemon: DaemonClient, workspace: Path):
    save_run(workspace / "ckpt")
    with pytest.raises(JsonRpcException, match="no train job of this workspace is known to have saved to") as info:
        await daemon.request(CHECKPOINTS_RESUME, CheckpointResumeParams(store=str(workspace / "ckpt")))
    assert "\n" not in str(info.value)


async def test_the_daemon_lists_without_loading_torch(daemon: DaemonClient, workspace: Path):
    save_run(workspace / "ckpt")
    assert (await daemon.request(CHECKPOINTS_LIST, CheckpointListParams())).runs[0].checkpoints
    maps = Path(f"/proc/{daemon.process.pid}/maps")
    if not maps.exists():
        pytest.skip("needs /proc to inspect the daemon's loaded libraries")
    assert "libtorch" not in maps.read_text()
