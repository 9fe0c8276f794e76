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
    # Every property the prompt states was checked and met, and the wire carries them (camelCase).
    assert [p.name for p in result.properties] == ["task", "input_shape", "outputs", "family", "layer_count"]
    assert all(p.status == "met" for p in result.properties), [(p.label, p.status, p.detail) for p in result.properties]
    assert result.understood_as["prompt"] == PROMPT and result.not_understood == [] and result.gaps == []

    partials = progress_of(daemon, "part-1")
    texts = [value(p, "text") for p in partials if value(p, "kind") == "text"]
    assert texts == [result.code], "the builtin's program comes in one piece: it is not streamed token by token"
    phases = [value(p, "text") for p in partials if value(p, "kind") == "phase"]
    assert phases[0] == "builtin: composing the program from templates (not streamed token by token)"
    checks = [value(p, "check") for p in partials if value(p, "kind") == "check"]
    assert [value(c, "name") for c in checks] == [c.name for c in result.checks]
    assert all(value(c, "ok") for c in checks)
    work = [value(p, "kind") for p in progress_of(daemon, "work-1")]
    assert work[0] == "begin" and work[-1] == "end" and "report" in work


async def test_cancel_stops_generation_and_kills_the_smoke_run(workspace: Path, monkeypatch):
    # A cold smoke run (`python program.py --smoke`), so that its process can be found by name: a check
    # forked from a warm template (deepdive.codegen.warm) keeps the template's command line.
    monkeypatch.setenv("DEEPDIVE_SANDBOX_WARM", "0")
    async with DaemonClient.spawn(str(workspace)) as daemon:
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


async def test_a_prompt_the_builtin_cannot_build_is_answered_with_what_is_missing(daemon: DaemonClient):
    raw = await daemon.raw_request("deepdive/generate", {"prompt": "a U-Net for semantic segmentation of medical images, "
                                                                   "without dropout", "backend": "builtin"})
    assert "understoodAs" in raw and "notUnderstood" in raw and "gaps" in raw and "properties" in raw
    result = from_wire(raw, GenerateResult)
    assert result.code == "" and not result.verified and not result.checks
    assert result.gaps and result.message.startswith("the builtin generator cannot build this as asked: ")
    assert "deepdive model pull" in result.message
    stated = {(s["name"], s["value"]) for s in result.understood_as["stated"]}
    assert {("task", "semantic-segmentation"), ("family", "unet"), ("no_layer", "Dropout")} <= stated
    assert all(p.status == "not_checked" for p in result.properties)
    unread = from_wire(await daemon.raw_request("deepdive/generate", {"prompt": "make me a sandwich", "backend": "builtin"}),
                       GenerateResult)
    assert unread.code == "" and unread.message.startswith("could not tell what to build")
    with pytest.raises(JsonRpcException, match="prompt is empty"):
        await daemon.raw_request("deepdive/generate", {"prompt": "   "})


async def test_untrusted_workspace_gets_the_program_but_nothing_runs(workspace: Path):
    async with DaemonClient.spawn(str(workspace), trusted=False) as client:
        raw = await client.raw_request("deepdive/generate", {"prompt": PROMPT}, timeout=60)
    result = from_wire(raw, GenerateResult)
    assert "def build_model" in result.code and not result.verified and not result.checks
    assert "not trusted" in result.message
    assert result.properties and all(p.status == "not_checked" and "not trusted" in p.detail for p in result.properties)
