"""Compose a complete PyTorch program from an :class:`Intent` (pure string work, no torch import).

- :mod:`.plan`: every decision about the program, made once from the intent;
- :mod:`.parts`: the model, ``example_batch()``, ``compute_loss()`` and the data loader, from
  :mod:`deepdive.codegen.builtin.blocks`;
- :mod:`.training`: checkpoints, loaders, evaluation, the training loop, the Optuna study;
- :mod:`.loops`: the loops of their own (GAN, online learning, streaming inference);
- :mod:`.program`: the whole program around them (:func:`generate_torch`).
"""

from __future__ import annotations

from deepdive.codegen.builtin.pytorch.plan import Plan
from deepdive.codegen.builtin.pytorch.program import generate_torch, program_filename

__all__ = ["Plan", "generate_torch", "program_filename"]
