"""Recorded NVML readings (tests/fixtures/nvml/*.json) fed through the telemetry code on a machine without a GPU.

``make gpu-check`` records a real GPU's NVML calls into its output folder (``nvml-<gpu>.json``); copied
here, every test below runs on it too. ``synthetic-*.json`` is made by ``tests/telemetry/nvml_synthetic.py``
(a stand-in answering with pynvml's own ctypes structures) until real ones exist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest

from deepdive.telemetry.nvml_replay import RecordingNvml, ReplayNvml, differences, load_fixture, replay
from deepdive.telemetry.samplers import MachineSampler, NvmlSampler
from deepdive.telemetry.verdict import KINDS, verdict
from tests.telemetry import nvml_synthetic
from tests.telemetry.test_samplers import GPU_KEYS

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "nvml").glob("*.json"))


def test_the_fixtures_are_there_and_synthetic_ones_say_so_in_name_and_metadata():
    assert FIXTURES, "tests/fixtures/nvml/ holds no fixture"
    for path in FIXTURES:
        fixture = load_fixture(path)
        assert fixture["synthetic"] == path.name.startswith("synthetic"), path.name
        assert fixture["readings"] and fixture["calls"][0]["fn"] == "nvmlInit"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_the_recorded_calls_give_the_recorded_readings_through_the_sampler(path):
    fixture = load_fixture(path)
    readings, nvml = replay(fixture)
    assert differences(fixture["readings"], readings) == []
    assert nvml.misses == [], "the sampler makes calls this recording lacks: record it again with make gpu-check"
    for sample in readings:
        assert [set(gpu) for gpu in sample] == [GPU_KEYS] * len(sample)
        assert all(gpu["mem_total_mib"] and gpu["name"] for gpu in sample)
    for gpu in readings[1]:  # rates need two readings: measured from the second sample on, where there is NVLink
        if gpu["nvlink"] is not None:
            assert gpu["nvlink"]["tx_kib_s"] is not None and gpu["nvlink"]["tx_kib_s"] >= 0


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_machine_samples_of_the_recorded_gpu_survive_json_and_reach_a_verdict(path):
    fixture = load_fixture(path)
    machine = MachineSampler(nvml=ReplayNvml(fixture))  # type: ignore[arg-type]
    samples = [json.loads(json.dumps(machine.sample(), allow_nan=False)) for _ in fixture["readings"]]
    machine.close()
    assert all(s["gpu_reason"] is None and len(s["gpus"]) == len(fixture["readings"][0]) for s in samples)
    steps = [{"step": i, "step_time_s": 0.1, "data_wait_s": 0.001, "precision": "bf16"} for i in range(10)]
    decided = verdict(steps, samples)
    assert decided is not None and decided["kind"] in KINDS, decided
    json.dumps(decided, allow_nan=False)


def test_the_committed_synthetic_fixture_is_what_the_synthetic_recorder_writes():
    # regenerate with: python -m tests.telemetry.nvml_synthetic tests/fixtures/nvml/synthetic-h100.json
    committed = load_fixture(Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "synthetic-h100.json")
    assert nvml_synthetic.record()["calls"] == committed["calls"]


def test_every_kind_of_pynvml_answer_is_recorded_and_replayed():
    synthetic = nvml_synthetic.SyntheticNvml()
    recorder = RecordingNvml(synthetic)  # type: ignore[arg-type]
    handle = recorder.nvmlDeviceGetHandleByIndex(0)
    values = recorder.nvmlDeviceGetFieldValues(handle, [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF)])
    event = recorder.nvmlEventSetWait(recorder.nvmlEventSetCreate(), 0)
    with pytest.raises(pynvml.NVMLError_Timeout):
        recorder.nvmlEventSetWait(recorder.nvmlEventSetCreate(), 0)
    memory = recorder.nvmlDeviceGetMemoryInfo(handle)
    procs = recorder.nvmlDeviceGetComputeRunningProcesses(handle)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        recorder.nvmlDeviceGetHandleByIndex(3)
    fixture = recorder.fixture([[{}]], source={})

    stand_in = ReplayNvml(json.loads(json.dumps(fixture)))
    again = stand_in.nvmlDeviceGetHandleByIndex(0)
    got = stand_in.nvmlDeviceGetFieldValues(again, [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF)])
    assert (got[0].nvmlReturn, got[0].value.ullVal) == (values[0].nvmlReturn, values[0].value.ullVal)
    first = stand_in.nvmlEventSetWait(stand_in.nvmlEventSetCreate(), 0)
    assert (first.eventType, first.eventData) == (event.eventType, event.eventData)
    assert first.device.token == again.token, "the event names the device handle it came from"
    with pytest.raises(pynvml.NVMLError_Timeout):
        stand_in.nvmlEventSetWait(stand_in.nvmlEventSetCreate(), 0)
    assert (stand_in.nvmlDeviceGetMemoryInfo(again).used, stand_in.nvmlDeviceGetMemoryInfo(again).total) == (
        memory.used, memory.total)
    assert stand_in.nvmlDeviceGetComputeRunningProcesses(again)[0].usedGpuMemory == procs[0].usedGpuMemory
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        stand_in.nvmlDeviceGetHandleByIndex(3)
    # arguments never recorded: NotSupported, as a GPU without the counter answers; functions never called: absent
    with pytest.raises(pynvml.NVMLError_NotSupported):
        stand_in.nvmlDeviceGetHandleByIndex(7)
    assert len(stand_in.misses) == 1
    assert not hasattr(stand_in, "nvmlDeviceGetPowerUsage")
    # a machine whose NVML did not start: the sampler gives the same reason as there
    absent = {**fixture, "calls": [{"fn": "nvmlInit", "args": [], "error": pynvml.NVML_ERROR_LIBRARY_NOT_FOUND}]}
    sampler = NvmlSampler(ReplayNvml(absent))  # type: ignore[arg-type]
    assert not sampler.available and sampler.reason.startswith("no NVIDIA GPU: NVML library not found")


def test_a_file_that_is_not_a_fixture_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an NVML fixture"):
        load_fixture(path)
