"""The runners the server opens: ``compiled`` warmed at open and not recompiled per batch size, the thread
settings each runner honours, onnxruntime's execution providers, and what a runner says when it cannot open."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deepdive.deploy.errors import DeployError
from deepdive.deploy.export import TOLERANCE, export
from deepdive.deploy.manifest import read, write
from deepdive.deploy.runners import OnnxRunner, compiled_graphs, execution_providers, open_runner
from deepdive.deploy.source import load_source

from tests.deploy import _export_scripts as scripts


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    torch.set_num_threads(1)
    script = scripts.write(folder, "tiny", scripts.TINY)
    export(load_source(str(script)), folder / "export", forms=("eager", "onnx", "int8"))
    return folder / "export"


def _rows(folder: Path, batch: int) -> list[np.ndarray]:
    manifest = read(folder)
    rows = manifest.example_rows(folder)
    return [np.resize(rows[s.name], (batch, *rows[s.name].shape[1:])) for s in manifest.inputs]


def test_compiled_is_warmed_at_open_and_serves_every_batch_size_without_recompiling(digits_export: Path) -> None:
    torch.set_num_threads(1)
    manifest = read(digits_export)
    compiled = open_runner(digits_export, manifest, "compiled", threads=1)
    eager = open_runner(digits_export, manifest, "eager", threads=1)
    assert compiled_graphs() == compiled.graphs_at_warm  # type: ignore[attr-defined]
    for batch in (1, 2, 3, 5, 8, 15, 16, 17, 33, 64, 100):
        inputs = _rows(digits_export, batch)
        got, want = compiled.run(inputs)[0], eager.run(inputs)[0]
        assert got.shape == (batch, 10) and np.abs(got - want).max() <= TOLERANCE
    assert compiled_graphs() == compiled.graphs_at_warm  # type: ignore[attr-defined]


def test_torch_runners_set_their_threads_and_onnxruntime_has_its_own(tiny_export: Path) -> None:
    manifest = read(tiny_export)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        runner = open_runner(tiny_export, manifest, "eager", threads=2)
        runner.run(_rows(tiny_export, 3))
        assert torch.get_num_threads() == 2
        onnx = open_runner(tiny_export, manifest, "onnx", threads=3)
        assert isinstance(onnx, OnnxRunner)
        assert onnx.session.get_session_options().intra_op_num_threads == 3
        assert torch.get_num_threads() == 2  # onnxruntime's pool is its own
    finally:
        torch.set_num_threads(before)


def test_onnxruntime_gets_the_providers_present_cuda_first_cpu_last() -> None:
    import onnxruntime

    providers = execution_providers()
    present = onnxruntime.get_available_providers()
    assert set(providers) <= set(present) and "AzureExecutionProvider" not in providers
    assert providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in present:
        assert providers[0] == "CUDAExecutionProvider"


def test_int8_runs_on_this_machines_quantized_engine(tiny_export: Path) -> None:
    from deepdive.deploy.runners import quantized_engine

    torch.backends.quantized.engine = "qnnpack" if "qnnpack" in torch.backends.quantized.supported_engines else "none"
    runner = open_runner(tiny_export, read(tiny_export), "int8")
    assert torch.backends.quantized.engine == quantized_engine()
    want = open_runner(tiny_export, read(tiny_export), "eager").run(_rows(tiny_export, 4))[0]
    assert np.abs(runner.run(_rows(tiny_export, 4))[0] - want).max() < 0.05


def test_a_form_the_folder_lacks_or_a_broken_file_is_one_line(tiny_export: Path, tmp_path: Path) -> None:
    manifest = read(tiny_export)
    with pytest.raises(DeployError, match="has no pt2 form"):
        open_runner(tiny_export, manifest, "pt2")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_export, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(DeployError, match="onnxruntime cannot open") as caught:
        open_runner(broken, manifest, "onnx")
    assert "\n" not in str(caught.value)


def test_a_missing_script_says_which_when_its_class_is_needed(tiny_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "moved"
    shutil.copytree(tiny_export, folder)
    manifest = read(folder)
    manifest.source["module"] = "deepdive_script_not_imported_here"  # as in a fresh process
    manifest.source["script"] = str(tmp_path / "gone.py")
    write(folder, manifest)
    with pytest.raises(DeployError, match="gone.py, which is gone"):
        open_runner(folder, read(folder), "eager")
