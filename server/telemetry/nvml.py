"""GPU readings through NVML: :func:`nvml_init` (start NVML, or say exactly why it cannot be used)
and :class:`NvmlSampler` (one reading per GPU, the GPU shape of :mod:`deepdive.telemetry.samplers`).

NVML goes through ``pynvml`` (the ctypes binding shipped as ``nvidia-ml-py``) or a test double of it
(:mod:`deepdive.telemetry.nvml_replay`); the constants of ``nvml.h`` it needs are written here, so a
double needs only the functions. Every field a device does not support is ``None``; no NVML error
escapes :meth:`NvmlSampler.sample`. The host and process samplers, which need no GPU, are in
:mod:`deepdive.telemetry.samplers`.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Callable, Optional


NO_DEVICE_REASON = "NVIDIA driver present but it reports no GPU device"

# Clock event (throttle) reason bits, from nvml.h (nvmlClocksEventReason*/nvmlClocksThrottleReason*).
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x0001, "gpu_idle"),
    (0x0002, "applications_clocks_setting"),
    (0x0004, "sw_power_cap"),
    (0x0008, "hw_slowdown"),
    (0x0010, "sync_boost"),
    (0x0020, "sw_thermal_slowdown"),
    (0x0040, "hw_thermal_slowdown"),
    (0x0080, "hw_power_brake_slowdown"),
    (0x0100, "display_clock_setting"),
    (0x0200, "board_limit"),
    (0x0400, "reliability"),
)

# NVML constants used here (stable values of nvml.h), so a test double needs only the functions.
_TEMPERATURE_GPU = 0
_CLOCK_SM = 1
_CLOCK_MEM = 2
_PCIE_TX = 0
_PCIE_RX = 1
_ECC_CORRECTED = 0
_ECC_UNCORRECTED = 1
_ECC_VOLATILE = 0
_FEATURE_ENABLED = 1
_NVLINK_MAX_LINKS = 18  # NVLink 4 (H100/H200) has 18 links
_FI_NVLINK_TX_DATA = 138  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: cumulative KiB
_FI_NVLINK_RX_DATA = 139
_FI_SCOPE_ALL_LINKS = 0xFFFFFFFF  # scopeId UINT_MAX: summed over all links
_EVENT_XID = 0x0008  # nvmlEventTypeXidCriticalError
_MAX_XID_PER_SAMPLE = 64


def nvml_init(nvml: Optional[ModuleType] = None) -> tuple[Optional[ModuleType], Optional[str]]:
    """Start NVML, or say exactly why it cannot be used.

    Args:
        nvml (module | None): the ``pynvml`` module or a test double of it; None imports ``pynvml``.

    Returns:
        tuple: ``(module, None)`` once ``nvmlInit`` succeeded (the caller owns one ``nvmlShutdown``),
        or ``(None, reason)`` with a one-line reason that names the fix.
    """
    if nvml is None:
        try:
            import pynvml as nvml  # type: ignore[no-redef]
        except ImportError:
            return None, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except nvml.NVMLError_LibraryNotFound:
        return None, "no NVIDIA GPU: NVML library not found (libnvidia-ml.so is not installed; no NVIDIA driver)"
    except nvml.NVMLError_DriverNotLoaded:
        return None, "no NVIDIA GPU: the NVIDIA driver is not loaded"
    except nvml.NVMLError_LibRmVersionMismatch:
        return None, "NVIDIA driver/library version mismatch: reboot or reload the kernel module"
    except nvml.NVMLError_NoPermission:
        return None, "NVML: no permission to access the GPU devices"
    except nvml.NVMLError as exc:
        return None, f"NVML could not start: {exc}"
    return nvml, None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSampler:
    """Per-GPU readings through NVML.

    Args:
        nvml (module | None): the ``pynvml`` module (default) or a test double with the same
            functions and exception classes.

    Attributes:
        available (bool): True when NVML started and reports at least one GPU.
        reason (str | None): why there are no GPU readings, when ``available`` is False.
    """

    def __init__(self, nvml: Optional[ModuleType] = None) -> None:
        self.available = False
        self.reason: Optional[str] = None
        self._handles: list[Any] = []
        self._static: list[dict[str, Any]] = []
        self._nvlinks: list[int] = []
        self._nvlink_prev: list[Optional[tuple[float, float, float]]] = []
        self._events: list[Any] = []
        self._nvml, self.reason = nvml_init(nvml)
        if self._nvml is None:
            return
        n = self._nvml
        try:
            count = n.nvmlDeviceGetCount()
            for index in range(count):
                handle = n.nvmlDeviceGetHandleByIndex(index)
                self._handles.append(handle)
                self._static.append({
                    "index": index,
                    "name": self._get(lambda: _text(n.nvmlDeviceGetName(handle))),
                    "uuid": self._get(lambda: _text(n.nvmlDeviceGetUUID(handle))),
                })
                self._nvlinks.append(self._count_nvlinks(handle))
                self._nvlink_prev.append(None)
                self._events.append(self._xid_event_set(handle))
        except n.NVMLError as exc:
            self.reason = f"NVML query failed: {exc}"
            self.close()
            return
        if not self._handles:
            self.reason = NO_DEVICE_REASON
            self.close()
            return
        self.available = True

    # -- helpers ---------------------------------------------------------------------------------

    def _get(self, read: Callable[[], Any]) -> Any:
        """One guarded query: None when the GPU does not support it (or any other NVML error)."""
        try:
            return read()
        except self._nvml.NVMLError:  # NotSupported, NoPermission, GpuIsLost, FunctionNotFound, ...
            return None
        except (AttributeError, TypeError):  # a binding too old to have the function
            return None

    def _count_nvlinks(self, handle: Any) -> int:
        n = self._nvml
        active = 0
        for link in range(_NVLINK_MAX_LINKS):
            try:
                state = n.nvmlDeviceGetNvLinkState(handle, link)
            except n.NVMLError_NotSupported:
                break  # no NVLink on this GPU, or no more links
            except (n.NVMLError, AttributeError):
                continue
            if state == _FEATURE_ENABLED:
                active += 1
        return active

    def _xid_event_set(self, handle: Any) -> Any:
        n = self._nvml
        try:
            event_set = n.nvmlEventSetCreate()
        except (n.NVMLError, AttributeError):
            return None
        try:
            n.nvmlDeviceRegisterEvents(handle, _EVENT_XID, event_set)
        except (n.NVMLError, AttributeError):
            self._free_events(event_set)
            return None
        return event_set

    def _free_events(self, event_set: Any) -> None:
        try:
            self._nvml.nvmlEventSetFree(event_set)
        except (self._nvml.NVMLError, AttributeError):
            pass

    def _throttle(self, handle: Any) -> Optional[list[str]]:
        n = self._nvml
        mask = None
        for fn in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            if hasattr(n, fn):
                mask = self._get(lambda: getattr(n, fn)(handle))
                if mask is not None:
                    break
        if mask is None:
            return None
        names = [name for bit, name in THROTTLE_REASONS if mask & bit]
        known = sum(bit for bit, _ in THROTTLE_REASONS)
        if mask & ~known:
            names.append(f"other_0x{mask & ~known:x}")
        return names

    def _nvlink(self, i: int, handle: Any, now: float) -> Optional[dict[str, Any]]:
        if not self._nvlinks[i]:
            return None
        n = self._nvml
        out: dict[str, Any] = {"links": self._nvlinks[i], "tx_kib_s": None, "rx_kib_s": None}
        values = self._get(lambda: n.nvmlDeviceGetFieldValues(
            handle, [(_FI_NVLINK_TX_DATA, _FI_SCOPE_ALL_LINKS), (_FI_NVLINK_RX_DATA, _FI_SCOPE_ALL_LINKS)]))
        if values is None or len(values) != 2 or any(getattr(v, "nvmlReturn", 0) != 0 for v in values):
            self._nvlink_prev[i] = None
            return out
        tx, rx = (float(v.value.ullVal) for v in values)
        prev = self._nvlink_prev[i]
        self._nvlink_prev[i] = (now, tx, rx)
        if prev is not None and now > prev[0]:
            dt = now - prev[0]
            out["tx_kib_s"] = max(0.0, tx - prev[1]) / dt
            out["rx_kib_s"] = max(0.0, rx - prev[2]) / dt
        return out

    def _ecc(self, handle: Any) -> Optional[dict[str, Optional[int]]]:
        n = self._nvml
        corrected = self._get(lambda: int(n.nvmlDeviceGetTotalEccErrors(handle, _ECC_CORRECTED, _ECC_VOLATILE)))
        uncorrected = self._get(lambda: int(n.nvmlDeviceGetTotalEccErrors(handle, _ECC_UNCORRECTED, _ECC_VOLATILE)))
        if corrected is None and uncorrected is None:
            return None
        return {"volatile_corrected": corrected, "volatile_uncorrected": uncorrected}

    def _xids(self, i: int) -> Optional[list[int]]:
        event_set = self._events[i]
        if event_set is None:
            return None
        n = self._nvml
        xids: list[int] = []
        for _ in range(_MAX_XID_PER_SAMPLE):
            try:
                data = n.nvmlEventSetWait(event_set, 0)
            except n.NVMLError_Timeout:
                break
            except n.NVMLError:
                return xids or None
            if data.eventType & _EVENT_XID:
                xids.append(int(data.eventData))
        return xids

    def _processes(self, handle: Any) -> Optional[list[dict[str, Any]]]:
        procs = self._get(lambda: self._nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        if procs is None:
            return None
        out = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append({"pid": int(p.pid), "used_mib": round(used / 2**20, 1) if isinstance(used, int) else None})
        return out

    # -- public ----------------------------------------------------------------------------------

    def sample(self) -> list[dict[str, Any]]:
        """Read every GPU once.

        Returns:
            list[dict]: one dict per GPU (shape in the module docstring); ``[]`` when not available.
        """
        if not self.available:
            return []
        n = self._nvml
        now = time.monotonic()
        gpus = []
        for i, h in enumerate(self._handles):
            util = self._get(lambda: n.nvmlDeviceGetUtilizationRates(h))
            mem = self._get(lambda: n.nvmlDeviceGetMemoryInfo(h))
            power = self._get(lambda: n.nvmlDeviceGetPowerUsage(h))
            limit = self._get(lambda: n.nvmlDeviceGetEnforcedPowerLimit(h))
            pcie_tx = self._get(lambda: n.nvmlDeviceGetPcieThroughput(h, _PCIE_TX))
            pcie_rx = self._get(lambda: n.nvmlDeviceGetPcieThroughput(h, _PCIE_RX))
            gpus.append({
                **self._static[i],
                "util_gpu_pct": float(util.gpu) if util is not None else None,
                "util_mem_pct": float(util.memory) if util is not None else None,
                "mem_used_mib": round(mem.used / 2**20, 1) if mem is not None else None,
                "mem_total_mib": round(mem.total / 2**20, 1) if mem is not None else None,
                "power_w": power / 1000.0 if power is not None else None,
                "power_limit_w": limit / 1000.0 if limit is not None else None,
                "temp_c": self._get(lambda: float(n.nvmlDeviceGetTemperature(h, _TEMPERATURE_GPU))),
                "clock_sm_mhz": self._get(lambda: float(n.nvmlDeviceGetClockInfo(h, _CLOCK_SM))),
                "clock_mem_mhz": self._get(lambda: float(n.nvmlDeviceGetClockInfo(h, _CLOCK_MEM))),
                "throttle_reasons": self._throttle(h),
                "pcie_tx_kib_s": float(pcie_tx) if pcie_tx is not None else None,
                "pcie_rx_kib_s": float(pcie_rx) if pcie_rx is not None else None,
                "nvlink": self._nvlink(i, h, now),
                "ecc_errors": self._ecc(h),
                "xid_events": self._xids(i),
                "processes": self._processes(h),
            })
        return gpus

    def close(self) -> None:
        """Free the event sets and shut NVML down (once; later calls do nothing)."""
        if self._nvml is None:
            return
        for event_set in self._events:
            if event_set is not None:
                self._free_events(event_set)
        self._events = [None] * len(self._events)
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass
        self._nvml = None
        self.available = False
        if self.reason is None:
            self.reason = "NVML sampler closed"
