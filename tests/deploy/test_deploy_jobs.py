"""The deploy-export, deploy-bench and deploy-serve job kinds: the command lines they build (which the CLI parses)
and their one-line refusals; and a real deploy-export job whose result names the folder the next steps take."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepdive.cli import build_parser
from deepdive.jobs.kinds import KINDS, Context, JobRejected, build_launch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text("def build_model():\n    pass\n")
    (tmp_path / "models" / "net.pt").write_bytes(b"x")
    (tmp_path / "deploy" / "net").mkdir(parents=True)
    (tmp_path / "deploy" / "net" / "deploy.json").write_text("{}")
    return tmp_path


def ctx(ws: Path, trusted: bool = True) -> Context:
    return Context(python="/py", workspace=str(ws), trusted=trusted)


def parsed(argv: list[str]):
    assert argv[:4] == ["/py", "-P", "-m", "deepdive"]
    return build_parser().parse_args(argv[4:])


def test_export_runs_the_cli_on_the_workspace_script_and_model(ws: Path):
    kind, job = build_launch("deploy-export", {"path": "models/net.py", "model": "models/net.pt", "out": "deploy/net",
                                               "forms": ["onnx", "eager", "onnx"]}, ctx(ws))
    assert kind.runs_user_code and job.timeout_s is None and job.cwd == str(ws)
    assert job.argv == ["/py", "-P", "-m", "deepdive", "deploy", "export", str(ws / "models" / "net.py"),
                        "--model", str(ws / "models" / "net.pt"), "--out", str(ws / "deploy" / "net"),
                        "--forms", "onnx,eager"]
    args = parsed(job.argv)
    assert (args.command, args.deploy_command, args.forms) == ("deploy", "export", ("onnx", "eager"))
    _, plain = build_launch("deploy-export", {"path": "models/net.py"}, ctx(ws))
    assert plain.argv[6:] == [str(ws / "models" / "net.py")] and plain.title == "deploy export net.py"


def test_bench_and_serve_take_the_export_folder_and_pass_their_settings(ws: Path):
    _, bench = build_launch("deploy-bench", {"folder": "deploy/net", "batch_sizes": "1, 8,32", "forms": ["onnx", "int8"],
                                             "tolerance": 0.001, "budget_s": 4}, ctx(ws))
    folder = str(ws / "deploy" / "net")
    assert bench.argv[4:] == ["deploy", "bench", folder, "--batch-sizes", "1,8,32", "--forms", "onnx,int8",
                              "--tolerance", "0.001", "--budget-s", "4"]
    args = parsed(bench.argv)
    assert args.batch_sizes == [1, 8, 32] and args.forms == ["onnx", "int8"]
    _, serve = build_launch("deploy-serve", {"folder": "deploy/net/deploy.json", "form": "onnx", "instances": 2,
                                             "max_batch": 16, "max_queue_delay_us": 500, "timeout_ms": 250,
                                             "target_p99": 20, "clients": 32}, ctx(ws))
    assert serve.timeout_s is None and serve.grace_s is not None and serve.title == "deploy serve net"
    args = parsed(serve.argv)
    assert (args.folder, args.host, args.port, args.form, args.instances) == (folder, "127.0.0.1", 0, "onnx", 2)
    assert (args.max_batch, args.max_queue_delay_us, args.timeout_ms, args.target_p99) == (16, 500, 250.0, 20.0)
    assert args.clients == 32
    assert not args.no_batching and args.token is None


def test_refusals_are_one_line_and_say_what_to_do(ws: Path, tmp_path_factory: pytest.TempPathFactory):
    with pytest.raises(JobRejected, match="trust this workspace"):
        build_launch("deploy-serve", {"folder": "deploy/net"}, ctx(ws, trusted=False))
    with pytest.raises(JobRejected, match="no such model's script"):
        build_launch("deploy-export", {"path": "models/missing.py"}, ctx(ws))
    with pytest.raises(JobRejected, match="option 'forms' must list forms of eager, torchscript, pt2, onnx, int8"):
        build_launch("deploy-export", {"path": "models/net.py", "forms": ["tensorrt"]}, ctx(ws))
    with pytest.raises(JobRejected, match="has no deploy.json: export the model first"):
        build_launch("deploy-bench", {"folder": "models"}, ctx(ws))
    outside = tmp_path_factory.mktemp("elsewhere")
    (outside / "deploy.json").write_text("{}")
    with pytest.raises(JobRejected, match="outside the workspace"):
        build_launch("deploy-serve", {"folder": str(outside)}, ctx(ws))
    with pytest.raises(JobRejected, match="option 'batch_sizes' must be batch sizes such as 1,8,32"):
        build_launch("deploy-bench", {"folder": "deploy/net", "batch_sizes": "8;--debug"}, ctx(ws))
    with pytest.raises(JobRejected, match="option 'form' must list forms of"):
        build_launch("deploy-serve", {"folder": "deploy/net", "form": "tensorrt"}, ctx(ws))
    with pytest.raises(JobRejected, match="option 'port' must be a whole number from 0 to 65535"):
        build_launch("deploy-serve", {"folder": "deploy/net", "port": 70000}, ctx(ws))
    with pytest.raises(JobRejected, match="drop 'no_batching'"):
        build_launch("deploy-serve", {"folder": "deploy/net", "no_batching": True, "target_p99": 10}, ctx(ws))
    with pytest.raises(JobRejected, match="option 'clients' is the load 'target_p99' plans for"):
        build_launch("deploy-serve", {"folder": "deploy/net", "clients": 8}, ctx(ws))


def test_the_kinds_are_listed():
    assert {"deploy-export", "deploy-bench", "deploy-serve"} <= set(KINDS)
    assert KINDS["deploy-serve"].describe().title == "Serve a model"


@pytest.mark.timeout(300)
async def test_an_export_job_reports_progress_and_names_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    from deepdive.jobs.manager import JobManager
    from deepdive.jobs.store import JobStore
    from deepdive.protocol import JobEvent, JobStartParams

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(REPO / "server" / "examples" / "digits_cnn.py", ws / "digits_cnn.py")
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    events: list[JobEvent] = []
    manager.subscribe(events.append)
    job = await manager.start(JobStartParams(kind="deploy-export", options={"path": "digits_cnn.py", "forms": ["eager"]},
                                             progress=False))
    job = await manager.wait(job.id)
    assert job.state == "succeeded", manager.store.output(job.id)[0][-20:]
    assert [e for e in events if e.type == "progress"], "the export's progress reaches the editor"
    folder = Path(job.result["folder"])
    assert folder.parent == ws / "deploy" and json.loads((folder / "deploy.json").read_text())["forms"]["eager"]
    _, bench = build_launch("deploy-bench", {"folder": str(folder)}, Context(python="/py", workspace=str(ws), trusted=True))
    assert bench.argv[6] == str(folder)


@pytest.mark.timeout(300)
async def test_a_serve_job_says_its_url_serves_and_stops_when_cancelled(digits_export: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    import asyncio
    import shutil

    import httpx

    from deepdive.jobs.manager import JobManager
    from deepdive.jobs.store import JobStore
    from deepdive.protocol import JobEvent, JobStartParams

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ws = tmp_path / "ws"
    shutil.copytree(digits_export, ws / "deploy" / "digits")
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    metrics = tmp_path / "metrics.jsonl"
    manager.job_env["DEEPDIVE_METRICS_OUT"] = str(metrics)  # the reporter's file sink: what the hub would get
    events: list[JobEvent] = []
    manager.subscribe(events.append)
    job = await manager.start(JobStartParams(kind="deploy-serve", options={"folder": "deploy/digits", "max_batch": 8},
                                             progress=False))
    for _ in range(600):
        said = [e.data for e in events if e.type == "data" and e.data and e.data.get("event") == "deploy.serve"]
        if said or manager.store.get(job.id).state != "running":
            break
        await asyncio.sleep(0.1)
    assert said, manager.store.output(job.id)[0][-20:]
    url = said[0]["url"]
    assert url.startswith("http://127.0.0.1:") and said[0]["config"]["max_batch_size"] == 8
    body = {"inputs": [{"name": "input__0", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 128}]}
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{url}/v2/models/digits_cnn/infer", json=body)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [2, 10]

    def figures() -> list[dict]:
        sent = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
        return [line for line in sent if line.get("kind") == "serve.stats"]

    for _ in range(100):  # the reporter's thread writes about every 0.2 s; the publisher looks every second
        if any(f["stats"]["totals"] == {"ok": 1} for f in figures()):
            break
        await asyncio.sleep(0.1)
    stats = figures()
    assert stats[0]["run"] == "serve-digits_cnn" and stats[0]["url"] == url
    assert stats[-1]["stats"]["totals"] == {"ok": 1} and stats[-1]["stats"]["batch_size_histogram"] == {"2": 1}
    await manager.cancel(job.id)
    job = await manager.wait(job.id)
    assert job.state == "cancelled"
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/v2/health/live")
