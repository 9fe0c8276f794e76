"""A compress job reports its progress as job events, and its telemetry events are the protocol's.

A real job (the job manager, its supervisor, ``python -m deepdive compress`` on a small model with
prune, distill and quantize): the editor's notification reads the ``progress`` job events (never the
job's printed table), and the ``compress.*`` events the dashboard reads validate, strictly, against
deepdive.protocol.hub_events.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepdive.jobs.manager import JobManager
from deepdive.jobs.store import JobStore
from deepdive.protocol import (
    CompressProgressEvent, CompressReportEvent, CompressStepEvent, JobEvent, JobStartParams, from_wire,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EVAL = '''
import torch

def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    return x, (x[:, 0] > 0).long()

def evaluate(model):
    x, y = _data()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())

def example_inputs(batch_size):
    return torch.randn(batch_size, 16)

def train_loader():
    x, y = _data()
    return [(x[i:i + 64], y[i:i + 64]) for i in range(0, 256, 64)]
'''
MODEL = '''
import sys, torch
from torch import nn
torch.manual_seed(0)
torch.save(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2)), sys.argv[1])
'''
EVENT_CLASSES = {"compress.progress": CompressProgressEvent, "compress.step": CompressStepEvent,
                 "compress.report": CompressReportEvent}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess
    import sys

    ws = tmp_path_factory.mktemp("ws")
    (ws / "tiny_eval.py").write_text(EVAL)
    subprocess.run([sys.executable, "-c", MODEL, str(ws / "tiny.pt")], check=True, timeout=120)
    return ws


async def test_a_compress_job_reports_its_steps_as_progress_events(workspace: Path, tmp_path: Path):
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(workspace))
    metrics = tmp_path / "metrics.jsonl"
    manager.job_env["DEEPDIVE_METRICS_OUT"] = str(metrics)  # the reporter's file sink: the hub's events
    events: list[JobEvent] = []
    manager.subscribe(events.append)
    options = {"model": "tiny.pt", "eval": "tiny_eval.py", "prune": 0.5, "distill": True, "quantize": "int8-dynamic",
               "epochs": 1, "distillEpochs": 1, "out": "out"}
    job = await manager.start(JobStartParams(kind="compress", options=options, progress=False))
    job = await manager.wait(job.id)
    assert job.state == "succeeded", manager.store.output(job.id)[0][-20:]

    progress = [e.progress for e in events if e.type == "progress" and e.progress is not None]
    assert progress, "the job reported no progress"
    messages = [p.message or "" for p in progress]
    assert all(re.match(r"^[0-4]/4 measured · \w+", m) for m in messages), messages
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert (job.progress, job.message) == (1.0, messages[-1])

    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    kinds = []
    for line in lines:
        if line.get("type") == "event" and line["kind"] in EVENT_CLASSES:
            kinds.append(line["kind"])
            from_wire({k: v for k, v in line.items() if k != "type"}, EVENT_CLASSES[line["kind"]], what="event")
    assert kinds.count("compress.step") == 4 and kinds[-1] == "compress.report"
    assert {"compress.progress"} < set(kinds)
