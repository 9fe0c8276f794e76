"""The polarity encoder trained with FSDP2 through ``deepdive.engine``: built on the meta device, each
encoder layer (they sit in an ``nn.ModuleList``) its own FSDP unit, sharded checkpoints.

The model of ``polarity_bert.py`` (token and position embeddings, post-LayerNorm encoder layers, a
linear classifier) on the sentence-polarity data. Under torchrun the engine shards it with FSDP2 and
names the units; with a checkpoint folder every epoch ends with a sharded checkpoint, which a run at
another number of processes resumes::

    deepdive train server/examples/polarity_fsdp.py --nproc 2 --checkpoint-dir ckpt -- --epochs 1
    deepdive train server/examples/polarity_fsdp.py --nproc 1 --checkpoint-dir ckpt -- --epochs 2
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

import deepdive.engine as dd
from deepdive.examples.polarity_bert import SHAPE, PolarityBERT, data, evaluate


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--layers", type=int, default=SHAPE["layers"])
    parser.add_argument("--samples", type=int, default=None, help="train on the first N sentences (a quick run)")
    args = parser.parse_args(argv)
    try:
        train_set, _, vocab_size = data()
    except (FileNotFoundError, ValueError) as exc:
        print(f"polarity_fsdp: {exc}", file=sys.stderr)
        return 2
    if args.samples is not None:
        train_set = Subset(train_set, range(min(args.samples, len(train_set))))
    run = dd.setup(precision="fp32", strategy="fsdp", seed=0, grad_compression="none")
    with run.init_empty():  # parameters on meta: each unit is allocated, initialised and sharded in turn
        model = PolarityBERT(vocab_size, dim=SHAPE["dim"], heads=SHAPE["heads"], ff=SHAPE["ff"], layers=args.layers)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    model, optimizer, loader = run.prepare(model, torch.optim.AdamW(model.parameters(), lr=args.lr), loader)
    if run.is_main:
        print(f"strategy: {run.strategy} ({run.strategy_reason})", flush=True)
        if run.resumed_step is not None:
            print(f"resumed after step {run.resumed_step} on {run.world_size} process(es), epoch {run.start_epoch + 1}",
                  flush=True)
    for ids, labels in run.batches(loader, epochs=args.epochs):
        with run.autocast():
            loss = F.cross_entropy(model(ids), labels)
        run.backward(loss)
        run.step(optimizer)
        run.log(loss=loss)
    summary = run.finish()
    if run.is_main:
        accuracy = evaluate(model) if run.world_size == 1 else None
        tail = f", validation accuracy {accuracy:.4f}" if accuracy is not None else ""
        print(f"done: {summary.get('steps', run.step_count)} steps{tail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
