"""The ``amp_bf16`` and ``amp_fp16`` parts: the engine's autocast trains a transformer; fp16 with its loss scaler."""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any

from deepdive.gpu_check_parts.common import median_ms, peak_mib, regression_data, sync, transformer
from deepdive.gpu_check_parts.context import Context


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
    model = transformer(size["d_in"], size["d_model"], size["layers"], size["heads"])
    seen: dict[str, Any] = {}
    layer = model.layers[0]
    for key, module in (("linear", layer.linear1), ("norm", layer.norm1)):
        module.register_forward_hook(functools.partial(_note_dtype, seen, key))
    x, y = regression_data(size["batch"] * size["steps"], size["seq"], size["d_in"])
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
        sync(ctx.device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    detail: dict[str, Any] = {
        "precision": run.precision, "reason": run.plan.reason, "device": str(run.device),
        "linear_dtype": str(seen.get("linear")), "norm_dtype": str(seen.get("norm")), "kept_fp32": len(run.kept_fp32),
        "loss_first": round(statistics.fmean(losses[:3]), 5), "loss_last": round(statistics.fmean(losses[-3:]), 5),
        "step_ms_median": round(median_ms(times[3:]), 3), "skipped_steps": run.scaler.skipped_steps,
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
    detail["mem_peak_mib"] = peak_mib(ctx.device)
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
