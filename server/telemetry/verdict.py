"""The live bottleneck verdict: one sentence with its evidence and the fix, from recent samples.

:func:`verdict` is a pure function of a window of engine samples (the reporter's keys: ``step_time_s``,
``data_wait_s``, ``comm_exposed_s``, ``precision``, ``comm_mode``, ...) and of machine samples
(:class:`deepdive.telemetry.samplers.MachineSampler`). It decides, in this order:

1. **throttled**: a thermal, power or hardware slowdown reason on the GPUs in use in at least half
   of the machine samples;
2. **input-bound** or **communication-bound**: the larger of the share of each iteration spent
   waiting on the data loader (``data_wait_s / (step_time_s + data_wait_s)``) and the share of
   collective time backward did not hide (``comm_exposed_s / (step_time_s + data_wait_s)``), when it
   reaches 20 %. Waiting on the loader while the host CPUs are saturated (>= 90 %) is
   **host-cpu-bound** instead: more workers cannot help then;
3. **memory-pressure**: a GPU in use above 90 % of its memory, allocator retries
   (``alloc_retries`` in a sample), or (CPU runs) host memory above 90 %;
4. **host-cpu-bound**: the GPUs in use are busy less than 50 % of the time with no loader wait or
   exposed communication to explain it, and one CPU core is pegged (>= 95 %: the Python thread
   launching kernels) or the host as a whole is saturated;
5. **compute-bound** otherwise: the GPUs are busy (or, without a GPU, the CPUs compute).

The communication fix never contradicts the engine (``engine``: facts :func:`fold_engine_event` keeps
from the run's events). Where the engine measured the run and turned gradient compression off (its
``compression`` event: loopback, latency-bound, not bandwidth-bound, or a PowerSGD trial without gain),
or every process is on one host (the ``setup`` event's ``link`` is ``loopback``, where the engine's rule
is that compression has no network bandwidth to save), or the run is FSDP (the engine refuses
compression there), the verdict says so and recommends fewer, larger all-reduces instead.

"GPUs in use" are those with a compute process on them (all GPUs when NVML lists none). Without GPU
readings (a CPU-only run, or no NVML) the GPU rules are skipped and the others still decide.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

MIN_STEPS = 5
INPUT_SHARE = 0.20
COMM_SHARE = 0.20
MEM_PRESSURE = 0.90
CPU_SATURATED_PCT = 90.0
CORE_PEGGED_PCT = 95.0
GPU_IDLE_PCT = 50.0
THROTTLE_SHARE = 0.5

KINDS = ("input-bound", "compute-bound", "communication-bound", "memory-pressure", "throttled", "host-cpu-bound")
THERMAL = ("hw_thermal_slowdown", "sw_thermal_slowdown")
POWER = ("sw_power_cap", "hw_power_brake_slowdown")
HARDWARE = ("hw_slowdown",)


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    xs = [x for x in values if x is not None]
    return sum(xs) / len(xs) if xs else None


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _gpus_in_use(sample: dict[str, Any]) -> list[dict[str, Any]]:
    gpus = [g for g in (sample.get("gpus") or []) if isinstance(g, dict)]
    busy = [g for g in gpus if g.get("processes")]
    return busy or gpus


FEWER_ALLREDUCES = ("fewer, larger all-reduces: gradient accumulation with model.no_sync() and "
                    "setup(bucket_cap_mb=100)")
POWERSGD = "grad_compression='powersgd'"


def fold_engine_event(facts: dict[str, Any], event: dict[str, Any]) -> None:
    """Keeps in ``facts`` what the verdict reads of one engine event (rank 0's, oldest first).

    ``setup`` gives ``link`` (``loopback`` when every process runs on this host); ``prepare`` the
    ``strategy`` and the compression as set up (asked for, or ``auto`` still measuring); ``compression``
    the engine's own decision, which replaces it: ``{"mode", "reason", "step", "decided": True}``.
    """
    kind = event.get("kind")
    if kind == "setup" and isinstance(event.get("link"), str):
        facts["link"] = event["link"]
    elif kind == "prepare" and isinstance(event.get("compression"), str):
        facts["compression"] = {"mode": event["compression"], "reason": str(event.get("compression_reason") or ""),
                                "step": None, "decided": False}
        if isinstance(event.get("strategy"), str):
            facts["strategy"] = event["strategy"]
    elif kind == "compression" and isinstance(event.get("mode"), str):
        step = event.get("step")
        facts["compression"] = {"mode": event["mode"], "reason": str(event.get("reason") or ""),
                                "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
                                "decided": True}


def _without_figures(reason: str) -> str:
    """The engine's reason without its parenthesised figures (they are in the evidence): "exposed
    communication 51% of the step (…), but every process is on this host (loopback): …"."""
    start = reason.find(" (")
    if start < 0:
        return reason
    depth = 0
    for i in range(start + 1, len(reason)):
        depth += {"(": 1, ")": -1}.get(reason[i], 0)
        if depth == 0:
            return reason[:start] + reason[i + 1:]
    return reason  # unbalanced: keep it whole


def _decision(engine: dict[str, Any]) -> dict[str, Any]:
    """The engine's compression as :func:`fold_engine_event` kept it (empty when unknown)."""
    found = engine.get("compression")
    return found if isinstance(found, dict) else {}


def _comm_fix(comm_mode: Optional[str], engine: dict[str, Any]) -> tuple[str, str]:
    """The fix for communication-bound, and what the sentence adds when the engine ruled compression out."""
    if comm_mode not in (None, "none", "auto"):
        return FEWER_ALLREDUCES, ""  # compression runs already
    decision = _decision(engine)
    if decision.get("decided") and decision.get("mode") == "none" and decision.get("reason"):
        at = f" at step {decision['step']}" if decision.get("step") is not None else ""
        return FEWER_ALLREDUCES, f"; the engine measured this run{at}: {_without_figures(decision['reason'])}"
    if engine.get("link") == "loopback":
        return FEWER_ALLREDUCES, ("; every process is on this host (loopback): compression has no network "
                                  "bandwidth to save")
    if engine.get("strategy") == "fsdp":
        return FEWER_ALLREDUCES, "; FSDP reduce-scatters the gradients: the engine's compression hooks are for DDP"
    return POWERSGD, ""


def verdict(window: list[dict[str, Any]], machine: list[dict[str, Any]],
            engine: Optional[dict[str, Any]] = None) -> Optional[dict[str, Any]]:
    """One bottleneck verdict for the recent past of a run.

    Args:
        window (list[dict]): recent engine samples (any ranks), oldest first.
        machine (list[dict]): machine samples over the same time, oldest first (may be empty).
        engine (dict | None): the run's facts from its events (:func:`fold_engine_event`): the link
            between its processes and the engine's compression decision.

    Returns:
        dict | None: ``{"kind", "sentence", "evidence", "fix"}`` (``kind`` one of :data:`KINDS`;
        ``evidence`` the figures behind it, None where unknown), or None with fewer than
        :data:`MIN_STEPS` timed steps in ``window``.
    """
    steps = [s for s in window if isinstance(s, dict) and (_num(s.get("step_time_s")) or 0) > 0]
    if len(steps) < MIN_STEPS:
        return None
    engine = engine or {}
    step_s = sum(_num(s["step_time_s"]) or 0.0 for s in steps)
    wait_s = sum(max(0.0, _num(s.get("data_wait_s")) or 0.0) for s in steps)
    exposed_s = sum(max(0.0, _num(s.get("comm_exposed_s")) or 0.0) for s in steps)
    iteration_s = step_s + wait_s
    data_share = wait_s / iteration_s
    comm_share = min(exposed_s, step_s) / iteration_s
    last = steps[-1]
    precision = last.get("precision") if isinstance(last.get("precision"), str) else None
    comm_mode = last.get("comm_mode") if isinstance(last.get("comm_mode"), str) else None
    retries = max((_num(s.get("alloc_retries")) or 0.0 for s in steps), default=0.0)

    gpu_samples = [m for m in machine if isinstance(m, dict) and m.get("gpus")]
    used = [g for m in gpu_samples for g in _gpus_in_use(m)]
    gpu_util = _mean(_num(g.get("util_gpu_pct")) for g in used)
    mem_fracs = [
        u / t for u, t in ((_num(g.get("mem_used_mib")), _num(g.get("mem_total_mib"))) for g in used)
        if u is not None and t
    ]
    gpu_mem = max(mem_fracs) if mem_fracs else None
    throttle: dict[str, float] = {}
    if gpu_samples:
        for reason in THERMAL + POWER + HARDWARE:
            hits = sum(1 for m in gpu_samples if any(reason in (g.get("throttle_reasons") or []) for g in _gpus_in_use(m)))
            if hits:
                throttle[reason] = round(hits / len(gpu_samples), 2)
    hosts = [m["host"] for m in machine if isinstance(m, dict) and isinstance(m.get("host"), dict)]
    host_cpu = _mean(_num(h.get("cpu_pct")) for h in hosts)
    busiest = _mean(max((x for x in (_num(v) for v in (h.get("per_cpu_pct") or [])) if x is not None), default=None)
                    for h in hosts)
    host_mem = max((x for x in (_num(h.get("mem_pct")) for h in hosts) if x is not None), default=None)
    cpus = next((int(c) for c in (_num(h.get("cpus")) for h in reversed(hosts)) if c), None)
    has_gpu = bool(used)

    evidence: dict[str, Any] = {
        "steps": len(steps),
        "step_time_s": round(step_s / len(steps), 6),
        "data_wait_s": round(wait_s / len(steps), 6),
        "data_wait_share": round(data_share, 3),
        "comm_exposed_share": round(comm_share, 3),
        "gpu_util_pct": None if gpu_util is None else round(gpu_util, 1),
        "gpu_mem_pct": None if gpu_mem is None else round(gpu_mem * 100, 1),
        "throttle_reasons": throttle,
        "host_cpu_pct": None if host_cpu is None else round(host_cpu, 1),
        "busiest_cpu_pct": None if busiest is None else round(busiest, 1),
        "host_mem_pct": host_mem,
        "alloc_retries": retries or None,
        "precision": precision,
        "comm_mode": comm_mode,
        "link": engine.get("link"),
        "engine_compression": _decision(engine).get("reason") if _decision(engine).get("decided") else None,
    }
    per_step = f"{_ms(step_s / len(steps))} steps"
    gpu_note = f"; GPU busy {gpu_util:.0f}%" if gpu_util is not None else ""

    def out(kind: str, sentence: str, fix: str) -> dict[str, Any]:
        return {"kind": kind, "sentence": sentence, "evidence": evidence, "fix": fix}

    # 1. throttling
    strong = {r: share for r, share in throttle.items() if share >= THROTTLE_SHARE}
    if strong:
        worst = max(strong, key=strong.get)
        thermal = any(r in THERMAL for r in strong)
        power = any(r in POWER for r in strong)
        temp = max((x for x in (_num(g.get("temp_c")) for g in used) if x is not None), default=None)
        temp_note = f", up to {temp:.0f} °C" if temp is not None else ""
        fix = ("check cooling (fans, airflow, inlet temperature)" if thermal and not power else
               "check the power limit (nvidia-smi -q -d POWER) and the power supply" if power and not thermal else
               "check cooling / power limit")
        return out("throttled", f"Throttled: the GPU clocks were held back by {worst.replace('_', ' ')} in "
                   f"{strong[worst]:.0%} of the samples{temp_note} ({per_step}{gpu_note}).", fix)

    # 2. input or communication
    input_hit, comm_hit = data_share >= INPUT_SHARE, comm_share >= COMM_SHARE
    if input_hit or comm_hit:
        if input_hit and (not comm_hit or data_share >= comm_share):
            waiting = (f"{data_share:.0%} of each iteration waits on the data loader "
                       f"({_ms(wait_s / len(steps))} per {_ms(iteration_s / len(steps))}{gpu_note})")
            if host_cpu is not None and host_cpu >= CPU_SATURATED_PCT:
                return out("host-cpu-bound", f"Host-CPU-bound: {waiting} while the host CPUs are {host_cpu:.0f}% busy.",
                           "lighter per-sample work in the Dataset: decode/augment once and cache, or augment on the "
                           "GPU; more DataLoader workers cannot help with every CPU busy")
            workers = min(8, cpus) if cpus else 4
            pin = ", pin_memory=True" if has_gpu else ""
            return out("input-bound", f"Input-bound: {waiting}.",
                       f"DataLoader(num_workers={workers}{pin}, persistent_workers=True)")
        fix, engine_note = _comm_fix(comm_mode, engine)
        return out("communication-bound",
                   f"Communication-bound: {comm_share:.0%} of each iteration is collective time backward did not "
                   f"hide ({_ms(min(exposed_s, step_s) / len(steps))} of {_ms(iteration_s / len(steps))}"
                   f"{', compression ' + comm_mode if comm_mode else ''}){engine_note}.", fix)

    # 3. memory
    if (gpu_mem is not None and gpu_mem >= MEM_PRESSURE) or retries > 0:
        why = (f"a GPU in use is {gpu_mem:.0%} full" if gpu_mem is not None and gpu_mem >= MEM_PRESSURE else
               "GPU memory is tight")
        if retries > 0:
            why += f" and the allocator retried {retries:.0f} times (freeing its cache to satisfy a request)"
        fix = ("precision='bf16' (halves activations), or a smaller batch or activation checkpointing"
               if precision == "fp32" else "a smaller batch or activation checkpointing")
        return out("memory-pressure", f"Memory pressure: {why} ({per_step}).", fix)
    if not has_gpu and host_mem is not None and host_mem >= MEM_PRESSURE * 100:
        return out("memory-pressure", f"Memory pressure: host memory is {host_mem:.0f}% used ({per_step}).",
                   "a smaller batch, fewer DataLoader workers (each holds its own copy of the dataset), or "
                   "memory-mapped data")

    # 4. the GPU idles without a loader or communication to blame
    if gpu_util is not None and gpu_util < GPU_IDLE_PCT:
        pegged = busiest is not None and busiest >= CORE_PEGGED_PCT
        saturated = host_cpu is not None and host_cpu >= CPU_SATURATED_PCT
        if pegged or saturated:
            cpu_note = (f"one CPU core is {busiest:.0f}% busy" if pegged else f"the host CPUs are {host_cpu:.0f}% busy")
            return out("host-cpu-bound",
                       f"Host-CPU-bound: the GPU is busy only {gpu_util:.0f}% of the time while {cpu_note}, with "
                       f"{data_share:.0%} loader wait and {comm_share:.0%} exposed communication ({per_step}).",
                       "fewer host syncs per step (.item(), .cpu(), printing), a larger batch, or "
                       "torch.compile(model, mode='reduce-overhead') (CUDA graphs)")

    # 5. compute
    if has_gpu:
        fix = ("precision='bf16'" if precision in (None, "fp32") else
               "torch.compile(model) and a fused optimizer (e.g. torch.optim.AdamW(..., fused=True))")
        busy = f"the GPU is busy {gpu_util:.0f}% of the time" if gpu_util is not None else "the GPU computes"
        return out("compute-bound", f"Compute-bound: {busy} with {data_share:.0%} loader wait and "
                   f"{comm_share:.0%} exposed communication ({per_step}).", fix)
    cpu_note = f"; host CPUs {host_cpu:.0f}% busy" if host_cpu is not None else ""
    return out("compute-bound", f"Compute-bound (CPU): {data_share:.0%} loader wait and {comm_share:.0%} exposed "
               f"communication, the rest is computation ({per_step}{cpu_note}).",
               "a GPU, or torch.compile(model); on CPU keep torch.set_num_threads at the number of physical cores")
