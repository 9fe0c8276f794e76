"""The parts that run under ``torchrun``: ``nccl_ddp`` (DDP with each gradient compression hook) and
``fsdp2_transformer`` (the engine's FSDP2 sharding of a transformer against one unsharded copy).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Any

from deepdive.gpu_check_parts.common import median_ms, peak_mib, regression_data, sync, transformer
from deepdive.gpu_check_parts.context import Context


COMPRESSION_MODES = ("none", "fp16", "bf16", "powersgd", "topk")


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
        sync(ctx.device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    last = figures[-1]
    sent, whole = last["comm_bytes_sent"], last["comm_bytes_uncompressed"]
    out = {"loss_first": round(statistics.fmean(losses[:3]), 4), "loss_last": round(statistics.fmean(losses[-3:]), 4),
           "bytes_uncompressed": whole, "bytes_sent": sent, "buckets": last["comm_buckets"],
           "comm_ms": round(last["comm_time_s"] * 1e3, 3), "step_ms_median": round(median_ms(times[2:]), 3),
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
        model = transformer(size["d_in"], size["d_model"], size["layers"], size["heads"]).to(dev)
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
        x, y = regression_data(size["batch"] * world * size["steps"], size["seq"], size["d_in"])
        n, gaps = size["batch"] * world, []
        mine = slice(info.rank * size["batch"], (info.rank + 1) * size["batch"])
        for step in range(size["steps"]):
            xb, yb = x[step * n:(step + 1) * n].to(dev), y[step * n:(step + 1) * n].to(dev)
            loss = _train_step(model, opt, xb[mine], yb[mine], plan)
            ref_loss = _train_step(reference, ref_opt, xb, yb, plan)
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            gaps.append(abs(float(mean) / world - float(ref_loss)) / max(abs(float(ref_loss)), 1e-12))
        detail.update(loss_gap_max=max(gaps), mem_peak_mib=peak_mib(ctx.device))
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
