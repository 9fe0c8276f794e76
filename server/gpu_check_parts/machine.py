"""The parts that read the machine: ``environment`` (Python, torch, the GPUs, the optional packages) and
``nvml`` (every telemetry field read under load, recorded as a replayable fixture).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any, Optional

from deepdive.gpu_check_parts.common import installed_version
from deepdive.gpu_check_parts.context import Context


OPTIONAL = {"torchao": "torchao", "optuna": "optuna", "sklearn": "scikit-learn", "zstandard": "zstandard",
            "xxhash": "xxhash", "cattrs": "cattrs", "pynvml": "nvidia-ml-py", "transformers": "transformers"}


def environment(ctx: Context) -> dict[str, Any]:
    """What this machine runs: Python, torch and its CUDA, the GPUs, and the optional packages."""
    import platform

    import torch

    facts: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
        "packages": {name: installed_version(dist) for name, dist in OPTIONAL.items()},
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
            "nvidia_ml_py": installed_version("nvidia-ml-py"), "recorded_at": datetime.now(timezone.utc).isoformat(),
            "recorded_by": "deepdive gpu-check (python -m deepdive.gpu_check --only nvml)",
            "samples": len(readings), "interval_s": 0.5}
