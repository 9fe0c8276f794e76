"""Post-training quantization on real small models: digits (scikit-learn) MLP, CNN and RNNs.

The accuracy checks train real models (a few seconds each on 2 cores) and compare the quantized
model with the float one on the held-out 20 %; nothing about torch is mocked.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepdive.engine.compress.quantize import (
    QuantizeError,
    backend_for,
    model_size_bytes,
    quantize,
)

SEED = 0


# --------------------------------------------------------------------------------------------
# Data and models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits, scaled to [0, 1], split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data / 16.0, data.target, test_size=0.2, random_state=SEED, stratify=data.target)
    return {
        "x_train": torch.tensor(x_train, dtype=torch.float32),
        "y_train": torch.tensor(y_train, dtype=torch.long),
        "x_test": torch.tensor(x_test, dtype=torch.float32),
        "y_test": torch.tensor(y_test, dtype=torch.long),
    }


def _images(x: torch.Tensor) -> torch.Tensor:
    return x.view(-1, 1, 8, 8)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 3e-3) -> nn.Module:
    torch.manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(dim=1) == y).float().mean().item() * 100.0


def _mlp() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _cnn() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


class RowRNN(nn.Module):
    """Reads an 8x8 digit row by row (8 steps of 8 features) and classifies the last state."""

    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        torch.manual_seed(SEED)
        self.rnn = cell(8, 64, num_layers=2, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.view(-1, 8, 8))
        return self.head(out[:, -1])


@pytest.fixture(scope="module")
def trained_mlp(digits: dict[str, torch.Tensor]) -> nn.Module:
    torch.set_num_threads(1)
    return _train(_mlp(), digits["x_train"], digits["y_train"], epochs=30, lr=1e-3)


@pytest.fixture(scope="module")
def trained_cnn(digits: dict[str, torch.Tensor]) -> nn.Module:
    torch.set_num_threads(1)
    return _train(_cnn(), _images(digits["x_train"]), digits["y_train"], epochs=8)


def _calibration(digits: dict[str, torch.Tensor], n_batches: int = 4) -> list[torch.Tensor]:
    return list(_images(digits["x_train"][: 64 * n_batches]).split(64))


# --------------------------------------------------------------------------------------------
# Dynamic int8
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dynamic_int8_digits_mlp_within_one_point_and_smaller(digits, trained_mlp):
    fp32 = _accuracy(trained_mlp, digits["x_test"], digits["y_test"])
    assert fp32 >= 95.0, f"the float MLP should learn digits first (got {fp32:.1f} %)"

    result = quantize(trained_mlp, "int8-dynamic")
    int8 = _accuracy(result.model, digits["x_test"], digits["y_test"])

    assert fp32 - int8 <= 1.0, f"fp32 {fp32:.2f} % -> int8 {int8:.2f} %"
    assert model_size_bytes(result.model) < 0.5 * model_size_bytes(trained_mlp)
    assert result.engine == backend_for("x86")
    assert "dynamic" in result.method and result.engine in result.method
    import torch.ao.nn.quantized.dynamic as nnqd
    assert sum(isinstance(m, nnqd.Linear) for m in result.model.modules()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_rnns_are_quantized_dynamically_and_stay_close(digits, cell):
    import torch.ao.nn.quantized.dynamic as nnqd

    model = RowRNN(cell).eval()
    result = quantize(model, "int8-dynamic")

    assert isinstance(result.model.rnn, nnqd.LSTM if cell is nn.LSTM else nnqd.GRU)
    assert isinstance(result.model.head, nnqd.Linear)
    x = digits["x_test"][:128]
    with torch.no_grad():
        ref, out = model(x), result.model(x)
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item()
    assert err < 0.05 * ref.abs().max().item(), f"max abs diff {err:.4f} vs output scale {ref.abs().max():.4f}"


def test_bare_lstm_root_is_swapped():
    result = quantize(nn.LSTM(8, 16), "int8-dynamic")
    import torch.ao.nn.quantized.dynamic as nnqd
    assert isinstance(result.model, nnqd.LSTM)


# --------------------------------------------------------------------------------------------
# Static int8 (FX) and the automatic choice
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_static_int8_digits_cnn_fuses_bn_and_stays_close(digits, trained_cnn):
    import torch.ao.nn.quantized as nnq

    x_test, y_test = _images(digits["x_test"]), digits["y_test"]
    fp32 = _accuracy(trained_cnn, x_test, y_test)
    assert fp32 >= 95.0, f"the float CNN should learn digits first (got {fp32:.1f} %)"

    result = quantize(trained_cnn, "int8-static", calibration=iter(_calibration(digits)))
    int8 = _accuracy(result.model, x_test, y_test)

    assert fp32 - int8 <= 2.0, f"fp32 {fp32:.2f} % -> int8 {int8:.2f} %"
    modules = list(result.model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules), "BatchNorm was not fused"
    assert sum(isinstance(m, nnq.Conv2d) for m in modules) == 2
    assert sum(isinstance(m, nnq.Linear) for m in modules) == 1
    assert "static" in result.method
    assert any("calibrated on 4 batch(es), 256 sample(s)" in note for note in result.notes)


@pytest.mark.slow
def test_int8_auto_is_static_with_calibration_and_dynamic_without(digits, trained_cnn):
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd

    static = quantize(trained_cnn, "int8", calibration=_calibration(digits, 2))
    assert "static" in static.method
    assert any(isinstance(m, nnq.Conv2d) for m in static.model.modules())

    dynamic = quantize(trained_cnn, "int8")
    assert "dynamic" in dynamic.method
    assert isinstance(dynamic.model[-1], nnqd.Linear)
    assert not any(isinstance(m, nnq.Conv2d) for m in dynamic.model.modules())
    assert any("calibration" in note for note in dynamic.notes)

    mlp = quantize(_mlp().eval(), "int8", calibration=[torch.rand(4, 64)])
    assert "dynamic" in mlp.method, "a model without convolutions is quantized dynamically"


class _DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.relu() if x.sum() > 0 else x


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.gate = _DataDependent()
        self.head = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gate(self.conv(x)).flatten(1))


def test_untraceable_model_names_the_module_and_auto_falls_back():
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(QuantizeError) as info:
        quantize(_Untraceable().eval(), "int8-static", calibration=[x])
    message = str(info.value)
    assert "\n" not in message
    assert "'gate'" in message and "_DataDependent" in message and "int8-dynamic" in message

    result = quantize(_Untraceable().eval(), "int8", calibration=[x])
    assert "dynamic" in result.method
    assert any("'gate'" in note for note in result.notes)
    assert result.model(x).shape == (4, 10)


def test_static_arm_target_uses_qnnpack_and_runs():
    if "qnnpack" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no qnnpack")
    model = _cnn().eval()
    x = torch.rand(16, 1, 8, 8)
    result = quantize(model, "int8-static", target="arm", calibration=[(x,)])
    assert result.engine == "qnnpack"
    with torch.no_grad():
        out, ref = result.model(x), model(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 0.1 * ref.abs().max().item()


# --------------------------------------------------------------------------------------------
# The caller's model is left alone
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["int8-dynamic", "int8-static"])
def test_callers_model_is_unchanged(mode):
    model = _cnn()
    model.train()  # the caller's mode must survive too
    with torch.no_grad():  # non-trivial BatchNorm statistics, which fusion would fold away
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    before = copy.deepcopy(model.state_dict())
    types_before = [type(m) for m in model.modules()]

    quantize(model, mode, calibration=[torch.rand(8, 1, 8, 8)])

    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert [type(m) for m in model.modules()] == types_before
    assert model.training


# --------------------------------------------------------------------------------------------
# Engines and errors
# --------------------------------------------------------------------------------------------


def test_backend_for_targets():
    supported = torch.backends.quantized.supported_engines
    x86 = backend_for("x86")
    assert x86 in supported and x86 in ("x86", "fbgemm", "onednn")
    if "x86" in supported:
        assert x86 == "x86"
    if "qnnpack" in supported:
        assert backend_for("arm") == "qnnpack"
    else:
        with pytest.raises(QuantizeError):
            backend_for("arm")


@pytest.mark.parametrize("call, words", [
    (lambda: backend_for("riscv"), "x86, arm"),
    (lambda: quantize(_mlp(), "int8", target="mips"), "x86, arm"),
    (lambda: quantize(_mlp(), "int3"), "int8-dynamic"),
    (lambda: quantize(_mlp(), "int8-weight"), "CUDA"),
    (lambda: quantize(_mlp(), "int4-weight", device="cpu"), "CUDA"),
    (lambda: quantize(_cnn(), "int8-static"), "calibration"),
    (lambda: quantize(_cnn(), "int8-static", calibration=[]), "calibration"),
    (lambda: quantize(_cnn(), "int8-static", calibration=["not a tensor"]), "tensor"),
    (lambda: quantize(nn.Sequential(nn.Conv2d(1, 2, 3)), "int8-dynamic"), "int8-static"),
])
def test_errors_are_one_line_quantize_errors(call, words):
    with pytest.raises(QuantizeError) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)
    assert words in str(info.value)


# --------------------------------------------------------------------------------------------
# Weight-only (torchao, CUDA): runs only where a GPU is present
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["int8-weight", "int4-weight"])
def test_weight_only_on_cuda_stays_close(mode):
    pytest.importorskip("torchao")
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 256)).cuda().eval()
    x = torch.randn(32, 512, device="cuda")
    if mode == "int4-weight" and torch.cuda.get_device_capability() < (8, 0):
        with pytest.raises(QuantizeError):
            quantize(model, mode, device="cuda")
        return

    result = quantize(model, mode, device="cuda")
    dtype = next(p for p in result.model.parameters()).dtype
    with torch.no_grad():
        ref = model(x)
        out = result.model(x.to(dtype)).float()
    assert result.engine == "torchao"
    assert out.shape == ref.shape
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < (0.05 if mode == "int8-weight" else 0.15), f"relative error {rel:.4f}"
    assert model_size_bytes(result.model) < 0.5 * model_size_bytes(model)
