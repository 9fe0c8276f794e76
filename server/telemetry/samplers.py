"""Machine samplers for the telemetry hub: GPUs through NVML, the host and each job's process tree.

Everything here is cheap and never imports torch: NVML goes through ``pynvml`` (the ctypes binding
shipped as ``nvidia-ml-py``) and the host through ``psutil``. A sampler keeps the counters it read
last time so that rates (disk, network, NVLink, process CPU) come from the
difference between two calls, never from a blocking sleep.

Absent hardware is reported as absent with the exact reason (:func:`nvml_init`), never as zeros.
Every per-GPU field a device does not support is ``None``; no NVML error escapes :meth:`NvmlSampler.sample`.

Shapes (JSON-ready; all keys always present)::

    machine sample (MachineSampler.sample):
      {"type": "machine", "t": float (time.time()),
       "gpus": [GPU, ...] | None,            # None when NVML cannot be used ...
       "gpu_reason": str | None,             # ... and then this says why
       "host": HOST,
       "jobs": {"<root pid>": JOB, ...}}     # keys are str (they survive a JSON round trip)

    GPU:  index, name, uuid, util_gpu_pct, util_mem_pct, mem_used_mib, mem_total_mib, power_w,
          power_limit_w, temp_c, clock_sm_mhz, clock_mem_mhz,
          throttle_reasons: [name, ...]      # e.g. ["sw_power_cap", "hw_thermal_slowdown"]
          pcie_tx_kib_s, pcie_rx_kib_s,
          nvlink: {"links": int, "tx_kib_s": float|None, "rx_kib_s": float|None} | None
                                             # summed over active links; None: no NVLink; rates
                                             # None on the first sample (they need two readings)
          ecc_errors: {"volatile_corrected": int|None, "volatile_uncorrected": int|None} | None
          xid_events: [int, ...] | None      # XID codes since the previous sample; None: unreadable
          processes: [{"pid": int, "used_mib": float|None}, ...] | None

    HOST: cpu_pct, per_cpu_pct ([float] | None), cpus, mem_used_mib (total - available),
          mem_total_mib, mem_pct, swap_used_mib, swap_total_mib, disk_read_b_s, disk_write_b_s,
          net_rx_b_s, net_tx_b_s (all interfaces but loopback), load_1m, load_5m, load_15m
          (rates and cpu_pct are None on a sampler's first call)

    JOB:  {"cpu_pct": float|None (100 = one core; None on the first sight of the tree),
           "rss_mib": float (sum over the tree: shared pages count once per process), "procs": int}
"""

from __future__ import annotations

import math
import os
import time
from types import ModuleType
from typing import Any, Callable, Iterable, Optional

import psutil

MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 60.0
DEFAULT_INTERVAL_S = 1.0

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


def check_interval(seconds: Any) -> float:
    """Validate a sampling interval.

    Args:
        seconds (float): the wanted interval.

    Returns:
        float: ``seconds`` as a float.

    Raises:
        ValueError: when it is not a number between 0.1 and 60 seconds.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ValueError(f"sampling interval must be a number of seconds (0.1 to 60), got {seconds!r}")
    if not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise ValueError(
            f"sampling interval {seconds} s is out of range: use {MIN_INTERVAL_S} to {MAX_INTERVAL_S:.0f} s "
            f"(default {DEFAULT_INTERVAL_S:.0f} s)"
        )
    return float(seconds)


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


def _mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def _busy_total(times: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds of a psutil cpu_times tuple, as psutil.cpu_percent counts them."""
    total = sum(times)
    # Linux counts guest time inside user/nice as well: do not count it twice.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def _cpu_pct(prev: Any, cur: Any) -> Optional[float]:
    busy0, total0 = _busy_total(prev)
    busy1, total1 = _busy_total(cur)
    if total1 <= total0:
        return None
    return round(min(100.0, max(0.0, (busy1 - busy0) / (total1 - total0) * 100.0)), 1)


class HostSampler:
    """Host CPU, memory, swap, disk and network I/O and load, from psutil counters between calls.

    Args:
        per_cpu (bool): also report each CPU's busy percentage.
    """

    def __init__(self, per_cpu: bool = True) -> None:
        self.per_cpu = per_cpu
        self._cpu = psutil.cpu_times()
        self._cpus = psutil.cpu_times(percpu=True) if per_cpu else None
        self._t = time.monotonic()
        self._disk = self._disk_counters()
        self._net = self._net_counters()
        self._first = True

    @staticmethod
    def _disk_counters() -> Optional[tuple[int, int]]:
        try:
            c = psutil.disk_io_counters()
        except (OSError, RuntimeError):
            return None
        return (c.read_bytes, c.write_bytes) if c is not None else None

    @staticmethod
    def _net_counters() -> Optional[tuple[int, int]]:
        try:
            nics = psutil.net_io_counters(pernic=True)
        except (OSError, RuntimeError):
            return None
        rx = sum(c.bytes_recv for name, c in nics.items() if name != "lo")
        tx = sum(c.bytes_sent for name, c in nics.items() if name != "lo")
        return rx, tx

    def sample(self) -> dict[str, Any]:
        """Read the host once.

        Returns:
            dict: the HOST shape of the module docstring; CPU percentages and rates cover the time
            since the previous call (or since construction for the first one).
        """
        now = time.monotonic()
        dt = now - self._t
        cpu = psutil.cpu_times()
        cpus = psutil.cpu_times(percpu=True) if self.per_cpu else None
        disk = self._disk_counters()
        net = self._net_counters()
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        try:
            load = os.getloadavg()
        except OSError:
            load = (None, None, None)

        def rate(cur: Optional[tuple[int, int]], prev: Optional[tuple[int, int]], k: int) -> Optional[float]:
            if cur is None or prev is None or dt <= 0:
                return None
            return round(max(0, cur[k] - prev[k]) / dt, 1)

        per_cpu = None
        if cpus is not None and self._cpus is not None and len(cpus) == len(self._cpus):
            values = [_cpu_pct(a, b) for a, b in zip(self._cpus, cpus)]
            per_cpu = values if all(v is not None for v in values) else None
        out = {
            "cpu_pct": _cpu_pct(self._cpu, cpu),
            "per_cpu_pct": per_cpu,
            "cpus": psutil.cpu_count() or len(cpus or []) or None,
            "mem_used_mib": _mib(vm.total - vm.available),
            "mem_total_mib": _mib(vm.total),
            "mem_pct": round((vm.total - vm.available) / vm.total * 100.0, 1) if vm.total else None,
            "swap_used_mib": _mib(sw.used),
            "swap_total_mib": _mib(sw.total),
            "disk_read_b_s": rate(disk, self._disk, 0),
            "disk_write_b_s": rate(disk, self._disk, 1),
            "net_rx_b_s": rate(net, self._net, 0),
            "net_tx_b_s": rate(net, self._net, 1),
            "load_1m": load[0], "load_5m": load[1], "load_15m": load[2],
        }
        self._cpu, self._cpus, self._t, self._disk, self._net = cpu, cpus, now, disk, net
        return out


def _ppid_map() -> dict[int, int]:
    """``{pid: parent pid}`` of every process, in one scan of the process table."""
    fast = getattr(getattr(psutil, "_psplatform", None), "ppid_map", None)  # what Process.children uses
    if fast is not None:
        try:
            return dict(fast())
        except Exception:  # a private helper: fall back to the public API on any surprise
            pass
    out = {}
    for proc in psutil.process_iter(["ppid"]):
        if proc.info.get("ppid") is not None:
            out[proc.pid] = proc.info["ppid"]
    return out


class ProcessTreeSampler:
    """CPU and RSS of process trees (a root and its children, recursively), e.g. each job's group leader.

    CPU % is the CPU time the tree's processes used between two calls over the wall time between
    them (100 = one core). Processes that vanish between or during calls are ignored; a process
    born since the previous call counts all its CPU time. One scan of the process table per call
    serves every root.
    """

    def __init__(self) -> None:
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create_time) -> user+system seconds
        self._t: Optional[float] = None
        self._t_wall: Optional[float] = None
        self._seen_roots: set[int] = set()

    def sample(self, roots: Iterable[int]) -> dict[str, dict[str, Any]]:
        """Read each root's tree once.

        Args:
            roots (Iterable[int]): the root pids (process-group leaders of the jobs).

        Returns:
            dict[str, dict]: ``{str(root pid): {"cpu_pct", "rss_mib", "procs"}}`` for the roots
            still alive; ``cpu_pct`` is None the first time a root is seen.
        """
        now = time.monotonic()
        wall = time.time()
        dt = now - self._t if self._t is not None else None
        roots = list(dict.fromkeys(int(r) for r in roots))
        children: dict[int, list[int]] = {}
        if roots:
            for pid, ppid in _ppid_map().items():
                if ppid != pid:
                    children.setdefault(ppid, []).append(pid)
        cpu_now: dict[tuple[int, float], float] = {}
        out: dict[str, dict[str, Any]] = {}
        for root in roots:
            tree, todo, seen = [], [root], {root}
            while todo:
                pid = todo.pop()
                tree.append(pid)
                for child in children.get(pid, ()):
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            rss = 0
            used = 0.0
            count = 0
            for pid in tree:
                try:
                    p = psutil.Process(pid)
                    with p.oneshot():
                        key = (p.pid, p.create_time())
                        times = p.cpu_times()
                        mem = p.memory_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                seconds = times.user + times.system
                cpu_now[key] = seconds
                count += 1
                rss += mem.rss
                if key in self._cpu:
                    used += max(0.0, seconds - self._cpu[key])
                elif self._t_wall is not None and key[1] >= self._t_wall:
                    used += seconds  # born since the previous call
            if not count:
                continue
            first = root not in self._seen_roots
            cpu_pct = None if first or not dt or dt <= 0 else round(used / dt * 100.0, 1)
            out[str(root)] = {"cpu_pct": cpu_pct, "rss_mib": _mib(rss), "procs": count}
        self._cpu = cpu_now
        self._t, self._t_wall = now, wall
        self._seen_roots = {int(k) for k in out}
        return out


class MachineSampler:
    """One machine sample: GPUs (or why there are none), the host and the jobs' process trees.

    Args:
        nvml (module | None): passed to :class:`NvmlSampler` (None: ``pynvml``).
        per_cpu (bool): include per-CPU percentages in the host readings.
        gpus (bool): False skips NVML altogether (``gpu_reason`` then says so).
    """

    def __init__(self, nvml: Optional[ModuleType] = None, per_cpu: bool = True, gpus: bool = True) -> None:
        self.nvml: Optional[NvmlSampler] = NvmlSampler(nvml) if gpus else None
        self.host = HostSampler(per_cpu=per_cpu)
        self.trees = ProcessTreeSampler()

    @property
    def gpu_reason(self) -> Optional[str]:
        """str | None: why there are no GPU readings (None when there are)."""
        if self.nvml is None:
            return "GPU sampling is turned off"
        return None if self.nvml.available else self.nvml.reason

    def sample(self, job_pids: Iterable[int] = ()) -> dict[str, Any]:
        """Read everything once (shape in the module docstring).

        Args:
            job_pids (Iterable[int]): root pids of the running jobs.

        Returns:
            dict: the machine sample.
        """
        t = time.time()
        gpus = self.nvml.sample() if self.nvml is not None and self.nvml.available else None
        return {
            "type": "machine",
            "t": t,
            "gpus": gpus,
            "gpu_reason": self.gpu_reason,
            "host": self.host.sample(),
            "jobs": self.trees.sample(job_pids),
        }

    def close(self) -> None:
        """Shut NVML down."""
        if self.nvml is not None:
            self.nvml.close()
