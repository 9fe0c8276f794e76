"""`deepdive/generate` through the real daemon: partial results, work-done progress, cancel, trust."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from deepdive.lspclient import DaemonClient
from deepdive.protocol import VERSION, GenerateResult, from_wire

pytestmark = pytest.mark.timeout(240)

PROMPT = "a 2-layer MLP classifier for 64 features and 10 classes"


def progress_of(client: DaemonClient, token: str) -> list:
    return [p.value for p in client.progress if p.token == token]


def value(v, key):
    return v.get(key) if isinstance(v, dict) else getattr(v, key, None)


async def test_generate_streams_the_program_and_its_checks_and_stays_responsive(daemon: DaemonClient):
    params = {"prompt": PROMPT, "partialResultToken": "part-1", "workDoneToken": "work-1"}
    pending = asyncio.ensure_future(daemon.raw_request("deepdive/generate", params, timeout=200))
    # the daemon keeps answering while the program is verified in a subprocess
    rtts = []
    while not pending.done():
        t0 = time.perf_counter()
        await daemon.request(VERSION)
        rtts.append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)
    result = from_wire(await pending, GenerateResult)
    assert result.verified, result.message
    assert result.backend == "builtin" and result.framework == "torch" and result.filename.endswith(".py")
    assert result.intent["num_classes"] == 10 and result.intent["layers"] == 2
    assert len(rtts) >= 5 and sorted(rtts)[len(rtts) // 2] < 0.1, f"version RTTs while verifying: {rtts}"

    partials = progress_of(daemon, "part-1")
    text = "".join(value(p, "text") for p in partials if value(p, "kind") == "text")
    assert text == result.code, "the text partials add up to the program"
    checks = [value(p, "check") for p in partials if value(p, "kind") == "check"]
    assert [value(c, "name") for c in checks] == [c.name for c in result.checks]
    assert all(value(c, "ok") for c in checks)
    work = [value(p, "kind") for p in progress_of(daemon, "work-1")]
    assert work[0] == "begin" and work[-1] == "end" and "report" in work


async def test_cancel_stops_generation_and_kills_the_smoke_run(daemon: DaemonClient):
    params = {"prompt": PROMPT, "partialResultToken": "part-2"}
    future = daemon.protocol.send_request("deepdive/generate", params, msg_id="gen-cancel")
    # wait until verification runs (the smoke check starts a subprocess of the daemon)
    daemon_proc = psutil.Process(daemon.process.pid)
    deadline = time.monotonic() + 60
    while not any("--smoke" in " ".join(_cmdline(c)) for c in _children(daemon_proc)):
        assert time.monotonic() < deadline, "the smoke run never started"
        await asyncio.sleep(0.05)
    daemon.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="gen-cancel"))
    with pytest.raises(JsonRpcException, match="cancel"):
        await asyncio.wait_for(asyncio.wrap_future(future), 30)
    deadline = time.monotonic() + 15
    while any("--smoke" in " ".join(_cmdline(c)) for c in _children(daemon_proc)):
        assert time.monotonic() < deadline, "the smoke run outlived the cancel"
        await asyncio.sleep(0.1)
    await daemon.request(VERSION)  # still serving


def _children(proc: psutil.Process) -> list[psutil.Process]:
    """Live descendants (zombies and processes that vanish while we look are left out)."""
    out = []
    try:
        children = proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                child.cmdline()
                out.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return out


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


async def test_bad_prompt_is_a_one_line_error(daemon: DaemonClient):
    with pytest.raises(JsonRpcException, match="could not tell what to build"):
        await daemon.raw_request("deepdive/generate", {"prompt": "make me a sandwich"})
    with pytest.raises(JsonRpcException, match="prompt is empty"):
        await daemon.raw_request("deepdive/generate", {"prompt": "   "})


async def test_untrusted_workspace_gets_the_program_but_nothing_runs(workspace: Path):
    async with DaemonClient.spawn(str(workspace), trusted=False) as client:
        raw = await client.raw_request("deepdive/generate", {"prompt": PROMPT}, timeout=60)
    result = from_wire(raw, GenerateResult)
    assert "def build_model" in result.code and not result.verified and not result.checks
    assert "not trusted" in result.message
