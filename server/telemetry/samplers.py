"""Machine samplers for the telemetry hub: GPUs through NVML, the host and each job's process tree.

Everything here is cheap and never imports torch: NVML goes through ``pynvml`` (the ctypes binding
shipped as ``nvidia-ml-py``) and the host through ``psutil``. A sampler keeps the counters it read
last time so that rates (disk, network, NVLink, process CPU) come from the
difference between two calls, never from a blocking sleep.

Absent hardware is reported as absent with the exact reason (:func:`nvml_init`), never as zeros.
Every per-GPU field a device does not support is ``None``; no NVML error escapes :meth:`NvmlSampler.sample`.
The NVML side (:func:`nvml_init`, :class:`NvmlSampler`) is in :mod:`deepdive.telemetry.nvml`; this
module holds the host and process-tree samplers and :class:`MachineSampler`, which joins them, and
re-exports the NVML names callers import from here.

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
from typing import Any, Iterable, Optional

import psutil

from deepdive.telemetry.nvml import NO_DEVICE_REASON, THROTTLE_REASONS, NvmlSampler, nvml_init

__all__ = ["DEFAULT_INTERVAL_S", "MAX_INTERVAL_S", "MIN_INTERVAL_S", "NO_DEVICE_REASON", "THROTTLE_REASONS",
           "HostSampler", "MachineSampler", "NvmlSampler", "ProcessTreeSampler", "check_interval", "nvml_init"]

MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 60.0
DEFAULT_INTERVAL_S = 1.0


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
