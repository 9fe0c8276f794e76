"""The job-side event emitter: a no-op outside a job, JSON lines inside one."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_events_are_a_noop_outside_a_job():
    env = {k: v for k, v in os.environ.items() if k != "DEEPDIVE_EVENTS_FD"}
    code = "from deepdive.jobs import events; events.progress(0.5, 'x'); events.result({'a': 1}); print(events.enabled())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "False"


def test_events_arrive_as_json_lines_on_the_inherited_pipe():
    read_fd, write_fd = os.pipe()
    code = "from deepdive.jobs import events; events.progress(2.0, 'clamped'); events.data('x', v=1); events.result({'ok': True})"
    env = {**os.environ, "DEEPDIVE_EVENTS_FD": str(write_fd)}
    subprocess.run([sys.executable, "-c", code], env=env, pass_fds=(write_fd,), check=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        events = [json.loads(line) for line in pipe]
    assert events == [
        {"type": "progress", "fraction": 1.0, "message": "clamped"},
        {"type": "data", "data": {"event": "x", "v": 1}},
        {"type": "result", "data": {"ok": True}},
    ]
