"""The evaluation script of the digits model for ``deepdive compress`` (the EVAL.py contract).

    python server/examples/digits.py --epochs 10 --save digits.pt
    deepdive compress digits.pt --eval server/examples/digits_eval.py --prune 0.5 --distill --quantize int8

``deepdive compress`` imports this file and calls:

- ``evaluate(model) -> float``: held-out accuracy (higher is better) on the same fixed seeded 80/20
  split that ``digits.py`` trains on;
- ``train_loader()``: ``(inputs, labels)`` batches for fine-tuning and distillation;
- ``example_inputs(batch_size)``: a tuple of inputs for latency measurement and tracing;
- ``calibration_loader()`` (optional): batches for static quantization's calibration.
"""

from __future__ import annotations

import os
import sys

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits import load_data  # noqa: E402 - the example's own split

_TRAIN, _TEST = load_data(0)


@torch.inference_mode()
def evaluate(model: torch.nn.Module) -> float:
    model.eval()
    x, y = _TEST.tensors
    return (model(x).argmax(1) == y).float().mean().item()


def train_loader() -> DataLoader:
    return DataLoader(_TRAIN, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))


def calibration_loader() -> list:
    return [x for x, _ in DataLoader(_TRAIN, batch_size=128)][:4]


def example_inputs(batch_size: int = 1) -> tuple[torch.Tensor]:
    x = _TEST.tensors[0]
    return (x.repeat(-(-batch_size // len(x)), 1)[:batch_size],)
