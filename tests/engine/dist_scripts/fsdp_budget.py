"""A model over the per-process memory budget trains under ``strategy="auto"`` with no rank holding all of it.

Usage: fsdp_budget.py OUT.json   (the caller sets ``$DEEPDIVE_MEMORY_BUDGET_GB`` below one replica's needs)

The model (an embedding and 12 residual MLP blocks in an ``nn.ModuleList``, 63 MB of fp32
parameters) is built under ``run.init_empty()``, prepared with ``strategy="auto"`` and AdamW, and
trained for 2 steps (the second backward meets the optimizer states). Each rank measures, rather
than assumes:

- ``param_peak``: the most parameter bytes the model held at once: the storages of the parameters
  registered on its modules (FSDP2 registers a unit's gathered parameters while it computes),
  sampled before and after every module's forward and after every backward and step;
- ``rss_growth``: its peak resident memory (``ru_maxrss``) above its resident memory once the model
  was built on meta: materialisation, gathering, gradients, optimizer states and activations together.
  Run it with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed blocks go back to the system and the peak
  is one of live memory, not of what glibc's heap kept.

Rank 0 writes both ranks' figures, one replica's sizes, the strategy and its reason, and the losses.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

import psutil
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor

import deepdive.engine as dd
from deepdive.engine.distributed import training_bytes


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.up, self.down, self.norm = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.down(F.gelu(self.up(x))))


class Stack(nn.Module):
    def __init__(self, vocab: int = 4096, dim: int = 384, layers: int = 12):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(layers))
        self.head = nn.Linear(dim, 16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))


def held_param_bytes(model: nn.Module) -> int:
    """Bytes of the distinct storages behind the parameters registered on the model's modules now."""
    storages: dict[int, int] = {}
    for module in model.modules():
        for param in module._parameters.values():
            if param is not None:
                local = param.to_local() if isinstance(param, DTensor) else param
                storage = local.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def main() -> None:
    run = dd.setup(precision="fp32", grad_compression="none", strategy="auto", seed=0)
    with run.init_empty():
        model = Stack()
    rss_before = psutil.Process().memory_info().rss  # after the build: the first meta tensors load torch's meta kernels
    on_meta = all(p.is_meta for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    replica = training_bytes(model, optimizer)
    model, optimizer = run.prepare(model, optimizer)

    peak = [held_param_bytes(model)]

    def sample(*_: Any) -> None:
        peak[0] = max(peak[0], held_param_bytes(model))

    for module in model.modules():
        module.register_forward_pre_hook(sample)
        module.register_forward_hook(sample)
    losses = []
    for step in range(2):
        gen = torch.Generator().manual_seed(100 * step + run.rank)
        ids, y = torch.randint(0, 4096, (4, 16), generator=gen), torch.randint(0, 16, (4,), generator=gen)
        with run.autocast():
            loss = F.cross_entropy(model(ids), y)
        run.backward(loss)
        sample()
        run.step(optimizer)
        sample()
        losses.append(loss.item())
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mine = {"param_peak": peak[0], "rss_growth": rss_peak - rss_before, "losses": losses}
    ranks: list[Any] = [None] * run.world_size
    dist.all_gather_object(ranks, mine)
    if run.is_main:
        with open(sys.argv[1], "w") as f:
            json.dump({"strategy": run.strategy, "reason": run.strategy_reason, "on_meta": on_meta,
                       "replica": replica, "ranks": ranks}, f)
    run.finish()


if __name__ == "__main__":
    main()
