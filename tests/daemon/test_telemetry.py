"""The daemon's telemetry: the hub's address for jobs, live engine and machine samples, the verdict, the store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pygls.exceptions import JsonRpcException
from websockets.asyncio.client import connect

from deepdive.lspclient import DaemonClient
from deepdive.protocol import HUB, JOBS_EVENT, JOBS_START, TELEMETRY_SUMMARY, JobStartParams
from deepdive.telemetry.store import MetricsStore

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "server" / "examples" / "digits.py"


async def test_hub_address_is_loopback_with_a_token(daemon: DaemonClient):
    info = await daemon.request(HUB)
    assert info.running and info.token and len(info.token) >= 32
    assert urlsplit(info.ingest_url).hostname == "127.0.0.1" and f"token={info.token}" in info.ingest_url


async def test_a_training_job_streams_to_the_hub_and_is_stored(daemon: DaemonClient, workspace: Path):
    info = await daemon.request(HUB)
    seen: dict[str, list] = {"samples": [], "machine": [], "verdict": []}
    async with connect(info.stream_url, max_size=2**24) as stream:
        (workspace / "digits.py").write_bytes(DIGITS.read_bytes())  # jobs run only files of the workspace
        job = await daemon.request(JOBS_START, JobStartParams(kind="train", options={
            "path": "digits.py", "nproc": 1, "args": ["--epochs", "6", "--compression", "none"]}))

        async def read() -> None:
            async for raw in stream:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "samples" and message.get("run") == job.id:
                    seen["samples"].extend(message["samples"])
                elif kind in ("machine", "verdict"):
                    seen[kind].append(message)

        reader = asyncio.ensure_future(read())
        done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 180)
        await asyncio.sleep(1.5)
        reader.cancel()
    assert done.job.state == "succeeded", done.job.reason
    # torchrun does not pass the job's event pipe on: the job's progress comes from its telemetry
    progress = [e.progress for e in daemon.notifications[JOBS_EVENT.method] if e.job_id == job.id and e.type == "progress"]
    assert progress and all(p.message.startswith("epoch ") and "step " in p.message for p in progress)
    fractions = [p.fraction for p in progress if p.fraction is not None]
    assert fractions and fractions == sorted(fractions) and 0 < fractions[-1] <= 1
    steps = [s for s in seen["samples"] if "step_time_s" in s]
    assert steps and all(isinstance(s["t"], float) for s in steps), "engine samples carry the producer's time"
    machine = seen["machine"][-1]
    assert machine["host"] and (machine["gpus"] or machine["gpu_reason"]), "GPUs, or the reason there are none"
    assert any(v.get("run") == job.id and v["kind"] and v["fix"] for v in seen["verdict"])
    # the status bar's summary: about once a second, the GPUs (or why there are none) and the
    # training job's throughput while it reports
    summaries = daemon.notifications[TELEMETRY_SUMMARY.method]
    assert len(summaries) >= 2 and all(s.host_cpu is not None for s in summaries[1:]), "CPU needs two readings"
    assert all(s.gpu_util is not None or s.gpu_reason for s in summaries)
    live = [r for s in summaries for r in s.runs if r.run_id == job.id]
    assert live and all(r.job_id == job.id and r.unit == "samples/s" and r.value > 0 for r in live)
    # past runs and a run's stored series, asked for over the dashboard's own connection
    async with connect(info.stream_url, max_size=2**24) as stream:
        await stream.send(json.dumps({"type": "query", "id": 7, "what": "runs"}))
        await stream.send(json.dumps({"type": "query", "id": 8, "what": "run", "run": job.id, "fields": ["step", "loss"]}))
        replies = {}
        async for raw in stream:
            message = json.loads(raw)
            if message.get("type") == "reply":
                replies[message["id"]] = message
                if len(replies) == 2:
                    break
    assert any(r["run"] == job.id and r["outcome"] == "succeeded" and r["name"] for r in replies[7]["runs"])
    rows = replies[8]["rows"]
    assert rows and all("loss" in r for r in rows) and rows[-1]["step"] > rows[0]["step"]
    # what streamed live is also in the store, on the same time axis as the machine samples
    store = MetricsStore(workspace / ".deepdive" / "metrics.db")
    try:
        for _ in range(30):
            rows = store.query(job.id)
            if rows:
                break
            time.sleep(0.2)
        assert rows and min(r["t"] for r in rows) >= job.created_at - 1
        assert any(r["run"] == job.id for r in store.runs())
    finally:
        store.close()


async def test_a_run_started_in_a_terminal_with_the_hub_address_appears_in_the_jobs_view(
        daemon: DaemonClient, workspace: Path):
    """What the extension's terminal environment gives: DEEPDIVE_HUB; the run is listed as a terminal job."""
    import os
    import sys

    from deepdive.protocol import JOBS_CANCEL, JOBS_LIST, JobIdParams, JobListParams

    info = await daemon.request(HUB)
    script = workspace / "digits.py"
    script.write_bytes(DIGITS.read_bytes())
    env = {**os.environ, "DEEPDIVE_HUB": info.ingest_url, "OMP_NUM_THREADS": "1"}
    env.pop("DEEPDIVE_JOB_ID", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), "--epochs", "1", "--compression", "none",
                                                cwd=str(workspace), env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    started = await daemon.wait_for(JOBS_EVENT.method,
                                    lambda e: e.type == "started" and e.job is not None and e.job.kind == "terminal", 120)
    assert started.job.title == "train digits.py (terminal)" and started.job.state == "running"
    assert started.job.pid == proc.pid and started.job.argv[:2] == ["--epochs", "1"]
    listed = await daemon.request(JOBS_LIST, JobListParams())
    assert any(j.id == started.job_id and j.kind == "terminal" for j in listed.jobs)
    with pytest.raises(JsonRpcException, match="Ctrl-C in its terminal"):
        await daemon.request(JOBS_CANCEL, JobIdParams(id=started.job_id))
    finished = await daemon.wait_for(JOBS_EVENT.method,
                                     lambda e: e.type == "finished" and e.job_id == started.job_id, 180)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert finished.job.state == "succeeded" and finished.job.ended_at is not None
