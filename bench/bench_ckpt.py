"""Checkpoint store against torch.save, safetensors, zstd over torch.save and ZipNN, same run, same tensors.

Model: BERT-base shaped (transformers' ``BertModel`` built from ``BertConfig()``: 12 layers, hidden
768, vocab 30522, 109 M parameters, 438 MB in fp32; no download). Weights: BERT's own init
(normal(0, 0.02), LayerNorm 1/0, biases 0) followed by ``--warm-steps`` AdamW steps (lr 1e-3) of a
masked-word objective on the rt-polarity sentences (words hashed into the vocabulary; random ids
when the data is absent), so biases and LayerNorm weights are no longer constants. Trained
checkpoints have heavier tails and per-row scales; their exponent planes compress a little
differently (usually better) than these near-Gaussian weights: read the ratios as this model's.

Tasks:

- ``a_fp32``: the model's state_dict in fp32;
- ``b_bf16``: the same tensors cast to bf16;
- ``c_finetune``: ``--checkpoints`` successive checkpoints of a fine-tune with a frozen backbone
  (embeddings and the first 8 layers frozen; the last 4 layers, the pooler and a 2-way classifier
  trained by AdamW, ``--steps-between`` real steps between checkpoints, on precomputed frozen
  features). Reports the trainable share of the bytes and the bound: deduplication alone can be at
  most N / (1 + (N - 1) x share) smaller, times the lossless ratio of one checkpoint.

Arms: ``torch_save`` (torch.save to a file, fsync), ``safetensors`` (save_file, fsync), ``zstd3``
(zstd level 3 with --threads threads over the torch.save bytes, then written and fsynced),
``zipnn`` (ZipNN 0.5.4, byte mode with the tensors' dtype, --threads threads, over one buffer of all
tensor bytes; it reorders the buffer it is given, so it gets a copy, not timed), ``store``
(deepdive.engine.ckpt.Store.save: hash, byte planes + zstd, chunk files fsynced, manifest).

Metrics per arm: ``ratio`` (tensor bytes / bytes written), ``save_MBps`` (tensor bytes / seconds,
to disk with fsync), ``compress_MBps`` (in memory, no disk: zstd3, zipnn, the store's codec on the
same thread count), ``save_s``, and for the store ``load_MBps`` (every chunk hash-verified) against
torch.load, and ``save_s_paired_median``: --save-pairs blocking saves of torch.save and the store
taking turns, the medians and the median of the pairs' ratios (the disk's speed here changes from
second to second; alternating puts the change on both). One JSON object per line: ``{"bench": "ckpt", "task", "arm", "metric", "value", "unit"}``
plus ``baseline``/``ratio`` where compared (ratios against zipnn, save times against torch.save).
Arms whose package is missing are skipped with a line saying so. Nothing is asserted.

    python bench/bench_ckpt.py [--threads N] [--checkpoints 10] [--warm-steps 3] [--repeat 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]


def emit(task: str, arm: str, metric: str, value: Any, unit: str, baseline: Any = None, **extra: Any) -> None:
    line: dict[str, Any] = {"bench": "ckpt", "task": task, "arm": arm, "metric": metric, "value": value, "unit": unit}
    if baseline is not None:
        line["baseline"] = baseline
        line["ratio"] = value / baseline if baseline else None
    print(json.dumps({**line, **extra}), flush=True)


def skip(task: str, arm: str, reason: str) -> None:
    print(json.dumps({"bench": "ckpt", "task": task, "arm": arm, "skipped": reason}), flush=True)


def nbytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


# ------------------------------------------------------------------------------------------------ model


def sentences(limit: int = 4096) -> list[str]:
    from deepdive.examples.polarity import default_data_dir  # $DEEPDIVE_POLARITY_DATA or the shared data folder

    lines: list[str] = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        path = default_data_dir() / name
        if path.exists():
            lines += path.read_text(encoding="latin-1").splitlines()[: limit // 2]
    return lines


def token_batches(vocab: int, batch: int, seq: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    """Word ids: the rt-polarity sentences with words hashed into the vocabulary (ids >= 1000)."""
    g = torch.Generator().manual_seed(seed)
    text = sentences()
    out = []
    for b in range(count):
        if text:
            rows = []
            for i in range(batch):
                words = text[(b * batch + i) % len(text)].split()[:seq]
                ids = [1000 + zlib.crc32(w.encode()) % (vocab - 1000) for w in words] + [0] * (seq - len(words))
                rows.append(ids[:seq])
            out.append(torch.tensor(rows))
        else:
            out.append(torch.randint(1000, vocab, (batch, seq), generator=g))
    return out


def build_bert(warm_steps: int) -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig())           # BERT-base; weights from BERT's init (normal 0.02)
    if warm_steps:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        emb = model.embeddings.word_embeddings.weight
        for ids in token_batches(emb.shape[0], 8, 32, warm_steps, seed=1):
            mask = torch.rand(ids.shape) < 0.15
            masked = ids.masked_fill(mask, 103)
            hidden = model(input_ids=masked).last_hidden_state
            logits = hidden[mask] @ emb.T
            loss = torch.nn.functional.cross_entropy(logits, ids[mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


# ------------------------------------------------------------------------------------------------ arms


def torch_save_fsynced(state: dict[str, torch.Tensor], path: Path) -> int:
    """torch.save to ``path``, flushed and fsynced: what a blocking save costs. Returns the file's size."""
    with open(path, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path.stat().st_size


def arm_torch_save(state: dict[str, torch.Tensor], work: Path) -> tuple[float, int]:
    path = work / "model.pt"
    return best_of(ARGS.repeat, lambda: torch_save_fsynced(state, path))


def arm_safetensors(state: dict[str, torch.Tensor], work: Path) -> tuple[float, int]:
    from safetensors.torch import save_file

    path = work / "model.safetensors"

    def save() -> int:
        save_file(state, str(path))
        fsync_file(path)
        return path.stat().st_size

    return best_of(ARGS.repeat, save)


def arm_zstd3(state: dict[str, torch.Tensor], work: Path) -> tuple[float, float, int]:
    import zstandard as zstd

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    comp = zstd.ZstdCompressor(level=3, threads=ARGS.threads)
    compress_s, packed = best_of(ARGS.repeat, lambda: comp.compress(data))
    path = work / "model.pt.zst"

    def save() -> int:
        b = io.BytesIO()
        torch.save(state, b)
        blob = comp.compress(b.getbuffer())
        with open(path, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        return len(blob)

    save_s, size = best_of(ARGS.repeat, save)
    return compress_s, save_s, size


def arm_zipnn(state: dict[str, torch.Tensor], dtype: str) -> tuple[float, int, bool]:
    from zipnn import ZipNN

    raw = b"".join(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in state.values())
    zpn = ZipNN(input_format="byte", bytearray_dtype=dtype, threads=ARGS.threads)
    best, packed = float("inf"), b""
    for _ in range(ARGS.repeat):
        copy = bytearray(raw)                # zipnn 0.5.4 reorders the buffer it is given in place
        started = time.perf_counter()
        packed = zpn.compress(copy)
        best = min(best, time.perf_counter() - started)
    exact = bytes(zpn.decompress(packed)) == raw
    return best, len(packed), exact


def arm_store_codec(state: dict[str, torch.Tensor], use_rans: bool = True) -> tuple[float, int]:
    """The store's chunk work in memory (hash + byte planes + rANS/zstd), on the store's thread count.

    ``use_rans=False``: the exponent plane goes to zstd, as in a build without the C extension.
    """
    from deepdive.engine.ckpt import codec
    from deepdive.engine.ckpt.store import DEFAULT_CHUNK_SIZE

    jobs = []
    for t in state.values():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy()
        for i in range(0, raw.size, DEFAULT_CHUNK_SIZE):
            jobs.append((raw[i:i + DEFAULT_CHUNK_SIZE], t.element_size(), t.is_floating_point()))

    def work(job: tuple) -> int:
        raw, itemsize, is_float = job
        codec.chunk_id(raw)
        return sum(memoryview(p).nbytes for p in codec.encode_parts(raw, itemsize, is_float, use_rans=use_rans))

    with ThreadPoolExecutor(ARGS.threads) as pool:
        seconds, sizes = best_of(ARGS.repeat, lambda: list(pool.map(work, jobs)))
    return seconds, sum(sizes)


def arm_store(state: dict[str, torch.Tensor], work: Path) -> tuple[float, int, float]:
    from deepdive.engine.ckpt import Store

    best, size, load_s = float("inf"), 0, 0.0
    for i in range(ARGS.repeat):
        root = work / f"store{i}"
        store = Store(root, workers=ARGS.threads)
        started = time.perf_counter()
        saved = store.save(state, step=1)
        best = min(best, time.perf_counter() - started)
        size = saved.stored_bytes + (root / "manifests" / f"{saved.name}.json").stat().st_size
        if i == 0:
            load_s, loaded = best_of(1, lambda: store.load(1))
            assert all(torch.equal(loaded[k], v) for k, v in state.items()), "store round trip differs"
        store.close()
        shutil.rmtree(root)
    return best, size, load_s


def paired_saves(state: dict[str, torch.Tensor], work: Path) -> tuple[list[float], list[float]]:
    """Blocking saves to disk, torch.save and the store taking turns (the order alternates), so the
    disk's and the machine's changing speed falls on both: (torch.save seconds, store seconds)."""
    from deepdive.engine.ckpt import Store

    path, root = work / "paired.pt", work / "paired-store"

    def torch_save() -> float:
        seconds, _ = best_of(1, lambda: torch_save_fsynced(state, path))
        path.unlink()
        return seconds

    def store_save() -> float:
        store = Store(root, workers=ARGS.threads)
        started = time.perf_counter()
        store.save(state, step=1)
        seconds = time.perf_counter() - started
        store.close()
        shutil.rmtree(root)
        return seconds

    torch_s: list[float] = []
    store_s: list[float] = []
    for i in range(ARGS.save_pairs):
        if i % 2:
            store_s.append(store_save())
            torch_s.append(torch_save())
        else:
            torch_s.append(torch_save())
            store_s.append(store_save())
    return torch_s, store_s


# ------------------------------------------------------------------------------------------------ tasks


def have(module: str) -> Optional[str]:
    try:
        __import__(module)
        return None
    except ImportError as exc:
        return f"{module} is not installed ({exc}): pip install {module}"


def one_model(task: str, state: dict[str, torch.Tensor], dtype: str, work: Path) -> None:
    raw = nbytes(state)
    mb = raw / 1e6
    emit(task, "model", "tensor_bytes", raw, "bytes", tensors=len(state),
         params=sum(t.numel() for t in state.values()))

    torch_s, torch_size = arm_torch_save(state, work)
    emit(task, "torch_save", "ratio", raw / torch_size, "x")
    emit(task, "torch_save", "save_MBps", mb / torch_s, "MB/s")
    emit(task, "torch_save", "save_s", torch_s, "s")
    load_torch_s, _ = best_of(1, lambda: torch.load(work / "model.pt", weights_only=True))
    emit(task, "torch_save", "load_MBps", mb / load_torch_s, "MB/s")

    if (why := have("safetensors")) is None:
        st_s, st_size = arm_safetensors(state, work)
        emit(task, "safetensors", "ratio", raw / st_size, "x")
        emit(task, "safetensors", "save_MBps", mb / st_s, "MB/s", baseline=mb / torch_s)
    else:
        skip(task, "safetensors", why)

    zipnn_ratio = zipnn_speed = None
    if (why := have("zipnn")) is None:
        zip_s, zip_size, exact = arm_zipnn(state, dtype)
        zipnn_ratio, zipnn_speed = raw / zip_size, mb / zip_s
        emit(task, "zipnn", "ratio", zipnn_ratio, "x", lossless=exact)
        emit(task, "zipnn", "compress_MBps", zipnn_speed, "MB/s", threads=ARGS.threads)
    else:
        skip(task, "zipnn", why)

    zstd_compress_s, zstd_save_s, zstd_size = arm_zstd3(state, work)
    emit(task, "zstd3", "ratio", raw / zstd_size, "x", baseline=zipnn_ratio)
    emit(task, "zstd3", "compress_MBps", mb / zstd_compress_s, "MB/s", baseline=zipnn_speed, threads=ARGS.threads)
    emit(task, "zstd3", "save_MBps", mb / zstd_save_s, "MB/s", baseline=mb / torch_s)

    from deepdive.engine.ckpt import codec

    coder = "zstd only (the C extension is not built)" if codec._rans is None else "rANS exponents, zstd elsewhere"
    zstd_codec_s, zstd_codec_size = arm_store_codec(state, use_rans=False)
    emit(task, "store_zstd_only", "ratio", raw / zstd_codec_size, "x", baseline=zipnn_ratio)
    emit(task, "store_zstd_only", "compress_MBps", mb / zstd_codec_s, "MB/s", baseline=zipnn_speed, threads=ARGS.threads)
    codec_s, codec_size = arm_store_codec(state)
    store_s, store_size, store_load_s = arm_store(state, work)
    emit(task, "store", "ratio", raw / store_size, "x", baseline=zipnn_ratio, codec_ratio=raw / codec_size, coder=coder)
    emit(task, "store", "compress_MBps", mb / codec_s, "MB/s", baseline=zipnn_speed, threads=ARGS.threads)
    emit(task, "store", "save_MBps", mb / store_s, "MB/s", baseline=mb / torch_s)
    emit(task, "store", "save_s", store_s, "s", baseline=torch_s)
    emit(task, "store", "load_MBps", mb / store_load_s, "MB/s", baseline=mb / load_torch_s, verified=True)
    if ARGS.save_pairs:
        torch_runs, store_runs = paired_saves(state, work)
        emit(task, "store", "save_s_paired_median", statistics.median(store_runs), "s",
             baseline=statistics.median(torch_runs), pairs=len(store_runs),
             pair_ratio_median=statistics.median(s / t for s, t in zip(store_runs, torch_runs)),
             store_s=[round(x, 4) for x in store_runs], torch_save_s=[round(x, 4) for x in torch_runs])
    # what training waits for when the engine saves in the background (dd.setup's default,
    # async_checkpoint=True): the CPU snapshot at the step; the write then runs beside training
    from deepdive.engine.checkpoint import cpu_copy

    snap_s, _ = best_of(ARGS.repeat, lambda: cpu_copy(state))
    emit(task, "store_async", "training_blocked_s", snap_s, "s", baseline=torch_s,
         note="engine async save: the CPU snapshot training waits for, against a blocking torch.save")
    for name in ("model.pt", "model.safetensors", "model.pt.zst"):
        (work / name).unlink(missing_ok=True)


def fine_tune(model: torch.nn.Module, work: Path) -> None:
    task = "c_finetune"
    n = ARGS.checkpoints
    head = torch.nn.Linear(768, 2)
    for p in model.parameters():
        p.requires_grad_(False)
    trainable_modules = [*model.encoder.layer[8:], model.pooler, head]
    params = [p for m in trainable_modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    # frozen backbone: its features are computed once (no grad), the top is trained on them
    batches = token_batches(model.config.vocab_size, 16, 48, 4, seed=2)
    labels = [torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        feats = []
        for ids in batches:
            hidden = model.embeddings(input_ids=ids)
            for layer in model.encoder.layer[:8]:
                out = layer(hidden)
                hidden = out[0] if isinstance(out, tuple) else out
            feats.append(hidden)
    opt = torch.optim.AdamW(params, lr=2e-5)
    model.train()

    def step(i: int) -> None:
        hidden = feats[i % len(feats)]
        for layer in model.encoder.layer[8:]:
            out = layer(hidden)
            hidden = out[0] if isinstance(out, tuple) else out
        logits = head(model.pooler(hidden))
        loss = torch.nn.functional.cross_entropy(logits, labels[i % len(labels)])
        opt.zero_grad()
        loss.backward()
        opt.step()

    def state() -> dict[str, torch.Tensor]:
        sd = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
        sd.update({f"classifier.{k}": v.detach().clone() for k, v in head.state_dict().items()})
        return sd

    first = state()
    raw = nbytes(first)
    trainable = sum(p.numel() * p.element_size() for p in params)
    share = trainable / raw
    dedup_bound = n / (1 + (n - 1) * share)
    emit(task, "model", "trainable_share", share, "fraction", trainable_bytes=trainable, tensor_bytes=raw)
    emit(task, "model", "dedup_bound", dedup_bound, "x", checkpoints=n)

    from deepdive.engine.ckpt import Store

    store = Store(work / "ft_store", workers=ARGS.threads)
    total_raw = torch_total = zstd_total = zipnn_total = store_total = 0
    torch_time = store_time = zstd_time = zipnn_time = 0.0
    zipnn_ok = have("zipnn") is None
    import zstandard as zstd

    comp = zstd.ZstdCompressor(level=3, threads=ARGS.threads)
    if zipnn_ok:
        from zipnn import ZipNN

        zpn = ZipNN(input_format="byte", bytearray_dtype="float32", threads=ARGS.threads)
    first_ratio = None
    for k in range(n):
        if k:
            for i in range(ARGS.steps_between):
                step(k * ARGS.steps_between + i)
        sd = state()
        total_raw += nbytes(sd)
        path = work / "ft.pt"
        started = time.perf_counter()
        with open(path, "wb") as handle:
            torch.save(sd, handle)
            handle.flush()
            os.fsync(handle.fileno())
        torch_time += time.perf_counter() - started
        torch_total += path.stat().st_size
        blob = path.read_bytes()
        started = time.perf_counter()
        zstd_total += len(comp.compress(blob))
        zstd_time += time.perf_counter() - started
        if zipnn_ok:
            copy = bytearray(b"".join(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in sd.values()))
            started = time.perf_counter()
            zipnn_total += len(zpn.compress(copy))
            zipnn_time += time.perf_counter() - started
        started = time.perf_counter()
        saved = store.save(sd, step=k + 1)
        store_time += time.perf_counter() - started
        if k == 0:
            first_ratio = saved.raw_bytes / saved.stored_bytes
    path.unlink(missing_ok=True)
    store_total = sum(p.stat().st_size for p in (work / "ft_store").rglob("*") if p.is_file())
    mb = total_raw / 1e6
    zipnn_ratio = total_raw / zipnn_total if zipnn_ok else None
    emit(task, "torch_save", "ratio", total_raw / torch_total, "x", checkpoints=n)
    emit(task, "torch_save", "save_MBps", mb / torch_time, "MB/s")
    emit(task, "zstd3", "ratio", total_raw / zstd_total, "x", baseline=zipnn_ratio)
    emit(task, "zstd3", "compress_MBps", mb / zstd_time, "MB/s")
    if zipnn_ok:
        emit(task, "zipnn", "ratio", zipnn_ratio, "x")
        emit(task, "zipnn", "compress_MBps", mb / zipnn_time, "MB/s")
    else:
        skip(task, "zipnn", have("zipnn") or "")
    store_ratio = total_raw / store_total
    bound = dedup_bound * (first_ratio or 1.0)
    emit(task, "store", "ratio", store_ratio, "x", baseline=zipnn_ratio)
    emit(task, "store", "ratio_vs_bound", store_ratio / bound, "fraction", bound=bound, dedup_bound=dedup_bound,
         lossless_ratio=first_ratio)
    emit(task, "store", "save_MBps", mb / store_time, "MB/s", baseline=mb / torch_time)
    emit(task, "store", "disk_bytes", store_total, "bytes", baseline=torch_total)
    verify_s, problems = best_of(1, store.verify)
    emit(task, "store", "verify_MBps", sum(p.stat().st_size for p in (work / "ft_store" / "chunks").rglob("*"))
         / 1e6 / verify_s, "MB/s (stored)", problems=len(problems))
    store.close()


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for zstd, zipnn and the store")
    parser.add_argument("--checkpoints", type=int, default=10, help="checkpoints of the fine-tune (task c)")
    parser.add_argument("--steps-between", type=int, default=1, help="training steps between those checkpoints")
    parser.add_argument("--warm-steps", type=int, default=3, help="AdamW steps after BERT's init (0: init only)")
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions per arm (the best is reported)")
    parser.add_argument("--save-pairs", type=int, default=6,
                        help="alternating blocking saves, torch.save and the store, for their medians (0: none)")
    parser.add_argument("--dir", default=None, help="scratch directory on the disk to measure (default: a temp dir)")
    parser.add_argument("--skip", default="", help="comma-separated tasks to skip: a,b,c")
    ARGS = parser.parse_args()
    if have("transformers"):
        print(f"bench_ckpt: {have('transformers')}", file=sys.stderr)
        return 2
    torch.set_num_threads(ARGS.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_ckpt_", dir=ARGS.dir))
    try:
        started = time.perf_counter()
        model = build_bert(ARGS.warm_steps)
        emit("setup", "model", "build_s", time.perf_counter() - started, "s", warm_steps=ARGS.warm_steps,
             threads=ARGS.threads, cpus=os.cpu_count(), torch=torch.__version__)
        # the float tensors (all of BERT's bytes but a 4 kB int64 buffer: zipnn takes one dtype per buffer)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
        skip_tasks = set(ARGS.skip.split(","))
        if "a" not in skip_tasks:
            one_model("a_fp32", state, "float32", work)
        if "b" not in skip_tasks:
            one_model("b_bf16", {k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()},
                      "bfloat16", work)
        del state
        if "c" not in skip_tasks:
            fine_tune(model, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


ARGS: argparse.Namespace


if __name__ == "__main__":
    sys.exit(main())
