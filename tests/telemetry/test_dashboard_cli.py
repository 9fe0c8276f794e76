"""`deepdive dashboard` serves the hub in the foreground; `deepdive train` elsewhere finds it and streams to it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "server" / "examples" / "digits.py"


async def test_train_streams_to_a_running_dashboard(tmp_path: Path):
    env = {**os.environ, "DEEPDIVE_HOME": str(tmp_path)}
    env.pop("DEEPDIVE_HUB", None)
    dash = subprocess.Popen([sys.executable, "-m", "deepdive", "dashboard", "--no-browser", "--interval", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = [dash.stdout.readline() for _ in range(2)]
        url = lines[0].split()[1]
        assert lines[0].startswith("dashboard: http://127.0.0.1:") and "token=" in url
        hub_file = tmp_path / "hub.json"
        assert stat.S_IMODE(hub_file.stat().st_mode) == 0o600, "the token is for this user only"
        stream = "ws" + url[4:].replace("/?token=", "/stream?token=")
        async with connect(stream, max_size=2**24) as ws:
            train = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "deepdive", "train", str(DIGITS), "--json", "--",
                "--epochs", "3", "--compression", "none", env=env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            kinds: set[str] = set()
            steps = 0

            async def read() -> None:
                nonlocal steps
                async for raw in ws:
                    message = json.loads(raw)
                    kinds.add(message["type"])
                    if message["type"] == "samples":
                        steps += sum(1 for s in message["samples"] if "step_time_s" in s)

            reader = asyncio.ensure_future(read())
            out, err = await asyncio.wait_for(train.communicate(), 180)
            await asyncio.sleep(1.0)
            reader.cancel()
        assert train.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.decode().strip().splitlines()[-1])["state"] == "succeeded"
        assert steps > 0 and {"machine", "samples"} <= kinds
    finally:
        dash.send_signal(signal.SIGINT)
        dash.wait(timeout=30)
    assert dash.returncode == 0
    assert not (tmp_path / "hub.json").exists(), "the address file goes with the dashboard"


def test_dashboard_bad_arguments():
    done = subprocess.run([sys.executable, "-m", "deepdive", "dashboard", "--interval", "0.01"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == "deepdive: error: --interval must be from 0.1 to 60 seconds"
