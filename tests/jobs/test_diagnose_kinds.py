"""The diagnose and diagnose-fix job kinds: the command lines they build and their one-line refusals (no process
is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.cli import build_parser
from deepdive.diagnose.report import report_path, speedup_path
from deepdive.jobs.kinds import KINDS, Context, JobRejected, build_launch


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "digits.py").write_text("print('training')\n")
    (tmp_path / "notes.txt").write_text("not a script\n")
    return tmp_path


def ctx(ws: Path, trusted: bool = True) -> Context:
    return Context(python="/py", workspace=str(ws), trusted=trusted)


def test_diagnose_runs_the_cli_with_the_report_in_the_workspace(ws: Path):
    kind, job = build_launch("diagnose", {"path": "train/digits.py", "steps": 5, "warmup": 2,
                                          "args": ["--epochs", "1"]}, ctx(ws))
    assert kind.runs_user_code
    script = ws / "train" / "digits.py"
    assert job.argv == ["/py", "-P", "-m", "deepdive", "diagnose", str(script), "--steps", "5", "--warmup", "2",
                        "--json", "--out", str(report_path(str(script), str(ws))), "--", "--epochs", "1"]
    assert job.cwd == str(ws)
    assert job.title == "diagnose digits.py"
    assert job.timeout_s is None


def test_diagnose_defaults_and_no_script_arguments(ws: Path):
    _, job = build_launch("diagnose", {"path": str(ws / "train" / "digits.py")}, ctx(ws))
    report = report_path(str(ws / "train" / "digits.py"), str(ws))
    assert job.argv[6:] == ["--steps", "10", "--warmup", "3", "--json", "--out", str(report)]
    assert report.parent == ws / ".deepdive" / "diagnose" and report.name.startswith("digits-")


def test_diagnose_fix_measures_the_fix_and_writes_the_speedup_beside_the_report(ws: Path):
    kind, job = build_launch("diagnose-fix", {"path": "train/digits.py", "code": "dd101", "line": 35, "pairs": 8,
                                              "steps": 4, "warmup": 1, "args": ["--epochs", "1"]}, ctx(ws))
    assert kind.runs_user_code
    assert job.argv == ["/py", "-P", "-m", "deepdive", "diagnose", str(ws / "train" / "digits.py"),
                        "--fix", "DD101@35", "--pairs", "8", "--steps", "4", "--warmup", "1", "--json", "--out",
                        str(speedup_path(str(ws / "train" / "digits.py"), str(ws))), "--", "--epochs", "1"]
    assert job.title == "apply and measure DD101 in digits.py"


@pytest.mark.parametrize("kind,options", [("diagnose", {}), ("diagnose-fix", {"code": "DD101", "line": 3})])
def test_both_command_lines_parse_with_the_cli(ws: Path, kind: str, options: dict):
    _, job = build_launch(kind, {"path": "train/digits.py", **options}, ctx(ws))
    argv = job.argv[4:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    assert args.command == "diagnose" and args.script == str(ws / "train" / "digits.py") and args.json


@pytest.mark.parametrize("kind", ["diagnose", "diagnose-fix"])
def test_refusals_are_one_line_and_name_the_fix(ws: Path, tmp_path_factory: pytest.TempPathFactory, kind: str):
    extra = {"code": "DD101", "line": 3} if kind == "diagnose-fix" else {}
    with pytest.raises(JobRejected, match="no such training script"):
        build_launch(kind, {"path": "train/missing.py", **extra}, ctx(ws))
    with pytest.raises(JobRejected, match=r"must name the training script \(\.py\)"):
        build_launch(kind, {"path": "notes.txt", **extra}, ctx(ws))
    outside = tmp_path_factory.mktemp("elsewhere") / "evil.py"
    outside.write_text("print('x')\n")
    with pytest.raises(JobRejected, match="outside the workspace"):
        build_launch(kind, {"path": str(outside), **extra}, ctx(ws))
    with pytest.raises(JobRejected, match="trust this workspace"):
        build_launch(kind, {"path": "train/digits.py", **extra}, ctx(ws, trusted=False))
    with pytest.raises(JobRejected, match="option 'steps'"):
        build_launch(kind, {"path": "train/digits.py", "steps": 0, **extra}, ctx(ws))


def test_a_fix_must_name_a_rule_code(ws: Path):
    with pytest.raises(JobRejected, match="option 'code' must name a rule code such as DD101, got 'num_workers'"):
        build_launch("diagnose-fix", {"path": "train/digits.py", "code": "num_workers", "line": 3}, ctx(ws))
    with pytest.raises(JobRejected, match="option 'code'"):
        build_launch("diagnose-fix", {"path": "train/digits.py", "line": 3}, ctx(ws))


def test_the_kinds_are_listed():
    assert {"diagnose", "diagnose-fix"} <= set(KINDS)
    assert KINDS["diagnose"].describe().title == "Diagnose performance"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_diagnose_job_reports_steps_measured_as_progress_and_its_report_as_the_protocols_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import json
    import shutil

    from deepdive.jobs.manager import JobManager
    from deepdive.jobs.store import JobStore
    from deepdive.protocol import DiagnoseReportEvent, JobEvent, JobStartParams, from_wire

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(Path(__file__).parents[1] / "diagnostics" / "fixtures" / "item_loop.py", ws / "item_loop.py")
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    metrics = tmp_path / "metrics.jsonl"
    manager.job_env["DEEPDIVE_METRICS_OUT"] = str(metrics)  # the reporter's file sink: what the hub would get
    events: list[JobEvent] = []
    manager.subscribe(events.append)
    options = {"path": "item_loop.py", "steps": 3, "warmup": 1, "args": ["--steps", "20"]}
    job = await manager.start(JobStartParams(kind="diagnose", options=options, progress=False))
    job = await manager.wait(job.id)
    assert job.state == "succeeded", manager.store.output(job.id)[0][-20:]

    progress = [e.progress for e in events if e.type == "progress" and e.progress is not None]
    messages = [p.message for p in progress]  # the manager may coalesce progress: some, in order, up to the last
    assert messages and set(messages) <= {f"step {i}/3 measured" for i in (1, 2, 3)}
    assert messages == sorted(messages) and messages[-1] == "step 3/3 measured"
    assert progress[-1].fraction == 1.0 and (job.progress, job.message) == (1.0, "step 3/3 measured")
    report_file = report_path(str(ws / "item_loop.py"), str(ws))
    assert json.loads(report_file.read_text())["steps"] == 3
    sent = [json.loads(line) for line in metrics.read_text().splitlines()]
    reports = [line for line in sent if line.get("type") == "event" and line.get("kind") == "diagnose.report"]
    assert len(reports) == 1
    event = from_wire({k: v for k, v in reports[0].items() if k != "type"}, DiagnoseReportEvent, what="event")
    assert event.run == "diagnose-item_loop" and event.report.steps == 3
    assert any(f.code == "DD110" for f in event.report.findings)
