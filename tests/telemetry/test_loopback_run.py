"""One real 2-process loopback run (torchrun, gloo) through the daemon's telemetry service (issue #20, finding 3):
the status bar, the dashboard's stream and the terminal show one samples/s figure, and the verdict does not
recommend the compression the engine measured to be useless here."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from websockets.asyncio.client import connect

from deepdive.cli_jobs import follow_metrics
from deepdive.daemon import telemetry
from deepdive.daemon.telemetry import TelemetryService
from deepdive.report import print_train_summary
from deepdive.throughput import describe, label, window_text

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "server" / "examples" / "digits.py"
RUN = "loopback-run"


async def _train(service: TelemetryService, metrics: Path) -> dict:
    """digits.py on 2 processes, reporting to the service's hub; its --json summary (rank 0)."""
    env = {**os.environ, "DEEPDIVE_HUB": service.hub.ingest_url, "DEEPDIVE_RUN_ID": RUN, "OMP_NUM_THREADS": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(DIGITS),
        "--epochs", "30", "--compression", "auto", "--json", "--metrics-out", str(metrics),
        cwd=str(REPO), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads([line for line in out.decode().splitlines() if line.startswith("{")][-1])


async def test_a_loopback_run_shows_one_throughput_everywhere_and_no_compression_advice(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(telemetry, "SUMMARY_INTERVAL_S", 0.2)  # more status-bar summaries in a short run
    summaries: list = []
    service = TelemetryService(tmp_path, lambda: [], interval=0.2, on_summary=summaries.append)
    await service.start()
    stream: dict[str, list] = {"samples": [], "verdict": []}
    metrics = tmp_path / "m.jsonl"
    try:
        async with connect(service.hub.stream_url, max_size=2**24, proxy=None) as ws:

            async def read() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "samples" and message.get("run") == RUN and message.get("rank") == 0:
                        stream["samples"].extend(message.get("samples") or [])
                    elif message.get("type") == "verdict" and message.get("run") == RUN:
                        stream["verdict"].append(message)

            reader = asyncio.ensure_future(read())
            result = await _train(service, metrics)
            await asyncio.sleep(1.0)  # the last batches and the verdict after them
            reader.cancel()
    finally:
        await service.stop()

    by_step = {s["step"]: s for s in stream["samples"] if "step_time_s" in s}
    last = by_step[max(by_step)]
    assert result["world_size"] == 2 and "loopback" in result["topology"] and result["compression"] == "none"

    # the status bar: the figure of rank 0's sample at the step it names, with its window in the label
    live = [r for s in summaries for r in s.runs if r.run_id == RUN]
    assert len(live) >= 3, "the run reported for several status-bar summaries"
    for r in live:
        sample = by_step[r.step]
        assert r.unit == "samples/s" and r.value == pytest.approx(sample["samples_per_s"], abs=0.01)
        assert r.label == label(sample["samples_per_s_window_s"])

    # the CLI: the run's summary is the last sample's figure, and the terminal prints it with its window
    assert result["samples_per_s"] == pytest.approx(last["samples_per_s"], rel=1e-9)
    out = io.StringIO()
    print_train_summary(types.SimpleNamespace(state="succeeded"), result, str(metrics),
                        console=Console(file=out, width=300))
    assert describe(last["samples_per_s"], last["samples_per_s_window_s"]) in out.getvalue()
    with Progress(disable=True) as progress:
        task = progress.add_task("starting", total=1.0)
        follower = asyncio.ensure_future(follow_metrics(metrics, progress, task))
        await asyncio.sleep(1.0)
        follower.cancel()
        shown = progress.tasks[0].description
    assert f"{last['samples_per_s']:,.0f} samples/s (last {window_text(last['samples_per_s_window_s'])})" in shown, shown

    # the verdict: communication-bound on loopback, but it says the engine turned compression off
    assert stream["verdict"], "the run got a verdict"
    assert all("powersgd" not in v["fix"].lower() for v in stream["verdict"]), [v["fix"] for v in stream["verdict"]]
    comm = [v for v in stream["verdict"] if v["kind"] == "communication-bound"]
    assert comm, [v["sentence"] for v in stream["verdict"]]
    assert any("the engine measured" in v["sentence"] and "loopback" in v["sentence"] for v in comm), comm[-1]
