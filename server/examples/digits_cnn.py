"""A small CNN on scikit-learn's 8x8 digits: a model to compress, and its evaluation script.

Train and save it, then compress it (this same file is the EVAL.py of ``deepdive compress``)::

    python server/examples/digits_cnn.py --epochs 10 --save digits_cnn.pt
    deepdive compress digits_cnn.pt --eval server/examples/digits_cnn.py --prune 0.5 --distill --quantize int8

Data: the same fixed seeded 80/20 split as ``digits.py``, as 1x8x8 images. The network has
Conv-BN-ReLU blocks (what static int8 fuses), a pooling step and a two-layer head. The class is
saved by its importable name, ``deepdive.examples.digits_cnn.DigitsCNN``, so the file loads anywhere
Deepdive is installed.

The evaluation contract: ``evaluate(model) -> float`` (held-out accuracy), ``train_loader()``,
``calibration_loader()`` and ``example_inputs(batch_size)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(_block(1, width), _block(width, 2 * width), nn.MaxPool2d(2),
                                      _block(2 * width, 2 * width))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train and test splits (80/20, seeded, the same as digits.py), images 1x8x8 standardised."""
    from deepdive.examples.digits import load_data as flat

    train, test = flat(seed)
    return (TensorDataset(train.tensors[0].view(-1, 1, 8, 8), train.tensors[1]),
            TensorDataset(test.tensors[0].view(-1, 1, 8, 8), test.tensors[1]))


_DATA: Optional[tuple[TensorDataset, TensorDataset]] = None


def _data() -> tuple[TensorDataset, TensorDataset]:
    global _DATA
    if _DATA is None:
        _DATA = load_data(0)
    return _DATA


def build_model() -> nn.Module:
    from deepdive.examples.digits_cnn import DigitsCNN as Importable  # saved by its package name, not __main__

    return Importable()


def train(epochs: int = 10, seed: int = 0, lr: float = 3e-3) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        model.train()
        for x, y in train_loader(seed):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()


# -- the evaluation contract of `deepdive compress` ------------------------------------------------


@torch.inference_mode()
def evaluate(model: nn.Module) -> float:
    model.eval()
    x, y = _data()[1].tensors
    return (model(x).argmax(1) == y).float().mean().item()


def train_loader(seed: int = 0) -> DataLoader:
    return DataLoader(_data()[0], batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))


def calibration_loader() -> list[torch.Tensor]:
    return [x for x, _ in DataLoader(_data()[0], batch_size=128)][:4]


def example_inputs(batch_size: int = 1) -> tuple[torch.Tensor]:
    x = _data()[1].tensors[0]
    return (x.repeat(-(-batch_size // len(x)), 1, 1, 1)[:batch_size],)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the trained model (whole module) here")
    args = parser.parse_args(argv)
    model = train(args.epochs, args.seed)
    print(f"test accuracy {evaluate(model):.4f}")
    if args.save:
        from deepdive.examples.digits import save_model

        save_model(model, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
