"""The builtin backend: complete programs composed from tested building blocks, offline, no weights.

:func:`generate` is pure string work (the daemon calls it in its own process, so nothing here imports
torch or tensorflow): PyTorch programs come from :mod:`.pytorch` and its :mod:`.blocks`, Keras
programs from :mod:`.keras`. Every program follows the contract of generated scripts:
``build_model()``, ``example_batch()``, ``main()`` and ``--smoke``.
"""

from __future__ import annotations

import importlib

import attrs

from deepdive.codegen.intent import Intent

__all__ = ["GeneratedProgram", "generate"]


@attrs.define
class GeneratedProgram:
    code: str
    filename: str
    """A suggested file name, e.g. ``cifar10_resnet.py``."""
    framework: str


def generate(intent: Intent) -> GeneratedProgram:
    """The complete program for ``intent``.

    Raises:
        RuntimeError: a TensorFlow intent while the Keras generator is not available.
    """
    if intent.framework == "tensorflow":
        try:
            keras = importlib.import_module("deepdive.codegen.builtin.keras")
        except ModuleNotFoundError as exc:
            if exc.name != "deepdive.codegen.builtin.keras":
                raise
            raise RuntimeError("the builtin Keras generator (deepdive.codegen.builtin.keras) is not installed; "
                               "ask for a PyTorch program instead") from None
        result = keras.generate(intent)
        if isinstance(result, GeneratedProgram):
            return result
        code = result if isinstance(result, str) else result.code
        from deepdive.codegen.builtin.pytorch import Plan, program_filename

        try:
            filename = "keras_" + program_filename(Plan(intent))
        except Exception:  # noqa: BLE001 - a name suggestion must never fail generation
            filename = "keras_model.py"
        return GeneratedProgram(code=code, filename=filename, framework="tensorflow")
    from deepdive.codegen.builtin.pytorch import generate_torch

    code, filename = generate_torch(intent)
    return GeneratedProgram(code=code, filename=filename, framework="torch")
