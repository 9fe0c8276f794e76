"""The bottleneck verdict on synthetic windows: each kind, its evidence and fix, and None on too little data."""

from __future__ import annotations

import json

import pytest

from deepdive.telemetry.verdict import KINDS, MIN_STEPS, fold_engine_event, verdict


def steps(n=10, step=0.1, wait=0.0, exposed=None, **extra):
    out = []
    for i in range(n):
        s = {"t": 100.0 + i, "step": i, "step_time_s": step, "data_wait_s": wait, "precision": "bf16", **extra}
        if exposed is not None:
            s.update(comm_time_s=exposed * 2, comm_exposed_s=exposed, comm_mode="none")
        out.append(s)
    return out


def gpu(util=95.0, used=40_000.0, total=80_000.0, reasons=(), temp=60.0, procs=((1234, 30_000.0),)):
    return {"index": 0, "util_gpu_pct": util, "mem_used_mib": used, "mem_total_mib": total,
            "throttle_reasons": list(reasons), "temp_c": temp,
            "processes": [{"pid": p, "used_mib": u} for p, u in procs]}


def machine(n=5, gpus=None, cpu=20.0, per_cpu=None, mem_pct=30.0, cpus=16):
    return [{"type": "machine", "t": 100.0 + i, "gpus": gpus, "gpu_reason": None if gpus else "no NVIDIA GPU",
             "host": {"cpu_pct": cpu, "per_cpu_pct": per_cpu or [cpu] * 4, "cpus": cpus, "mem_pct": mem_pct},
             "jobs": {}} for i in range(n)]


def check(v, kind, fix_part):
    assert v is not None and v["kind"] == kind and kind in KINDS, v
    assert fix_part in v["fix"], v["fix"]
    assert v["sentence"].endswith(".") and "\n" not in v["sentence"]
    json.dumps(v)
    return v


def test_too_little_data_gives_none():
    assert verdict([], []) is None
    assert verdict(steps(MIN_STEPS - 1, wait=1.0), machine()) is None
    assert verdict([{"step_time_s": 0}] * 20 + [{"step_time_s": "NaN"}] * 20, machine()) is None


def test_input_bound_on_gpu_and_cpu():
    v = check(verdict(steps(step=0.06, wait=0.04), machine(gpus=[gpu(util=35.0)])), "input-bound",
              "DataLoader(num_workers=8, pin_memory=True")
    assert v["evidence"]["data_wait_share"] == 0.4 and v["evidence"]["gpu_util_pct"] == 35.0
    assert "40% of each iteration waits on the data loader" in v["sentence"]
    cpu = check(verdict(steps(step=0.06, wait=0.04), machine(cpus=2)), "input-bound", "DataLoader(num_workers=2,")
    assert "pin_memory" not in cpu["fix"] and cpu["evidence"]["gpu_util_pct"] is None


def test_host_cpu_bound_when_the_loader_waits_on_busy_cpus():
    v = check(verdict(steps(step=0.06, wait=0.04), machine(cpu=97.0)), "host-cpu-bound", "cache")
    assert v["evidence"]["host_cpu_pct"] == 97.0


def test_host_cpu_bound_when_the_gpu_idles_and_a_core_is_pegged():
    v = check(verdict(steps(), machine(gpus=[gpu(util=20.0)], cpu=30.0, per_cpu=[100.0, 5.0, 3.0, 2.0])),
              "host-cpu-bound", "mode='reduce-overhead'")
    assert v["evidence"]["busiest_cpu_pct"] == 100.0


def test_communication_bound_and_its_fix_depends_on_compression():
    v = check(verdict(steps(step=0.1, exposed=0.04), machine(gpus=[gpu()])), "communication-bound",
              "grad_compression='powersgd'")
    assert v["evidence"]["comm_exposed_share"] == 0.4
    already = steps(step=0.1, exposed=0.04)
    for s in already:
        s["comm_mode"] = "powersgd"
    check(verdict(already, []), "communication-bound", "no_sync")


def test_memory_pressure_on_gpu_and_host():
    v = check(verdict(steps(), machine(gpus=[gpu(used=76_000.0)])), "memory-pressure", "activation checkpointing")
    assert v["evidence"]["gpu_mem_pct"] == 95.0
    check(verdict(steps(precision="fp32"), machine(gpus=[gpu(used=76_000.0)])), "memory-pressure", "precision='bf16'")
    check(verdict(steps(alloc_retries=3), machine(gpus=[gpu()])), "memory-pressure", "smaller batch")
    check(verdict(steps(), machine(mem_pct=96.0)), "memory-pressure", "memory-mapped")


def test_throttled_names_the_reason_and_ignores_idle_gpus():
    v = check(verdict(steps(), machine(gpus=[gpu(reasons=["hw_thermal_slowdown"], temp=91.0)])), "throttled", "cooling")
    assert "hw thermal slowdown" in v["sentence"] and "91 °C" in v["sentence"]
    check(verdict(steps(), machine(gpus=[gpu(reasons=["sw_power_cap"])])), "throttled", "power limit")
    # a throttled GPU that runs nothing of ours does not count; the busy one decides
    idle_hot = dict(gpu(reasons=["hw_thermal_slowdown"], procs=()), index=1)
    check(verdict(steps(), machine(gpus=[gpu(), idle_hot])), "compute-bound", "torch.compile")


def test_compute_bound_on_gpu_and_cpu():
    v = check(verdict(steps(precision="fp32"), machine(gpus=[gpu(util=98.0)])), "compute-bound", "precision='bf16'")
    assert v["evidence"]["gpu_util_pct"] == 98.0
    check(verdict(steps(), machine(gpus=[gpu(util=98.0)])), "compute-bound", "fused=True")
    cpu = check(verdict(steps(), machine(cpu=99.0)), "compute-bound", "a GPU")
    assert "Compute-bound (CPU)" in cpu["sentence"]
    check(verdict(steps(), []), "compute-bound", "a GPU")  # engine samples alone still decide


@pytest.mark.parametrize("share, kind", [(0.1, "compute-bound"), (0.3, "input-bound")])
def test_the_input_threshold(share, kind):
    check(verdict(steps(step=1 - share, wait=share), machine()), kind, "")


# -- the engine's own compression decision (issue #20: the verdict must not contradict it) ----------------


def loopback_decision(**override):
    """The engine's auto decision on a 2-process loopback run, made by the engine's own rule."""
    from deepdive.engine.compression import decide_auto

    evidence = {"step_time_s": 0.0086, "comm_time_s": 0.0044, "comm_exposed_s": 0.0044,
                "comm_bytes_uncompressed": 342056.0, "backend": "gloo", "world_size": 2, "link": "loopback",
                **override}
    mode, reason = decide_auto(evidence)
    return {"kind": "compression", "mode": mode, "reason": reason, "evidence": evidence, "step": 20, "trial": False}


def test_on_loopback_the_verdict_says_the_engine_turned_compression_off_and_recommends_no_compression():
    decision = loopback_decision()
    assert decision["mode"] == "none" and "loopback" in decision["reason"]
    facts: dict = {}
    fold_engine_event(facts, {"kind": "setup", "link": "loopback", "world_size": 2})
    fold_engine_event(facts, decision)
    v = check(verdict(steps(step=0.1, exposed=0.05), [], engine=facts), "communication-bound", "no_sync")
    assert "compression" not in v["fix"].lower() and "powersgd" not in v["fix"].lower()
    assert "the engine measured" in v["sentence"] and "at step 20" in v["sentence"]
    assert "every process is on this host (loopback): no network bandwidth to save; compression off" in v["sentence"]
    assert v["evidence"]["engine_compression"] == decision["reason"]


def test_a_trial_that_measured_no_gain_is_not_recommended_again():
    from deepdive.engine.compression import decide_auto

    evidence = dict(loopback_decision()["evidence"], link="network")
    mode, reason = decide_auto(evidence, trial={"step_time_s": 0.0085})
    assert mode == "none" and "no gain" in reason
    facts: dict = {}
    fold_engine_event(facts, {"kind": "compression", "mode": mode, "reason": reason, "step": 30, "trial": False})
    v = check(verdict(steps(step=0.1, exposed=0.05), [], engine=facts), "communication-bound", "no_sync")
    assert "powersgd" not in v["fix"].lower() and "no gain; compression off" in v["sentence"]


def test_on_loopback_without_an_auto_decision_compression_is_not_recommended_either():
    facts: dict = {}
    fold_engine_event(facts, {"kind": "setup", "link": "loopback", "world_size": 2})
    fold_engine_event(facts, {"kind": "prepare", "compression": "none", "compression_reason": "asked for"})
    v = check(verdict(steps(step=0.1, exposed=0.05), [], engine=facts), "communication-bound", "no_sync")
    assert "powersgd" not in v["fix"].lower()
    assert "every process is on this host (loopback)" in v["sentence"] and "no network bandwidth" in v["sentence"]


def test_over_a_network_with_compression_off_by_request_powersgd_is_still_the_fix():
    facts: dict = {}
    fold_engine_event(facts, {"kind": "setup", "link": "network", "world_size": 16})
    fold_engine_event(facts, {"kind": "prepare", "compression": "none", "compression_reason": "asked for"})
    fold_engine_event(facts, {"kind": "overflow", "step": 3})  # other events change nothing
    check(verdict(steps(step=0.1, exposed=0.05), [], engine=facts), "communication-bound", "grad_compression='powersgd'")
    check(verdict(steps(step=0.1, exposed=0.05), [], engine={}), "communication-bound", "grad_compression='powersgd'")


def test_an_fsdp_run_is_not_told_to_use_the_ddp_compression_hooks():
    facts: dict = {}
    fold_engine_event(facts, {"kind": "setup", "link": "network", "world_size": 16})
    fold_engine_event(facts, {"kind": "prepare", "strategy": "fsdp", "compression": "none",
                              "compression_reason": "FSDP shards gradients with reduce-scatter: no DDP compression hook"})
    v = check(verdict(steps(step=0.1, exposed=0.05), [], engine=facts), "communication-bound", "no_sync")
    assert "powersgd" not in v["fix"].lower() and "FSDP" in v["sentence"]
