"""Helpers of the Triton tests: an export folder with the ONNX and TorchScript forms, and Triton's config parser."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest


def model_config_pb2() -> Any:
    """Triton's own ``ModelConfig`` protobuf module, shipped in ``tritonclient`` (needs only protobuf).

    ``tritonclient.grpc``'s package imports grpc; the generated module itself does not, so it is loaded
    from its file when grpc is absent. Skips, saying why, when tritonclient is not installed.
    """
    pytest.importorskip("google.protobuf", reason="protobuf is missing: install the dev extra")
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tritonclient is not installed (dev extra): Triton's model-config protobuf is not available")
    path = Path(list(spec.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        pytest.skip(f"{path} is missing from this tritonclient: cannot parse config.pbtxt with Triton's protobuf")
    module_spec = importlib.util.spec_from_file_location("deepdive_test_triton_model_config_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_config(path: Path) -> Any:
    """``config.pbtxt`` parsed by protobuf's text format into Triton's ``ModelConfig`` (raises on any unknown field)."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    return text_format.Parse(path.read_text(), pb2.ModelConfig())


def export_with_triton_forms(digits_model: Path, folder: Path) -> Path:
    """``folder``: the digits CNN exported by ``deploy export`` with the eager, ONNX and TorchScript forms."""
    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source
    from tests.deploy.conftest import DIGITS_SCRIPT

    manifest = export(load_source(str(DIGITS_SCRIPT), str(digits_model)), folder, forms=("eager", "onnx", "torchscript"))
    assert {"onnx", "torchscript"} <= set(manifest.forms), manifest.failed
    return folder


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
