"""A small transformer trained with FSDP2 through ``deepdive.engine``: built on the meta device, each
encoder layer (they sit in an ``nn.ModuleList``) its own FSDP unit, sharded checkpoints.

Each 8x8 digit (scikit-learn's digits, bundled: nothing is downloaded) is read as a sequence of 8
rows of 8 pixels: a row embedding, learned positions, post-LayerNorm encoder layers (those of
``polarity_bert.py``), mean pooling and a classifier. Under torchrun the engine shards it with FSDP2
and names the units; with a checkpoint folder every epoch ends with a sharded checkpoint, which a
run at another number of processes resumes::

    deepdive train server/examples/digits_fsdp.py --nproc 2 --checkpoint-dir ckpt -- --epochs 2
    deepdive train server/examples/digits_fsdp.py --nproc 1 --checkpoint-dir ckpt -- --epochs 4
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import deepdive.engine as dd
from deepdive.examples.digits import load_data
from deepdive.examples.polarity_bert import EncoderLayer


class RowTransformer(nn.Module):
    def __init__(self, dim: int = 64, heads: int = 4, ff: int = 256, layers: int = 4):
        super().__init__()
        self.rows = nn.Linear(8, dim)
        self.positions = nn.Embedding(8, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, ff, dropout=0.0) for _ in range(layers))
        self.classifier = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.rows(x.view(-1, 8, 8)) + self.positions.weight
        for layer in self.layers:
            h = layer(h, None)
        return self.classifier(h.mean(1))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)
    train_set, test_set = load_data()
    run = dd.setup(precision="fp32", strategy="fsdp", seed=0, grad_compression="none")
    with run.init_empty():  # parameters on meta: each unit is allocated, initialised and sharded in turn
        model = RowTransformer(layers=args.layers)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    model, optimizer, loader = run.prepare(model, torch.optim.AdamW(model.parameters(), lr=args.lr), loader)
    if run.is_main:
        print(f"strategy: {run.strategy} ({run.strategy_reason})", flush=True)
        if run.resumed_step is not None:
            print(f"resumed after step {run.resumed_step} on {run.world_size} process(es), epoch {run.start_epoch + 1}",
                  flush=True)
    for x, y in run.batches(loader, epochs=args.epochs):
        with run.autocast():
            loss = F.cross_entropy(model(x), y)
        run.backward(loss)
        run.step(optimizer)
        run.log(loss=loss)
    model.eval()
    with torch.no_grad(), run.autocast():  # every rank runs the sharded forward; the result is the same on all
        x, y = test_set.tensors
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    run.finish()
    if run.is_main:
        print(f"done: {run.step_count} steps, test accuracy {accuracy:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
