"""Model compression: structured pruning, (progressive) distillation and int8 quantization, measured.

``deepdive compress MODEL --eval EVAL.py --prune 0.5 [--layers 2] --distill --quantize int8`` runs
:func:`pipeline.compress`; the parts are usable alone:

- :func:`deepdive.engine.compress.prune.prune` — channels, neurons and attention heads removed
  physically (Torch-Pruning's dependency graph keeps coupled layers consistent);
- :func:`deepdive.engine.compress.depth.reduce_depth` — depth reduction: N of the model's repeated
  blocks kept (``--layers N``), initialised from the teacher's own;
- :func:`deepdive.engine.compress.distill.distill` / ``progressive_distill`` — KL on softened logits
  plus the hard labels, optional feature matching, teacher → intermediate → student;
- :func:`deepdive.engine.compress.quantize.quantize` — dynamic int8 (Linear/LSTM/GRU), static int8
  with calibration and fusion (CNNs), weight-only int8/int4 on GPUs (torchao), by ``--target``;
- :mod:`deepdive.engine.compress.measure` — size, parameters and measured CPU latency.

The submodules import torch; this package's own import does not pull the heavy parts in.
"""

from __future__ import annotations

from deepdive.engine.compress.pipeline import QUANTIZE_MODES, CompressConfig, CompressError, compress

__all__ = ["QUANTIZE_MODES", "CompressConfig", "CompressError", "compress"]
