"""A BERT-style Transformer encoder trained from scratch on sentence polarity: a model to compress.

Four post-LayerNorm encoder layers (``nn.MultiheadAttention`` self-attention, a GELU feed-forward,
residual adds), token and position embeddings, masked mean pooling and a linear classifier, on the
Rotten Tomatoes snippets (``server/examples/polarity.py``'s data and fixed seeded 90/10 split; the
vocabulary of the training split). This file is also its ``deepdive compress`` evaluation script::

    python server/examples/polarity_bert.py --epochs 4 --save polarity_bert.pt
    deepdive compress polarity_bert.pt --eval server/examples/polarity_bert.py --prune 0.5 --distill --quantize int8

``--dim --layers --heads --ff`` choose another shape, e.g. BERT-mini's ``--dim 256 --layers 4
--heads 4 --ff 1024`` (the default is 4 layers of width 128, 4 heads, feed-forward 512); then
``deepdive compress ... --layers 2`` keeps two of the encoder layers (depth reduction).

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
        # the batch's longest sentence; the bound stays a tensor (and the positions follow the trimmed
        # ids' size), so torch.jit.trace records the trim instead of freezing one example's length.
        # torch.export (.pt2, ONNX) cannot capture a shape that depends on the ids' values: there the
        # padded ids run whole (the padding is masked, so the outputs are the same).
        if not torch.compiler.is_exporting():
            length = (ids != PAD).sum(1).max().clamp_min(1)
            ids = ids[:, :length].contiguous()
        pad = ids == PAD
        x = self.drop(self.ln(self.tokens(ids) + self.positions(torch.arange(ids.size(1), device=ids.device))))
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


SHAPE = {"dim": 128, "heads": 4, "ff": 512, "layers": 4}
"""The default encoder shape (``build_model()`` with no arguments: what a state_dict is loaded into)."""
BERT_MINI = {"dim": 256, "heads": 4, "ff": 1024, "layers": 4}
"""BERT-mini's shape (Turc et al., 2019: 4 layers, hidden 256, 4 heads, feed-forward 1024)."""


def build_model(vocab_size: Optional[int] = None, *, dim: int = SHAPE["dim"], heads: int = SHAPE["heads"],
                ff: int = SHAPE["ff"], layers: int = SHAPE["layers"]) -> nn.Module:
    from deepdive.examples.polarity_bert import PolarityBERT as Importable  # saved by its package name

    if dim % heads:
        raise ValueError(f"--dim {dim} is not a multiple of --heads {heads}: pick a head count that divides it")
    if min(dim, heads, ff, layers) < 1:
        raise ValueError("--dim, --heads, --ff and --layers must be at least 1")
    return Importable(vocab_size or data()[2], dim=dim, heads=heads, ff=ff, layers=layers)


def train(epochs: int = 4, seed: int = 0, lr: float = 5e-4, folder: Optional[Path] = None,
          log: bool = False, **shape: int) -> nn.Module:
    """A model of ``shape`` (``dim``, ``heads``, ``ff``, ``layers``; :data:`SHAPE` by default) trained from scratch."""
    torch.manual_seed(seed)
    train_set, _, vocab_size = data(folder)
    model = build_model(vocab_size, **shape)
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
    parser.add_argument("--dim", type=int, default=SHAPE["dim"], help="hidden width (BERT-mini: 256)")
    parser.add_argument("--layers", type=int, default=SHAPE["layers"], help="encoder layers (BERT-mini: 4)")
    parser.add_argument("--heads", type=int, default=SHAPE["heads"], help="attention heads (BERT-mini: 4)")
    parser.add_argument("--ff", type=int, default=SHAPE["ff"], help="feed-forward width (BERT-mini: 1024)")
    args = parser.parse_args(argv)
    if args.dim % args.heads or min(args.dim, args.heads, args.ff, args.layers) < 1:
        parser.error(f"--dim {args.dim} must be a multiple of --heads {args.heads}, and every size at least 1")
    try:
        model = train(args.epochs, args.seed, folder=Path(args.data) if args.data else None, log=True,
                      dim=args.dim, heads=args.heads, ff=args.ff, layers=args.layers)
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
