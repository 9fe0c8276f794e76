"""The daemon's identity and its environment report: `deepdive/version`, `deepdive/doctor`."""

from __future__ import annotations

from typing import Optional

import attrs


@attrs.define
class VersionResult:
    """The daemon's identity: answers `deepdive/version`."""

    version: str
    python: str
    pid: int
    started_at: float
    """Seconds since the epoch when the daemon process started."""
    protocol: int
    """Bumped whenever a payload of the protocol changes incompatibly (`PROTOCOL_VERSION`)."""


# --------------------------------------------------------------------------------------------
# deepdive/doctor
# --------------------------------------------------------------------------------------------


@attrs.define
class DoctorParams:
    refresh: bool = False
    """Probe torch again instead of answering from the daemon's cached probe."""


@attrs.define
class PythonInfo:
    version: str
    executable: str
    platform: str
    implementation: str


@attrs.define
class TorchInfo:
    installed: bool
    version: Optional[str] = None
    cuda_available: Optional[bool] = None
    cuda_version: Optional[str] = None
    device_count: Optional[int] = None
    error: Optional[str] = None
    """Why torch could not be inspected, when it could not."""


@attrs.define
class GpuDevice:
    index: int
    name: str
    uuid: str
    memory_total_mib: float
    compute_capability: Optional[str] = None


@attrs.define
class GpuInfo:
    available: bool
    devices: list[GpuDevice] = attrs.Factory(list)
    driver_version: Optional[str] = None
    nvml_version: Optional[str] = None
    reason: Optional[str] = None
    """The exact reason there are no GPUs, e.g. 'NVML library not found'."""


@attrs.define
class PackageInfo:
    name: str
    purpose: str
    installed: bool
    version: Optional[str] = None


@attrs.define
class HostInfo:
    hostname: str
    cpu_model: str
    physical_cores: Optional[int]
    logical_cores: int
    memory_total_gib: float
    cpu_bf16: bool
    """The CPU has native bf16 (avx512_bf16 or AMX): bf16 autocast pays off on it."""


@attrs.define
class MatmulFigure:
    """One matmul throughput the deep environment check measured."""

    device: str
    name: str
    dtype: str
    size: int
    gflops: float


@attrs.define
class DeepCheckSummary:
    """The newest successful deep environment check of this state folder (its job's result)."""

    job_id: str
    measured_at: float
    matmul: list[MatmulFigure] = attrs.Factory(list)
    torch: Optional[str] = None
    import_s: Optional[float] = None
    """Seconds `import torch` took in the check's process."""


@attrs.define
class DoctorReport:
    """Answers `deepdive/doctor` and `deepdive doctor --json`."""

    deepdive_version: str
    python: PythonInfo
    host: HostInfo
    torch: TorchInfo
    gpus: GpuInfo
    packages: list[PackageInfo]
    state_dir: Optional[str] = None
    """Where this daemon keeps its SQLite state (job history)."""
    probed_at: float = 0.0
    deep_check: Optional[DeepCheckSummary] = None
    """The newest successful deep check (Deepdive: Run Deep Check / `deepdive doctor --deep`), if any."""
