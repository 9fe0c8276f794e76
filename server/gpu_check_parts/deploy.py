"""The ``deploy_gpu`` part: ``deepdive deploy`` on the GPU — the CUDA candidates of ``deploy bench`` and a
model split across the GPU and the CPU by accelerate's device map.

On the CPU these paths are tested only as plans (tests/deploy); here they run: the digits CNN is exported
(eager and ONNX), ``deploy bench`` measures eager on CUDA in fp32, fp16 and bf16 and ONNX Runtime on every
execution provider present (CUDA when onnxruntime-gpu is installed), and the eager model is split with a
GPU budget smaller than the model, the rest on the CPU, its outputs compared with the unsplit model's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from deepdive.gpu_check_parts.context import Context, Skip


def deploy_gpu(ctx: Context) -> dict[str, Any]:
    """deploy bench's CUDA candidates and a GPU+CPU split (outputs equal the unsplit model's)."""
    if not ctx.cuda:
        raise Skip("no CUDA device: the deploy CPU paths run in make test")
    import torch

    from deepdive.deploy.choose import bench
    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source
    from deepdive.deploy.split import split_folder

    script = Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"
    with tempfile.TemporaryDirectory(prefix="deepdive-gpu-deploy-") as tmp:
        folder = Path(tmp) / "digits_cnn"
        manifest = export(load_source(str(script)), folder, forms=("eager", "onnx"))
        choice = bench(folder, batch_sizes=(1, 32), budget_s=2.0, tolerance=5e-2)
        measured = {row["label"]: row for row in choice.get("measured", [])}
        cuda_rows = sorted(label for label, row in measured.items()
                           if row.get("device") == "cuda" or "CUDAExecutionProvider" in label)
        ctx.expect(bool(cuda_rows), "deploy bench measured no CUDA candidate on a CUDA machine",
                   measured=sorted(measured))
        size = sum(p.numel() * p.element_size() for p in torch.load(folder / manifest.forms["eager"]["file"],
                                                                     weights_only=False).parameters())
        entry = split_folder(folder, {0: max(1, size // 3), "cpu": None})
        devices = sorted({str(d) for d in entry.get("device_map", {}).values()})
        ctx.expect(len(devices) >= 2, "the split left everything on one device", devices=devices)
        ctx.expect(entry["max_abs_diff"] < 1e-4, f"the split model differs from the eager one by {entry['max_abs_diff']}",
                   devices=devices)
    detail = {"choice": choice.get("label"), "reason": choice.get("reason"),
              "cuda_candidates": cuda_rows, "split_devices": devices, "split_max_abs_diff": entry["max_abs_diff"]}
    return detail
