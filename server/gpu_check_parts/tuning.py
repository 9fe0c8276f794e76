"""The ``tune_pack`` part: ``deepdive tune --pack`` runs several trials on one GPU at once.

On a GPU the study runs with ``CUDA_VISIBLE_DEVICES`` set to the GPU's UUID (as schedulers write it),
so the part also checks that the UUID is resolved (each worker sees it, the GPU's memory is read) and
reports what packing measured there: a trial's peak in torch's allocator, the CUDA context of a worker
process (NVML's per-process usage minus the allocator's), the per-trial figure with and without the
context, and the capacity computed from them (:meth:`deepdive.tune.pool.WorkerPool.measured`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from deepdive.gpu_check_parts.context import CheckFailed, Context


def _concurrency(events: list[tuple[str, dict[str, Any]]]) -> int:
    """The most workers running a trial at once, from the study's ``tune.trial`` events.

    Per worker, not per trial: a worker that finishes may start its next trial before the finished
    one's last event is sent, and the last intermediate values can follow a trial's end."""
    busy: dict[int, int] = {}  # worker -> the trial it runs
    ended: set[int] = set()
    most = 0
    for kind, fields in events:
        if kind != "tune.trial" or fields.get("worker") is None:
            continue
        number, worker = fields["number"], fields["worker"]
        if fields["state"] in ("complete", "pruned", "fail"):
            ended.add(number)
            if busy.get(worker) == number:
                del busy[worker]
        elif fields["state"] == "running" and number not in ended:
            busy[worker] = number
        most = max(most, len(busy))
    return most


def first_gpu_uuid() -> str:
    """The UUID of the first GPU NVML lists (what ``CUDA_VISIBLE_DEVICES`` is set to for the study)."""
    from deepdive.tune.gpus import visible_gpus

    found = [g for g in visible_gpus() if g.uuid]
    if not found:
        raise CheckFailed("NVML lists no GPU with a UUID: CUDA_VISIBLE_DEVICES cannot name one by UUID")
    return str(found[0].uuid)


def pack_figures(pool: Any, device: str) -> dict[str, Any]:
    """What ``--pack`` measured on GPU ``device`` of a study's pool, with the capacity with and without the context.

    ``capacity_without_context`` is what the same peak gave before the context was counted (the
    allocator's peak alone in the same share of the memory): the difference the context makes."""
    from deepdive.tune.pool import PACK_SHARE

    fit = pool.fits.get(device)
    if fit is None:
        return {"device": device, "measured": False, "capacity": pool.gpu_capacity.get(device, 1)}
    return {"device": device, "measured": True, "total_mib": round(fit.total_mib, 1),
            "peak_allocator_mib": round(fit.peak_mib, 1), "context_mib": round(fit.context_mib, 1),
            "context_measured": fit.context_note is None, "context_note": fit.context_note,
            "per_trial_with_context_mib": round(fit.peak_mib + fit.context_mib, 1), "workers": fit.workers,
            "capacity": fit.capacity, "capacity_without_context": max(1, int(PACK_SHARE * fit.total_mib //
                                                                            max(fit.peak_mib, 1.0)))}


def context_probe(uuid: str) -> dict[str, Any]:
    """A cross-check of the CUDA context the pool measured, by another method: in this process, once the
    study's workers are gone (the GPU quiet), the GPU's used memory (NVML) before and after this process
    starts CUDA and runs a matmul and a backward pass (cuBLAS loaded), minus what torch's allocator holds.

    Device-wide, so only meaningful on a GPU nothing else uses; the pool itself reads each worker's own
    usage instead (:func:`deepdive.tune.gpus.process_gpu_mib`), which packed neighbours cannot disturb."""
    import torch

    from deepdive.telemetry.nvml import nvml_init

    if torch.cuda.is_initialized():
        return {"probe_context_mib": None, "probe_note": "CUDA already started in this process"}
    nvml, reason = nvml_init()
    if nvml is None:
        return {"probe_context_mib": None, "probe_note": reason}
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        before = nvml.nvmlDeviceGetMemoryInfo(handle).used
        x = torch.randn(256, 256, device="cuda", requires_grad=True)
        (x @ x).sum().backward()
        torch.cuda.synchronize()
        after = nvml.nvmlDeviceGetMemoryInfo(handle).used
        held = torch.cuda.memory_reserved()
        return {"probe_context_mib": round((after - before - held) / 2**20, 1), "probe_note": None}
    finally:
        nvml.nvmlShutdown()


def tune_pack(ctx: Context) -> dict[str, Any]:
    """``deepdive tune --pack``: three workers on one GPU, as many running at once as its memory allows;
    on a GPU, named by its UUID in ``CUDA_VISIBLE_DEVICES``."""
    import deepdive.examples
    from deepdive.tune.coordinator import Coordinator
    from deepdive.tune.study import StudyConfig

    script = Path(deepdive.examples.__file__).parent / "digits.py"
    workspace = ctx.work_dir / "tune"
    workspace.mkdir(parents=True)
    events: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        with lock:
            events.append((kind, {k: fields.get(k) for k in ("state", "number", "worker", "waiting_reason")}))

    config = StudyConfig(str(script), n_trials=6, parallel=3, pack=True, metric="accuracy", direction="maximize",
                         pruner="none", seed=0, workspace=str(workspace),
                         storage=f"sqlite:///{workspace / 'tune.db'}", script_args=["--epochs", "3"],
                         reuse_workers=False, on_event=on_event)
    uuid = first_gpu_uuid() if ctx.cuda else None
    if uuid is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = uuid  # this part's own process: the pool and its workers read it
    coordinator = Coordinator(config)
    result = coordinator.run()  # what run_study does, keeping the pool to read what it measured
    waits = sorted({f["waiting_reason"] for k, f in events if k == "tune.trial" and f.get("waiting_reason")})
    detail = {"complete": result.n_complete, "failed": result.n_fail, "best_accuracy": result.best_value,
              "most_at_once": _concurrency(events), "startup_s": result.startup_seconds,
              "trials_span_s": result.trials_span_seconds, "waiting_reasons": waits[:4],
              "failures": [t.get("reason") for t in result.trials if t.get("state") == "fail"][:3]}
    ctx.expect(result.n_complete == 6 and not result.n_fail, f"{result.n_complete} of 6 trials complete", **detail)
    ctx.expect(detail["most_at_once"] >= 2, "the trials never ran together: --pack ran one at a time", **detail)
    if uuid is not None:
        devices = sorted({str(w.device) for w in coordinator.pool.workers})
        figures = pack_figures(coordinator.pool, uuid)
        figures.update(context_probe(uuid))
        detail.update(cuda_visible_devices=uuid, worker_devices=devices, pack=figures)
        ctx.expect(devices == [uuid], f"the workers saw {devices}, not the GPU's UUID {uuid}", **detail)
        ctx.expect(figures["measured"], "no capacity was computed for the GPU named by its UUID (its memory or "
                                        "the trials' peak was never read)", **detail)
        ctx.measure("tune_pack_peak_allocator", figures["peak_allocator_mib"], "MiB")
        ctx.measure("tune_pack_context", figures["context_mib"], "MiB", measured=figures["context_measured"],
                    note=figures["context_note"], probe_context_mib=figures["probe_context_mib"],
                    probe_note=figures["probe_note"])
        ctx.measure("tune_pack_per_trial_with_context", figures["per_trial_with_context_mib"], "MiB")
        ctx.measure("tune_pack_capacity", figures["capacity"], "trials", workers=figures["workers"],
                    total_mib=figures["total_mib"], without_context=figures["capacity_without_context"])
    ctx.measure("tune_pack_trials_span", result.trials_span_seconds or 0.0, "s", trials=6, workers=3,
                most_at_once=detail["most_at_once"])
    return detail
