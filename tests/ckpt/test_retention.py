"""Retention: "keep the last K" keeps K checkpoints (all of them while fewer exist), the most recently saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepdive.engine.ckpt import Store


def steps(store: Store) -> list[int]:
    return [c.step for c in store.list()]


def test_keep_last_3_while_saving_steps_1_to_5(tmp_path: Path):
    """After each save and gc(keep_last=3): 1; 1,2; 1,2,3; 2,3,4; 3,4,5 — never fewer than there were."""
    store = Store(tmp_path / "ck", chunk_size=4096)
    expected = {1: [1], 2: [1, 2], 3: [1, 2, 3], 4: [2, 3, 4], 5: [3, 4, 5]}
    states = {}
    for step in range(1, 6):
        states[step] = {"w": torch.full((100,), float(step))}
        store.save(states[step], step=step)
        result = store.gc(keep_last=3)
        assert steps(store) == expected[step], f"after saving step {step}"
        assert sorted(result.kept) == [f"step-{s:010d}" for s in expected[step]]
    for step in (3, 4, 5):
        assert torch.equal(store.load(step)["w"], states[step]["w"])
    assert store.verify() == []


@pytest.mark.parametrize("keep_last, kept", [(1, [5]), (2, [4, 5]), (5, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5])])
def test_keep_last_k_of_five(tmp_path: Path, keep_last: int, kept: list[int]):
    store = Store(tmp_path / "ck", chunk_size=4096)
    for step in range(1, 6):
        store.save({"w": torch.full((10,), float(step))}, step=step)
    assert store.gc(keep_last=keep_last, dry_run=True).deleted == [f"step-{s:010d}" for s in range(1, 6)
                                                                    if s not in kept]
    store.gc(keep_last=keep_last)
    assert steps(store) == kept


def test_the_last_k_are_the_most_recently_saved_not_the_highest_steps(tmp_path: Path):
    """A run started over (``deepdive train --fresh``) saves low steps into a folder that holds an
    earlier run's higher ones: retention keeps the new run's checkpoints and lets the old ones go."""
    store = Store(tmp_path / "ck", chunk_size=4096)
    for step in (100, 200, 300):                    # the earlier run
        store.save({"w": torch.full((10,), float(step))}, step=step)
    store.save({"w": torch.zeros(10)}, step=8)      # the new run's first checkpoint
    assert store.resolve("latest") == "step-0000000008"   # what a rerun resumes from: the newest save
    store.gc(keep_last=3)
    assert steps(store) == [8, 200, 300]
    store.save({"w": torch.ones(10)}, step=16)
    store.save({"w": torch.ones(10) * 2}, step=24)
    store.gc(keep_last=3)
    assert steps(store) == [8, 16, 24]
    assert store.resolve("latest") == "step-0000000024"
