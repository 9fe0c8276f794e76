"""The compress job kind: the command line it builds and its one-line refusals (no process is started)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from deepdive.cli import build_parser
from deepdive.jobs.kinds import KINDS, Context, JobRejected, build_launch
from deepdive.vocabulary import COMPRESS_TARGETS, PRUNE_IMPORTANCES, QUANTIZE_MODES


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "digits.pt").write_bytes(b"not really a model")
    (tmp_path / "digits_eval.py").write_text("def evaluate(model):\n    return 1.0\n")
    return tmp_path


def ctx(ws: Path, trusted: bool = True) -> Context:
    return Context(python="/py", workspace=str(ws), trusted=trusted)


def launch(ws: Path, **options):
    return build_launch("compress", {"model": "models/digits.pt", "eval": "digits_eval.py", **options}, ctx(ws))


def test_the_full_command_line(ws: Path):
    kind, job = launch(ws, prune=0.5, layers=2, distill=True, quantize="int8", target="arm", importance="taylor",
                       steps=3, epochs=2, distillEpochs=4, out="compressed")
    assert kind.runs_user_code
    assert job.argv == ["/py", "-P", "-m", "deepdive", "compress", str(ws / "models" / "digits.pt"),
                        "--eval", str(ws / "digits_eval.py"), "--prune", "0.5", "--layers", "2", "--distill",
                        "--quantize", "int8",
                        "--target", "arm", "--importance", "taylor", "--steps", "3", "--epochs", "2",
                        "--distill-epochs", "4", "--out", str(ws / "compressed")]
    assert job.cwd == str(ws)
    assert job.title == "compress digits.pt"
    assert job.timeout_s is None


def test_only_the_given_options_reach_the_command_line(ws: Path):
    _, job = launch(ws, quantize="int8-dynamic", prune=None, distill=False)
    assert job.argv[5:] == [str(ws / "models" / "digits.pt"), "--eval", str(ws / "digits_eval.py"),
                            "--quantize", "int8-dynamic"]
    _, job = launch(ws, prune=0.25, epochs=0)
    assert job.argv[8:] == ["--prune", "0.25", "--epochs", "0"]
    # absolute paths work as well as workspace-relative ones
    _, job = build_launch("compress", {"model": str(ws / "models" / "digits.pt"), "eval": str(ws / "digits_eval.py"),
                                       "distill": True}, ctx(ws))
    assert job.argv[5:] == [str(ws / "models" / "digits.pt"), "--eval", str(ws / "digits_eval.py"), "--distill"]
    # depth reduction alone is a job of its own, as the CLI allows (a whole number given as 4.0 is 4)
    _, job = launch(ws, layers=4.0, prune=None)
    assert job.argv[5:] == [str(ws / "models" / "digits.pt"), "--eval", str(ws / "digits_eval.py"), "--layers", "4"]


def test_the_command_line_parses_with_the_cli(ws: Path):
    _, job = launch(ws, prune=0.5, layers=3, distill=True, quantize="int4-weight", target="x86", importance="bn",
                    steps=2, epochs=1, distillEpochs=5, out="o")
    args = build_parser().parse_args(job.argv[4:])
    assert args.command == "compress"
    assert (args.model, args.eval_script, args.prune, args.layers, args.distill, args.quantize, args.target,
            args.importance, args.steps, args.epochs, args.distill_epochs, args.out) == (
        str(ws / "models" / "digits.pt"), str(ws / "digits_eval.py"), 0.5, 3, True, "int4-weight", "x86", "bn", 2, 1,
        5, str(ws / "o"))
    # a layers-only job parses too, and its config passes the pipeline's own check
    from deepdive.engine.compress import CompressConfig
    from deepdive.engine.compress.pipeline import _check
    _, job = launch(ws, prune=None, layers=2)
    args = build_parser().parse_args(job.argv[4:])
    assert (args.prune, args.layers, args.distill, args.quantize) == (None, 2, False, None)
    _check(CompressConfig(args.model, args.eval_script, prune=args.prune, layers=args.layers, distill=args.distill,
                          quantize=args.quantize))


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_the_choices_are_the_clis():
    choices = {a.dest: tuple(a.choices) for a in _subcommand("compress")._actions if a.choices}
    assert choices == {"quantize": QUANTIZE_MODES, "target": COMPRESS_TARGETS, "importance": PRUNE_IMPORTANCES}


@pytest.mark.parametrize("options, message", [
    ({"bogus": 1}, r"^unknown option\(s\) for compress: bogus \(allowed: distill, distillEpochs, epochs, eval, "),
    ({"model": 3}, r"^option 'model' must name the model file, got 3$"),
    ({"model": ""}, r"^option 'model' must name the model file, got ''$"),
    ({"model": "models/missing.pt"}, r"^no such model file: .*models/missing\.pt$"),
    ({"eval": None}, r"^option 'eval' must name the evaluation script$"),
    ({"eval": "digits_eval.txt"}, r"^option 'eval' must name the evaluation script \(\.py\), got 'digits_eval\.txt'$"),
    ({"eval": "nope.py"}, r"^no such evaluation script: .*nope\.py$"),
    ({"prune": 1.0}, r"^option 'prune' must be the fraction removed, between 0 and 1 \(exclusive\), got 1\.0$"),
    ({"prune": 0}, r"^option 'prune' must be .*, got 0$"),
    ({"prune": "0.5"}, r"^option 'prune' must be .*, got '0\.5'$"),
    ({"prune": True}, r"^option 'prune' must be .*, got True$"),
    ({"prune": float("nan")}, r"^option 'prune' must be "),
    ({"layers": 0}, r"^option 'layers' must be a whole number from 1 to 1000, got 0$"),
    ({"layers": 1.5}, r"^option 'layers' must be a whole number from 1 to 1000, got 1\.5$"),
    ({"layers": "2"}, r"^option 'layers' must be a whole number from 1 to 1000, got '2'$"),
    ({"layers": True}, r"^option 'layers' must be a whole number from 1 to 1000, got True$"),
    ({"layers": 1001}, r"^option 'layers' must be a whole number from 1 to 1000, got 1001$"),
    ({"distill": "yes"}, r"^option 'distill' must be true or false, got 'yes'$"),
    ({"quantize": "int2"}, r"^option 'quantize' must be one of int8, int8-dynamic, int8-static, int8-weight, "
                           r"int4-weight, got 'int2'$"),
    ({"prune": None, "distill": False}, r"^nothing to do: "),
    ({"target": "riscv"}, r"^option 'target' must be one of x86, arm, got 'riscv'$"),
    ({"importance": "l3"}, r"^option 'importance' must be one of l1, l2, taylor, bn, got 'l3'$"),
    ({"steps": 0}, r"^option 'steps' must be a whole number from 1 to 100, got 0$"),
    ({"steps": 2.5}, r"^option 'steps' must be a whole number from 1 to 100, got 2\.5$"),
    ({"epochs": -1}, r"^option 'epochs' must be a whole number from 0 to 1000, got -1$"),
    ({"distillEpochs": "3"}, r"^option 'distillEpochs' must be a whole number from 1 to 1000, got '3'$"),
    ({"distillEpochs": float("inf")}, r"^option 'distillEpochs' must be a whole number"),
    ({"out": ""}, r"^option 'out' must name a folder, got ''$"),
    ({"out": "digits_eval.py"}, r"^option 'out' must name a folder, not a file: .*digits_eval\.py$"),
])
def test_one_line_refusals(ws: Path, options: dict, message: str):
    base = {"model": "models/digits.pt", "eval": "digits_eval.py", "prune": 0.5}
    with pytest.raises(JobRejected, match=message) as info:
        build_launch("compress", {**base, **options}, ctx(ws))
    assert "\n" not in str(info.value)


def test_refused_in_an_untrusted_workspace(ws: Path):
    with pytest.raises(JobRejected, match="trust this workspace first"):
        build_launch("compress", {"model": "models/digits.pt", "eval": "digits_eval.py", "prune": 0.5},
                     ctx(ws, trusted=False))


def test_the_kind_is_listed():
    kind = KINDS["compress"]
    assert kind.runs_user_code
    assert kind.describe().kind == "compress"
