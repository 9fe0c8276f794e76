"""The one training function both arms of ``bench/bench_tune.py`` run, and the Deepdive arm's script.

:func:`train` trains a small torch MLP (64 -> 256 -> 256 -> 10, SGD with momentum, batch 128, one
thread) on a synthetic, seeded classification task (labels from a fixed random "teacher" network)
for ``epochs`` epochs of ``steps`` optimizer steps each, and after each epoch evaluates held-out
accuracy and hands it to ``report`` (which may end the trial: pruning). The compute per epoch does
not depend on the hyperparameters (learning rate, weight decay, momentum), so a trial's training
time is set by ``steps`` alone: the benchmark sizes trials by steps.

What counts as training: :func:`train` times, with ``time.perf_counter``, each epoch's steps and
its evaluation, and nothing else. Building the data and the model (before the first epoch) and the
``report`` calls (where the tuning tool decides on pruning) are outside that time, in both arms:
they are non-training time. Each call appends one JSON line to ``record``: ``start`` (the call),
``ready`` (data and model built, the first epoch starting) and ``end``, read from ``time.monotonic()``
(CLOCK_MONOTONIC on Linux: one clock for every process of the machine, so the benchmark compares them
with its own launch and exit times), ``train_s``, the epochs run and whether the trial was cut. The
benchmark reads the same figures from both arms that way. (The first trial of a process pays
torch's lazy import behind the first optimizer, about a second, between ``start`` and ``ready``:
in both arms.)

Run as a script, this file is the Deepdive arm's trial (``deepdive tune bench/tune_objective.py --
--steps N --epochs E --seed S --record PATH``): the search space is its ``run.suggest`` calls, the
metric ``val_accuracy`` (maximize) goes to the search with ``run.log``. ``bench/tune_optuna.py`` is
the plain-Optuna arm: the same space (the bounds below), the same :func:`train`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

# The search space, one place for both arms: (low, high) of each parameter; lr and weight_decay log-scaled.
LR = (1e-4, 0.5)
WEIGHT_DECAY = (1e-6, 1e-2)
MOMENTUM = (0.0, 0.99)
METRIC = "val_accuracy"  # maximize

BATCH = 128
TRAIN_SAMPLES = 4096
VAL_SAMPLES = 1024
TEACHER_SEED = 1234  # the task's seed: the data is the same in every trial


def make_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and validation inputs and labels: Gaussian inputs labelled by a fixed random two-layer network
    (the same task in every trial; the training seed varies the initialisation and the batch order)."""
    task = torch.Generator().manual_seed(TEACHER_SEED)
    w1, w2 = torch.randn(64, 32, generator=task), torch.randn(32, 10, generator=task)
    x = torch.randn(TRAIN_SAMPLES + VAL_SAMPLES, 64, generator=task)
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    return x[:TRAIN_SAMPLES], y[:TRAIN_SAMPLES], x[TRAIN_SAMPLES:], y[TRAIN_SAMPLES:]


def build_model() -> nn.Module:
    """The trained network; its size (hence a step's compute) is fixed: no hyperparameter changes it."""
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def train(params: dict[str, float], steps: int, epochs: int, seed: int, report: Callable[[int, float], None],
          record: Optional[str] = None, batch: int = BATCH) -> float:
    """Train with ``params`` (lr, weight_decay, momentum); the last epoch's held-out accuracy.

    ``report(epoch, accuracy)`` is called after each epoch, outside the timed part; it raises to end
    the trial (Deepdive's ``TrialPruned`` from ``run.log``, Optuna's ``TrialPruned``). The record line
    is written however the call ends.
    """
    started = time.monotonic()
    torch.set_num_threads(1)  # one thread in both arms, whatever the tool would pick
    torch.manual_seed(seed)
    x, y, x_val, y_val = make_data()
    model = build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=params["momentum"],
                                weight_decay=params["weight_decay"])
    order = torch.Generator().manual_seed(seed)
    train_s, done, accuracy, cut = 0.0, 0, 0.0, True
    ready = time.monotonic()
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            perm = torch.randperm(TRAIN_SAMPLES, generator=order)
            for step in range(steps):
                start = (step % (TRAIN_SAMPLES // batch)) * batch
                index = perm[start:start + batch]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[index]), y[index]).backward()
                optimizer.step()
            with torch.no_grad():
                accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
            train_s += time.perf_counter() - t0
            done += 1
            report(epoch, accuracy)
        cut = False
        return accuracy
    finally:
        if record:
            line = json.dumps({"start": started, "ready": ready, "end": time.monotonic(), "train_s": train_s,
                               "epochs": done, "cut": cut, "pid": os.getpid()}) + "\n"
            fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())  # one short O_APPEND write: whole lines, whatever the process
            finally:
                os.close(fd)


def trial_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The trial's options, the same in both arms."""
    parser = argparse.ArgumentParser(description="one trial of the tune overhead benchmark")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, required=True, help="epochs (one report each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--record", default=None, help="append one JSON line per trial here")
    return parser.parse_args(argv)


def main() -> Any:
    """The Deepdive arm's trial: the space as ``run.suggest`` calls, the accuracy reported with ``run.log``."""
    args = trial_args()
    import deepdive.engine as dd

    run = dd.setup(precision="fp32", device="cpu")
    params = {
        "lr": run.suggest("lr", LR[0], LR[1], log=True, default=0.02),
        "weight_decay": run.suggest("weight_decay", WEIGHT_DECAY[0], WEIGHT_DECAY[1], log=True, default=1e-4),
        "momentum": run.suggest("momentum", MOMENTUM[0], MOMENTUM[1], default=0.9),
    }
    accuracy = train(params, args.steps, args.epochs, args.seed, lambda epoch, acc: run.log(val_accuracy=acc),
                     args.record, args.batch_size)
    run.finish()
    return accuracy


if __name__ == "__main__":
    main()
