"""The mistakes a user can make with ``strategy="fsdp"``: each should be answered in one line with the fix.

``fsdp_train.py --mistakes`` calls :func:`mistakes` with its run (2 processes, gloo): every case calls
``run.prepare`` on a fresh model and records what it raised (None: nothing).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

import deepdive.engine as dd


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def attempt(case: Callable[[], Any]) -> Optional[str]:
    try:
        case()
    except Exception as exc:  # noqa: BLE001 - what the user would see is the record
        return f"{type(exc).__name__}: {exc}"
    return None


def mistakes(run: dd.Run) -> dict[str, Optional[str]]:
    """Each mistake's exception as ``Type: message``."""

    def half_a_layer() -> None:
        net = Net()
        net.layers[1].weight = nn.Parameter(net.layers[1].weight.detach().half())  # its bias stays fp32
        run.prepare(net)

    def foreign_optimizer() -> None:
        other = Net()
        run.prepare(Net(), torch.optim.SGD(other.parameters(), lr=0.1))

    def module_list() -> None:
        run.prepare(Net().layers)

    def wrapped() -> None:
        run.prepare(DistributedDataParallel(Net()))

    def sharded_layer() -> None:
        net = Net()
        fully_shard(net.layers[0])
        run.prepare(net)

    def uninitialised() -> None:
        with run.init_empty():
            net = Net()
            net.scale = nn.Parameter(torch.ones(8))  # on meta too, and Net has no reset_parameters
        run.prepare(net)

    cases = {"half_a_layer": half_a_layer, "foreign_optimizer": foreign_optimizer, "module_list": module_list,
             "wrapped": wrapped, "sharded_layer": sharded_layer, "uninitialised": uninitialised}
    return {name: attempt(case) for name, case in cases.items()}
