"""Integrity: a save never reuses a damaged chunk, and a changed manifest is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepdive.engine.ckpt import CheckpointError, Store


def chunk_of(store: Store, step: int, path: str) -> Path:
    key = next(e for e in store.manifest(step)["tensors"] if e["path"] == path)["chunks"][0][0]
    return store.root / "chunks" / key[:2] / key


def flip_bit(path: Path, keep_mtime: bool = False) -> None:
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    if keep_mtime:     # the damage leaves the size and the modification time as they were
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def model_state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"model": {f"layers.{i}.weight": torch.randn(64, 64, generator=g) for i in range(3)}, "epoch": 1}


def deepdive_ckpt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepdive", "ckpt", *args], capture_output=True, text=True,
                          timeout=120)


# -- item 2: deduplication re-checks the chunk it reuses ------------------------------------------


@pytest.mark.parametrize("how", ["same-store", "reopened-store", "mtime-kept"])
def test_a_save_that_reuses_a_corrupt_chunk_rewrites_it(tmp_path: Path, how: str):
    """Save step 1, flip a bit in one of its chunks, save the same state as step 2: step 2 loads, bit-exact."""
    store = Store(tmp_path / "ck", chunk_size=4096)
    state = model_state()
    store.save(state, step=1)
    chunk = chunk_of(store, 1, "model.layers.1.weight")
    flip_bit(chunk, keep_mtime=how == "mtime-kept")
    if how == "reopened-store":
        store = Store(tmp_path / "ck", chunk_size=4096)
    saved = store.save(state, step=2)
    assert saved.new_chunks >= 1                          # the damaged chunk was written again
    loaded = store.load(2)
    assert all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())
    assert store.verify() == []                            # step 1 shares the chunk: healed too


def test_an_unchanged_chunk_is_not_rewritten(tmp_path: Path):
    """The check is cheap and silent when nothing changed: a second identical save writes no chunk."""
    for reopen in (False, True):
        root = tmp_path / f"ck{reopen}"
        store = Store(root, chunk_size=4096)
        state = model_state()
        first = store.save(state, step=1)
        if reopen:
            store = Store(root, chunk_size=4096)
        again = store.save(state, step=2)
        assert first.new_chunks > 0 and again.new_chunks == 0 and again.new_bytes == 0


# -- item 3: the manifest carries a checksum -------------------------------------------------------


def _edit_manifest(store: Store, step: int, old: str, new: str) -> Path:
    path = store.root / "manifests" / f"step-{step:010d}.json"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_an_edited_manifest_is_refused_by_load_and_verify(tmp_path: Path):
    """``"step":26`` changed to ``"step":36``: load and verify name the manifest; the other checkpoints verify."""
    store = Store(tmp_path / "ck", chunk_size=4096)
    store.save(model_state(0), step=25)
    store.save(model_state(1), step=26)
    _edit_manifest(store, 26, '"step":26', '"step":36')
    with pytest.raises(CheckpointError) as info:
        store.load(26)
    message = str(info.value)
    assert "step-0000000026" in message and "manifest" in message and "checksum" in message and "\n" not in message
    problems = store.verify()
    assert [(p.checkpoint, p.tensor) for p in problems] == [("step-0000000026", "")]
    assert str(problems[0]).startswith("step-0000000026: manifest: ")
    assert store.verify(25) == []
    assert [c.step for c in store.list()] == [25]          # a manifest that fails its checksum is not listed
    store.load(25)

    done = deepdive_ckpt("verify", str(store.root))
    assert done.returncode == 1
    assert "corrupt: step-0000000026: manifest: " in done.stdout and "checksum" in done.stdout
    report = json.loads(deepdive_ckpt("verify", str(store.root), "--json").stdout)
    assert not report["ok"] and report["problems"][0]["checkpoint"] == "step-0000000026"
    listed = deepdive_ckpt("ls", str(store.root))
    assert listed.returncode == 0 and "not listed: step-0000000026" in listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:-1]] == ["25"]


def test_an_edited_metric_is_refused_too(tmp_path: Path):
    store = Store(tmp_path / "ck", chunk_size=4096)
    store.save(model_state(), step=3, metrics={"val_loss": 0.75})
    _edit_manifest(store, 3, '"val_loss":0.75', '"val_loss":0.25')
    with pytest.raises(CheckpointError, match="step-0000000003.*manifest"):
        store.load("latest")


def test_a_manifest_written_before_checksums_still_loads_and_verify_says_it_is_unchecked(tmp_path: Path):
    """Old stores keep working: a manifest without a checksum loads; verify passes and says it is unchecked."""
    store = Store(tmp_path / "ck", chunk_size=4096)
    state = model_state()
    store.save(state, step=7)
    store.save(state, step=8)
    path = store.root / "manifests" / "step-0000000007.json"
    old = json.loads(path.read_bytes())
    old.pop("checksum")
    path.write_text(json.dumps(old, separators=(",", ":")))     # as the previous version wrote it
    assert torch.equal(store.load(7)["model"]["layers.0.weight"], state["model"]["layers.0.weight"])
    assert store.verify() == []
    assert store.unchecked_manifests() == ["step-0000000007"]
    done = deepdive_ckpt("verify", str(store.root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "step-0000000007" in done.stdout and "unchecked" in done.stdout
    # such a manifest's own fields are still checked against its file name
    old["step"] = 9
    path.write_text(json.dumps(old, separators=(",", ":")))
    with pytest.raises(CheckpointError, match="step-0000000007.*manifest"):
        store.load(7)
