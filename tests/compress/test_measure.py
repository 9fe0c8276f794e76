"""The measurements every compression step is judged by."""

import pytest
import torch
from torch import nn

from deepdive.engine.compress.measure import latency, paired_latency


class Work(nn.Module):
    """``repeats`` matrix products of a 192x192 input: its time grows with ``repeats``."""

    def __init__(self, repeats: int):
        super().__init__()
        self.repeats = repeats
        self.weight = nn.Parameter(torch.randn(192, 192) / 14)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.repeats):
            x = torch.tanh(x @ self.weight)
        return x


def test_paired_latency_ranks_models_by_their_work_and_counts_runs():
    x = torch.randn(192, 192)
    figures = paired_latency({"heavy": Work(12), "light": Work(1)}, x, rounds=6, budget_s=0.6)
    assert set(figures) == {"heavy", "light"}
    for row in figures.values():
        assert row["runs"] >= 6 * 5 and 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["threads"] == torch.get_num_threads()
    # twelve times the work: far slower, whatever else the machine is doing at the time
    assert figures["heavy"]["p50_ms"] > 3 * figures["light"]["p50_ms"]
    # the same figure as a lone measurement, within the noise of a shared machine
    alone = latency(Work(1), x, budget_s=0.3)["p50_ms"]
    assert alone / 5 < figures["light"]["p50_ms"] < alone * 5


def test_paired_latency_takes_tuples_and_refuses_nothing_to_measure():
    class Two(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    figures = paired_latency({"add": Two()}, (torch.ones(4), torch.ones(4)), rounds=2, budget_s=0.05)
    assert figures["add"]["runs"] >= 10
    # an entry's own thread count holds while it runs; the caller's comes back afterwards
    caller = torch.get_num_threads()
    seen = {}

    class Threads(nn.Module):
        def __init__(self, name: str):
            super().__init__()
            self.name = name

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            seen.setdefault(self.name, set()).add(torch.get_num_threads())
            return a + b

    figures = paired_latency({"one": Threads("one"), "two": Threads("two")}, (torch.ones(4), torch.ones(4)),
                             threads={"one": 1, "two": 2}, rounds=2, budget_s=0.05)
    assert seen == {"one": {1}, "two": {2}} and figures["one"]["threads"] == 1 and figures["two"]["threads"] == 2
    assert torch.get_num_threads() == caller
    with pytest.raises(ValueError, match="no models"):
        paired_latency({}, torch.ones(1))
