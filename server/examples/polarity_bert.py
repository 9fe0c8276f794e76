"""A BERT-style Transformer encoder trained from scratch on sentence polarity: a model to compress.

Four post-LayerNorm encoder layers (``nn.MultiheadAttention`` self-attention, a GELU feed-forward,
residual adds), token and position embeddings, masked mean pooling and a linear classifier, on the
Rotten Tomatoes snippets (``server/examples/polarity.py``'s data and fixed seeded 90/10 split; the
vocabulary of the training split). This file is also its ``deepdive compress`` evaluation script::

    python server/examples/polarity_bert.py --epochs 4 --save polarity_bert.pt
    deepdive compress polarity_bert.pt --eval server/examples/polarity_bert.py --prune 0.5 --distill --quantize int8

The data folder is ``--data`` when training, else ``$DEEPDIVE_POLARITY_DATA`` or the shared data
folder beside the repository (a clear one-line error names the missing file). A batch is trimmed
to its longest sentence, so latency at batch 1 reflects a real sentence, not 64 padded tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepdive.examples.polarity import MAX_LEN, PAD, default_data_dir, load_data

# the split's validation sentences in a fixed order: the latency inputs (batch 1 = the first one)
_CACHE: dict[str, object] = {}


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln1 = nn.LayerNorm(dim)
        self.ff1, self.ff2 = nn.Linear(dim, ff), nn.Linear(ff, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attn(x, x, x, key_padding_mask=pad, need_weights=False)
        x = self.ln1(x + self.drop(attended))
        return self.ln2(x + self.drop(self.ff2(F.gelu(self.ff1(x)))))


class PolarityBERT(nn.Module):
    def __init__(self, vocab_size: int, dim: int = 128, heads: int = 4, ff: int = 512, layers: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.positions = nn.Embedding(MAX_LEN, dim)
        self.ln = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ff, dropout) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        length = int((ids != PAD).sum(1).max().clamp_min(1))
        ids = ids[:, :length].contiguous()  # the batch's longest sentence
        pad = ids == PAD
        x = self.drop(self.ln(self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))))
        for layer in self.layers:
            x = layer(x, pad)
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return self.classifier((x * keep).sum(1) / keep.sum(1).clamp_min(1.0))


def data(folder: Optional[Path] = None) -> tuple[TensorDataset, TensorDataset, int]:
    """(train, validation, vocabulary size); inputs are the padded ids only."""
    if "data" not in _CACHE:
        train, val, vocab = load_data(folder or default_data_dir(), 0)
        _CACHE["data"] = (TensorDataset(train.tensors[0], train.tensors[2]),
                          TensorDataset(val.tensors[0], val.tensors[2]), len(vocab))
    return _CACHE["data"]  # type: ignore[return-value]


def build_model(vocab_size: Optional[int] = None) -> nn.Module:
    from deepdive.examples.polarity_bert import PolarityBERT as Importable  # saved by its package name

    return Importable(vocab_size or data()[2])


def train(epochs: int = 4, seed: int = 0, lr: float = 5e-4, folder: Optional[Path] = None,
          log: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    train_set, _, vocab_size = data(folder)
    model = build_model(vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total = epochs * len(train_loader(seed))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=0.1)
    for epoch in range(epochs):
        model.train()
        for ids, labels in train_loader(seed + epoch):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(ids), labels).backward()
            optimizer.step()
            schedule.step()
        if log:
            print(f"epoch {epoch + 1}: validation accuracy {evaluate(model):.4f}", flush=True)
    return model.eval()


# -- the evaluation contract of `deepdive compress` ------------------------------------------------


@torch.inference_mode()
def evaluate(model: nn.Module) -> float:
    model.eval()
    ids, labels = data()[1].tensors
    correct = 0
    for start in range(0, len(labels), 256):
        correct += int((model(ids[start:start + 256]).argmax(1) == labels[start:start + 256]).sum())
    return correct / len(labels)


def train_loader(seed: int = 0) -> DataLoader:
    return DataLoader(data()[0], batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))


def example_inputs(batch_size: int = 1) -> tuple[torch.Tensor]:
    ids = data()[1].tensors[0]
    return (ids.repeat(-(-batch_size // len(ids)), 1)[:batch_size],)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="the rt-polarity folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the trained model (whole module) here")
    args = parser.parse_args(argv)
    try:
        model = train(args.epochs, args.seed, folder=Path(args.data) if args.data else None, log=True)
    except FileNotFoundError as exc:
        print(f"polarity_bert: {exc}", file=sys.stderr)
        return 2
    print(f"validation accuracy {evaluate(model):.4f}")
    if args.save:
        from deepdive.examples.digits import save_model

        save_model(model, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
