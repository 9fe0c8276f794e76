"""``deploy.json``: what an export folder holds, read by ``serve``, ``bench`` and ``triton``.

Written atomically (temp file, fsync, rename) by ``deploy export`` and updated by ``deploy bench``::

    {
      "version": 1,
      "name": "digits_cnn",
      "source": {"script": "/abs/digits_cnn.py", "model": "/abs/digits_cnn.pt" | null, "trained": true},
      "inputs":  [{"name": "input__0", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
      "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}],
      "forms": {
        "eager":       {"file": "model.pt",   "max_abs_diff": 0.0},
        "torchscript": {"file": "model.ts",   "max_abs_diff": 1.2e-7},
        "pt2":         {"file": "model.pt2",  "max_abs_diff": 0.0},
        "onnx":        {"file": "model.onnx", "max_abs_diff": 3.1e-6, "opset": 18},
        "int8":        {"file": "model.int8.pt", "max_abs_diff": 0.02}
      },
      "failed": {"pt2": "one line: why this form could not be exported"},
      "choice": null | {"form": "onnx", "threads": 2, "reason": "...", "measured": [...], "tolerance": 1e-3},
      "examples": "examples.npz"
    }

Shapes use -1 for the batch dimension (and for any dimension the export made dynamic). Datatypes are
the Open Inference Protocol's names (:data:`DATATYPES`). ``max_abs_diff`` is the largest absolute
difference from the eager model's outputs on the example inputs, measured at export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import attrs

from deepdive.deploy.errors import DeployError
from deepdive.fsutil import atomic_write_text

MANIFEST = "deploy.json"
VERSION = 1
FORMS = ("eager", "compiled", "torchscript", "pt2", "onnx", "int8")
"""Every form a server can run. ``compiled`` is ``torch.compile`` of the eager file, made when served."""

# Open Inference Protocol datatype <-> numpy dtype name
DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "INT8": "int8", "INT16": "int16", "INT32": "int32",
             "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64"}
TO_DATATYPE = {v: k for k, v in DATATYPES.items()}


@attrs.define
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TensorSpec":
        return cls(name=str(data["name"]), datatype=str(data["datatype"]), shape=[int(d) for d in data["shape"]])


@attrs.define
class Manifest:
    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source: dict[str, Any] = attrs.field(factory=dict)
    forms: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    failed: dict[str, str] = attrs.field(factory=dict)
    choice: Optional[dict[str, Any]] = None
    examples: Optional[str] = None
    """``examples.npz`` beside it: example input rows (one array per input name), for measuring and warming."""

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "name": self.name, "source": self.source,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs],
                "forms": self.forms, "failed": self.failed, "choice": self.choice,
                "examples": self.examples}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        if data.get("version") != VERSION:
            raise DeployError(f"deploy.json version {data.get('version')!r} is not {VERSION}: export the model again")
        return cls(name=data["name"], inputs=[TensorSpec.from_json(t) for t in data["inputs"]],
                   outputs=[TensorSpec.from_json(t) for t in data["outputs"]], source=data.get("source") or {},
                   forms=data.get("forms") or {}, failed=data.get("failed") or {}, choice=data.get("choice"),
                   examples=data.get("examples"))

    def example_rows(self, folder: Path) -> dict[str, "Any"]:
        """The example inputs (name -> numpy array of :data:`deepdive.deploy.export.EXAMPLE_ROWS` rows)."""
        import numpy as np

        if not self.examples or not (Path(folder) / self.examples).is_file():
            raise DeployError(f"{folder} has no example inputs: export the model again")
        with np.load(Path(folder) / self.examples) as data:
            return {name: data[name] for name in data.files}

    def form_path(self, folder: Path, form: str) -> Path:
        """The file of ``form`` in ``folder`` (``compiled`` uses the eager file)."""
        key = "eager" if form == "compiled" else form
        if key not in self.forms:
            why = self.failed.get(key)
            raise DeployError(f"{folder} has no {form} form" + (f" (its export failed: {why})" if why else "")
                              + f": export it with `deepdive deploy export ... --forms {key}`")
        return folder / self.forms[key]["file"]


def write(folder: Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST
    atomic_write_text(path, json.dumps(manifest.to_json(), indent=2) + "\n")
    return path


def read(folder: Path | str) -> Manifest:
    """The manifest of an export folder (or of the folder holding the given ``deploy.json``)."""
    folder = Path(folder)
    path = folder if folder.name == MANIFEST else folder / MANIFEST
    if not path.is_file():
        raise DeployError(f"{path} not found: export the model first with `deepdive deploy export SCRIPT --out {path.parent}`")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DeployError(f"{path} is not readable JSON ({exc}): export the model again") from None
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DeployError):
            raise
        raise DeployError(f"{path} is missing {exc}: export the model again") from None
