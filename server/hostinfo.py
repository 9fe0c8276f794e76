"""Facts about this machine that need neither torch nor a GPU, as the protocol's HostInfo and PythonInfo
(the CPU's own facts come from :mod:`deepdive.cpuinfo`)."""

from __future__ import annotations

import os
import platform
import socket

import psutil

from deepdive.cpuinfo import cpu_has_native_bf16, cpu_model
from deepdive.protocol import HostInfo, PythonInfo


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
