"""One dashboard per store: the editor's daemon announces its hub in the workspace's `.deepdive/`, and the
command line typed in that workspace uses the same store and hub (issue #20 finding 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deepdive.jobs.store import cli_state_dir, state_dir, workspace_of
from deepdive.lspclient import DaemonClient
from deepdive.protocol import HUB


def test_a_command_in_a_workspace_the_editor_uses_takes_its_store(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("DEEPDIVE_STATE_DIR", raising=False)
    monkeypatch.setenv("DEEPDIVE_HOME", str(tmp_path / "user"))
    ws = tmp_path / "ws"
    (ws / "src" / "deep").mkdir(parents=True)
    assert workspace_of(ws / "src") is None and cli_state_dir(ws / "src") == tmp_path / "user"  # no editor there yet
    (ws / ".deepdive").mkdir()
    (ws / ".deepdive" / "state.db").write_bytes(b"")
    assert workspace_of(ws / "src" / "deep") == str(ws.resolve())
    assert cli_state_dir(ws / "src" / "deep") == state_dir(str(ws.resolve()))
    monkeypatch.setenv("DEEPDIVE_STATE_DIR", str(tmp_path / "elsewhere"))
    assert cli_state_dir(ws) == tmp_path / "elsewhere"


async def test_deepdive_dashboard_in_the_editors_workspace_opens_the_daemons_dashboard(tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPDIVE_HUB", "DEEPDIVE_STATE_DIR")}
    env["DEEPDIVE_HOME"] = str(tmp_path / "user")
    async with DaemonClient.spawn(str(ws)) as daemon:
        info = await daemon.request(HUB)
        announced = json.loads((ws / ".deepdive" / "hub.json").read_text())
        assert announced["ingestUrl"] == info.ingest_url and announced["owner"] == "editor's daemon"
        assert info.dashboard_url and info.dashboard_url.startswith("http://127.0.0.1:") and info.token in info.dashboard_url
        done = subprocess.run([sys.executable, "-m", "deepdive", "dashboard", "--no-browser"], cwd=ws / ".deepdive",
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == f"dashboard: {info.dashboard_url}", done.stdout
        assert "editor's daemon" in done.stdout
    assert not (ws / ".deepdive" / "hub.json").exists(), "the daemon takes its announcement back when it stops"
