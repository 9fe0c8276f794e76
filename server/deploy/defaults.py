"""The defaults and choices of deploy's commands, importable without numpy or torch: the CLI's parser reads
them (the core install builds every command's parser, extras or not), and the modules that use them import
them from here."""

from __future__ import annotations

BENCH_BATCH_SIZES = (1, 8, 32)
"""``deploy bench``: the batch sizes measured (those the batcher forms with its default settings)."""
BENCH_TOLERANCE = 1e-3
"""``deploy bench``: the largest absolute difference from the eager outputs a float candidate may have."""
BENCH_INT8_AGREEMENT = 0.98
"""``deploy bench``: the top-1 agreement with eager an int8 classifier must reach on the example rows."""
BENCH_BUDGET_S = 6.0
"""``deploy bench``: seconds of timed runs in all (split evenly over the batch sizes), warm-up and opening not counted."""

TRITON_FORMS = ("onnx", "torchscript")
"""The export forms Triton runs: ONNX (onnxruntime backend) and TorchScript (PyTorch/libtorch backend)."""
TRITON_KINDS = ("cpu", "gpu")
"""Triton's ``instance_group`` kinds ``deploy triton --kind`` writes."""
