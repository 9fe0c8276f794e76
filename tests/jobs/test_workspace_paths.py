"""Kinds that run code run only files of the workspace (a client names options, never an arbitrary file).

The command line (``deepdive train PATH``) is the exception: its user typed the path themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.jobs.kinds import Context, JobRejected, build_launch
from deepdive.jobs.manager import JobManager
from deepdive.jobs.store import JobStore
from deepdive.protocol import JobStartParams


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("print('hi')\n")
    (tmp_path / "outside.py").write_text("print('not yours')\n")
    (ws / "link.py").symlink_to(tmp_path / "outside.py")
    return ws


def ctx(ws: Path, **kw) -> Context:
    return Context(python="/py", workspace=str(ws), trusted=True, **kw)


@pytest.mark.parametrize("kind", ["script", "train", "tune"])
@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.py", "link.py"])
def test_a_path_outside_the_workspace_is_refused_in_one_line(ws: Path, kind: str, path: str):
    with pytest.raises(JobRejected, match="outside the workspace") as info:
        build_launch(kind, {"path": path}, ctx(ws))
    assert "\n" not in str(info.value)
    assert str(ws) in str(info.value), "the message names the workspace the file must be in"


def test_the_compress_evaluation_script_must_be_in_the_workspace_too(ws: Path):
    (ws / "model.pt").write_bytes(b"x")
    with pytest.raises(JobRejected, match="outside the workspace"):
        build_launch("compress", {"model": "model.pt", "eval": "../outside.py", "quantize": "int8"}, ctx(ws))


def test_files_of_the_workspace_run(ws: Path):
    for path in ("train.py", str(ws / "train.py"), "./sub/../train.py"):
        _, launch = build_launch("script", {"path": path}, ctx(ws))
        assert launch.argv == ["/py", str(ws / "train.py")]


def test_without_a_workspace_the_daemon_says_to_open_one(ws: Path):
    with pytest.raises(JobRejected, match="open the folder that holds it"):
        build_launch("script", {"path": str(ws / "train.py")}, Context(python="/py", workspace=None, trusted=True))


def test_the_command_line_runs_the_file_its_user_named(ws: Path):
    _, launch = build_launch("script", {"path": "../outside.py"}, ctx(ws, confine=False))
    assert launch.argv == ["/py", str(ws.parent / "outside.py")]


async def test_the_daemon_refuses_passwd_before_starting_anything(ws: Path, tmp_path: Path):
    manager = JobManager(JobStore(tmp_path / "state"), workspace=str(ws))
    with pytest.raises(JobRejected, match="outside the workspace"):
        await manager.start(JobStartParams(kind="script", options={"path": "/etc/passwd"}))
    assert manager.list() == [], "nothing was started or recorded"


@pytest.mark.slow
def test_deepdive_train_runs_a_script_outside_the_current_folder(tmp_path: Path):
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "here").mkdir()
    script = tmp_path / "elsewhere" / "hello.py"
    script.write_text("print('hello from elsewhere')\n")
    done = subprocess.run([sys.executable, "-m", "deepdive", "train", str(script), "--json"], cwd=tmp_path / "here",
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DEEPDIVE_HOME": str(tmp_path / "state")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["state"] == "succeeded"
