"""What a compression step is judged by, measured the same way for every step: size, parameters, CPU latency.

Size is the bytes of the serialized ``state_dict`` (what a checkpoint of the model weighs; packed
int8 weights count as stored). Latency is measured, never estimated from MACs: the model runs in
``torch.inference_mode`` on the CPU with the thread count the caller set, after warm-up runs, for at
least ``min_runs`` runs or ``budget_s`` seconds (whichever is more), and p50/p95 of the single-call
times are reported in milliseconds.

A speed-up between two models comes from :func:`paired_latency`: the models take turns in short
rounds, so a change in the machine's load (another process, a thermal step) falls on both alike and
cancels in the ratio, where two figures measured minutes apart can differ by a third on a shared
machine.
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any, Optional, Sequence

import torch
from torch import nn


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def count_params(model: nn.Module) -> int:
    """Parameters of the model; for quantized modules (whose weights are packed, not parameters),
    the elements of their packed weights and biases."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if not _is_packed(module):
            continue
        try:
            weight = module.weight()
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
        except Exception:  # noqa: BLE001 - e.g. a quantized RNN: its packed weights have no accessor
            continue
        total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


def _is_packed(module: nn.Module) -> bool:
    """A quantized module (torch.ao, fused or not) whose weight is a packed tensor behind ``weight()``."""
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized",
                                               "torch.nn.quantized")) and callable(getattr(module, "weight", None))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@torch.inference_mode()
def latency(model: nn.Module, inputs: Any, *, warmup: int = 5, min_runs: int = 20, budget_s: float = 1.0,
            max_runs: int = 2000) -> dict[str, float]:
    """p50/p95/mean of ``model(*inputs)`` in ms on this thread count (inputs: a tensor or a tuple)."""
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    model.eval()
    for _ in range(warmup):
        model(*args)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        model(*args)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": statistics.median(times), "p95_ms": percentile(times, 0.95),
            "mean_ms": statistics.fmean(times), "runs": len(times), "threads": torch.get_num_threads()}


@torch.inference_mode()
def paired_latency(models: dict[str, nn.Module], inputs: Any, *, threads: Optional[dict[str, int]] = None,
                   rounds: int = 10, budget_s: float = 2.0, warmup: int = 5,
                   min_runs: int = 5) -> dict[str, dict[str, float]]:
    """p50/p95/mean of each model's single-call time in ms, measured in alternating rounds.

    Each of ``rounds`` rounds runs every model in turn for about ``budget_s / (rounds * len(models))``
    seconds (at least ``min_runs`` calls), so all of them see the same machine; the order within a
    round alternates. ``threads`` gives an entry its own intra-op thread count (the caller's is set
    back afterwards). Returns ``{name: {"p50_ms", "p95_ms", "mean_ms", "runs", "threads"}}``.
    """
    if not models:
        raise ValueError("no models to measure")
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    names = list(models)
    caller = torch.get_num_threads()
    count_of = {name: (threads or {}).get(name, caller) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for name in names:
            torch.set_num_threads(count_of[name])
            models[name].eval()
            for _ in range(warmup):
                models[name](*args)
        slot = budget_s / (max(1, rounds) * len(names))
        for r in range(max(1, rounds)):
            for name in (names if r % 2 == 0 else reversed(names)):
                model, own = models[name], times[name]
                torch.set_num_threads(count_of[name])
                started, count = time.perf_counter(), 0
                while count < min_runs or time.perf_counter() - started < slot:
                    t0 = time.perf_counter()
                    model(*args)
                    own.append((time.perf_counter() - t0) * 1000)
                    count += 1
    finally:
        torch.set_num_threads(caller)
    return {name: {"p50_ms": statistics.median(own), "p95_ms": percentile(own, 0.95), "mean_ms": statistics.fmean(own),
                   "runs": len(own), "threads": count_of[name]} for name, own in times.items()}
