"""The checkpoint store: bit-exact round trips, deduplication, corruption named, kill -9, retention."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepdive.engine.ckpt import CheckpointError, Store


def chunk_files(root: Path, temp: bool = False) -> set[str]:
    """The chunk files of a store (with ``temp``: also the temp files of saves in progress)."""
    return {p.name for p in (root / "chunks").glob("*/*") if temp or not p.name.startswith(".")}


def same(a, b) -> bool:
    """Bitwise equality of tensors/arrays (NaN-safe), recursively through containers."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


def test_round_trip_is_bitwise_exact(tmp_path: Path):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(300, 7, generator=g)
    state = {
        "model": {
            "fp32": torch.randn(1000, 17, generator=g) * 0.02,     # several chunks at chunk_size=4096
            "bf16": torch.randn(3001, generator=g).bfloat16(),
            "fp16": torch.randn(64, 3, generator=g).half(),
            "int64": torch.randint(-2**40, 2**40, (777,), generator=g),
            "bool": torch.rand(1001, generator=g) > 0.5,
            "scalar": torch.tensor(3.25),
            "empty": torch.zeros(0, 5),
            "transposed": torch.randn(40, 30, generator=g).t(),
            "sliced": torch.arange(100.0)[::3],
            "special": torch.tensor([float("nan"), float("inf"), -0.0, 1e-45]),
            "tied_a": weight, "tied_b": weight,
        },
        "opt": {"state": {0: {"step": torch.tensor(12.0), "exp_avg": torch.zeros(4)}},
                "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999), "params": [0, 1], "foused": None}]},
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "values": {"epoch": 3, "big": 2**80, "pi": 3.5, "nan": float("nan"), "inf": -float("inf"), "name": "run",
                   "raw": b"\x00\xff", "flag": True, "none": None, "$odd": 1, 7: "int key", (1, "a"): [1, (2, 3)]},
        "arrays": {"f64": np.linspace(0, 1, 5000), "i8": np.arange(-5, 5, dtype=np.int8).reshape(2, 5),
                   "zero_d": np.array(2.5, dtype=np.float32), "scalar": np.float32(1.5), "fortran": np.asfortranarray(np.ones((3, 4)))},
        "dtype": torch.bfloat16, "size": torch.Size([2, 3]),
    }
    store = Store(tmp_path / "ck", chunk_size=4096)
    saved = store.save(state, step=7, metrics={"loss": 0.5}, meta={"note": "x"})
    assert saved.name == "step-0000000007" and saved.tensors == len(store.manifest(7)["tensors"])
    out = store.load("latest")
    expected = dict(state)
    expected["model"] = {k: v.contiguous() for k, v in state["model"].items()}
    expected["arrays"] = {k: v.copy(order="C") if isinstance(v, np.ndarray) else v for k, v in state["arrays"].items()}
    assert same(expected, out)
    assert out["model"]["tied_a"] is out["model"]["tied_b"]       # tied weights stay one object
    assert type(out["arrays"]["scalar"]) is np.float32 and out["arrays"]["zero_d"].shape == ()
    random.setstate(out["rng"]["python"])                         # RNG states are usable as loaded
    np.random.set_state(out["rng"]["numpy"])
    torch.set_rng_state(out["rng"]["torch"])
    assert store.verify() == []


@pytest.mark.parametrize("writeback", [True, False], ids=["writeback-started", "plain"])
def test_every_chunk_is_fsynced_whether_or_not_its_write_was_started_early(tmp_path: Path, monkeypatch,
                                                                          writeback: bool):
    from deepdive.engine.ckpt import store as store_module

    if writeback and store_module._SYNC_FILE_RANGE is None:
        pytest.skip("sync_file_range is Linux-only")
    if not writeback:
        monkeypatch.setattr(store_module, "_SYNC_FILE_RANGE", None)
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(store_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    g = torch.Generator().manual_seed(1)
    state = {f"layer{i}.{kind}": torch.randn(64 if kind == "bias" else 4096, generator=g)
             for i in range(20) for kind in ("weight", "bias")}
    store = Store(tmp_path / "ckpt", chunk_size=4096)
    store.save(state, step=1)
    assert same(store.load(1), state)
    assert len(calls) > len(chunk_files(tmp_path / "ckpt"))   # the early start is advisory: durability is the fsyncs'


def test_unsupported_values_are_refused_with_their_path(tmp_path: Path):
    store = Store(tmp_path / "ck")
    with pytest.raises(TypeError, match=r"'model\.fn'.*no pickle"):
        store.save({"model": {"fn": lambda: 1}}, step=1)
    with pytest.raises(ValueError, match="step must be"):
        store.save({}, step=-1)
    with pytest.raises(ValueError, match="lossy must be"):
        store.save({}, step=1, lossy="int4")
    with pytest.raises(ValueError, match="finite numbers"):
        store.save({}, step=1, metrics={"loss": float("nan")})
    assert store.list() == []


def test_unchanged_tensors_are_stored_once(tmp_path: Path):
    g = torch.Generator().manual_seed(1)
    frozen = {f"layer{i}.weight": torch.randn(256, 256, generator=g) for i in range(4)}
    head = torch.randn(256, 10, generator=g)
    store = Store(tmp_path / "ck", chunk_size=64 * 1024)
    first = store.save({"model": {**frozen, "head": head}}, step=1)
    files = chunk_files(store.root)
    assert first.new_bytes > 0 and len(files) == first.chunks

    second = store.save({"model": {**frozen, "head": head}}, step=2)      # nothing changed
    assert second.new_bytes == 0 and second.new_chunks == 0 and chunk_files(store.root) == files

    third = store.save({"model": {**frozen, "head": head + 1}}, step=3)  # only the head changed
    head_bytes = head.numel() * 4
    assert 0 < third.new_bytes <= head_bytes and third.new_chunks == 1
    assert third.chunks == first.chunks
    assert len(chunk_files(store.root)) == len(files) + 1
    assert torch.equal(store.load(3)["model"]["head"], head + 1)


def test_compression_is_lossless_and_shrinks_float_weights(tmp_path: Path):
    w = torch.randn(1 << 20) * 0.02
    store = Store(tmp_path / "ck")
    c = store.save({"w": w}, step=1)
    assert c.raw_bytes / c.stored_bytes > 1.15          # the exponent plane compresses ~3x
    assert torch.equal(store.load(1)["w"], w)


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x10
    path.chmod(0o644)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["middle", "end"])
def test_flipped_bit_is_named_by_verify_and_refused_by_load(tmp_path: Path, where: str):
    g = torch.Generator().manual_seed(2)
    model = {f"layers.{i}.weight": torch.randn(128, 128, generator=g) for i in range(5)}
    store = Store(tmp_path / "ck")
    store.save({"model": model}, step=1)
    store.save({"model": model, "extra": torch.ones(3)}, step=2)          # shares layers.3's chunk
    entry = next(e for e in store.manifest(1)["tensors"] if e["path"] == "model.layers.3.weight")
    key = entry["chunks"][0][0]
    chunk = store.root / "chunks" / key[:2] / key
    size = chunk.stat().st_size
    _flip_bit(chunk, size // 2 if where == "middle" else size - 1)

    problems = store.verify()
    assert {(p.checkpoint, p.tensor) for p in problems} == {("step-0000000001", "model.layers.3.weight"),
                                                            ("step-0000000002", "model.layers.3.weight")}
    assert "model.layers.3.weight" in str(problems[0])
    with pytest.raises(CheckpointError) as info:
        store.load("latest")
    message = str(info.value)
    assert "model.layers.3.weight" in message and "step-0000000002" in message and "\n" not in message
    assert store.verify(1) and all(p.checkpoint == "step-0000000001" for p in store.verify(1))


def test_missing_chunk_is_named(tmp_path: Path):
    store = Store(tmp_path / "ck")
    store.save({"a": torch.ones(10), "b": torch.zeros(10)}, step=1)
    key = next(e for e in store.manifest(1)["tensors"] if e["path"] == "b")["chunks"][0][0]
    (store.root / "chunks" / key[:2] / key).unlink()
    assert [(p.tensor, p.reason) for p in store.verify()] == [("b", "missing")]
    with pytest.raises(CheckpointError, match="tensor 'b' is corrupt.*missing"):
        store.load(1)


_SLOW_SAVE = textwrap.dedent("""
    import sys, torch
    from deepdive.engine.ckpt import Store
    store = Store(sys.argv[1], chunk_size=64 * 1024, workers=1)
    big = torch.randn(8_000_000, generator=torch.Generator().manual_seed(3))   # 32 MB: ~490 fsynced chunks
    print("saving", flush=True)
    store.save({"model": {"w": big}}, step=2)
    print("finished", flush=True)
""")


def test_kill_9_during_a_save_leaves_the_previous_checkpoint_intact(tmp_path: Path):
    root = tmp_path / "ck"
    store = Store(root, chunk_size=64 * 1024)
    previous = {"model": {"w": torch.randn(50_000)}, "step": 1}
    store.save(previous, step=1)
    before = chunk_files(root)
    script = tmp_path / "slow_save.py"
    script.write_text(_SLOW_SAVE)
    proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and len(chunk_files(root, temp=True)) <= len(before):
            time.sleep(0.002)
        assert proc.poll() is None, "the save finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(chunk_files(root, temp=True)) > len(before)               # it was killed mid-save
    assert not (root / "manifests" / "step-0000000002.json").exists()
    assert [c.name for c in store.list()] == ["step-0000000001"]
    assert store.verify() == []
    assert same(store.load("latest"), previous)

    result = store.gc(keep_last=1)
    # the killed save's chunks: temp files, or renamed chunks no manifest references
    assert result.deleted == [] and result.deleted_chunks + result.temp_files > 0 and result.freed_bytes > 0
    assert chunk_files(root) == before                                   # orphans gone, step 1 untouched
    assert not list((root / "chunks").glob("*/.*"))                        # and the temp file of the killed write
    assert same(store.load(1), previous)


def test_gc_keeps_the_last_k_and_the_best_and_their_chunks(tmp_path: Path):
    store = Store(tmp_path / "ck", chunk_size=4096)
    g = torch.Generator().manual_seed(4)
    frozen = torch.randn(4096, generator=g)
    states = {}
    accuracy = {1: 0.50, 2: 0.90, 3: 0.60, 4: 0.70, 5: 0.65, 6: 0.66}
    for step, acc in accuracy.items():
        states[step] = {"frozen": frozen, "head": torch.randn(2000, generator=g)}
        store.save(states[step], step=step, metrics={"acc": acc, "loss": 1 - acc})

    dry = store.gc(keep_last=2, keep_best=("acc", "max", 1), dry_run=True)
    assert dry.dry_run and len(store.list()) == 6 and dry.deleted_chunks == 6   # 3 checkpoints x 2 head chunks (8000 B at 4096)
    result = store.gc(keep_last=2, keep_best=("acc", "max", 1))
    assert result.best == ["step-0000000002"]
    assert sorted(result.kept) == ["step-0000000002", "step-0000000005", "step-0000000006"]
    assert sorted(result.deleted) == ["step-0000000001", "step-0000000003", "step-0000000004"]
    assert result.deleted_chunks == 6 and result.freed_bytes > 0
    assert [c.step for c in store.list()] == [2, 5, 6]
    assert store.verify() == []
    for step in (2, 5, 6):
        assert same(store.load(step), states[step])
    referenced = {c[0] for m in (store.manifest(s) for s in (2, 5, 6)) for e in m["tensors"] for c in e["chunks"]}
    assert chunk_files(store.root) == referenced
    assert store.retention() == {"keep_last": 2, "keep_best": ["acc", "max", 1]}
    assert store.gc(keep_last=1, keep_best=("loss", "min")).kept == ["step-0000000002", "step-0000000006"]
    assert store.gc(keep_last=1, keep_best="acc").kept == ["step-0000000002", "step-0000000006"]   # acc: max
    with pytest.raises(ValueError, match="keep_best must look like"):
        store.gc(keep_last=1, keep_best="acc:up")


def test_gc_waits_for_a_save_in_progress(tmp_path: Path):
    store = Store(tmp_path / "ck", chunk_size=4096)
    store.save({"old": torch.ones(10)}, step=1)
    in_save, release = threading.Event(), threading.Event()

    def slow_progress(done: int, total: int) -> None:
        in_save.set()
        release.wait(10)

    saver = threading.Thread(target=store.save, args=({"new": torch.randn(20_000)},),
                             kwargs={"step": 2, "progress": slow_progress})
    saver.start()
    assert in_save.wait(10)          # chunks of step 2 are on disk, its manifest is not
    results = []
    collector = threading.Thread(target=lambda: results.append(store.gc(keep_last=1)))
    collector.start()
    time.sleep(0.3)
    assert collector.is_alive() and not results     # gc waits for the save's lock
    release.set()
    saver.join(10)
    collector.join(10)
    assert results and results[0].kept == ["step-0000000002"]
    assert store.verify() == [] and store.load(2)["new"].numel() == 20_000


def test_lossy_bf16_only_when_asked(tmp_path: Path):
    g = torch.Generator().manual_seed(5)
    state = {"w": torch.randn(100_000, generator=g), "small": torch.randn(100, generator=g),
             "ids": torch.arange(10_000), "half": torch.randn(10_000, generator=g).half()}
    store = Store(tmp_path / "ck")
    exact = store.save(state, step=1)
    assert same(store.load(1), state) and exact.lossy is None
    assert not any("stored_dtype" in e for e in store.manifest(1)["tensors"])

    lossy = store.save(state, step=2, lossy="bf16")
    out = store.load(2)
    assert out["w"].dtype == torch.float32 and torch.equal(out["w"], state["w"].bfloat16().float())
    assert not torch.equal(out["w"], state["w"])
    for name in ("small", "ids", "half"):                  # small, integer and 16-bit tensors stay exact
        assert same(out[name], state[name])
    assert lossy.lossy == "bf16" and lossy.new_bytes < exact.new_bytes * 0.75
    kept = store.save(state, step=3, lossy="bf16", lossy_filter=lambda path, t: path != "w")
    assert kept.new_bytes == 0 and same(store.load(3), state)   # filtered out: exact, deduplicated


def test_int8_delta_is_bounded_and_keeps_its_base(tmp_path: Path):
    g = torch.Generator().manual_seed(6)
    w = torch.randn(50_000, generator=g) * 0.02
    store = Store(tmp_path / "ck")
    store.save({"w": w}, step=1)
    moved = w + 1e-4 * torch.randn(50_000, generator=g)
    c = store.save({"w": moved}, step=2, lossy="int8-delta")
    entry = store.manifest(2)["tensors"][0]
    assert entry["delta"]["from"] == "step-0000000001"
    out = store.load(2)["w"]
    block_max = (moved - w).abs().max()
    assert 0 < (out - moved).abs().max() <= block_max / 127 * 0.51 + 1e-9
    assert c.new_bytes < w.numel() * 4 * 0.4
    result = store.gc(keep_last=1)                   # step 1's manifest goes, its chunks are step 2's base
    assert result.deleted == ["step-0000000001"] and result.deleted_chunks == 0
    assert torch.equal(store.load(2)["w"], out) and store.verify() == []
    assert store.save({"w": w}, step=3, lossy="int8-delta").new_bytes == 0      # unchanged: exact, deduplicated
    assert torch.equal(store.load(3)["w"], w)


def test_missing_store_and_bad_names_are_one_line_errors(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no checkpoint store at .*nothere"):
        Store(tmp_path / "nothere", create=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not a checkpoint store"):
        Store(tmp_path / "busy")
    store = Store(tmp_path / "ck")
    assert not store.has_checkpoints()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        store.load()
    store.save({"a": torch.ones(1)}, step=1)
    assert store.has_checkpoints()
    with pytest.raises(CheckpointError, match="no checkpoint '9'.*deepdive ckpt ls"):
        store.load("9")
    manifest = store.root / "manifests" / "step-0000000001.json"
    assert json.loads(manifest.read_text())["step"] == 1


def test_concurrent_saves_and_openers_share_one_store(tmp_path: Path):
    root = tmp_path / "ck"
    (root / "chunks").mkdir(parents=True)          # another rank is creating the store right now
    stores = [Store(root, chunk_size=4096) for _ in range(2)]
    g = torch.Generator().manual_seed(7)
    shared = torch.randn(10_000, generator=g)
    states = {step: {"shared": shared, "own": torch.randn(3000, generator=g)} for step in range(1, 7)}
    errors: list[BaseException] = []

    def saver(store: Store, steps: list[int]) -> None:
        try:
            for step in steps:
                store.save(states[step], step=step)
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(stores[0], [1, 3, 5])),
               threading.Thread(target=saver, args=(stores[1], [2, 4, 6]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert [c.step for c in stores[0].list()] == [1, 2, 3, 4, 5, 6] and stores[1].verify() == []
    for step, state in states.items():
        assert same(stores[step % 2].load(step, map_location="cpu"), state)
