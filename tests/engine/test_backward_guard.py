"""The backward guard: a plain ``loss.backward()`` that bypasses ``run.backward`` is named on the first step.

fp16 loss scaling runs on the CPU too (``torch.amp.GradScaler("cpu")``), so the engine's real fp16 path
is exercised here with ``precision="fp16"``; the CUDA variant runs where a GPU is.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deepdive.engine as dd
from deepdive.engine.precision import LossScaler, check_backward


def _prepared(precision: str, device: str = "cpu", **options):
    torch.manual_seed(0)
    run = dd.setup(precision=precision, device=device, grad_compression="none", strategy="none", **options)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    model, opt = run.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    return run, model, opt


def _loss(run, model) -> torch.Tensor:
    x = torch.randn(4, 8, device=run.device)
    with run.autocast():
        return F.mse_loss(model(x).float(), torch.zeros(4, 1, device=run.device))


def _fp16_plain_backward_is_refused(device: str) -> None:
    run, model, opt = _prepared("fp16", device)
    assert run.scaler.enabled
    before = [p.detach().clone() for p in model.parameters()]
    _loss(run, model).backward()  # the mistake: not run.backward(loss)
    with pytest.raises(RuntimeError) as info:
        run.step(opt)
    message = str(info.value)
    assert "\n" not in message
    assert "loss.backward() was called instead of run.backward(loss) under fp16 loss scaling" in message
    assert message.endswith("write run.backward(loss)") and "65536" in message
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "nothing was stepped"
    assert run.step_count == 0
    # written as the message says, the same run trains
    opt.zero_grad(set_to_none=True)
    run.backward(_loss(run, model))
    assert run.step(opt) is False and run.step_count == 1
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    run.finish()


def test_a_plain_loss_backward_under_fp16_loss_scaling_is_refused_on_the_first_step():
    _fp16_plain_backward_is_refused("cpu")


@pytest.mark.cuda
def test_a_plain_loss_backward_under_fp16_loss_scaling_is_refused_on_the_gpu():
    _fp16_plain_backward_is_refused("cuda")


def test_a_plain_loss_backward_after_scaled_steps_is_refused_too():
    # torch's GradScaler asserts only while it has never scaled; after that it would divide the
    # unscaled gradients by the scale and step, silently
    run, model, opt = _prepared("fp16")
    run.backward(_loss(run, model))
    run.step(opt)
    before = [p.detach().clone() for p in model.parameters()]
    _loss(run, model).backward()
    with pytest.raises(RuntimeError, match=r"^loss.backward\(\) was called instead of run.backward\(loss\) under fp16"):
        run.step(opt)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    run.finish()


def test_a_step_without_any_backward_under_fp16_says_so_in_one_line():
    run, model, opt = _prepared("fp16")
    with pytest.raises(RuntimeError, match=r"^run.step\(optimizer\) found no gradients: call run.backward\(loss\) "
                                           r"before run.step\(optimizer\)$"):
        run.step(opt)  # torch's GradScaler would fail with "No inf checks were recorded for this optimizer"
    run.finish()


def test_under_bf16_a_plain_backward_is_warned_once_and_overflow_sampling_does_not_pile_up(capfd):
    run, model, opt = _prepared("bf16", overflow_check_every=1)  # every step sampled: hooks attached each time
    for _ in range(4):
        _loss(run, model).backward()
        assert run.step(opt) is False
    err = capfd.readouterr().err
    assert err.count("deepdive: loss.backward() was called instead of run.backward(loss):") == 1, err
    # the sampling hooks of a forward that no run.backward followed are removed before the next one
    assert all(len(m._forward_hooks) <= 1 for m in model.modules()), "forward hooks piled up"
    run.finish()


def test_with_run_backward_nothing_is_said(capfd):
    run, model, opt = _prepared("bf16")
    for _ in range(3):
        run.backward(_loss(run, model))
        run.step(opt)
    assert "deepdive:" not in capfd.readouterr().err
    run.finish()


def test_two_optimizers_stepping_on_one_run_backward_is_not_mistaken_for_a_plain_backward(capfd):
    torch.manual_seed(0)
    run = dd.setup(precision="bf16", device="cpu", grad_compression="none", strategy="none")
    model = run.prepare(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)))
    first, second = (torch.optim.SGD(model[i].parameters(), lr=0.1) for i in (0, 2))
    for _ in range(2):
        run.backward(_loss(run, model))
        run.step(first)
        run.step(second)
    assert "deepdive:" not in capfd.readouterr().err
    _loss(run, model).backward()
    run.step(first)
    assert "instead of run.backward(loss)" in capfd.readouterr().err
    run.finish()


def test_a_ddp_run_refuses_a_plain_backward_whose_communication_figures_would_stay_open():
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(RuntimeError, match=r"in a DDP run: .*write run.backward\(loss\)$"):
        check_backward(LossScaler("cpu", enabled=False), opt, measures_comm=True)
    scaler = LossScaler("cpu", enabled=False)
    scaler.scale_loss(torch.tensor(1.0))
    assert check_backward(scaler, opt, measures_comm=True) is None, "through the scaler: nothing to say"
