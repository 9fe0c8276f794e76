"""The tune job kind: the command line it builds (it parses with the CLI) and its one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.cli import build_parser
from deepdive.jobs.kinds import Context, JobRejected, build_launch


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("import deepdive.engine as dd\n")
    return tmp_path


def launch(ws: Path, **options):
    return build_launch("tune", {"path": "train.py", **options}, Context(python="/py", workspace=str(ws), trusted=True))


def test_options_reach_the_command_line_and_parse_with_the_cli(ws: Path):
    _, job = launch(ws, trials=12, parallel=2, sampler="tpe", pruner="asha", direction="maximize", value="best",
                    metric="val_acc", seed=3, args=["--epochs", "9"])
    cut = job.argv.index("--")  # the CLI hands what follows "--" to the script untouched
    args = build_parser().parse_args(job.argv[4:cut])
    assert job.argv[cut + 1:] == ["--epochs", "9"]
    assert (args.command, args.script, args.trials, args.parallel, args.sampler, args.pruner, args.direction,
            args.value, args.metric, args.seed) == (
        "tune", str(ws / "train.py"), 12, 2, "tpe", "asha", "maximize", "best", "val_acc", 3)
    _, job = launch(ws, trials=3)
    assert "--value" not in job.argv  # the study's own choice (else last)


@pytest.mark.parametrize("options, message", [
    ({"value": "max"}, "option 'value' must be one of last, best"),
    ({"pruner": "pbt"}, "option 'pruner' must be one of"),
    ({"colour": "red"}, "colour"),
])
def test_one_line_refusals(ws: Path, options: dict, message: str):
    with pytest.raises(JobRejected, match=message) as info:
        launch(ws, trials=3, **options)
    assert "\n" not in str(info.value)
