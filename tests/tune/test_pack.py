"""``--pack`` and ``CUDA_VISIBLE_DEVICES`` with GPU UUIDs: resolution, one-line errors, capacity with the CUDA context.

No GPU here: NVML is a stand-in (:class:`FakeNvml`, GPUs with UUIDs, memory totals, MIG instances and
per-process usage) put in place of the ``pynvml`` module; everything above it is the real code: the
resolver, the worker pool, real studies with real worker processes, the CLI, the GPU check's figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pynvml
import pytest

from deepdive.tune.config import StudyConfig
from deepdive.tune.coordinator import Coordinator
from deepdive.tune.errors import TuneError
from deepdive.tune.gpus import parse_visible, process_gpu_mib, visible_gpus
from deepdive.tune.pool import ASSUMED_CONTEXT_MIB, PACK_SHARE, WorkerPool, gpu_total_mib, gpus, pack_capacity

SCRIPTS = Path(__file__).resolve().parent / "scripts"
GIB = 2**30
MIB = 2**20
UUID_A = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
UUID_B = "GPU-8932a001-0000-4000-8000-000000000002"  # shares "GPU-8932" with A
UUID_C = "GPU-5c1e0b2d-1111-4222-8333-444455556666"  # in MIG mode
MIG_C0 = "MIG-7f3a9e10-aaaa-5bbb-8ccc-dddddddddddd"
MIG_C1 = "MIG-0b12c4d5-eeee-5fff-8000-111111111111"


class FakeNvml:
    """The ``pynvml`` functions the tuner calls, answering for three GPUs: A and B (80 GiB H100s whose
    UUIDs share a prefix) and C (a 40 GiB A100 in MIG mode with two 1g.10gb instances).
    ``procs[uuid]`` lists ``(pid, used bytes or None)`` per device. ``missing``: NVML cannot start."""

    def __init__(self, missing: bool = False) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(pynvml, name))
        self.missing = missing
        self.gpus = [
            {"uuid": UUID_A, "name": "NVIDIA H100 80GB HBM3", "total": 80 * GIB, "mig": []},
            {"uuid": UUID_B, "name": "NVIDIA H100 80GB HBM3", "total": 80 * GIB, "mig": []},
            {"uuid": UUID_C, "name": "NVIDIA A100-SXM4-40GB", "total": 40 * GIB,
             "mig": [{"uuid": MIG_C0, "gi": 7, "ci": 0, "total": 9728 * MIB},
                     {"uuid": MIG_C1, "gi": 8, "ci": 0, "total": 9728 * MIB}]},
        ]
        self.procs: dict[str, list[tuple[int, Optional[int]]]] = {}
        self.open = 0

    def nvmlInit(self) -> None:
        if self.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: dict) -> str:
        return handle["uuid"]

    def nvmlDeviceGetName(self, handle: dict) -> str:
        return handle.get("name", "NVIDIA A100-SXM4-40GB MIG 1g.10gb")

    def nvmlDeviceGetMemoryInfo(self, handle: dict) -> Any:
        return SimpleNamespace(total=handle["total"], used=0, free=handle["total"])

    def nvmlDeviceGetMigMode(self, handle: dict) -> list[int]:
        if "mig" not in handle:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [1, 1] if handle["mig"] else [0, 0]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: dict) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: dict, index: int) -> dict:
        if index >= len(handle["mig"]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return handle["mig"][index]

    def nvmlDeviceGetGpuInstanceId(self, handle: dict) -> int:
        return handle["gi"]

    def nvmlDeviceGetComputeInstanceId(self, handle: dict) -> int:
        return handle["ci"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: dict) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.procs.get(handle["uuid"], [])]


@pytest.fixture
def nvml(monkeypatch) -> FakeNvml:
    """The stand-in NVML as ``pynvml`` for this process (worker processes import the real one: no GPU)."""
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_cuda_visible_devices_is_read_as_cuda_reads_it():
    assert parse_visible("0,2,-1,1") == ["0", "2"]  # CUDA's own example: -1 hides what follows
    assert parse_visible("") == [] and parse_visible("-1") == []
    assert parse_visible(f" {UUID_A[:12]} , 1") == [UUID_A[:12], "1"]


def test_uuids_prefixes_indices_and_mig_instances_resolve_to_their_gpu(nvml):
    found = visible_gpus(f"{UUID_A},GPU-8932a,{MIG_C1[:12]},MIG-{UUID_C}/7/0")
    assert [g.uuid for g in found] == [UUID_A, UUID_B, MIG_C1, MIG_C0]
    assert [g.entry for g in found] == [UUID_A, "GPU-8932a", MIG_C1[:12], f"MIG-{UUID_C}/7/0"]  # as written
    assert [g.total_mib for g in found] == [81920.0, 81920.0, 9728.0, 9728.0]
    assert [g.mig for g in found] == [False, False, True, True] and found[2].index == 2
    assert [g.label for g in found] == ["GPU-8932f937…", "GPU-8932a", "MIG-0b12c4d5", "MIG-GPU-5c1e0b2d…/7/0"]
    by_index = visible_gpus("1,0")
    assert [(g.entry, g.uuid, g.label) for g in by_index] == [("1", UUID_B, "GPU 1"), ("0", UUID_A, "GPU 0")]
    assert [g.entry for g in visible_gpus(None)] == ["0", "1", "2"]  # unset: every GPU, by index
    assert nvml.open == 0  # every call shut NVML down again


@pytest.mark.parametrize("value, words", [
    ("GPU-deadbeef", "'GPU-deadbeef' matches no GPU on this machine (0: GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"),
    ("GPU-8932", "'GPU-8932' is the start of 2 UUIDs"),
    (f"0,{UUID_A[:16]}", "names GPU-8932f937-d72c-4106-c12f-20bd9faed9f6 twice ('0' and 'GPU-8932f937-d72'), and "
                         "CUDA then shows no GPU at all: list each GPU once"),
    ("3", "'3' matches no GPU: this machine has 3 (index 0 to 2;"),
    ("gpu0", "'gpu0' is neither a GPU index nor a UUID"),
])
def test_an_entry_that_names_no_single_gpu_is_refused_in_one_line(nvml, value, words):
    with pytest.raises(TuneError) as caught:
        visible_gpus(value)
    message = str(caught.value)
    assert words in message and "\n" not in message
    assert message.startswith(f"CUDA_VISIBLE_DEVICES={value!r}")


def test_without_nvml_the_entries_are_kept_as_written(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(missing=True))
    found = visible_gpus(f"{UUID_A},1")
    assert [(g.entry, g.uuid, g.total_mib) for g in found] == [(UUID_A, None, None), ("1", None, None)]
    assert gpu_total_mib(UUID_A) is None
    with pytest.raises(TuneError, match="neither a GPU index nor a UUID"):
        visible_gpus("cuda:0")


def test_the_pool_gives_each_worker_its_uuid_and_knows_each_gpus_memory(nvml, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUID_A[:12]},{MIG_C0}")
    assert gpus() == [UUID_A[:12], MIG_C0]
    assert gpu_total_mib(UUID_A[:12]) == 81920.0 and gpu_total_mib(MIG_C0) == 9728.0  # was None: int("GPU-…")
    pool = WorkerPool(StudyConfig("x.py", parallel=5, pack=True), str(tmp_path), "s", tmp_path)
    assert pool._slots() == [UUID_A[:12], MIG_C0, UUID_A[:12], MIG_C0, UUID_A[:12]]
    assert pool.visible[MIG_C0].total_mib == 9728.0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-ffff")
    with pytest.raises(TuneError, match="'GPU-ffff' matches no GPU"):
        pool._slots()


def test_capacity_counts_every_worker_process_context():
    # a 1g.10gb MIG instance, three workers, 2000 MiB allocator peak, 600 MiB context per process
    assert pack_capacity(9728, 2000, 0, 3) == 4  # the allocator's peak alone
    assert pack_capacity(9728, 2000, 600, 3) == 3  # 3 * 2000 + 3 * 600 = 7800 <= 0.9 * 9728 < 4 * 2000 + 3 * 600
    assert pack_capacity(9728, 9000, 600, 3) == 1  # never less than one trial
    assert PACK_SHARE == 0.9


def test_process_usage_is_this_pids_on_its_gpu(nvml):
    nvml.procs = {UUID_A: [(111, 900 * MIB), (222, 3000 * MIB)], MIG_C0: [(333, None)]}
    assert process_gpu_mib(222, nvml) == (3000.0, None)
    used, why = process_gpu_mib(444, nvml)
    assert used is None and why.startswith("NVML lists no GPU process with this pid (444; in a container")
    used, why = process_gpu_mib(333, nvml)
    assert used is None and "no memory size" in why


def _study(tmp_path: Path, parallel: int, events: list[dict], n_trials: int = 4) -> Coordinator:
    config = StudyConfig(str(SCRIPTS / "gpu_env.py"), n_trials=n_trials, parallel=parallel, pack=True, metric="score",
                         workspace=str(tmp_path), sampler="random", seed=0, reuse_workers=False,
                         on_event=lambda kind, f: events.append(dict(f)) if kind == "tune.trial" else None)
    return Coordinator(config)


@pytest.mark.slow  # a real study: three worker processes import torch
def test_a_packed_study_on_uuids_runs_its_workers_on_them_and_measures_capacity(nvml, monkeypatch, tmp_path):
    """A real study (worker processes, SQLite) with CUDA_VISIBLE_DEVICES holding two UUID prefixes:
    every worker's CUDA_VISIBLE_DEVICES keeps the UUID; until a trial is measured one trial runs per
    GPU and the others wait saying so; then the capacity counts each worker's context."""
    a, c = UUID_A[:12], MIG_C0[:10]  # prefixes: messages show them whole
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{a},{c}")
    monkeypatch.setenv("GPU_ENV_OUT", str(tmp_path))
    events: list[dict] = []
    coordinator = _study(tmp_path, parallel=3, events=events)
    result = coordinator.run()
    assert result.n_complete == 4
    seen = [p.read_text() for p in tmp_path.iterdir() if p.is_file() and "-" in p.name and p.suffix != ".db"]
    assert sorted(set(seen)) == sorted([a, c]) and len(seen) == 4  # the worker's env holds the UUID as written
    pool = coordinator.pool
    assert [w.device for w in pool.workers] == [a, c, a]
    waiting = [e["waiting_reason"] for e in events if e["state"] == "waiting"]
    assert waiting and set(waiting) == {"waiting for a first trial on each GPU to measure its peak memory"}
    # what a worker's outcome brings after a CUDA trial (none ran here: no GPU), through the real pool
    pool.measured(a, 20000.0, context=700.0, total=None, note=None)  # A's memory from NVML: 81920 MiB
    pool.measured(c, 2000.0, context=None, total=9728.0, note="NVML lists no GPU process with this pid (1)")
    assert pool.gpu_capacity == {a: int((0.9 * 81920 - 2 * 700) // 20000),
                                 c: pack_capacity(9728, 2000, ASSUMED_CONTEXT_MIB, 1)}
    assert pool.gpu_capacity[a] == 3 and pool.gpu_capacity[c] == 3
    for w in pool.workers:
        w.number = None
    [w for w in pool.workers if w.device == c][0].number = 1
    assert not pool.gpu_busy(c)  # one of three running on C
    reason = pool.waiting_reason()
    assert reason.startswith("every GPU is full: ")
    assert (f"{a} fits 3 trial(s) at once: 20000 MiB peak per trial in torch's "
            "allocator, plus 700 MiB of CUDA context in each of its 2 worker process(es), in 90% of 81920 MiB"
            ) in reason
    assert (f"{c} fits 3 trial(s) at once: 2000 MiB peak per trial in torch's allocator, plus 1024 MiB of CUDA "
            "context assumed (NVML lists no GPU process with this pid (1)) in each of its 1 worker") in reason
    # a later trial measured on C: its context replaces the assumption, its larger peak lowers the capacity
    pool.measured(c, 3000.0, context=500.0, total=9728.0)
    assert pool.gpu_capacity[c] == 2 and pool.fits[c].context_note is None


def test_the_cli_refuses_a_uuid_that_names_no_gpu_in_one_line(nvml, monkeypatch, tmp_path, capsys):
    from deepdive.cli import main

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-0000dead")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(["tune", str(SCRIPTS / "gpu_env.py"), "--trials", "2", "--pack", "--parallel", "2"])
    _out, err = capsys.readouterr()
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "CUDA_VISIBLE_DEVICES='GPU-0000dead': 'GPU-0000dead' matches no GPU" in lines[0], err


def test_the_gpu_checks_figures_from_a_pool(nvml, monkeypatch, tmp_path):
    from deepdive.gpu_check_parts.tuning import first_gpu_uuid, pack_figures

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert first_gpu_uuid() == UUID_A
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUID_A)
    pool = WorkerPool(StudyConfig("x.py", parallel=3, pack=True), str(tmp_path), "s", tmp_path)
    pool._slots()
    assert pack_figures(pool, UUID_A) == {"device": UUID_A, "measured": False, "capacity": 1}
    pool.measured(UUID_A, 24200.0, context=600.0, total=81000.0)
    figures = pack_figures(pool, UUID_A)
    assert figures["per_trial_with_context_mib"] == 24800.0 and figures["context_measured"] is True
    assert figures["capacity"] == 2 and figures["capacity_without_context"] == 3  # 72300 // 24200, 72900 // 24200
    assert json.loads(json.dumps(figures)) == figures
