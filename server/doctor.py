"""The environment report behind `deepdive doctor` and `deepdive/doctor`.

This module never imports torch in the calling process: torch is inspected by a short-lived
subprocess (``python -m deepdive.doctor --probe-torch``) whose JSON answer is parsed here. GPUs are
listed through NVML (``pynvml``, a ctypes binding that loads in milliseconds); where NVML cannot be
used the report carries the exact reason instead of an empty list.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from importlib import metadata
from typing import Any, Iterable, Optional

from deepdive import __version__
from deepdive.hostinfo import host_info, python_info
from deepdive.protocol import (
    DeepCheckSummary, DoctorReport, GpuDevice, GpuInfo, JobInfo, MatmulFigure, PackageInfo, TorchInfo, from_wire,
)
from deepdive.telemetry.samplers import NO_DEVICE_REASON, nvml_init

# Packages some features need, and what for. Versions come from installed metadata: nothing is imported.
OPTIONAL_PACKAGES: tuple[tuple[str, str], ...] = (
    ("torch", "training engine, deep check"),
    ("optuna", "hyperparameter search (extra: tune)"),
    ("transformers", "local-model code generation (extra: llm)"),
    ("tensorflow|tensorflow-cpu", "TensorFlow/Keras code generation targets"),
    ("onnx", "ONNX export"),
    ("torchao", "weight-only and int4 quantization"),
    ("nvidia-ml-py", "GPU telemetry (NVML)"),
    ("pygls", "language server"),
    ("websockets", "telemetry hub"),
)

TORCH_PROBE_TIMEOUT_S = 90.0


def package_versions() -> list[PackageInfo]:
    out = []
    for names, purpose in OPTIONAL_PACKAGES:
        # "a|b": the same import under several distribution names (tensorflow, tensorflow-cpu)
        name, version = names.split("|")[0], None
        for candidate in names.split("|"):
            try:
                version = metadata.version(candidate)
            except metadata.PackageNotFoundError:
                continue
            name = candidate
            break
        out.append(PackageInfo(name=name, purpose=purpose, installed=version is not None, version=version))
    return out


def gpu_info() -> GpuInfo:
    """GPUs as NVML sees them, or the exact reason there are none."""
    pynvml, reason = nvml_init()
    if pynvml is None:
        return GpuInfo(available=False, reason=reason)
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        nvml_version = _text(pynvml.nvmlSystemGetNVMLVersion())
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability: Optional[str] = f"{major}.{minor}"
            except pynvml.NVMLError:
                capability = None
            devices.append(
                GpuDevice(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    memory_total_mib=round(memory.total / 2**20, 1),
                    compute_capability=capability,
                )
            )
        if not devices:
            return GpuInfo(
                available=False, driver_version=driver, nvml_version=nvml_version,
                reason=NO_DEVICE_REASON,
            )
        return GpuInfo(available=True, devices=devices, driver_version=driver, nvml_version=nvml_version)
    except pynvml.NVMLError as exc:
        return GpuInfo(available=False, reason=f"NVML query failed: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------------
# torch, inspected in a subprocess
# --------------------------------------------------------------------------------------------


def probe_torch_here() -> dict[str, Any]:
    """Runs in the probe subprocess: imports torch and describes it (wire format of TorchInfo)."""
    try:
        import torch
    except ImportError as exc:
        return {"installed": False, "error": f"torch is not importable: {exc}"}
    except Exception as exc:  # a broken install: report it, do not crash the report
        return {"installed": True, "error": f"importing torch failed: {type(exc).__name__}: {exc}"}
    info: dict[str, Any] = {"installed": True, "version": torch.__version__, "cudaVersion": torch.version.cuda}
    try:
        info["cudaAvailable"] = bool(torch.cuda.is_available())
        info["deviceCount"] = torch.cuda.device_count() if info["cudaAvailable"] else 0
    except Exception as exc:
        info["cudaAvailable"] = False
        info["error"] = f"CUDA check failed: {exc}"
    return info


def torch_probe_argv(python: str = sys.executable) -> list[str]:
    # -P: do not put the current directory on sys.path, so a workspace folder cannot shadow torch.
    return [python, "-P", "-m", "deepdive.doctor", "--probe-torch"]


def _parse_probe(returncode: Optional[int], out: bytes, err: bytes) -> TorchInfo:
    if returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {returncode}"]
        return TorchInfo(installed=False, error=f"torch probe failed: {tail[0]}")
    try:
        return from_wire(json.loads(out.decode().strip().splitlines()[-1]), TorchInfo)
    except (ValueError, IndexError) as exc:
        return TorchInfo(installed=False, error=f"torch probe answered garbage: {exc}")


async def probe_torch(python: str = sys.executable, timeout: float = TORCH_PROBE_TIMEOUT_S) -> TorchInfo:
    """Describe torch without importing it here (asyncio; never blocks the event loop)."""
    if not _torch_installed():
        return TorchInfo(installed=False, error="torch is not installed (pip install 'deepdive[engine]')")
    proc = await asyncio.create_subprocess_exec(
        *torch_probe_argv(python),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=os.path.expanduser("~"),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return TorchInfo(installed=True, error=f"torch probe did not answer within {timeout:.0f} s")
    except asyncio.CancelledError:  # the daemon is shutting down: leave no probe behind
        proc.kill()
        await proc.wait()
        raise
    return _parse_probe(proc.returncode, out, err)


def _torch_installed() -> bool:
    try:
        metadata.version("torch")
        return True
    except metadata.PackageNotFoundError:
        return False


def build_report(torch: TorchInfo, gpus: Optional[GpuInfo] = None, state_dir: Optional[str] = None) -> DoctorReport:
    return DoctorReport(
        deepdive_version=__version__,
        python=python_info(),
        host=host_info(),
        torch=torch,
        gpus=gpus if gpus is not None else gpu_info(),
        packages=package_versions(),
        state_dir=state_dir,
        probed_at=time.time(),
    )


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["--probe-torch"]:
        print("usage: python -m deepdive.doctor --probe-torch", file=sys.stderr)
        return 2
    print(json.dumps(probe_torch_here()))
    return 0


if __name__ == "__main__":
    sys.exit(main())


DEEP_CHECK_KIND = "doctor-deep"


def deep_check_summary(jobs: Iterable[JobInfo]) -> Optional[DeepCheckSummary]:
    """The newest succeeded deep check among ``jobs`` (newest first), as the report shows it."""
    for job in jobs:
        if job.kind != DEEP_CHECK_KIND or job.state != "succeeded" or not isinstance(job.result, dict):
            continue
        rows = [r for r in job.result.get("matmul") or () if isinstance(r, dict)]
        try:
            figures = [MatmulFigure(device=str(r["device"]), name=str(r.get("name") or r["device"]), dtype=str(r["dtype"]),
                                    size=int(r["size"]), gflops=float(r["gflops"])) for r in rows]
        except (KeyError, TypeError, ValueError):
            continue
        torch_version = job.result.get("torch")
        import_s = job.result.get("import_s")
        return DeepCheckSummary(job_id=job.id, measured_at=float(job.ended_at or job.created_at), matmul=figures,
                                torch=str(torch_version) if torch_version else None,
                                import_s=float(import_s) if isinstance(import_s, (int, float)) else None)
    return None
