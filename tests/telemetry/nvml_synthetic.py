"""A SYNTHETIC NVML: a stand-in for the ``pynvml`` module that answers with pynvml's own ctypes structures.

Not real readings. It exists (a) to test that :class:`deepdive.telemetry.nvml_replay.RecordingNvml`
records every kind of answer pynvml gives (structures, unions in arrays, device pointers, event sets,
friendly objects, NVML errors) and (b) to write ``tests/fixtures/nvml/synthetic-h100.json`` until a
fixture of a real GPU, recorded by ``make gpu-check``, sits beside it::

    python -m tests.telemetry.nvml_synthetic tests/fixtures/nvml/synthetic-h100.json

The figures imitate one busy H100 SXM under a training job (18 NVLink links, ECC on, PCIe counters, a
compute process); the readings move between samples (utilisation, power, NVLink counters) so that rates
are measured.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from pathlib import Path
from typing import Any

import pynvml

from deepdive.telemetry.nvml_replay import RecordingNvml
from deepdive.telemetry.samplers import NvmlSampler

GIB = 2**30
INTERVAL_S = 0.05


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class SyntheticNvml:
    """The pynvml functions the sampler calls, answering like one H100 would; ``tick()`` advances its clock."""

    def __init__(self) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(pynvml, name))
        self._device = ctypes.cast(ctypes.c_void_p(0x7F00_0000_1000), pynvml.c_nvmlDevice_t)
        self._events = ctypes.cast(ctypes.c_void_p(0x7F00_0000_2000), pynvml.c_nvmlEventSet_t)
        self._tick = 0
        self._xids = [79]  # one "GPU has fallen off the bus" event, reported once

    def tick(self) -> None:
        self._tick += 1

    def nvmlInit(self) -> None:
        return None

    def nvmlShutdown(self) -> None:
        return None

    def nvmlSystemGetDriverVersion(self) -> str:
        return "synthetic"

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if index != 0:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._device

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return "NVIDIA H100 80GB HBM3 (synthetic)"

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return "GPU-00000000-0000-0000-0000-5yn7he71c000"

    def nvmlDeviceGetNvLinkState(self, handle: Any, link: int) -> int:
        return pynvml.NVML_FEATURE_ENABLED

    def nvmlEventSetCreate(self) -> Any:
        return self._events

    def nvmlDeviceRegisterEvents(self, handle: Any, types: int, event_set: Any) -> None:
        return None

    def nvmlEventSetFree(self, event_set: Any) -> None:
        return None

    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any:
        if not self._xids:
            raise _error(pynvml.NVML_ERROR_TIMEOUT)
        data = pynvml.c_nvmlEventData_t()
        data.device = self._device
        data.eventType = pynvml.nvmlEventTypeXidCriticalError
        data.eventData = self._xids.pop(0)
        return data

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        return pynvml.c_nvmlUtilization_t(gpu=96 + self._tick % 3, memory=38 + self._tick)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        used = 61 * GIB + self._tick * 2**20
        return pynvml.c_nvmlMemory_t(total=80 * GIB, free=80 * GIB - used, used=used)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return 612_000 + 1_500 * self._tick

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return 700_000

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        return 64 + self._tick

    def nvmlDeviceGetClockInfo(self, handle: Any, kind: int) -> int:
        return {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return pynvml.nvmlClocksEventReasonSwPowerCap if self._tick % 2 else 0

    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int:
        return 14_000 if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else 3_100

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: list[tuple[int, int]]) -> Any:
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for i, (field, scope) in enumerate(field_ids):
            values[i].fieldId, values[i].scopeId = field, scope
            values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            values[i].nvmlReturn = pynvml.NVML_SUCCESS
            per_tick = 900_000 if field == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX else 850_000
            values[i].value.ullVal = 10**9 + per_tick * self._tick
        return values

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, kind: int, counter: int) -> int:
        return 0

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        return [pynvml.nvmlFriendlyObject({"pid": 41_337, "usedGpuMemory": 60 * GIB, "gpuInstanceId": 0xFFFFFFFF,
                                           "computeInstanceId": 0xFFFFFFFF})]


def record(samples: int = 4) -> dict[str, Any]:
    """The synthetic GPU's readings as a fixture, recorded the way ``make gpu-check`` records a real one."""
    synthetic = SyntheticNvml()
    recorder = RecordingNvml(synthetic)  # type: ignore[arg-type]
    sampler = NvmlSampler(recorder)  # type: ignore[arg-type]
    readings = []
    for _ in range(samples):
        readings.append(sampler.sample())
        synthetic.tick()
        time.sleep(INTERVAL_S)
    sampler.close()
    source = {"gpus": [readings[0][0]["name"]], "driver": "synthetic", "nvidia_ml_py": "synthetic",
              "recorded_at": "synthetic", "recorded_by": "python -m tests.telemetry.nvml_synthetic (a stand-in, "
              "not a GPU: replace with a fixture from make gpu-check)", "samples": samples, "interval_s": INTERVAL_S}
    return recorder.fixture(readings, source=source, synthetic=True)


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(record(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
