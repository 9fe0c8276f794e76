"""What torch can compute on here, and how fast: the facts ``precision="auto"`` and the deep check use."""

from __future__ import annotations

import time
from typing import Callable, Optional

import attrs
import torch

from deepdive.cpuinfo import cpu_has_native_bf16


@attrs.define
class DeviceInfo:
    """One device torch can use.

    Attributes:
        device (str): ``cpu`` or ``cuda:N``.
        name (str): marketing name (GPU) or CPU model.
        bf16 (bool): bf16 runs natively (compute capability >= 8.0, or AVX512-BF16/AMX on a CPU).
        capability (str | None): CUDA compute capability, e.g. ``9.0``.
        memory_gib (float | None): device memory.
    """

    device: str
    name: str
    bf16: bool
    capability: Optional[str] = None
    memory_gib: Optional[float] = None


def describe_devices() -> list[DeviceInfo]:
    """The CPU, then every CUDA device torch sees."""
    from deepdive.cpuinfo import cpu_model

    out = [DeviceInfo(device="cpu", name=cpu_model(), bf16=cpu_has_native_bf16())]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            out.append(
                DeviceInfo(
                    device=f"cuda:{index}",
                    name=props.name,
                    bf16=(props.major, props.minor) >= (8, 0),
                    capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 2),
                )
            )
    return out


def matmul_throughput(
    device: str,
    dtype: torch.dtype = torch.float32,
    size: int = 1024,
    seconds: float = 1.0,
    on_progress: Optional[Callable[[float], None]] = None,
) -> float:
    """Measured dense matmul throughput in GFLOP/s (``2 * size**3`` flops per product).

    Runs square matmuls for about ``seconds`` after one warm-up product; synchronises the GPU so
    the figure is real. ``on_progress`` gets the fraction of the time budget spent.
    """
    dev = torch.device(device)
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.matmul(a, b)
    sync()
    products = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        torch.matmul(a, b)
        products += 1
        if products % 4 == 0 or dev.type == "cpu":
            sync()
            elapsed = time.perf_counter() - start
            if on_progress is not None:
                on_progress(min(1.0, elapsed / seconds))
    sync()
    elapsed = time.perf_counter() - start
    return 2.0 * size**3 * products / elapsed / 1e9
