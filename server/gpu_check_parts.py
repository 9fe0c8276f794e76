"""The checks of ``make gpu-check`` (:mod:`deepdive.gpu_check` runs each in its own process).

One function per part, taking a :class:`Context` and returning the part's facts (a JSON-ready dict).
A part fails by raising :class:`CheckFailed` (what did not hold, in a line) or any other exception
(recorded with where it was raised; the traceback goes to the part's log); it is skipped by raising
:class:`Skip`, or when a third-party module it imports is missing (the pip line that installs it).
Figures go through :meth:`Context.measure` as bench-style lines.

Every part calls Deepdive's own code the way a user's script or command reaches it (``dd.setup`` and
the ``run`` verbs, ``GradCompression`` on a DDP module, ``wrap_fsdp``, ``quantize``, the sandbox and
``generate``, ``run_study``, the NVML sampler), on ``ctx.device``: ``cuda`` on a GPU machine, ``cpu``
for the rehearsal of the parts that can run without one.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import attrs

#: Optional packages the parts use, reported by the environment part (import name -> distribution).
OPTIONAL = {"torchao": "torchao", "optuna": "optuna", "sklearn": "scikit-learn", "zstandard": "zstandard",
            "xxhash": "xxhash", "cattrs": "cattrs", "pynvml": "nvidia-ml-py", "transformers": "transformers"}
COMPRESSION_MODES = ("none", "fp16", "bf16", "powersgd", "topk")
CODEGEN_PROMPT = "a small CNN classifier for 32x32 RGB images, 10 classes, in PyTorch"


class Skip(Exception):
    """The part cannot run here; the message says why (and what to install)."""


class CheckFailed(Exception):
    """Something the part checks did not hold: the message in one line, the facts gathered so far."""

    def __init__(self, message: str, detail: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.detail = detail or {}


@attrs.define
class Context:
    """What a part runs with.

    Attributes:
        part (str): the part's name.
        device (str): ``cuda`` or ``cpu``.
        out_dir (Path): the run's output folder (the NVML fixture is written there).
        work_dir (Path): scratch space, removed after the part.
        rank (int): this process's rank under torchrun (figures come from rank 0 only).
        lines (list[dict]): the figures measured so far.
    """

    part: str
    device: str
    out_dir: Path
    work_dir: Path
    rank: int = 0
    lines: list[dict[str, Any]] = attrs.Factory(list)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def measure(self, metric: str, value: float, unit: str, **extra: Any) -> None:
        """A bench-style line: ``{"bench": "gpu-check", "check", "metric", "value", "unit", ...}``."""
        if self.rank == 0:
            self.lines.append({"bench": "gpu-check", "check": self.part, "metric": metric,
                               "value": float(f"{value:.6g}"), "unit": unit, "device": self.device, **extra})

    def expect(self, condition: bool, message: str, **detail: Any) -> None:
        """Raise :class:`CheckFailed` with ``message`` unless ``condition``."""
        if not condition:
            raise CheckFailed(message, detail)


@attrs.define
class Outcome:
    ok: bool
    skipped: bool
    detail: Any


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def run(ctx: Context) -> Outcome:
    """Run the part ``ctx.part``; never raises."""
    try:
        return Outcome(True, False, CHECKS[ctx.part](ctx))
    except Skip as exc:
        return Outcome(False, True, str(exc))
    except CheckFailed as exc:
        return Outcome(False, False, {"error": str(exc), **exc.detail})
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "deepdive":
            from deepdive.extras import describe_missing

            return Outcome(False, True, describe_missing(exc))
        traceback.print_exc()
        return Outcome(False, False, {"error": _one_line(exc), "where": _where(exc)})
    except Exception as exc:  # noqa: BLE001 - a part's failure is recorded, never raised: the next part runs
        traceback.print_exc()
        return Outcome(False, False, {"error": _one_line(exc), "where": _where(exc)})


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e3 if seconds else float("nan")


def _peak_mib(device: str) -> Optional[float]:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _transformer(d_in: int, d_model: int, layers: int, heads: int) -> Any:
    """A pre-norm transformer whose blocks sit in an ``nn.ModuleList`` (the layout of most real models)."""
    from torch import nn

    class Transformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(d_in, d_model)
            self.layers = nn.ModuleList([
                nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True) for _ in range(layers)])
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, 1)

        def forward(self, x: Any) -> Any:
            h = self.embed(x)
            for layer in self.layers:
                h = layer(h)
            return self.head(self.norm(h)).squeeze(-1)

    return Transformer()


def _regression_data(n: int, seq: int, d_in: int, seed: int = 0) -> tuple[Any, Any]:
    """Inputs and a learnable per-token target (a fixed squashed projection of each token)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, seq, d_in, generator=gen)
    w = torch.randn(d_in, generator=torch.Generator().manual_seed(1234)) / math.sqrt(d_in)
    return x, torch.tanh(x @ w)


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------


def environment(ctx: Context) -> dict[str, Any]:
    """What this machine runs: Python, torch and its CUDA, the GPUs, and the optional packages."""
    import platform

    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
        "packages": {name: _version(dist) for name, dist in OPTIONAL.items()},
    }
    facts["missing"] = sorted(name for name, version in facts["packages"].items() if version is None)
    if ctx.cuda:
        facts["gpus"] = [
            {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1),
             "multiprocessors": p.multi_processor_count}
            for p in (torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count()))]
        facts["nccl"] = _nccl_version()
        facts["cudnn"] = torch.backends.cudnn.version()
        facts["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return facts


def _nccl_version() -> Optional[str]:
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_nccl_available():
        return None
    version = torch.cuda.nccl.version()  # a tuple in recent torch, an int (2.18.3 -> 21803) in older ones
    return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)


# ---------------------------------------------------------------------------------------------
# nvml
# ---------------------------------------------------------------------------------------------


def _gpu_load(stop: threading.Event) -> None:
    """Keep the GPU busy with bf16 matrix products until ``stop`` is set (so the readings are not idle ones)."""
    import torch

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    while not stop.is_set():
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def nvml(ctx: Context) -> dict[str, Any]:
    """Every field the telemetry samples, read through NVML under load, recorded as a replayable fixture."""
    import pynvml

    from deepdive.telemetry.nvml_replay import RecordingNvml, differences, replay
    from deepdive.telemetry.samplers import MachineSampler, NvmlSampler

    recorder = RecordingNvml(pynvml)
    sampler = NvmlSampler(recorder)  # type: ignore[arg-type]
    ctx.expect(sampler.available, f"NVML gives no GPU: {sampler.reason}")
    stop = threading.Event()
    load = threading.Thread(target=_gpu_load, args=(stop,), daemon=True) if _torch_cuda() else None
    readings: list[list[dict[str, Any]]] = []
    try:
        if load is not None:
            load.start()
            time.sleep(1.5)  # utilisation and power are averages over the last second or so
        for _ in range(4):
            readings.append(sampler.sample())
            time.sleep(0.5)
    finally:
        stop.set()
        if load is not None:
            load.join(30)
        sampler.close()
    source = _nvml_source(pynvml, readings)
    fixture = recorder.fixture(readings, source=source)
    path = ctx.out_dir / f"nvml-{_slug(source['gpus'][0])}.json"
    path.write_text(json.dumps(fixture, indent=1, allow_nan=False) + "\n", encoding="utf-8")

    replayed, stand_in = replay(fixture)
    last = readings[-1]
    unsupported = sorted({key for gpu in last for key, value in gpu.items() if value is None})
    detail = {"fixture": str(path), "gpus": source["gpus"], "driver": source["driver"], "calls": len(recorder.calls),
              "unsupported_fields": unsupported, "last_reading": last[0]}
    diffs = differences(readings, replayed)
    ctx.expect(not diffs, "the replayed readings differ from the recorded ones: " + "; ".join(diffs[:3]), **detail)
    ctx.expect(not stand_in.misses, f"the replay lacked {len(stand_in.misses)} call(s): {stand_in.misses[:2]}",
               **detail)
    ctx.expect(all(g["mem_total_mib"] for g in last), "NVML read no memory size", **detail)
    if load is not None:
        busiest = max((g["util_gpu_pct"] or 0.0) for sample in readings for g in sample)
        detail["util_gpu_pct_max"] = busiest
        ctx.expect(busiest > 0, "the GPU read 0 % busy while matrix products ran on it", **detail)
    machine = MachineSampler()
    try:
        sample = machine.sample()
    finally:
        machine.close()
    ctx.expect(sample["gpus"] is not None, f"the machine sampler gives no GPUs: {sample['gpu_reason']}", **detail)
    json.dumps(sample, allow_nan=False)
    return detail


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _nvml_source(pynvml: Any, readings: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Where a fixture came from: the GPUs, the driver, the binding, when."""
    from datetime import datetime, timezone

    pynvml.nvmlInit()
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
    except pynvml.NVMLError as exc:
        driver = f"unreadable ({exc})"
    finally:
        pynvml.nvmlShutdown()
    return {"gpus": [g["name"] or "gpu" for g in readings[0]], "driver": driver,
            "nvidia_ml_py": _version("nvidia-ml-py"), "recorded_at": datetime.now(timezone.utc).isoformat(),
            "recorded_by": "deepdive gpu-check (python -m deepdive.gpu_check --only nvml)",
            "samples": len(readings), "interval_s": 0.5}


# ---------------------------------------------------------------------------------------------
# amp_bf16, amp_fp16
# ---------------------------------------------------------------------------------------------

_AMP_SIZES = {
    "cuda": dict(d_in=64, d_model=256, layers=2, heads=8, seq=32, batch=64, steps=60, lr=1e-3),
    "cpu": dict(d_in=16, d_model=32, layers=1, heads=4, seq=8, batch=8, steps=20, lr=3e-3),
}


def _note_dtype(seen: dict[str, Any], key: str, module: Any, inputs: Any, output: Any) -> None:
    """A forward hook: the dtype ``module`` computed in, the first time (returns None: the output stays)."""
    seen.setdefault(key, output.dtype)


def _amp(ctx: Context, precision: str) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import deepdive.engine as dd
    from deepdive.engine.precision import DTYPES

    size = _AMP_SIZES[ctx.device]
    run = dd.setup(precision=precision, device=ctx.device, grad_compression="none", strategy="none", seed=0)
    ctx.expect(run.precision == precision and run.plan.device_type == ctx.device,
               f"dd.setup(precision={precision!r}) planned {run.precision} on {run.plan.device_type}")
    model = _transformer(size["d_in"], size["d_model"], size["layers"], size["heads"])
    seen: dict[str, Any] = {}
    layer = model.layers[0]
    for key, module in (("linear", layer.linear1), ("norm", layer.norm1)):
        module.register_forward_hook(functools.partial(_note_dtype, seen, key))
    x, y = _regression_data(size["batch"] * size["steps"], size["seq"], size["d_in"])
    loader = DataLoader(TensorDataset(x, y), batch_size=size["batch"], shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model, opt, loader = run.prepare(model, torch.optim.AdamW(model.parameters(), lr=size["lr"]), loader)
    first_scale = run.scaler.scale
    losses, times = [], []
    for xb, yb in run.batches(loader):
        start = time.perf_counter()
        with run.autocast():
            loss = F.mse_loss(model(xb).float(), yb)
        run.backward(loss)
        run.step(opt)
        _sync(ctx.device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    detail: dict[str, Any] = {
        "precision": run.precision, "reason": run.plan.reason, "device": str(run.device),
        "linear_dtype": str(seen.get("linear")), "norm_dtype": str(seen.get("norm")), "kept_fp32": len(run.kept_fp32),
        "loss_first": round(statistics.fmean(losses[:3]), 5), "loss_last": round(statistics.fmean(losses[-3:]), 5),
        "step_ms_median": round(_median_ms(times[3:]), 3), "skipped_steps": run.scaler.skipped_steps,
        "loss_scale": first_scale,
    }
    ctx.expect(seen.get("linear") == DTYPES[precision], f"a Linear computed in {seen.get('linear')} under "
               f"run.autocast(), not {DTYPES[precision]}", **detail)
    ctx.expect(seen.get("norm") == torch.float32, f"a LayerNorm computed in {seen.get('norm')}, not float32",
               **detail)
    ctx.expect(all(p.dtype == torch.float32 for p in model.parameters()), "master weights are not fp32", **detail)
    ctx.expect(all(math.isfinite(v) for v in losses), "a loss was not finite", **detail)
    ctx.expect(detail["loss_last"] < 0.9 * detail["loss_first"],
               f"the loss did not fall ({detail['loss_first']} -> {detail['loss_last']})", **detail)
    if precision == "fp16":
        _fp16_extras(ctx, run, model, opt, loader, detail)
    detail["mem_peak_mib"] = _peak_mib(ctx.device)
    summary = run.finish()
    ctx.expect(summary["precision"] == precision, f"the summary says {summary['precision']}", **detail)
    ctx.measure(f"{ctx.part}_step", detail["step_ms_median"], "ms", steps=len(times),
                model=f"transformer d{size['d_model']} x{size['layers']}, batch {size['batch']}x{size['seq']}")
    if detail["mem_peak_mib"] is not None:
        ctx.measure(f"{ctx.part}_peak_memory", detail["mem_peak_mib"], "MiB")
    return detail


def _fp16_extras(ctx: Context, run: Any, model: Any, opt: Any, loader: Any, detail: dict[str, Any]) -> None:
    """Loss scaling under fp16: an injected overflow is skipped and halves the scale; a plain backward is refused."""
    import torch
    import torch.nn.functional as F

    ctx.expect(run.scaler.enabled and detail["loss_scale"] == 2.0**16, "fp16 runs without the loss scaler", **detail)
    ctx.expect(detail["skipped_steps"] <= 3, f"{detail['skipped_steps']} steps overflowed in ordinary training",
               **detail)
    xb, yb = (t.to(run.device) for t in next(iter(loader)))

    def loss_of() -> Any:
        with run.autocast():
            return F.mse_loss(model(xb).float(), yb)

    before = [p.detach().clone() for p in model.parameters()]
    scale = run.scaler.scale
    run.backward(loss_of() * float("inf"))
    skipped = run.step(opt)
    unchanged = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    detail["overflow"] = {"skipped": skipped, "weights_unchanged": unchanged, "scale": [scale, run.scaler.scale]}
    ctx.expect(skipped and unchanged and run.scaler.scale == scale / 2,
               "an overflowing step was not skipped with the scale halved", **detail)
    run.backward(loss_of())
    ctx.expect(not run.step(opt), "the step after an overflow was skipped too", **detail)
    loss_of().backward()  # the mistake the engine must name
    try:
        run.step(opt)
        refused = None
    except RuntimeError as exc:
        refused = str(exc)
    opt.zero_grad(set_to_none=True)
    detail["plain_backward"] = refused
    ctx.expect(refused is not None and "run.backward(loss)" in refused,
               "a plain loss.backward() under fp16 loss scaling was not refused", **detail)


def amp_bf16(ctx: Context) -> dict[str, Any]:
    """The engine's bf16 autocast trains a transformer; Linear runs in bf16, norms and master weights in fp32."""
    return _amp(ctx, "bf16")


def amp_fp16(ctx: Context) -> dict[str, Any]:
    """fp16 autocast with dynamic loss scaling: trains, skips an injected overflow, refuses a plain backward."""
    return _amp(ctx, "fp16")


# ---------------------------------------------------------------------------------------------
# nccl_ddp, fsdp2_transformer: under torchrun
# ---------------------------------------------------------------------------------------------


def _join_group(ctx: Context) -> Any:
    """The engine's process group (NCCL on GPUs, gloo on CPUs); with one process, a group of one."""
    import torch.distributed as dist

    from deepdive.engine import distributed as ddist

    backend = "nccl" if ctx.cuda else "gloo"
    info = ddist.init_from_env(device=ctx.device, backend=backend)
    if not dist.is_initialized():  # one process: the engine needs no group, the hooks and FSDP do
        kwargs: dict[str, Any] = {"backend": backend}
        if ctx.cuda:
            kwargs["device_id"] = info.device
        dist.init_process_group(**kwargs)
        info = ddist.DistInfo(rank=0, local_rank=0, world_size=1, backend=backend, device=info.device)
    return info


def _ddp_mode(ctx: Context, info: Any, mode: str, problems: list[str]) -> dict[str, Any]:
    """Train an MLP under DDP with ``mode``'s hook; check gradients, bytes and the loss."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn

    from deepdive.engine import distributed as ddist
    from deepdive.engine.compression import GradCompression

    dev, world = info.device, info.world_size
    torch.manual_seed(0)
    width = 1024 if ctx.cuda else 128
    model = nn.Sequential(nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 10)).to(dev)
    reference = copy.deepcopy(model)
    ddp = ddist.wrap_ddp(model, info, bucket_cap_mb=1.0)
    comp = GradCompression(mode, rank=2, warmup_steps=2, topk_ratio=0.05)
    comp.register(ddp)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    teacher = torch.randn(256, 10, generator=torch.Generator().manual_seed(99)) / 16
    gen = torch.Generator().manual_seed(1 + info.rank)
    losses, figures, times = [], [], []
    grad_error = None
    for step in range(16):
        x = torch.randn(64, 256, generator=gen)
        x, y = x.to(dev), (x @ teacher).to(dev)
        start = time.perf_counter()
        comp.stats.begin_step()  # what run.backward does around backward
        loss = F.mse_loss(ddp(x), y)
        loss.backward()
        figures.append(comp.stats.end_step())
        if step == 0 and mode in ("none", "fp16", "bf16"):
            grad_error = _grad_error(reference, model, x, y, world, dist)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(ctx.device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    last = figures[-1]
    sent, whole = last["comm_bytes_sent"], last["comm_bytes_uncompressed"]
    out = {"loss_first": round(statistics.fmean(losses[:3]), 4), "loss_last": round(statistics.fmean(losses[-3:]), 4),
           "bytes_uncompressed": whole, "bytes_sent": sent, "buckets": last["comm_buckets"],
           "comm_ms": round(last["comm_time_s"] * 1e3, 3), "step_ms_median": round(_median_ms(times[2:]), 3),
           "grad_rel_error": grad_error}
    expected = {"none": sent == whole, "fp16": 2 * sent == whole, "bf16": 2 * sent == whole,
                "powersgd": 4 * sent < whole, "topk": 5 * sent < whole}[mode]
    tolerance = {"none": 1e-5, "fp16": 2e-3, "bf16": 2e-2}.get(mode)
    checks = [
        (all(f["comm_mode"] == mode for f in figures), "the hook ran another mode"),
        (all(math.isfinite(v) for v in losses), "a loss was not finite"),
        (out["loss_last"] < out["loss_first"], f"the loss did not fall ({out['loss_first']} -> {out['loss_last']})"),
        (expected, f"{sent} bytes sent of {whole}, not what {mode} sends"),
        # (one process: NCCL may leave nothing on the stream between the two CUDA events)
        (last["comm_time_s"] > 0 or world == 1, "no communication time was measured"),
        (grad_error is None or grad_error <= tolerance, f"gradients off by {grad_error} (relative) from the "
                                                       f"mean of the ranks' own"),
    ]
    problems.extend(f"{mode}: {why}" for ok, why in checks if not ok)
    ctx.measure(f"ddp_{mode}_bytes_ratio", whole / sent if sent else 0.0, "x", world_size=world)
    ctx.measure(f"ddp_{mode}_step", out["step_ms_median"], "ms", world_size=world, comm_ms=out["comm_ms"])
    return out


def _grad_error(reference: Any, model: Any, x: Any, y: Any, world: int, dist: Any) -> float:
    """Largest relative difference between the DDP gradients and the mean over ranks of plain ones."""
    import torch
    import torch.nn.functional as F

    F.mse_loss(reference(x), y).backward()
    worst = 0.0
    for ref, got in zip(reference.parameters(), model.parameters()):
        expected = ref.grad.detach().clone()
        if world > 1:
            dist.all_reduce(expected)
            expected /= world
        error = torch.linalg.vector_norm(got.grad.float() - expected) / (torch.linalg.vector_norm(expected) + 1e-12)
        worst = max(worst, float(error))
    return round(worst, 8)


def nccl_ddp(ctx: Context) -> dict[str, Any]:
    """DDP with each of the engine's gradient compression hooks, as ``run.prepare`` registers them."""
    from deepdive.engine import distributed as ddist

    info = _join_group(ctx)
    problems: list[str] = []
    detail: dict[str, Any] = {"backend": info.backend, "world_size": info.world_size, "modes": {}}
    try:
        for mode in COMPRESSION_MODES:  # every rank runs every mode, whatever it finds: no rank is left waiting
            detail["modes"][mode] = _ddp_mode(ctx, info, mode, problems)
    finally:
        ddist.teardown()
    ctx.expect(not problems, "; ".join(problems), **detail)
    return detail


_FSDP_SIZES = {
    "cuda": dict(d_in=64, d_model=256, layers=4, heads=8, seq=64, batch=16, steps=10, tolerance=5e-2),
    "cpu": dict(d_in=16, d_model=32, layers=2, heads=4, seq=8, batch=4, steps=6, tolerance=1e-4),
}


def fsdp2_transformer(ctx: Context) -> dict[str, Any]:
    """The engine's FSDP2 sharding (what ``run.prepare`` does under ``strategy="fsdp"``) of a ModuleList
    transformer: one unit per block, bf16 parameters on a GPU, losses equal to one unsharded copy's."""
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from deepdive.engine import distributed as ddist
    from deepdive.engine import fsdp as dfsdp
    from deepdive.engine.precision import DEFAULT_FP32_MODULES, keep_in_fp32, resolve_precision

    size = _FSDP_SIZES[ctx.device]
    info = _join_group(ctx)
    world, dev = info.world_size, info.device
    plan = resolve_precision("bf16" if ctx.cuda else "fp32", dev)
    detail: dict[str, Any] = {"backend": info.backend, "world_size": world, "precision": plan.mode}
    try:
        torch.manual_seed(0)
        model = _transformer(size["d_in"], size["d_model"], size["layers"], size["heads"]).to(dev)
        reference = copy.deepcopy(model)  # before keep_in_fp32: a copy would call the original's forward
        if plan.autocast_enabled:
            for net in (model, reference):
                keep_in_fp32(net, DEFAULT_FP32_MODULES, plan.device_type)
        total = sum(p.numel() for p in model.parameters())
        report = dfsdp.shard(model, info, dfsdp.FsdpOptions(), plan, fp32_classes=DEFAULT_FP32_MODULES)
        local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in model.parameters())
        units = [unit.path for unit in report.plan.units]
        detail.update(shard=report.summary(), units=units, parameters=total, local_parameters=local,
                      all_dtensor=all(isinstance(p, DTensor) for p in model.parameters()))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-3)
        x, y = _regression_data(size["batch"] * world * size["steps"], size["seq"], size["d_in"])
        n, gaps = size["batch"] * world, []
        mine = slice(info.rank * size["batch"], (info.rank + 1) * size["batch"])
        for step in range(size["steps"]):
            xb, yb = x[step * n:(step + 1) * n].to(dev), y[step * n:(step + 1) * n].to(dev)
            loss = _train_step(model, opt, xb[mine], yb[mine], plan)
            ref_loss = _train_step(reference, ref_opt, xb, yb, plan)
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            gaps.append(abs(float(mean) / world - float(ref_loss)) / max(abs(float(ref_loss)), 1e-12))
        detail.update(loss_gap_max=max(gaps), mem_peak_mib=_peak_mib(ctx.device))
    finally:
        ddist.teardown()
    ctx.expect(detail["all_dtensor"], "some parameters are not sharded (not DTensors)", **detail)
    ctx.expect(all(f"layers.{i}" in units for i in range(size["layers"])),
               "the transformer's blocks are not FSDP units of their own", **detail)
    ctx.expect(local <= total / world * 1.05 + 1024, f"this rank holds {local} of {total} parameters", **detail)
    ctx.expect(detail["loss_gap_max"] <= size["tolerance"], f"losses differ from the unsharded copy's by up to "
               f"{detail['loss_gap_max']:.2e} (relative; allowed {size['tolerance']:.0e})", **detail)
    ctx.measure("fsdp2_loss_gap_max", detail["loss_gap_max"], "relative", world_size=world, precision=plan.mode)
    return detail


def _train_step(model: Any, opt: Any, x: Any, y: Any, plan: Any) -> Any:
    import torch.nn.functional as F

    from deepdive.engine.precision import autocast

    with autocast(plan):
        loss = F.mse_loss(model(x).float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


# ---------------------------------------------------------------------------------------------
# torchao_int8, torchao_int4
# ---------------------------------------------------------------------------------------------


def _torchao(ctx: Context, bits: int) -> dict[str, Any]:
    import torch
    from torch import nn

    from deepdive.engine.compress.quantize import model_size_bytes, quantize

    if _version("torchao") is None:
        raise Skip("torchao is not installed: pip install 'deepdive[compress]'")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)).to("cuda").eval()
    x = torch.randn(64, 1024, device="cuda")
    result = quantize(model, f"int{bits}-weight", device="cuda")
    dtype = next(result.model.parameters()).dtype
    xq = x.to(dtype)
    with torch.no_grad():
        ref = model(x)
        out = result.model(xq).float()
        error = float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))
        base_ms, quant_ms = _alternating_ms(lambda: model(x), lambda: result.model(xq), rounds=30)
    size = model_size_bytes(result.model) / model_size_bytes(model)
    detail = {"method": result.method, "engine": result.engine, "notes": result.notes, "activation_dtype": str(dtype),
              "rel_error": round(error, 5), "size_ratio": round(size, 4), "eager_ms": round(quant_ms, 4),
              "float_eager_ms": round(base_ms, 4), "torchao": _version("torchao")}
    limit = 0.05 if bits == 8 else 0.15
    ctx.expect(error < limit, f"int{bits} output off by {error:.3f} (relative; allowed {limit})", **detail)
    ctx.expect(size < 0.5, f"the int{bits} model is {size:.0%} of the float one's size", **detail)
    ctx.measure(f"int{bits}_weight_eager_forward", quant_ms, "ms", baseline=round(base_ms, 4),
                ratio=round(base_ms / quant_ms, 3), model="Linear 1024-4096-1024, batch 64", compiled=False)
    return detail


def _alternating_ms(first: Callable[[], Any], second: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Median milliseconds of each of two calls, timed in alternating pairs after a warm-up."""
    import torch

    for fn in (first, second, first, second):
        fn()
    torch.cuda.synchronize()
    a, b = [], []
    for _ in range(rounds):
        for fn, out in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
    return _median_ms(a), _median_ms(b)


def torchao_int8(ctx: Context) -> dict[str, Any]:
    """Weight-only int8 (torchao) through deepdive's quantize(): close to float, under half the size."""
    return _torchao(ctx, 8)


def torchao_int4(ctx: Context) -> dict[str, Any]:
    """Weight-only int4 (torchao's tinygemm, bf16 activations) through deepdive's quantize()."""
    return _torchao(ctx, 4)


# ---------------------------------------------------------------------------------------------
# codegen_gpu
# ---------------------------------------------------------------------------------------------

_PROBE = """import json, torch
device = "cuda" if torch.cuda.is_available() else "cpu"
x = torch.ones(256, 256, device=device)
print(json.dumps({"cuda": torch.cuda.is_available(), "device": torch.cuda.get_device_name(0) if device == "cuda"
                  else "cpu", "sum": float((x @ x).sum())}))
"""


def _probe(allow_gpu: bool, template: Optional[str]) -> dict[str, Any]:
    from deepdive.codegen.sandbox import run_sandboxed

    res = run_sandboxed(["probe.py"], files={"probe.py": _PROBE}, timeout_s=120, memory_mb=None, allow_gpu=allow_gpu,
                        template=template)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    seen = json.loads(lines[-1]) if res.returncode == 0 and lines else None
    return {"returncode": res.returncode, "seen": seen, "isolation": res.isolation, "start": res.start,
            "stderr_tail": res.stderr.strip().splitlines()[-3:] if seen is None else []}


def codegen_gpu(ctx: Context) -> dict[str, Any]:
    """The sandbox shows the GPU only when allowed (cold and warm-template starts); a builtin program verifies."""
    from deepdive.codegen.pipeline import GenerateParams, generate

    probes = {"allowed_cold": _probe(True, None), "allowed_warm": _probe(True, "torch")}
    if ctx.cuda:  # without a GPU there is nothing to hide
        probes["hidden_cold"] = _probe(False, None)
    detail: dict[str, Any] = {"probes": probes}
    for name, probe in detail["probes"].items():
        seen = probe["seen"]
        ctx.expect(seen is not None, f"the {name} probe failed (exit {probe['returncode']})", **detail)
        wanted = ctx.cuda and name.startswith("allowed")
        ctx.expect(seen["cuda"] == wanted, f"the {name} probe {'saw' if seen['cuda'] else 'did not see'} CUDA",
                   **detail)
        ctx.expect(seen["sum"] == 256.0**3, f"the {name} probe computed {seen['sum']}", **detail)
    result = generate(GenerateParams(prompt=CODEGEN_PROMPT, backend="builtin", allow_gpu=True))
    detail["generate"] = {"verified": result.verified, "message": result.message, "seconds": result.seconds,
                          "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail[:240]} for c in result.checks]}
    ctx.expect(result.verified, f"the builtin program with the GPU allowed did not verify: {result.message}",
               **detail)
    return detail


# ---------------------------------------------------------------------------------------------
# tune_pack
# ---------------------------------------------------------------------------------------------


def _concurrency(events: list[tuple[str, dict[str, Any]]]) -> int:
    """The most workers running a trial at once, from the study's ``tune.trial`` events.

    Per worker, not per trial: a worker that finishes may start its next trial before the finished
    one's last event is sent, and the last intermediate values can follow a trial's end."""
    busy: dict[int, int] = {}  # worker -> the trial it runs
    ended: set[int] = set()
    most = 0
    for kind, fields in events:
        if kind != "tune.trial" or fields.get("worker") is None:
            continue
        number, worker = fields["number"], fields["worker"]
        if fields["state"] in ("complete", "pruned", "fail"):
            ended.add(number)
            if busy.get(worker) == number:
                del busy[worker]
        elif fields["state"] == "running" and number not in ended:
            busy[worker] = number
        most = max(most, len(busy))
    return most


def tune_pack(ctx: Context) -> dict[str, Any]:
    """``deepdive tune --pack``: three workers on one GPU, as many running at once as its memory allows."""
    import deepdive.examples
    from deepdive.tune.study import StudyConfig, run_study

    script = Path(deepdive.examples.__file__).parent / "digits.py"
    workspace = ctx.work_dir / "tune"
    workspace.mkdir(parents=True)
    events: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        with lock:
            events.append((kind, {k: fields.get(k) for k in ("state", "number", "worker", "waiting_reason")}))

    config = StudyConfig(str(script), n_trials=6, parallel=3, pack=True, metric="accuracy", direction="maximize",
                         pruner="none", seed=0, workspace=str(workspace),
                         storage=f"sqlite:///{workspace / 'tune.db'}", script_args=["--epochs", "3"],
                         reuse_workers=False, on_event=on_event)
    result = run_study(config)
    waits = sorted({f["waiting_reason"] for k, f in events if k == "tune.trial" and f.get("waiting_reason")})
    detail = {"complete": result.n_complete, "failed": result.n_fail, "best_accuracy": result.best_value,
              "most_at_once": _concurrency(events), "startup_s": result.startup_seconds,
              "trials_span_s": result.trials_span_seconds, "waiting_reasons": waits[:4],
              "failures": [t.get("reason") for t in result.trials if t.get("state") == "fail"][:3]}
    ctx.expect(result.n_complete == 6 and not result.n_fail, f"{result.n_complete} of 6 trials complete", **detail)
    ctx.expect(detail["most_at_once"] >= 2, "the trials never ran together: --pack ran one at a time", **detail)
    ctx.measure("tune_pack_trials_span", result.trials_span_seconds or 0.0, "s", trials=6, workers=3,
                most_at_once=detail["most_at_once"])
    return detail


# ---------------------------------------------------------------------------------------------
# bench_amp
# ---------------------------------------------------------------------------------------------


def bench_amp(ctx: Context) -> dict[str, Any]:
    """``bench/bench_amp.py`` on a transformer block; its lines become this part's figures."""
    script = Path(__file__).resolve().parent.parent / "bench" / "bench_amp.py"
    if not script.exists():
        raise Skip(f"{script} is not here: run make gpu-check in a checkout of the repository")
    args = ["--device", ctx.device, "--models", "transformer"]
    if not ctx.cuda:
        args += ["--sizes", "spec", "--warmup", "0", "--steps", "1", "--dtypes", "bf16"]  # a rehearsal: it runs
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=False)
    found = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for line in found:
        ctx.lines.append({**line, "check": ctx.part})
    wanted = {("bf16", s) for s in ("spec", "large")} | {("fp16", s) for s in ("spec", "large")} if ctx.cuda \
        else {("bf16", "spec")}
    got = {(line["metric"].split("_step_")[1].split("_")[0], line["sizes"]) for line in found}
    detail = {"returncode": proc.returncode, "ratios": {f"{line['metric']}@{line['sizes']}": line["ratio"]
                                                        for line in found},
              "stderr_tail": proc.stderr.strip().splitlines()[-3:]}
    ctx.expect(proc.returncode == 0, f"bench_amp.py exited with status {proc.returncode}", **detail)
    ctx.expect(wanted <= got, f"bench_amp.py measured {sorted(got)}, not {sorted(wanted)}", **detail)
    return detail


CHECKS: dict[str, Callable[[Context], Any]] = {
    "environment": environment, "nvml": nvml, "amp_bf16": amp_bf16, "amp_fp16": amp_fp16, "nccl_ddp": nccl_ddp,
    "fsdp2_transformer": fsdp2_transformer, "torchao_int8": torchao_int8, "torchao_int4": torchao_int4,
    "codegen_gpu": codegen_gpu, "tune_pack": tune_pack, "bench_amp": bench_amp,
}
