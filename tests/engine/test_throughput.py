"""The engine's throughput figure: one definition (deepdive.throughput) in every sample and the summary."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import deepdive.engine as dd
from deepdive.throughput import WINDOW_S


class SlowData(Dataset):
    """40 rows, each taking 2 ms to load: the loop waits on the loader a measurable share of the time."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(0.002)
        return torch.full((4,), float(i))


def test_samples_and_summary_give_the_same_samples_per_second_loader_wait_and_short_batch_included(tmp_path):
    metrics = tmp_path / "m.jsonl"
    run = dd.setup(precision="fp32", seed=0, metrics_out=str(metrics))
    # batch 16 over 40 rows: 16, 16 and a short last batch of 8, twice
    model, loader = run.prepare(nn.Linear(4, 2), loader=DataLoader(SlowData(), batch_size=16))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for xb in run.batches(loader, epochs=2):
        with run.autocast():
            loss = model(xb).pow(2).mean()
        run.backward(loss)
        run.step(opt)
    summary = run.finish()
    samples = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [s for s in samples if s.get("type") == "sample"]
    assert [s["step"] for s in steps] == [0, 1, 2, 3, 4, 5]
    # the run lasts well under the window: every figure covers all steps so far, loader wait included
    sizes = [16, 16, 8, 16, 16, 8]
    for i, s in enumerate(steps):
        wall = sum(x["step_time_s"] + x["data_wait_s"] for x in steps[: i + 1])
        assert s["samples_per_s_window_s"] == pytest.approx(wall, rel=1e-6) and wall < WINDOW_S
        assert s["samples_per_s"] == pytest.approx(sum(sizes[: i + 1]) / wall, rel=1e-6)
    # the summary's figure is the last sample's: the same definition, not the short last batch over the mean step
    assert summary["samples_per_s"] == pytest.approx(steps[-1]["samples_per_s"], rel=1e-9)
    assert summary["samples_per_s_window_s"] == pytest.approx(steps[-1]["samples_per_s_window_s"], rel=1e-9)
