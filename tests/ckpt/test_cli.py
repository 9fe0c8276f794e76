"""`deepdive ckpt ls | verify | gc | export` through the real entry point, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepdive.engine.ckpt import Store


def deepdive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepdive", "ckpt", *args], capture_output=True, text=True, timeout=120)


def one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepdive: error: ") and fragment in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, dict]]:
    root = tmp_path_factory.mktemp("cli") / "ck"
    store = Store(root, chunk_size=8192)
    g = torch.Generator().manual_seed(0)
    backbone = {f"encoder.{i}.weight": torch.randn(64, 64, generator=g) for i in range(3)}
    states = {}
    for step, loss in ((100, 0.9), (200, 0.3), (300, 0.5), (400, 0.6)):
        model = {**backbone, "head.weight": torch.randn(10, 64, generator=g), "head.bias": torch.zeros(10)}
        states[step] = {"model": model, "optimizer": {"state": {0: {"step": torch.tensor(float(step))}}}, "epoch": step // 100}
        store.save(states[step], step=step, metrics={"val_loss": loss})
    return root, states


def test_ls_table_and_json(store_dir):
    root, _ = store_dir
    done = deepdive("ls", str(root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:6] == ["step", "time", "size", "new", "tensors", "metrics"]
    assert [line.split()[0] for line in lines[1:5]] == ["100", "200", "300", "400"]
    assert "latest" in lines[4] and "val_loss=0.3" in lines[2] and "4 checkpoints" in lines[5]

    data = json.loads(deepdive("ls", str(root), "--json", "--keep-last", "1", "--keep-best", "val_loss").stdout)
    rows = {r["step"]: r for r in data["checkpoints"]}
    assert rows[100]["new_bytes"] > rows[200]["new_bytes"] > 0      # the backbone is stored once
    assert rows[100]["tensors"] == 6 and rows[100]["metrics"] == {"val_loss": 0.9}
    assert [s for s, r in rows.items() if r["kept"]] == [200, 400] and rows[200]["best"]


def test_verify_ok_then_names_the_corrupt_tensor(store_dir, tmp_path: Path):
    root, _ = store_dir
    done = deepdive("verify", str(root))
    assert done.returncode == 0 and done.stdout.startswith("ok: 4 checkpoint(s)"), done.stderr
    # a copy of the store with one flipped bit in the chunk of encoder.1.weight
    import shutil

    copy = tmp_path / "ck"
    shutil.copytree(root, copy)
    entry = next(e for e in Store(copy).manifest(100)["tensors"] if e["path"] == "model.encoder.1.weight")
    key = entry["chunks"][0][0]
    chunk = copy / "chunks" / key[:2] / key
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0x01
    chunk.write_bytes(bytes(data))
    done = deepdive("verify", str(copy))
    assert done.returncode == 1
    corrupt = [line for line in done.stdout.splitlines() if line.startswith("corrupt: ")]
    assert len(corrupt) == 4 and all("tensor 'model.encoder.1.weight'" in line for line in corrupt)
    assert "4 corrupt tensor(s) in 4 of 4 checkpoint(s)" in done.stderr
    report = json.loads(deepdive("verify", str(copy), "200", "--json").stdout)
    assert not report["ok"] and [(p["checkpoint"], p["tensor"]) for p in report["problems"]] == \
        [("step-0000000200", "model.encoder.1.weight")]
    one_line_error(deepdive("export", str(copy), "latest", "--out", str(tmp_path / "x.pt")),
                   "tensor 'model.encoder.1.weight' is corrupt")


def test_export_pt_and_safetensors(store_dir, tmp_path: Path):
    root, states = store_dir
    out = tmp_path / "model.pt"
    done = deepdive("export", str(root), "latest", "--out", str(out), "--key", "model")
    assert done.returncode == 0 and "wrote" in done.stdout and "6" not in done.stderr, done.stderr
    loaded = torch.load(out, weights_only=True)
    assert set(loaded) == set(states[400]["model"])
    assert all(torch.equal(loaded[k], v) for k, v in states[400]["model"].items())
    one_line_error(deepdive("export", str(root), "latest", "--out", str(out)), "exists: pass --force")

    from safetensors.torch import load_file

    st = tmp_path / "all.safetensors"
    done = deepdive("export", str(root), "200", "--out", str(st))
    assert done.returncode == 0, done.stderr
    flat = load_file(str(st))
    assert torch.equal(flat["model.head.weight"], states[200]["model"]["head.weight"])
    assert torch.equal(flat["optimizer.state.0.step"], torch.tensor(200.0))


def test_gc_dry_run_then_delete(store_dir, tmp_path: Path):
    import shutil

    copy = tmp_path / "ck"
    shutil.copytree(store_dir[0], copy)
    dry = json.loads(deepdive("gc", str(copy), "--keep-last", "1", "--keep-best", "val_loss:min", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["kept"] == ["step-0000000200", "step-0000000400"] and dry["deleted_chunks"] == 4   # head + optimizer step of 100 and 300
    assert len(list((copy / "manifests").glob("*.json"))) == 4
    done = deepdive("gc", str(copy), "--keep-last", "1", "--keep-best", "val_loss")
    assert done.returncode == 0 and "deleted 2 checkpoint(s), 4 chunk(s)" in done.stdout, done.stdout
    assert sorted(p.stem for p in (copy / "manifests").glob("*.json")) == ["step-0000000200", "step-0000000400"]
    assert deepdive("verify", str(copy)).returncode == 0
    ls = deepdive("ls", str(copy)).stdout     # gc's policy is remembered and marked
    assert "kept,best" in ls and "kept = last 1 + best 1 by val_loss (min)" in ls


@pytest.mark.parametrize("args, fragment", [
    (["ls", "{missing}"], "no checkpoint store at"),
    (["verify", "{root}", "12345"], "no checkpoint '12345'"),
    (["gc", "{root}", "--keep-last", "0"], "--keep-last must be at least 1"),
    (["gc", "{root}", "--keep-last", "1", "--keep-best", "val_loss:up"], "--keep-best must look like"),
    (["gc", "{root}"], "the following arguments are required: --keep-last"),
    (["export", "{root}", "latest", "--out", "{tmp}/x.txt"], "name it *.pt or *.safetensors"),
    (["export", "{root}", "latest", "--out", "{tmp}/x.pt", "--key", "model.nothing"], "has no 'model.nothing'"),
    (["frobnicate", "{root}"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line(store_dir, tmp_path: Path, args: list[str], fragment: str):
    root, _ = store_dir
    filled = [a.format(root=root, missing=tmp_path / "nope", tmp=tmp_path) for a in args]
    one_line_error(deepdive(*filled), fragment)
