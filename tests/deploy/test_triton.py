"""`deepdive deploy triton`: the model repository's config.pbtxt parsed with Triton's own ModelConfig protobuf,
its model file run as Triton's backend runs it (onnxruntime / torch.jit.load) with the names and dims the
config declares, and bad input refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import read, write
from deepdive.deploy.triton import check_repository, write_repository
from tests.deploy._triton import copy_folder, export_with_triton_forms, parse_config


@pytest.fixture(scope="module")
def triton_export(digits_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN exported with the eager, ONNX and TorchScript forms (read-only: copy it to change it)."""
    return export_with_triton_forms(digits_model, tmp_path_factory.mktemp("triton_export"))


def _eager(folder: Path, rows: np.ndarray) -> np.ndarray:
    import torch

    manifest = read(folder)
    model = torch.load(folder / manifest.forms["eager"]["file"], map_location="cpu", weights_only=False).eval()
    with torch.inference_mode():
        return model(torch.from_numpy(rows)).numpy()


def test_onnx_repository_config_is_tritons_model_config_and_the_model_answers_by_its_names(triton_export, tmp_path):
    import onnx
    import onnxruntime as ort

    repo = tmp_path / "repo"
    written = write_repository(triton_export, repo, max_batch=32, preferred=(8, 16, 32), max_queue_delay_us=2000,
                               max_queue_size=128, instances=2, kind="cpu")
    manifest = read(triton_export)
    assert written.model_dir == repo / manifest.name
    config = parse_config(repo / manifest.name / "config.pbtxt")
    pb2_types = type(config).DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"].enum_type
    assert config.name == manifest.name
    assert config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size == 32
    graph = onnx.load(str(repo / manifest.name / "1" / "model.onnx"))
    assert [i.name for i in config.input] == [i.name for i in graph.graph.input]
    assert [o.name for o in config.output] == [o.name for o in graph.graph.output]
    assert pb2_types.values_by_number[config.input[0].data_type].name == "TYPE_FP32"
    assert list(config.input[0].dims) == [1, 8, 8]  # deploy.json's [-1, 1, 8, 8] without the batch dimension
    assert list(config.output[0].dims) == [10]
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 128
    assert len(config.instance_group) == 1 and config.instance_group[0].count == 2
    assert config.instance_group[0].kind == type(config.instance_group[0]).KIND_CPU
    # the model file answers a 32-row batch fed by the config's names and gives the eager model's outputs
    rows = manifest.example_rows(triton_export)[manifest.inputs[0].name][:32]
    session = ort.InferenceSession(str(repo / manifest.name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run([config.output[0].name], {config.input[0].name: rows})
    assert logits.shape == (32, *config.output[0].dims)
    np.testing.assert_allclose(logits, _eager(triton_export, rows), atol=1e-4)
    checked = check_repository(written, triton_export)
    assert checked == [f"batch 1: {config.output[0].name} [1, 10] TYPE_FP32",
                       f"batch 32: {config.output[0].name} [32, 10] TYPE_FP32"]


def test_torchscript_repository_uses_tritons_positional_names_and_runs_with_libtorch(triton_export, tmp_path):
    import torch

    written = write_repository(triton_export, tmp_path / "repo", form="torchscript", name="digits-ts",
                               max_batch=16, preferred=(4, 16), max_queue_delay_us=500, kind="gpu")
    config = parse_config(tmp_path / "repo" / "digits-ts" / "config.pbtxt")
    assert (config.name, config.platform, config.backend) == ("digits-ts", "pytorch_libtorch", "pytorch")
    assert [i.name for i in config.input] == ["input__0"] and [o.name for o in config.output] == ["output__0"]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert not config.dynamic_batching.HasField("default_queue_policy")
    assert config.instance_group[0].kind == type(config.instance_group[0]).KIND_GPU
    assert written.model_path == tmp_path / "repo" / "digits-ts" / "1" / "model.pt"
    manifest = read(triton_export)
    rows = manifest.example_rows(triton_export)[manifest.inputs[0].name][:16]
    module = torch.jit.load(str(written.model_path))
    with torch.inference_mode():
        out = module(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(out, _eager(triton_export, rows), atol=1e-5)
    assert check_repository(written, triton_export)[-1] == "batch 16: output__0 [16, 10] TYPE_FP32"


def test_max_batch_zero_writes_full_shapes_and_no_batcher_and_replaces_the_other_form(triton_export, tmp_path):
    repo = tmp_path / "repo"
    write_repository(triton_export, repo, form="torchscript", name="digits")
    write_repository(triton_export, repo, form="onnx", name="digits", max_batch=0)
    config = parse_config(repo / "digits" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 1, 8, 8]
    assert sorted(p.name for p in (repo / "digits" / "1").iterdir()) == ["model.onnx"]  # model.pt is gone
    assert not [p for p in repo.rglob("*.tmp")]


def test_cli_writes_the_repository_checks_it_and_refuses_bad_sizes_in_one_line(triton_export, tmp_path, capsys):
    from deepdive.cli import main

    repo = tmp_path / "repo"
    assert main(["deploy", "triton", str(triton_export), "--repo", str(repo), "--max-batch", "8", "--instances", "3"]) == 0
    out = capsys.readouterr().out
    name = read(triton_export).name
    config = parse_config(repo / name / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx"  # ONNX by default when it was exported
    assert list(config.dynamic_batching.preferred_batch_size) == [8]  # the defaults 8,16,32 cut to --max-batch
    assert config.instance_group[0].count == 3
    assert "batch 8: " in out and "tritonserver --model-repository" in out

    code = main(["deploy", "triton", str(triton_export), "--repo", str(tmp_path / "r2"), "--preferred", "8,64"])
    err = capsys.readouterr().err
    assert code == 2 and "--preferred 64" in err and "between 1 and --max-batch 32" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r2").exists()


def test_a_folder_without_onnx_or_torchscript_is_refused_saying_how_to_export(digits_export, tmp_path):
    folder = copy_folder(digits_export, tmp_path / "export")
    manifest = read(folder)
    manifest.forms = {"eager": manifest.forms["eager"]}
    manifest.failed = {"onnx": "UnsupportedOperatorError: aten::foo"}
    write(folder, manifest)
    with pytest.raises(DeployError, match=r"neither an ONNX nor a TorchScript form.*aten::foo.*--forms onnx"):
        write_repository(folder, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_an_onnx_model_with_a_fixed_batch_dimension_is_refused_for_batching(triton_export, tmp_path):
    import torch

    folder = copy_folder(triton_export, tmp_path / "export")
    manifest = read(folder)
    model = torch.load(folder / manifest.forms["eager"]["file"], map_location="cpu", weights_only=False).eval()
    path = folder / manifest.forms["onnx"]["file"]
    import onnx

    names = onnx.load(str(path))
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path), input_names=[names.graph.input[0].name],
                      output_names=[names.graph.output[0].name], dynamo=False)  # no dynamic axes: batch fixed at 1
    with pytest.raises(DeployError, match="fixed batch dimension of 1"):
        write_repository(folder, tmp_path / "repo")
    written = write_repository(folder, tmp_path / "repo", max_batch=0)  # without batching the fixed shape is fine
    assert list(written.config.inputs[0].dims) == [1, 1, 8, 8]
    check_repository(written, folder)


def test_a_per_row_scalar_output_is_dims_1_reshaped_to_the_models_own_shape(tmp_path):
    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source

    script = tmp_path / "score.py"
    script.write_text("import torch\n\n"
                      "class Score(torch.nn.Module):\n"
                      "    def forward(self, x):\n"
                      "        return x.sum(dim=1)\n\n"
                      "def build_model():\n    return Score()\n\n"
                      "def example_inputs(batch_size):\n    return (torch.randn(batch_size, 5),)\n")
    folder = tmp_path / "export"
    manifest = export(load_source(str(script)), folder, forms=("eager", "onnx", "torchscript"))
    assert manifest.outputs[0].shape == [-1]
    for form in ("onnx", "torchscript"):
        written = write_repository(folder, tmp_path / "repo", form=form, name=f"score-{form}", max_batch=8)
        config = parse_config(written.config_path)
        assert list(config.output[0].dims) == [1] and list(config.output[0].reshape.shape) == []
        assert config.output[0].HasField("reshape")
        assert list(config.input[0].dims) == [5] and not config.input[0].HasField("reshape")
        assert check_repository(written, folder)[-1] == f"batch 8: {config.output[0].name} [8] TYPE_FP32"
