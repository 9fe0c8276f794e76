"""The engine's Run in one process and under torchrun (CPU, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import deepdive.engine as dd
from deepdive.engine.hparams import ENV_PARAMS

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "server" / "examples" / "digits.py"
SCRIPTS = Path(__file__).resolve().parent / "dist_scripts"
TIMEOUT = 240


def torchrun(nproc: int, script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(script), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=full_env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ddp_on_two_processes_matches_one_process_on_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    torchrun(1, SCRIPTS / "equivalence.py", str(one), "32")
    torchrun(2, SCRIPTS / "equivalence.py", str(two), "32")
    a, b = torch.load(one), torch.load(two)
    for key in a:
        # gradients are averaged over 2 shards instead of summed in one batch: float rounding only
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"parameter {key} differs")


def _digits(precision: str, tmp_path: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, str(DIGITS), "--precision", precision, "--epochs", "8", "--json", *extra],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    return last_json(done.stdout)


def test_bf16_autocast_on_cpu_trains_digits_within_a_point_of_fp32(tmp_path):
    fp32 = _digits("fp32", tmp_path)
    bf16 = _digits("bf16", tmp_path)
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    assert fp32["accuracy"] >= 0.93
    assert bf16["accuracy"] >= fp32["accuracy"] - 0.01, (bf16["accuracy"], fp32["accuracy"])


def test_injected_overflow_is_skipped_and_training_goes_on(tmp_path):
    metrics = tmp_path / "m.jsonl"
    run = dd.setup(precision="fp16", grad_compression="none", seed=0, metrics_out=str(metrics))
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    model, opt, loader = run.prepare(model, opt, DataLoader(TensorDataset(x, y), batch_size=8))
    scales, skipped, losses = [], [], []
    for step, (xb, yb) in enumerate(run.batches(loader, epochs=2)):
        with run.autocast():
            loss = F.cross_entropy(model(xb), yb)
        if step == 5:
            loss = loss * 1e30  # the injected overflow
        run.backward(loss)
        skipped.append(run.step(opt))
        scales.append(run.scaler.scale)
        losses.append(loss.item())
    summary = run.finish()
    assert skipped[5] and sum(skipped) == 1
    assert scales[5] == scales[4] / 2, "the scale backed off"
    assert all(torch.isfinite(torch.tensor(losses[6:]))), "training went on"
    assert summary["skipped_steps"] == 1
    events = [r for r in read_jsonl(metrics) if r.get("type") == "event"]
    assert any(e["kind"] == "overflow" and e["step"] == 5 for e in events)


def test_a_module_that_overflows_in_fp16_is_promoted_and_reported(tmp_path):
    metrics = tmp_path / "m.jsonl"
    run = dd.setup(precision="fp16", grad_compression="none", seed=0, metrics_out=str(metrics),
                   overflow_check_every=0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    with torch.no_grad():
        model[1].weight.fill_(3e3)  # x*3e3*8 ~ 1e5: beyond fp16's 65504, fine in fp32
        model[0].weight.fill_(0.5)
        model[0].bias.fill_(1.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.ones(32, 8), torch.randint(0, 2, (32,))
    model, opt, loader = run.prepare(model, opt, DataLoader(TensorDataset(x, y), batch_size=8))
    losses = []
    for xb, yb in run.batches(loader, epochs=2):
        with run.autocast():
            loss = F.cross_entropy(model(xb), yb)
        run.backward(loss)
        run.step(opt)
        losses.append(loss.item())
    summary = run.finish()
    assert summary["promoted_to_fp32"] == ["1"]
    assert all(torch.isfinite(torch.tensor(losses[2:]))), "finite once the module runs in fp32"
    events = [r for r in read_jsonl(metrics) if r.get("type") == "event" and r.get("kind") == "promotion"]
    assert events and events[0]["module"] == "1" and "fp32" in events[0]["message"]


def test_telemetry_samples_carry_the_step_figures(tmp_path):
    metrics = tmp_path / "m.jsonl"
    run = dd.setup(precision="fp32", seed=0, metrics_out=str(metrics))
    model, loader = run.prepare(nn.Linear(4, 2), loader=DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # objects not given are not returned
    for (xb,) in run.batches(loader, epochs=1):
        with run.autocast():
            loss = model(xb).pow(2).mean()
        run.backward(loss)
        run.step(opt)
        run.log(loss=loss, custom=torch.tensor(3.0))
    run.finish()
    steps = [r for r in read_jsonl(metrics) if r.get("type") == "sample"]
    assert [s["step"] for s in steps] == [0, 1, 2, 3]
    first = steps[0]
    assert first["total_steps"] == 4 and first["custom"] == 3.0 and first["lr"] == 0.1
    assert first["samples_per_s"] > 0 and first["mem_rss_mib"] > 0 and isinstance(first["loss"], float)


def test_one_batches_call_per_epoch_counts_epochs_and_reshuffles():
    from torch.utils.data.distributed import DistributedSampler

    run = dd.setup(precision="fp32", seed=0)
    data = TensorDataset(torch.arange(16.0).unsqueeze(1))
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=16, sampler=sampler)
    orders = []
    for _ in range(3):  # the shape generated scripts use: evaluate between epochs
        for (xb,) in run.batches(loader):
            orders.append(xb.squeeze(1).tolist())
    assert run.epoch == 2 and run._epochs_started == 3
    assert len({tuple(o) for o in orders}) == 3, "each epoch is shuffled differently (set_epoch 0, 1, 2)"
    run.finish()


def test_without_a_sink_the_reporter_is_off():
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPDIVE_HUB", "DEEPDIVE_METRICS_OUT")}
    code = ("import deepdive.engine as dd, threading; run = dd.setup(precision='fp32');"
            "print(run.reporter.enabled, threading.active_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["False", "1"], done.stderr


def test_suggest_returns_the_default_or_the_trial_value(monkeypatch):
    run = dd.setup(precision="fp32")
    assert run.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3) == 3e-3
    monkeypatch.setenv(ENV_PARAMS, json.dumps({"lr": 0.01, "layers": 3, "act": "gelu"}))
    trial = dd.setup(precision="fp32")
    assert trial.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3) == 0.01
    assert trial.suggest("layers", 1, 4, default=2) == 3
    assert trial.suggest("act", choices=["relu", "gelu"], default="relu") == "gelu"
    monkeypatch.setenv(ENV_PARAMS, json.dumps({"lr": 5.0}))
    with pytest.raises(ValueError, match="outside"):
        dd.setup(precision="fp32").suggest("lr", 1e-4, 1e-1, default=3e-3)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"precision": "fp8"}, "precision must be one of"),
    ({"grad_compression": "zip"}, "grad_compression must be one of"),
    ({"strategy": "pipeline"}, "strategy must be one of"),
    ({"compression_options": {"rnk": 2}}, "unknown compression_options"),
])
def test_bad_options_name_the_allowed_values(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        dd.setup(**kwargs)


def test_smoke_flag_of_the_example_contract():
    done = subprocess.run([sys.executable, str(DIGITS), "--smoke"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "smoke ok" in done.stdout, done.stderr


def test_two_process_digits_with_auto_compression_reports_its_decision(tmp_path):
    metrics = tmp_path / "m.jsonl"
    done = torchrun(2, DIGITS, "--epochs", "3", "--json", "--compression", "auto", "--metrics-out", str(metrics))
    result = last_json(done.stdout)
    assert result["world_size"] == 2 and result["strategy"] == "ddp" and result["accuracy"] >= 0.9
    assert "loopback" in result["topology"]
    decisions = [r for r in read_jsonl(metrics) if r.get("type") == "event" and r.get("kind") == "compression"]
    # torchrun --standalone: every process on one host, so compression cannot shorten the step
    assert len(decisions) == 1 and decisions[0]["mode"] == "none" and "loopback" in decisions[0]["reason"]
    assert decisions[0]["evidence"]["world_size"] == 2 and decisions[0]["evidence"]["step_time_s"] > 0
    assert result["compression"] == "none" and result["compression_reason"] == decisions[0]["reason"]
    assert (tmp_path / "m.jsonl.rank1").exists(), "other ranks keep their own file"


def test_fsdp2_over_gloo_trains_digits(tmp_path):
    done = torchrun(2, DIGITS, "--epochs", "4", "--json", "--strategy", "fsdp", "--compression", "none")
    result = last_json(done.stdout)
    assert result["strategy"] == "fsdp" and result["world_size"] == 2
    assert result["accuracy"] >= 0.9


def test_compression_with_fsdp_is_refused_with_the_fix():
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(DIGITS),
         "--strategy", "fsdp", "--compression", "powersgd", "--epochs", "1"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0 and "use strategy='ddp' or grad_compression='none'" in done.stderr


def test_deepdive_train_runs_torchrun_and_prints_the_figures(tmp_path):
    metrics = tmp_path / "m.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "deepdive", "train", str(DIGITS), "--nproc", "2", "--metrics-out", str(metrics),
         "--json", "--", "--epochs", "2", "--compression", "powersgd"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env={**os.environ, "DEEPDIVE_HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["state"] == "succeeded"
    summary = out["summary"]
    assert summary["world_size"] == 2 and summary["compression"] == "powersgd"
    assert summary["comm_bytes_sent_per_step"] < summary["comm_bytes_uncompressed_per_step"]


def test_the_launchers_precision_and_compression_apply_where_the_script_leaves_auto(monkeypatch, capsys):
    monkeypatch.setenv("DEEPDIVE_PRECISION", "fp32")
    monkeypatch.setenv("DEEPDIVE_GRAD_COMPRESSION", "none")
    run = dd.setup()  # the script leaves both "auto"
    assert run.precision == "fp32" and run._options["compression"] == "none"
    run.finish()
    monkeypatch.setenv("DEEPDIVE_PRECISION", "bf16")
    fixed = dd.setup(precision="fp32")  # the script fixes it: the script wins, and stderr says so
    assert fixed.precision == "fp32"
    assert "DEEPDIVE_PRECISION=bf16 ignored: the script fixes precision='fp32'" in capsys.readouterr().err
    fixed.finish()
    monkeypatch.setenv("DEEPDIVE_PRECISION", "fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        dd.setup()
