"""Samplers: NVML against a test double of the pynvml module; host and process trees for real."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from deepdive.telemetry import samplers
from deepdive.telemetry.samplers import (
    HostSampler, MachineSampler, NvmlSampler, ProcessTreeSampler, check_interval, nvml_init,
)

GPU_KEYS = {
    "index", "name", "uuid", "util_gpu_pct", "util_mem_pct", "mem_used_mib", "mem_total_mib", "power_w",
    "power_limit_w", "temp_c", "clock_sm_mhz", "clock_mem_mhz", "throttle_reasons", "pcie_tx_kib_s",
    "pcie_rx_kib_s", "nvlink", "ecc_errors", "xid_events", "processes",
}


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # pynvml maps the code to its subclass, e.g. NVMLError_NotSupported


class FakeNvml:
    """A test double of the pynvml module: the functions the sampler calls, pynvml's exception classes.

    Each GPU is a dict of readings; a reading that is missing raises NVMLError_NotSupported, as a GPU
    lacking the counter does.
    """

    def __init__(self, gpus: list[dict[str, Any]], init_error: int | None = None) -> None:
        self.gpus = copy.deepcopy(gpus)  # reading events pops them: the module's GPU tables stay as written
        self.init_error = init_error
        self.inits = 0
        self.shutdowns = 0
        self.freed: list[int] = []
        for name in dir(pynvml):
            if name.startswith("NVMLError"):
                setattr(self, name, getattr(pynvml, name))

    def _read(self, handle: int, key: str) -> Any:
        if key not in self.gpus[handle]:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.gpus[handle][key]

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise _err(self.init_error)
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return self._read(h, "name").encode()

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self._read(h, "uuid")

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        gpu, mem = self._read(h, "util")
        return SimpleNamespace(gpu=gpu, memory=mem)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        used, total = self._read(h, "mem")
        return SimpleNamespace(used=used, total=total, free=total - used)

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self._read(h, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self._read(h, "limit_mw")

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._read(h, "temp")

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        return self._read(h, {pynvml.NVML_CLOCK_SM: "sm", pynvml.NVML_CLOCK_MEM: "memclk"}[kind])

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self._read(h, "reasons")

    def nvmlDeviceGetPcieThroughput(self, h: int, counter: int) -> int:
        return self._read(h, {pynvml.NVML_PCIE_UTIL_TX_BYTES: "pcie_tx", pynvml.NVML_PCIE_UTIL_RX_BYTES: "pcie_rx"}[counter])

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        links = self._read(h, "nvlink_states")
        if link >= len(links):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return links[link]

    def nvmlDeviceGetFieldValues(self, h: int, ids: list[tuple[int, int]]) -> list[Any]:
        counters = self._read(h, "nvlink_kib")  # [tx, rx], cumulative
        out = []
        for field, scope in ids:
            assert scope == 0xFFFFFFFF
            value = counters[{pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: 0,
                              pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: 1}[field]]
            out.append(SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(ullVal=value)))
        return out

    def nvmlDeviceGetTotalEccErrors(self, h: int, kind: int, counter: int) -> int:
        assert counter == pynvml.NVML_VOLATILE_ECC
        return self._read(h, "ecc")[kind]

    def nvmlEventSetCreate(self) -> int:
        self.sets = getattr(self, "sets", 999) + 1
        return self.sets

    def nvmlDeviceRegisterEvents(self, h: int, types: int, event_set: int) -> None:
        assert types == pynvml.nvmlEventTypeXidCriticalError
        self._read(h, "xids")
        self.gpus[h]["event_set"] = event_set

    def nvmlEventSetWait(self, event_set: int, timeout_ms: int) -> Any:
        assert timeout_ms == 0
        for gpu in self.gpus:
            if gpu.get("event_set") == event_set and gpu["xids"]:
                return SimpleNamespace(eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=gpu["xids"].pop(0))
        raise _err(pynvml.NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, event_set: int) -> None:
        self.freed.append(event_set)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._read(h, "procs")]


H100 = {
    "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-aaaa", "util": (97, 41), "mem": (70 * 2**30, 80 * 2**30),
    "power_mw": 650_000, "limit_mw": 700_000, "temp": 71, "sm": 1980, "memclk": 2619,
    "reasons": pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown,
    "pcie_tx": 12_000, "pcie_rx": 3_000, "nvlink_states": [1] * 18, "nvlink_kib": [1_000_000, 2_000_000],
    "ecc": [3, 0], "xids": [79], "procs": [(4242, 60 * 2**30), (4343, None)],
}
# A consumer card: no NVLink, no PCIe counters, no ECC, no events, no power limit.
GEFORCE = {
    "name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-bbbb", "util": (5, 1), "mem": (2**30, 12 * 2**30),
    "power_mw": 20_000, "temp": 40, "sm": 210, "memclk": 405, "reasons": pynvml.nvmlClocksEventReasonGpuIdle | 0x8000,  # plus a bit newer than this module
    "procs": [],
}


def test_nvml_readings_and_nulls_for_what_a_gpu_lacks():
    fake = FakeNvml([dict(H100), dict(GEFORCE)])
    s = NvmlSampler(fake)
    assert s.available and s.reason is None and fake.inits == 1
    first = s.sample()
    assert [set(g) for g in first] == [GPU_KEYS, GPU_KEYS]
    h, g = first
    assert (h["index"], h["name"], h["uuid"]) == (0, "NVIDIA H100 80GB HBM3", "GPU-aaaa")
    assert (h["util_gpu_pct"], h["util_mem_pct"]) == (97.0, 41.0)
    assert (h["mem_used_mib"], h["mem_total_mib"]) == (70 * 1024.0, 80 * 1024.0)
    assert (h["power_w"], h["power_limit_w"], h["temp_c"]) == (650.0, 700.0, 71.0)
    assert (h["clock_sm_mhz"], h["clock_mem_mhz"]) == (1980.0, 2619.0)
    assert h["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert (h["pcie_tx_kib_s"], h["pcie_rx_kib_s"]) == (12000.0, 3000.0)
    assert h["nvlink"] == {"links": 18, "tx_kib_s": None, "rx_kib_s": None}  # a rate needs two readings
    assert h["ecc_errors"] == {"volatile_corrected": 3, "volatile_uncorrected": 0}
    assert h["xid_events"] == [79]
    assert h["processes"] == [{"pid": 4242, "used_mib": 60 * 1024.0}, {"pid": 4343, "used_mib": None}]
    assert g["throttle_reasons"] == ["gpu_idle", "other_0x8000"]
    for key in ("nvlink", "pcie_tx_kib_s", "pcie_rx_kib_s", "ecc_errors", "xid_events", "power_limit_w"):
        assert g[key] is None, key
    assert g["processes"] == []

    fake.gpus[0]["nvlink_kib"] = [1_000_000 + 50_000, 2_000_000 + 10_000]
    time.sleep(0.05)
    h2 = s.sample()[0]
    assert h2["xid_events"] == []
    assert 50_000 / 1.0 < h2["nvlink"]["tx_kib_s"] < 50_000 / 0.04  # KiB over the ~0.05 s between samples
    assert h2["nvlink"]["rx_kib_s"] == pytest.approx(h2["nvlink"]["tx_kib_s"] / 5)
    json.dumps(h2)
    s.close()
    s.close()
    # both event sets freed: the GeForce's at init (it has no events), the H100's at close
    assert fake.shutdowns == 1 and sorted(fake.freed) == [1000, 1001] and s.sample() == []


def test_a_gpu_that_supports_nothing_gives_nulls_not_exceptions():
    fake = FakeNvml([{}])
    gpu = NvmlSampler(fake).sample()[0]
    assert gpu["index"] == 0
    assert all(gpu[k] is None for k in GPU_KEYS - {"index"}), gpu


@pytest.mark.parametrize("code, reason", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
     "no NVIDIA GPU: NVML library not found (libnvidia-ml.so is not installed; no NVIDIA driver)"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "no NVIDIA GPU: the NVIDIA driver is not loaded"),
    (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
     "NVIDIA driver/library version mismatch: reboot or reload the kernel module"),
    (pynvml.NVML_ERROR_NO_PERMISSION, "NVML: no permission to access the GPU devices"),
    (pynvml.NVML_ERROR_UNKNOWN, "NVML could not start: Unknown Error"),
])
def test_init_failures_give_the_exact_reason(code, reason):
    fake = FakeNvml([dict(H100)], init_error=code)
    s = NvmlSampler(fake)
    assert (s.available, s.reason, s.sample()) == (False, reason, [])
    assert nvml_init(fake) == (None, reason)
    s.close()
    assert fake.shutdowns == 0  # nothing to shut down: init never succeeded


def test_no_device_reason_and_shutdown():
    fake = FakeNvml([])
    s = NvmlSampler(fake)
    assert (s.available, s.reason) == (False, "NVIDIA driver present but it reports no GPU device")
    assert fake.shutdowns == 1


def test_doctor_uses_the_same_reasons(monkeypatch):
    from deepdive import doctor

    fake = FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    monkeypatch.setattr(doctor, "nvml_init", lambda: samplers.nvml_init(fake))
    info = doctor.gpu_info()
    assert (info.available, info.reason) == (False, "no NVIDIA GPU: the NVIDIA driver is not loaded")


def test_real_pynvml_here_gives_a_reason_or_gpus():
    s = NvmlSampler()
    try:
        if s.available:  # a GPU machine: the same code path against real NVML
            gpus = s.sample()
            assert gpus and all(set(g) == GPU_KEYS for g in gpus)
            assert all(g["mem_total_mib"] and g["mem_total_mib"] > 0 for g in gpus)
        else:
            assert s.reason and s.sample() == []
    finally:
        s.close()


@pytest.mark.parametrize("bad", [0.05, 61, -1, float("nan"), "1", True, None])
def test_check_interval_refuses(bad):
    with pytest.raises(ValueError, match="0.1"):
        check_interval(bad)


def test_check_interval_accepts():
    assert check_interval(0.1) == 0.1 and check_interval(1) == 1.0 and check_interval(60) == 60.0


def test_host_sampler_reads_this_machine():
    h = HostSampler()
    busy = time.perf_counter() + 0.15
    while time.perf_counter() < busy:
        pass
    s = h.sample()
    assert s["cpus"] >= 1 and 0 <= s["mem_used_mib"] <= s["mem_total_mib"]
    assert s["cpu_pct"] is not None and 0 <= s["cpu_pct"] <= 100
    assert s["per_cpu_pct"] is not None and len(s["per_cpu_pct"]) == s["cpus"]
    assert max(s["per_cpu_pct"]) > 30  # this loop kept one CPU busy
    for key in ("disk_read_b_s", "disk_write_b_s", "net_rx_b_s", "net_tx_b_s"):
        assert s[key] is None or s[key] >= 0
    assert s["load_1m"] is not None
    json.dumps(s)


CHILD = "import sys,time; b = bytearray(200 * 2**20); sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"


def test_process_tree_sees_a_child_and_ignores_vanished_roots():
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess,sys,time; p = subprocess.Popen([sys.executable, '-c', {CHILD!r}], "
                               "stdout=subprocess.PIPE); p.stdout.readline(); print('ready', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        trees = ProcessTreeSampler()
        first = trees.sample([parent.pid, 999_999_999])
        assert list(first) == [str(parent.pid)]
        job = first[str(parent.pid)]
        assert job["procs"] == 2 and job["cpu_pct"] is None
        assert job["rss_mib"] > 200  # the child's 200 MiB are in the tree
        time.sleep(0.05)
        assert trees.sample([parent.pid])[str(parent.pid)]["cpu_pct"] >= 0
    finally:
        for p in [*__import__("psutil").Process(parent.pid).children(recursive=True)]:
            p.kill()
        parent.kill()
        parent.wait(5)
    assert trees.sample([parent.pid]) == {}


def test_machine_sample_shape():
    fake = FakeNvml([dict(GEFORCE)])
    m = MachineSampler(nvml=fake)
    s = m.sample([1])  # pid 1 is always there
    assert set(s) == {"type", "t", "gpus", "gpu_reason", "host", "jobs"}
    assert s["type"] == "machine" and abs(s["t"] - time.time()) < 5
    assert len(s["gpus"]) == 1 and s["gpu_reason"] is None
    assert list(s["jobs"]) == ["1"]
    json.loads(json.dumps(s))
    m.close()
    assert fake.shutdowns == 1

    none = MachineSampler(nvml=FakeNvml([], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)).sample()
    assert none["gpus"] is None and none["gpu_reason"] == "no NVIDIA GPU: the NVIDIA driver is not loaded"
    assert MachineSampler(gpus=False).sample()["gpu_reason"] == "GPU sampling is turned off"


def test_a_machine_sample_is_cheap():
    m = MachineSampler(nvml=FakeNvml([dict(H100)] * 8))
    m.sample([1])
    n = 20
    start = time.perf_counter()
    for _ in range(n):
        m.sample([1])
    assert (time.perf_counter() - start) / n < 0.05  # well under a 100 ms interval


def test_process_trees_without_psutils_private_ppid_map(monkeypatch):
    import psutil

    fast = samplers._ppid_map()
    monkeypatch.setattr(psutil._psplatform, "ppid_map", lambda: 1 / 0)
    slow = samplers._ppid_map()
    assert slow.get(samplers.os.getpid()) == fast[samplers.os.getpid()] == samplers.os.getppid()
    assert ProcessTreeSampler().sample([samplers.os.getpid()])[str(samplers.os.getpid())]["procs"] >= 1
