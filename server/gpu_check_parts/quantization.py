"""The ``torchao_int8`` and ``torchao_int4`` parts: weight-only quantization through deepdive's ``quantize()``."""

from __future__ import annotations

import time
from typing import Any, Callable

from deepdive.gpu_check_parts.common import installed_version, median_ms
from deepdive.gpu_check_parts.context import Context, Skip


def _torchao(ctx: Context, bits: int) -> dict[str, Any]:
    import torch
    from torch import nn

    from deepdive.engine.compress.quantize import model_size_bytes, quantize

    if installed_version("torchao") is None:
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
              "float_eager_ms": round(base_ms, 4), "torchao": installed_version("torchao")}
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
    return median_ms(a), median_ms(b)


def torchao_int8(ctx: Context) -> dict[str, Any]:
    """Weight-only int8 (torchao) through deepdive's quantize(): close to float, under half the size."""
    return _torchao(ctx, 8)


def torchao_int4(ctx: Context) -> dict[str, Any]:
    """Weight-only int4 (torchao's tinygemm, bf16 activations) through deepdive's quantize()."""
    return _torchao(ctx, 4)
