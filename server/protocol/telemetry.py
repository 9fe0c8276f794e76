"""Where the telemetry hub listens (`deepdive/hub`) and what the status bar shows (`deepdive/telemetry/summary`)."""

from __future__ import annotations

from typing import Optional

import attrs


@attrs.define
class HubInfo:
    """Where the daemon's telemetry hub listens (127.0.0.1; the token is new at each daemon start)."""

    running: bool
    url: Optional[str] = None
    ingest_url: Optional[str] = None
    """What jobs get in DEEPDIVE_HUB: the /ingest websocket URL with the token."""
    stream_url: Optional[str] = None
    """The /stream websocket URL with the token, for dashboards."""
    token: Optional[str] = None
    reason: Optional[str] = None
    """Why the hub is not running, when it is not."""
    dashboard_url: Optional[str] = None
    """The dashboard page for a browser (http://127.0.0.1:PORT/?token=...): *Open Dashboard in Browser*."""


# --------------------------------------------------------------------------------------------
# deepdive/telemetry/summary
# --------------------------------------------------------------------------------------------


@attrs.define
class RunThroughput:
    """The newest throughput figure of a training run that reports to the hub."""

    run_id: str
    value: float
    unit: str
    """`samples/s`, or `steps/s` when the run does not report its batch size."""
    job_id: Optional[str] = None
    step: Optional[int] = None
    label: Optional[str] = None
    """What `value` is, with its window: `samples/s over the last 10 s, all ranks` (the engine's figure, the
    one the dashboard and the terminal show; deepdive.throughput)."""


@attrs.define
class TelemetrySummary:
    """The `deepdive/telemetry/summary` notification: what the status bar shows, about once a second."""

    t: float
    gpu_util: Optional[float] = None
    """Mean GPU utilisation over the GPUs, percent; null when there is no GPU (see `gpu_reason`)."""
    gpu_count: int = 0
    gpu_reason: Optional[str] = None
    """Why there is no GPU reading ("no NVIDIA GPU: NVML library not found")."""
    gpu_memory_used: Optional[float] = None
    """Fraction 0..1 of GPU memory in use, over all GPUs."""
    host_cpu: Optional[float] = None
    """Host CPU utilisation, percent."""
    runs: list[RunThroughput] = attrs.Factory(list)
    """Runs that reported in the last few seconds, newest first."""
