"""Model splitting with accelerate: plans under small budgets, the split model's outputs equal the unsplit one's."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import read
from deepdive.deploy.runners import open_runner
from deepdive.deploy.split import SplitPlan, parse_budgets, place, plan, split_folder

LAYER_BYTES = 64 * 64 * 4 + 64 * 4   # one Linear(64, 64): weight and bias, fp32


def _mlp(layers: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(layers)]).eval()


def test_parse_budgets() -> None:
    assert parse_budgets("0=1GiB, cpu=30MB,disk") == {0: 2**30, "cpu": 30_000_000, "disk": None}
    assert parse_budgets("cpu=4096") == {"cpu": 4096}
    for bad, said in (("gpu=1GB", "unknown device"), ("cpu=lots", "not a size"), ("disk", "no memory budget"),
                      ("cpu", "has no size"), ("disk=1GB,cpu=1GB", "disk takes no size")):
        with pytest.raises(DeployError, match=said):
            parse_budgets(bad)


def test_cpu_budget_smaller_than_the_model_offloads_the_rest_to_disk(tmp_path: Path) -> None:
    model = _mlp()
    x = torch.randn(5, 64)
    with torch.inference_mode():
        expected = model(x)
    split = plan(model, {"cpu": 4 * LAYER_BYTES, "disk": None})
    # the CPU keeps room for the largest layer it onloads from disk: 3 layers stay, 5 go to disk
    assert split.bytes == {"cpu": 3 * LAYER_BYTES, "disk": 5 * LAYER_BYTES}
    assert split.total_bytes == 8 * LAYER_BYTES
    assert [split.device_map[str(i)] for i in range(8)] == ["cpu"] * 3 + ["disk"] * 5
    placed = place(model, SplitPlan.from_json(split.to_json()), tmp_path / "offload")
    assert (tmp_path / "offload" / "index.json").is_file()
    assert placed[7][0].weight.device.type == "meta"            # really not in memory between calls
    with torch.inference_mode():
        assert torch.equal(placed(x), expected)


def test_plan_over_two_gpu_budgets_without_cuda() -> None:
    model = _mlp()
    split = plan(model, parse_budgets(f"0={3 * LAYER_BYTES},1={2 * LAYER_BYTES},cpu=1MB"))
    where = [split.device_map[str(i)] for i in range(8)]
    # GPUs in index order, then the CPU; GPU 0 keeps one layer's room for layers onloaded from the CPU
    assert where == [0, 0, 1, 1, "cpu", "cpu", "cpu", "cpu"]
    assert split.bytes == {"0": 2 * LAYER_BYTES, "1": 2 * LAYER_BYTES, "cpu": 4 * LAYER_BYTES}
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        with pytest.raises(DeployError, match="this machine has"):
            place(model, split)


def test_budgets_that_cannot_hold_the_model_are_refused() -> None:
    with pytest.raises(DeployError, match=r"hold .* of the model's .*add `disk`") as info:
        plan(_mlp(), parse_budgets(f"cpu={4 * LAYER_BYTES}"))
    assert "\n" not in str(info.value)


def test_split_form_of_an_export_folder_serves_the_same_outputs(digits_export: Path, tmp_path: Path) -> None:
    from deepdive.cli_deploy_split import add_parser, run

    folder = Path(shutil.copytree(digits_export, tmp_path / "export"))
    manifest = read(folder)
    eager = open_runner(folder, manifest, "eager")
    total = plan(eager.module, {"cpu": 10**9}).total_bytes
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="action"))
    args = parser.parse_args(["split", str(folder), "--max-memory", f"cpu={int(total * 0.9)},disk", "--json"])
    assert run(args) == 0
    entry = read(folder).forms["split"]
    assert entry["bytes"]["cpu"] > 0 and entry["bytes"]["disk"] > 0
    assert entry["bytes"]["cpu"] + entry["bytes"]["disk"] == total
    assert entry["max_abs_diff"] == 0.0 and entry["offload"] == "split_offload"
    rows = manifest.example_rows(folder)["input__0"]
    runner = open_runner(folder, read(folder), "split")            # as the server opens it
    for size in (1, 7, 64):
        np.testing.assert_array_equal(runner.run([rows[:size]])[0], eager.run([rows[:size]])[0])
    # the eager file changed after splitting: the stale plan is refused, not served with old weights
    (folder / "model.pt").write_bytes((folder / "model.pt").read_bytes())
    with pytest.raises(DeployError, match="changed since it was split"):
        open_runner(folder, read(folder), "split")


def test_split_folder_without_export_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="deploy.json not found"):
        split_folder(tmp_path, {"cpu": 10**6, "disk": None})
