"""Preemption-safe checkpoints in the engine: SIGTERM, restart, exact resume, elastic resume (CPU, gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd
from deepdive.engine.checkpoint import PREEMPTED_EXIT_CODE
from deepdive.engine.ckpt import CheckpointError, Store

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "dist_scripts" / "resumable.py"
TIMEOUT = 240
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=ENV, cwd=REPO)


def torchrun(nproc: int, *args: str, restarts: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                           f"--max-restarts={restarts}", str(SCRIPT), *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=ENV, cwd=REPO)


def losses(prefix: Path, rank: int = 0) -> list[tuple[int, str]]:
    lines = Path(f"{prefix}.rank{rank}").read_text().split()
    return [(int(step), loss) for step, loss in zip(lines[::2], lines[1::2])]


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
@pytest.mark.parametrize("generator", [False, True], ids=["global-rng", "loader-generator"])
def test_sigterm_then_rerun_gives_the_bitwise_identical_loss_sequence(tmp_path, generator):
    """Dropout, a shuffled loader, numpy and python noise, a tracked scheduler: the run killed by
    SIGTERM at step 7 (mid-epoch) and rerun gives, step for step, the bits of the uninterrupted run."""
    extra = ["--generator"] if generator else []
    ok(python("--ckpt", str(tmp_path / "a"), "--out", str(tmp_path / "a"), *extra))
    first = python("--ckpt", str(tmp_path / "b"), "--out", str(tmp_path / "b"), "--sigterm-at", "7", *extra)
    assert first.returncode == PREEMPTED_EXIT_CODE, first.stderr[-2000:]
    assert [s for s, _ in losses(tmp_path / "b")] == list(range(1, 8))  # the step in progress finished, no more
    ok(python("--ckpt", str(tmp_path / "b"), "--out", str(tmp_path / "b"), *extra))
    expected = losses(tmp_path / "a")
    assert len(expected) == 39
    assert losses(tmp_path / "b") == expected


@pytest.mark.slow
def test_ddp_preemption_restarts_under_torchrun_and_matches_the_uninterrupted_run(tmp_path):
    """2 processes: SIGTERM reaches rank 0 only; both ranks save the same step and exit 75; torchrun
    (--max-restarts 1) restarts the group, which resumes at the next batch: identical losses."""
    ok(torchrun(2, "--ckpt", str(tmp_path / "a"), "--out", str(tmp_path / "a")))
    done = ok(torchrun(2, "--ckpt", str(tmp_path / "b"), "--out", str(tmp_path / "b"), "--sigterm-at", "9",
                       restarts=1))
    assert done.stdout.count("done 21 steps") == 2
    for rank in (0, 1):
        assert losses(tmp_path / "b", rank) == losses(tmp_path / "a", rank)


@pytest.mark.slow
def test_fsdp_preemption_restarts_and_matches_then_resumes_on_one_process(tmp_path):
    """FSDP2 state through torch.distributed.checkpoint's full state dicts: restart on 2 processes is
    exact, and the same store resumes on 1 process without FSDP."""
    ok(torchrun(2, "--ckpt", str(tmp_path / "a"), "--out", str(tmp_path / "a"), "--strategy", "fsdp"))
    ok(torchrun(2, "--ckpt", str(tmp_path / "b"), "--out", str(tmp_path / "b"), "--strategy", "fsdp",
                "--sigterm-at", "9", restarts=1))
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    done = ok(python("--ckpt", str(tmp_path / "b"), "--out", str(tmp_path / "c"), "--epochs", "4"))
    assert "done 34 steps, start epoch 3" in done.stdout  # 3 epochs x 7 steps on 2, then 13 on 1
    assert [s for s, _ in losses(tmp_path / "c")] == list(range(22, 35))


@pytest.mark.slow
def test_two_to_one_and_one_to_two_process_resume(tmp_path):
    """Elastic: the position converts through the samples the old group had trained in the epoch."""
    stopped = torchrun(2, "--ckpt", str(tmp_path / "two"), "--out", str(tmp_path / "two"), "--sigterm-at", "5")
    assert stopped.returncode != 0 and "exitcode  : 75" in stopped.stderr
    # 2 x 5 batches of 16 = 160 of 200 samples: 1 process skips 10 batches, trains 3, then 2 epochs of 13
    done = ok(python("--ckpt", str(tmp_path / "two"), "--out", str(tmp_path / "one")))
    assert "done 34 steps" in done.stdout
    assert [s for s, _ in losses(tmp_path / "one")] == list(range(6, 35))

    stopped = python("--ckpt", str(tmp_path / "solo"), "--out", str(tmp_path / "solo"), "--sigterm-at", "7")
    assert stopped.returncode == PREEMPTED_EXIT_CODE
    # 7 batches of 16 = 112 samples: 2 processes skip 4 batches of 2 x 16 each, train 3, then 2 x 7
    done = ok(torchrun(2, "--ckpt", str(tmp_path / "solo"), "--out", str(tmp_path / "duo")))
    assert done.stdout.count("done 24 steps") == 2
    assert [s for s, _ in losses(tmp_path / "duo", 1)] == list(range(8, 25))


# -- in one process ------------------------------------------------------------------------------


def _setup(tmp_path: Path, **options) -> tuple[dd.Run, nn.Module, torch.optim.Optimizer, DataLoader]:
    run = dd.setup(precision="fp32", device="cpu", seed=0, grad_compression="none",
                   checkpoint_dir=str(tmp_path / "ckpt"), **options)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=8, shuffle=True)
    model, optimizer, loader = run.prepare(model, optimizer, loader)
    return run, model, optimizer, loader


def _train(run: dd.Run, model: nn.Module, optimizer: torch.optim.Optimizer, batches) -> None:
    xb, yb = batches
    run.backward(F.cross_entropy(model(xb), yb))
    run.step(optimizer)


def test_an_async_checkpoint_holds_the_weights_of_its_step_not_of_the_write(tmp_path):
    run, model, optimizer, loader = _setup(tmp_path, checkpoint_every=1000)
    try:
        for i, batch in enumerate(run.batches(loader, epochs=1)):
            _train(run, model, optimizer, batch)
            if i == 2:
                at_save = {k: v.clone() for k, v in model.state_dict().items()}
                run.checkpoint(metrics={"acc": 0.5})  # returns at once; training changes the weights
            if i == 4:
                break
    finally:
        run.finish()  # waits for the background write
    saved = Store(tmp_path / "ckpt").load(3)
    assert saved["position"]["step"] == 3 and saved["position"]["batch_in_epoch"] == 3
    for key, value in at_save.items():
        assert torch.equal(saved["model"][key], value), key
    assert not torch.equal(model.weight, at_save["weight"])


def test_keep_best_keeps_the_best_epoch_and_the_last_ones(tmp_path):
    run, model, optimizer, loader = _setup(tmp_path, keep_last=1, keep_best="acc:max")
    accuracies = [0.5, 0.9, 0.6, 0.7]
    try:
        for epoch, acc in enumerate(accuracies):
            for batch in run.batches(loader):
                _train(run, model, optimizer, batch)
            run.log(acc=acc)
            run.checkpoint()  # with the logged acc
    finally:
        run.finish()
    kept = {c.step: c.metrics.get("acc") for c in Store(tmp_path / "ckpt").list()}
    assert kept == {16: 0.9, 32: 0.7}  # the best epoch (2nd, step 16) and the last (step 32)


def test_one_line_errors_and_a_corrupt_store_refuses_to_resume(tmp_path):
    with pytest.raises(ValueError, match="keep_best must look like"):
        dd.setup(device="cpu", checkpoint_dir=str(tmp_path / "x"), keep_best="acc:up")
    run = dd.setup(device="cpu", precision="fp32")
    with pytest.raises(ValueError, match="pass checkpoint_dir"):
        run.checkpoint()
    run.finish()

    run, model, optimizer, loader = _setup(tmp_path)
    for batch in run.batches(loader):
        _train(run, model, optimizer, batch)
    run.finish()  # the end-of-epoch checkpoint (step 8)
    store = Store(tmp_path / "ckpt")
    entry = next(e for e in store.manifest("latest")["tensors"] if e["path"] == "model.weight")
    chunk = next((tmp_path / "ckpt" / "chunks").rglob(entry["chunks"][0][0]))
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    run, model, optimizer, loader = _setup(tmp_path)
    try:
        with pytest.raises(CheckpointError, match="model.weight") as info:
            next(iter(run.batches(loader)))
        message = str(info.value)   # every checkpoint is damaged: one line that names both ways out
        assert "\n" not in message and "resume=False" in message and "deepdive train --fresh" in message
        assert "step-0000000008" in message and "deepdive ckpt verify" in message
    finally:
        run.finish()
    run, model, optimizer, loader = _setup(tmp_path, resume=False)  # start over on request
    assert run.start_epoch == 0 and run.resumed_step is None
    run.finish()


def test_an_optimizer_without_state_resumes(tmp_path):
    """Plain SGD keeps no per-parameter state: torch's set_state_dict has no tensor to place it by
    and failed ("Expected device to be set"); the groups' settings are restored instead."""
    run, model, optimizer, loader = _setup(tmp_path)
    try:
        for batch in run.batches(loader):
            _train(run, model, optimizer, batch)
        optimizer.param_groups[0]["lr"] = 0.125        # e.g. a schedule's value at the save
        run.checkpoint(blocking=True)
        saved = model.weight.detach().clone()
    finally:
        run.finish()
    run, model, optimizer, loader = _setup(tmp_path)   # lr=0.5 again
    try:
        assert run.resumed_step == 8 and torch.equal(model.weight.detach(), saved)
        assert optimizer.param_groups[0]["lr"] == 0.125
    finally:
        run.finish()


def _corrupt(tmp_path: Path, step: int, tensor: str) -> None:
    store = Store(tmp_path / "ckpt")
    entry = next(e for e in store.manifest(step)["tensors"] if e["path"] == tensor)
    chunk = next((tmp_path / "ckpt" / "chunks").rglob(entry["chunks"][0][0]))
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_what_it_skipped(tmp_path, capsys):
    """The latest checkpoint corrupt, an older one intact: the run resumes from the older one, and
    says on stderr and in its telemetry which checkpoint it skipped and why."""
    run, model, optimizer, loader = _setup(tmp_path)
    weights = {}
    try:
        for epoch in range(2):
            for batch in run.batches(loader):
                _train(run, model, optimizer, batch)
            weights[run.step_count] = model.weight.detach().clone()
    finally:
        run.finish()  # end-of-epoch checkpoints at steps 8 and 16
    _corrupt(tmp_path, 16, "model.weight")
    capsys.readouterr()

    run, model, optimizer, loader = _setup(tmp_path, metrics_out=str(tmp_path / "m.jsonl"))
    try:
        assert run.resumed_step == 8 and run.start_epoch == 1
        assert torch.equal(model.weight.detach(), weights[8])
    finally:
        run.finish()
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "step-0000000016" in line)
    assert "skipped" in line and "model.weight" in line and "corrupt" in line and "step-0000000008" in line
    events = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    resumed = next(e for e in events if e.get("kind") == "resumed")
    assert resumed["step"] == 8 and resumed["checkpoint"] == "step-0000000008"
    assert [s["checkpoint"] for s in resumed["skipped"]] == ["step-0000000016"]
    assert "model.weight" in resumed["skipped"][0]["reason"] and "step-0000000016" in resumed["message"]


def test_resume_skips_a_checkpoint_whose_manifest_was_changed(tmp_path, capsys):
    run, model, optimizer, loader = _setup(tmp_path)
    try:
        for epoch in range(2):
            for batch in run.batches(loader):
                _train(run, model, optimizer, batch)
    finally:
        run.finish()
    manifest = tmp_path / "ckpt" / "manifests" / "step-0000000016.json"
    manifest.write_text(manifest.read_text().replace('"epoch":2', '"epoch":0', 1))
    run, model, optimizer, loader = _setup(tmp_path)
    try:
        assert run.resumed_step == 8
    finally:
        run.finish()
    assert any("step-0000000016" in line and "checksum" in line for line in capsys.readouterr().err.splitlines())


def test_the_signal_handlers_are_given_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    run, *_ = _setup(tmp_path)
    assert signal.getsignal(signal.SIGTERM) != before
    run.finish()
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_checkpoint_folder_can_come_from_the_environment(tmp_path, monkeypatch):
    """`deepdive train --checkpoint-dir D` sets DEEPDIVE_CHECKPOINT_DIR for the workers: dd.setup's default."""
    monkeypatch.setenv("DEEPDIVE_CHECKPOINT_DIR", str(tmp_path / "from-env"))
    run = dd.setup(precision="fp32", device="cpu", metrics_out=str(tmp_path / "m.jsonl"))
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = run.prepare(model, optimizer)
    run.checkpoint(blocking=True)
    run.finish()
    assert [c.step for c in Store(tmp_path / "from-env").list()] == [0]
    events = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    saved = [e for e in events if e.get("kind") == "checkpoint"]  # what the dashboard lists for the run
    assert len(saved) == 1 and saved[0]["step"] == 0 and saved[0]["message"].startswith("checkpoint at step 0")


def test_lossy_checkpoints_only_when_asked(tmp_path):
    """checkpoint_lossy="bf16": the big float tensors are stored rounded to bf16 (and a resume loads
    those); small ones (the optimizer's step counters, biases) stay exact. The default is bit-exact."""
    for lossy in (None, "bf16"):
        run = dd.setup(precision="fp32", device="cpu", checkpoint_dir=str(tmp_path / str(lossy)), checkpoint_lossy=lossy)
        model = nn.Linear(128, 64)  # 8192 weights: lossy; 64 biases: exact
        optimizer = torch.optim.AdamW(model.parameters())
        model, optimizer = run.prepare(model, optimizer)
        run.checkpoint(blocking=True)
        run.finish()
        saved = Store(tmp_path / str(lossy)).load("latest")["model"]
        assert torch.equal(saved["bias"], model.bias.detach())
        if lossy is None:
            assert torch.equal(saved["weight"], model.weight.detach())
        else:
            assert not torch.equal(saved["weight"], model.weight.detach())
            assert torch.equal(saved["weight"], model.weight.detach().to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="checkpoint_lossy must be None"):
        dd.setup(device="cpu", checkpoint_dir=str(tmp_path / "x"), checkpoint_lossy="fp8")
