"""Facts about this machine that need neither torch nor a GPU: CPU model and features, memory."""

from __future__ import annotations

import os
import platform
import socket
from functools import lru_cache

import psutil

from deepdive.protocol import HostInfo, PythonInfo


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when bf16 matmuls run natively on this CPU (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_info() -> HostInfo:
    return HostInfo(
        hostname=socket.gethostname(),
        cpu_model=cpu_model(),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=os.cpu_count() or 1,
        memory_total_gib=round(psutil.virtual_memory().total / 2**30, 2),
        cpu_bf16=cpu_has_native_bf16(),
    )


def python_info(executable: str | None = None) -> PythonInfo:
    import sys

    return PythonInfo(
        version=platform.python_version(),
        executable=executable or sys.executable,
        platform=platform.platform(),
        implementation=platform.python_implementation(),
    )
