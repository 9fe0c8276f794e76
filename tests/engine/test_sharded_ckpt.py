"""Sharded checkpoints under FSDP (torch.distributed.checkpoint into the store): gloo, 2 processes.

The training script (dist_scripts/sharded.py) sees the same 32 samples a step at any world size
(16 a rank on 2 processes, 32 on 1), so a run that moves between world sizes must follow the
loss curve of the run that never stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepdive.engine.checkpoint import PREEMPTED_EXIT_CODE
from deepdive.engine.ckpt import CheckpointError, StateMismatch, Store
from deepdive.engine.ckpt import dcp
from deepdive.engine.ckpt.tree import ShardRef

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "dist_scripts" / "sharded.py"
TIMEOUT = 240
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PARAMETERS = 16 * 64 + 64 + 64 * 37 + 37 + 37 * 2 + 2   # the script's MLP


def python(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=ENV, cwd=REPO)


def torchrun(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, env=ENV,
                          cwd=REPO)


def deepdive_ckpt(*args: object) -> dict:
    done = subprocess.run([sys.executable, "-m", "deepdive", "ckpt", *map(str, args), "--json"], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(prefix: Path, rank: int) -> dict[int, float]:
    words = Path(f"{prefix}.rank{rank}").read_text().split()
    return {int(step): float.fromhex(loss) for step, loss in zip(words[::2], words[1::2])}


def curve(prefix: Path, world: int) -> dict[int, float]:
    """The loss of each step over the whole batch: the mean of the ranks' (equal halves)."""
    ranks = [losses(prefix, rank) for rank in range(world)]
    return {step: sum(r[step] for r in ranks) / world for step in ranks[0]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run: 2 processes under FSDP, 18 steps, async sharded saves at each epoch's end."""
    root = tmp_path_factory.mktemp("reference")
    done = ok(torchrun("--ckpt", root / "ckpt", "--out", root / "ref"))
    assert done.stdout.count("done 18 steps (resumed after 0)") == 2
    return root / "ref"


@pytest.mark.slow
def test_fsdp_shards_resume_on_one_process_and_back_on_two_on_the_same_loss_curve(tmp_path, reference):
    """2 processes (FSDP, sharded) stop at step 4; 1 process without FSDP resumes from the shards and
    stops at step 11; 2 processes under FSDP resume from that and finish. The loss of every step is
    the uninterrupted run's (bitwise before the first move, to float rounding after it). No rank
    gathered the model to save it, and `deepdive ckpt verify | export` work on the sharded checkpoint."""
    ckpt, full = tmp_path / "ckpt", tmp_path / "full.pt"
    stopped = torchrun("--ckpt", ckpt, "--out", tmp_path / "a", "--sigterm-at", 4, "--dump-full-at", 4, full)
    assert stopped.returncode != 0 and "exitcode  : 75" in stopped.stderr, stopped.stderr[-3000:]

    manifest = Store(ckpt, create=False).manifest("latest")
    assert manifest["step"] == 4 and manifest["meta"]["sharded"]
    ranks = manifest["dcp"]["ranks"]
    total = sum(r["raw_bytes"] for r in ranks)
    assert total >= 3 * 4 * PARAMETERS                     # weights and both AdamW moments, fp32
    assert 0.4 * total <= ranks[0]["raw_bytes"] <= 0.55 * total   # rank 0 wrote its shards, not the model
    assert not [e["path"] for e in manifest["tensors"] if e["path"].startswith(("model", "optimizer"))]

    verified = deepdive_ckpt("verify", ckpt)
    assert verified["ok"] and verified["checkpoints"] == ["step-0000000004"]
    exported = deepdive_ckpt("export", ckpt, "latest", "--out", tmp_path / "model.pt", "--key", "model")
    assert exported["tensors"] == 6
    whole, gathered = torch.load(tmp_path / "model.pt", weights_only=True), torch.load(full, weights_only=True)
    assert set(whole) == set(gathered) and all(torch.equal(whole[k], gathered[k]) for k in gathered)

    one = python("--ckpt", ckpt, "--out", tmp_path / "b", "--batch-size", 32, "--strategy", "none",
                 "--sigterm-at", 11)
    assert one.returncode == PREEMPTED_EXIT_CODE, one.stderr[-3000:]
    assert sorted(losses(tmp_path / "b", 0)) == list(range(5, 12))
    two = ok(torchrun("--ckpt", ckpt, "--out", tmp_path / "c"))
    assert two.stdout.count("done 18 steps (resumed after 11)") == 2

    expected = curve(reference, 2)
    got = {**curve(tmp_path / "a", 2), **losses(tmp_path / "b", 0), **curve(tmp_path / "c", 2)}
    assert sorted(got) == list(range(1, 19))
    assert [got[s] for s in range(1, 5)] == [expected[s] for s in range(1, 5)]
    for step in range(5, 19):
        assert got[step] == pytest.approx(expected[step], rel=1e-5), step


@pytest.mark.slow
def test_a_rank_killed_mid_save_leaves_the_previous_checkpoint_and_unchanged_shards_cost_nothing(tmp_path, reference):
    """Saves every 3 steps, blocking; step 3 is saved twice with the same weights: the second adds
    no chunk bytes. In the save of step 6, rank 1 is SIGKILLed after writing its shards: step 3
    stays the newest checkpoint, intact, and resuming from it gives the uninterrupted run's losses
    bit for bit."""
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    crashed = torchrun("--ckpt", ckpt, "--out", tmp_path / "d", "--every", 3, "--sync", "--save-again-at", 3,
                       "--crash-in-save-at", 6, "--metrics-out", metrics)
    assert crashed.returncode != 0 and "SIGKILL" in crashed.stderr, crashed.stderr[-3000:]

    events = [e for e in map(json.loads, metrics.read_text().splitlines()) if e.get("kind") == "checkpoint"]
    assert [(e["step"], e["reason"], e["sharded"]) for e in events] == [(3, "asked for", True),
                                                                        (3, "every 3 steps", True)]
    first, again = events
    assert first["new_bytes"] > 0.3 * first["raw_bytes"]
    assert again["new_bytes"] <= 0.01 * again["raw_bytes"]

    store = Store(ckpt, create=False)
    assert [c.step for c in store.list()] == [3]
    assert [r["new_bytes"] for r in store.manifest(3)["dcp"]["ranks"]] == [0, 0]
    assert store.verify() == []
    assert store.gc(keep_last=2, dry_run=True).deleted_chunks > 0   # the killed save's shards: written, never committed

    resumed = ok(torchrun("--ckpt", ckpt, "--out", tmp_path / "e"))
    assert resumed.stdout.count("done 18 steps (resumed after 3)") == 2
    for rank in (0, 1):
        expected = losses(reference, rank)
        assert losses(tmp_path / "e", rank) == {s: expected[s] for s in range(4, 19)}


def test_a_sharded_checkpoint_is_verified_kept_by_gc_and_loads_whole(tmp_path):
    """One process, no process group: the shards go through DCP into the store like any chunk."""
    store = Store(tmp_path / "ckpt")
    g = torch.Generator().manual_seed(0)
    tensors = {"model.w": torch.randn(300, 7, generator=g), "model.b": torch.randn(7, generator=g),
               "optimizer.step": torch.tensor(3.0)}
    tree = {"model": {"w": ShardRef("model.w"), "b": ShardRef("model.b")},
            "optimizer": {"step": ShardRef("optimizer.step"), "lr": 0.5}}
    saved = dcp.save(store, tensors, step=1, commit=lambda section: store.save(tree, step=1, shards=section))
    assert saved is not None and saved.tensors == 3 and saved.raw_bytes == (300 * 7 + 7 + 1) * 4
    store.save({"other": torch.zeros(3)}, step=2)
    assert store.gc(keep_last=2).deleted_chunks == 0

    whole = store.load(1)
    assert torch.equal(whole["model"]["w"], tensors["model.w"]) and whole["optimizer"]["lr"] == 0.5
    assert store.load(1, assemble=False)["model"]["w"] == ShardRef("model.w")
    targets = {k: torch.zeros_like(t) for k, t in tensors.items()}
    assert dcp.load(store, store.manifest(1), targets, distributed=False) == saved.raw_bytes
    assert all(torch.equal(targets[k], t) for k, t in tensors.items())
    with pytest.raises(StateMismatch, match="Size mismatch"):
        dcp.load(store, store.manifest(1), {"model.w": torch.zeros(299, 7)}, distributed=False)

    entry = next(e for e in store.manifest(1)["dcp"]["shards"] if e["path"].startswith("model.w@"))
    chunk = store.root / "chunks" / entry["chunks"][0][0][:2] / entry["chunks"][0][0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert [(p.checkpoint, p.tensor) for p in store.verify()] == [("step-0000000001", entry["path"])]
    with pytest.raises(CheckpointError, match="model.w@0,0"):
        store.load(1)
    with pytest.raises(CheckpointError, match="is corrupt") as refused:
        dcp.load(store, store.manifest(1), {"model.w": torch.zeros(300, 7)}, distributed=False)
    assert not isinstance(refused.value, StateMismatch)
