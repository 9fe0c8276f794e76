"""Precision policy, loss scaling, fp32 islands and adaptive promotion (CPU; GPUs simulated for the policy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepdive.engine import precision as prec
from deepdive.engine.precision import LossScaler, OverflowGuard, keep_in_fp32, resolve_precision


def test_auto_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: True)
    plan = resolve_precision("auto", torch.device("cpu"))
    assert plan.mode == "bf16" and "native bf16" in plan.reason
    monkeypatch.setattr(prec, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")).mode == "fp32"


@pytest.mark.parametrize("capability, mode", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16")])
def test_auto_on_gpus_follows_compute_capability(monkeypatch, capability, mode):
    # this machine has no GPU: the capability query stands in for one
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    plan = resolve_precision("auto", torch.device("cuda", 0))
    assert plan.mode == mode and plan.needs_loss_scaling == (mode == "fp16")


def test_bf16_on_an_old_gpu_and_unknown_names_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.raises(ValueError, match="use precision='fp16'"):
        resolve_precision("bf16", torch.device("cuda", 0))
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", torch.device("cpu"))


def test_normalisation_layers_stay_fp32_under_autocast():
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    kept = keep_in_fp32(model, prec.DEFAULT_FP32_MODULES, "cpu")
    assert kept == ["1"]
    seen = {}
    model[1].register_forward_hook(lambda m, i, o: seen.update(ln=o.dtype))  # update() returns None
    model[2].register_forward_hook(lambda m, i, o: seen.update(linear=o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 8))
    assert seen == {"ln": torch.float32, "linear": torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters()), "master weights stay fp32"


def _fp16_step(scaler: LossScaler, model: nn.Module, opt: torch.optim.Optimizer, factor: float) -> bool:
    with torch.autocast("cpu", dtype=torch.float16):
        loss = model(torch.randn(4, 8)).float().pow(2).mean() * factor
    scaler.scale_loss(loss).backward()
    skipped = scaler.step(opt)
    opt.zero_grad()
    return skipped


def test_an_overflow_skips_the_step_and_backs_the_scale_off():
    torch.manual_seed(0)
    model = nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = LossScaler("cpu", enabled=True)
    assert not _fp16_step(scaler, model, opt, 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    scale = scaler.scale
    assert _fp16_step(scaler, model, opt, 1e30)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the step was skipped"
    assert scaler.scale == scale / 2 and scaler.skipped_steps == 1 and scaler.scale_changes == 1
    assert not _fp16_step(scaler, model, opt, 1.0), "training goes on"


def test_hysteresis_backs_off_only_after_consecutive_overflows():
    model = nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = LossScaler("cpu", enabled=True, hysteresis=2)
    scale = scaler.scale
    assert _fp16_step(scaler, model, opt, 1e30)
    assert scaler.scale == scale and scaler.skipped_steps == 1
    assert _fp16_step(scaler, model, opt, 1e30)
    assert scaler.scale == scale / 2 and scaler.skipped_steps == 2
    assert not _fp16_step(scaler, model, opt, 1.0)
    assert _fp16_step(scaler, model, opt, 1e30)
    assert scaler.scale == scale / 2, "the count restarts after a clean step"


class Blowup(nn.Module):
    """Finite in fp32, inf in fp16: outputs around 1e6."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        with torch.no_grad():
            self.proj.weight.fill_(2e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def test_a_module_that_overflows_in_fp16_is_promoted_to_fp32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), Blowup(), nn.LayerNorm(8), nn.Linear(8, 2))
    keep_in_fp32(model, prec.DEFAULT_FP32_MODULES, "cpu")
    promoted = []
    guard = OverflowGuard(model, "cpu", every=10, on_promote=promoted.append)
    x = torch.ones(4, 8)

    def forward(step: int) -> torch.Tensor:
        guard.before_forward(step)
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        guard.after_forward(step)
        return out

    assert not torch.isfinite(forward(1)).all(), "unsampled step: overflow, nobody looks"
    guard.overflowed()  # the loss scaler saw it
    forward(2)
    assert [(p.module, p.module_type, p.step) for p in promoted] == [("1.proj", "Linear", 2)]
    assert torch.isfinite(forward(3)).all(), "in fp32 from now on"
    forward(10)  # a sampled step with nothing wrong promotes nothing more
    assert len(promoted) == 1
