"""The outputs of ``deepdive compress`` read back: the Markdown report and the compressed model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


def load_compressed(path: str, fmt: str = "module") -> nn.Module:
    """A model written by :func:`compress` (``outputs.model`` and ``outputs.format`` of its report)."""
    return torch.jit.load(path) if fmt == "torchscript" else torch.load(path, weights_only=False)


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per step, each step's contribution against the previous."""
    lines = [f"# Compression report: {Path(report['model']).name}", "",
             f"Target {report['target']}, {report['threads']} CPU thread(s); latency is measured (p50 / p95).", "",
             "| step | params | size (MB) | batch 1 p50 / p95 (ms) | batch 32 p50 / p95 (ms) | accuracy | vs previous |",
             "|---|---:|---:|---:|---:|---:|---|"]
    previous = None
    for row in report["steps"]:
        b1, b32 = row["latency_ms"]["b1"], row["latency_ms"]["b32"]
        if previous is None:
            change = "—"
        else:
            change = (f"{previous['size_mb'] / row['size_mb']:.2f}× smaller, "
                      f"{previous['latency_ms']['b1']['p50'] / b1['p50']:.2f}× faster (b1), "
                      f"{100 * (row['accuracy'] - previous['accuracy']):+.2f} pts")
        lines.append(f"| {row['step']} | {row['params']:,} | {row['size_mb']:.3f} | {b1['p50']:.3f} / {b1['p95']:.3f} | "
                     f"{b32['p50']:.3f} / {b32['p95']:.3f} | {100 * row['accuracy']:.2f} % | {change} |")
        previous = row
    s = report["summary"]
    lines += ["", f"**Overall**: {s['size_ratio']:.2f}× smaller, {s['speedup_b1']:.2f}× faster at batch 1, "
                  f"{s['speedup_b32']:.2f}× at batch 32, accuracy {-s['accuracy_drop_points']:+.2f} points.", ""]
    paired = s.get("latency_paired_ms")
    if paired:
        lines += ["Speed-ups: the original and the compressed model timed in alternating rounds, each at its "
                  "fastest thread count (p50, ms): "
                  + ", ".join(f"batch {k[1:]} {v['original']:.3f} ({v['threads']['original']} thread(s)) → "
                              f"{v['compressed']:.3f} ({v['threads']['compressed']})" for k, v in paired.items())
                  + ". Set the compressed model's count with `torch.set_num_threads`.", ""]
    return "\n".join(lines)

