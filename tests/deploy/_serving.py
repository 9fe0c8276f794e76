"""Helpers of the serving tests: small real torch modules whose forward the test can hold or pair up.

They compute for real (``2 * x + 1``); the only addition is a gate (a ``threading.Event`` the forward
waits on) or a barrier, so that a test can hold an instance busy while it queues requests, or prove
that two instances run at the same time, without measuring any duration.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from deepdive.deploy.batcher import Batcher, BatchConfig
from deepdive.deploy.runners import TorchRunner


class Gated(nn.Module):
    """``2 * x + 1``; each call records its input's first column and waits for ``gate`` (open by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.seen: list[list[float]] = []

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[:, 0].tolist())
        self.entered.set()
        if not self.gate.wait(20):
            raise TimeoutError("the test never opened the gate")
        return 2 * x + 1


class Paired(nn.Module):
    """``2 * x + 1`` after meeting another instance's forward at ``barrier`` (BrokenBarrierError if alone)."""

    def __init__(self, barrier: threading.Barrier):
        super().__init__()
        self.barrier = barrier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.barrier.wait()
        return 2 * x + 1


def batcher_of(*modules: nn.Module, config: Optional[BatchConfig] = None) -> Batcher:
    return Batcher([TorchRunner("eager", m.eval()) for m in modules], config or BatchConfig())


def rows(*values: float, width: int = 3) -> np.ndarray:
    """One row per value, each ``[value, value + 0.5, ...]`` (float32)."""
    return np.asarray([[v + 0.5 * i for i in range(width)] for v in values], dtype=np.float32)


async def wait_until(event: threading.Event, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, event.wait, timeout):
        raise AssertionError("the model was never called")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def served_digits(folder: Any, config: Optional[BatchConfig] = None, instances: int = 1) -> Any:
    """The digits export served: its manifest, ``instances`` eager runners, the batcher and metrics."""
    from deepdive.deploy import manifest as manifest_mod
    from deepdive.deploy.app import ServedModel
    from deepdive.deploy.metrics import ServerMetrics
    from deepdive.deploy.runners import open_runner

    m = manifest_mod.read(folder)
    metrics = ServerMetrics(m.name)
    runners = [open_runner(folder, m, "eager") for _ in range(instances)]
    batcher = Batcher(runners, config or BatchConfig(max_batch_size=16, max_queue_delay_us=5000), listener=metrics)
    return ServedModel(manifest=m, form="eager", batcher=batcher, metrics=metrics)


def served_gated(model: Gated, config: BatchConfig) -> Any:
    """A :class:`Gated` module served as model ``gated`` (input and output FP32 ``[-1, 3]``)."""
    from deepdive.deploy.app import ServedModel
    from deepdive.deploy.manifest import Manifest, TensorSpec
    from deepdive.deploy.metrics import ServerMetrics

    metrics = ServerMetrics("gated")
    manifest = Manifest(name="gated", inputs=[TensorSpec("input__0", "FP32", [-1, 3])],
                        outputs=[TensorSpec("output__0", "FP32", [-1, 3])])
    batcher = Batcher([TorchRunner("eager", model.eval())], config, listener=metrics, name="gated")
    return ServedModel(manifest=manifest, form="eager", batcher=batcher, metrics=metrics)
