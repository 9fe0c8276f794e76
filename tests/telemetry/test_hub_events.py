"""The engine's and ``deepdive tune``'s events are the ones the protocol declares (deepdive.protocol.hub_events).

Their producers cannot import the protocol (the engine imports nothing of the daemon's), so the
check is here: a real training script and a real study write their events to the reporter's file
sink (the same events the hub relays), and each declared kind is read back with its class, strictly:
a key the dashboard's generated types do not know, or one they expect and do not get, fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from deepdive.protocol import HUB_EVENTS, from_wire
from deepdive.protocol.hub_events import event_kind

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = '''
import deepdive.engine as dd

run = dd.setup(precision="fp32")
x = run.suggest("x", -1.0, 1.0, default=0.0)
for step in range(3):
    run.log(loss=(x - 0.3) ** 2 + 0.1 / (step + 1))
'''
CLASSES = {event_kind(cls): cls for cls in HUB_EVENTS}


def _events(tmp_path: Path, *argv: str) -> list[dict]:
    metrics = tmp_path / "metrics.jsonl"
    env = {**os.environ, "DEEPDIVE_METRICS_OUT": str(metrics), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "type"} for line in lines if line["type"] == "event"]


def _check(events: list[dict]) -> Counter:
    declared = [e for e in events if e["kind"] in CLASSES]
    for event in declared:
        from_wire(event, CLASSES[event["kind"]], what="event")
    return Counter(e["kind"] for e in declared)


def test_the_engines_setup_event_is_the_protocols(tmp_path: Path):
    (tmp_path / "quad.py").write_text(SCRIPT)
    assert _check(_events(tmp_path, "quad.py"))["setup"] == 1


def test_a_studys_tune_events_are_the_protocols(tmp_path: Path):
    (tmp_path / "quad.py").write_text(SCRIPT)
    seen = _check(_events(tmp_path, "-m", "deepdive", "tune", "quad.py", "--trials", "2", "--metric", "loss",
                          "--storage", f"sqlite:///{tmp_path / 'tune.db'}", "--confirm", "2", "--confirm-seeds", "2"))
    assert {"tune.study", "tune.trial", "tune.best", "tune.importance", "tune.done"} <= set(seen)
    assert seen["tune.confirm"] == 4 and seen["tune.confirmed"] == 1  # --confirm: 2 trials x 2 fresh seeds
