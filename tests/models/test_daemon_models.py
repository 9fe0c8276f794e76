"""`deepdive/models/list` and `deepdive/models/setDefault` through the real daemon: the registry as plain
JSON, found models offered, the default chosen, errors in one line, answers in milliseconds, and
nothing heavy (torch, llama.cpp, huggingface_hub) loaded into the daemon."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest
from pygls.exceptions import JsonRpcException

from deepdive.lspclient import DaemonClient
from deepdive.models.paths import registry_path
from deepdive.models.registry import ModelEntry, Registry, Speed, editing
from deepdive.protocol import MODELS_LIST, MODELS_SET_DEFAULT, ModelListParams, ModelSetDefaultParams

from .gguf_file import TINY_METADATA, write_gguf

pytestmark = pytest.mark.timeout(120)


async def test_the_picker_requests(daemon: DaemonClient, tmp_path: Path) -> None:
    empty = await daemon.request(MODELS_LIST, ModelListParams())
    assert empty.models == [] and empty.default is None and empty.registry == str(registry_path())
    assert empty.ollama.startswith("no Ollama at http://127.0.0.1:")

    mine = write_gguf(tmp_path / "mine.gguf", TINY_METADATA)
    with editing() as reg:
        reg.add(ModelEntry(name="mine", kind="gguf", path=str(mine), size_bytes=mine.stat().st_size,
                           speed=Speed(ttft_s=0.35, tokens_per_s=46.0, tokens=64, threads=2, device="cpu",
                                       measured_at=1.7e9)))
    found = write_gguf(tmp_path / "home" / ".lmstudio" / "models" / "q" / "coder.gguf", TINY_METADATA)
    listed = await daemon.request(MODELS_LIST, ModelListParams())
    rows = {m.name: m for m in listed.models}
    assert rows["mine"].registered and rows["mine"].speed.tokens_per_s == 46.0 and rows["mine"].speed.threads == 2
    assert rows["coder"].registered is False and rows["coder"].path == str(found)

    chosen = await daemon.request(MODELS_SET_DEFAULT, ModelSetDefaultParams(name="coder", path=str(found)))
    assert chosen.default == "coder" and Registry.load().default == "coder"
    assert {m.name for m in chosen.models if m.registered} == {"mine", "coder"}
    chosen = await daemon.request(MODELS_SET_DEFAULT, ModelSetDefaultParams(name="mine"))
    assert chosen.default == "mine" and [m.name for m in chosen.models if m.is_default] == ["mine"]
    builtin = await daemon.request(MODELS_SET_DEFAULT, ModelSetDefaultParams(name=None))
    assert builtin.default is None and Registry.load().default is None

    with pytest.raises(JsonRpcException) as err:
        await daemon.request(MODELS_SET_DEFAULT, ModelSetDefaultParams(name="nope"))
    assert "no model named 'nope': `deepdive model list` shows the names" in str(err.value)
    mine.unlink()
    listed = await daemon.request(MODELS_LIST, ModelListParams(discover=False))
    assert [m.problem for m in listed.models if m.name == "mine"] == [
        f"file missing: {mine} (pull or add it again, or remove it)"]

    rtts = []
    for _ in range(20):
        start = time.perf_counter()
        await daemon.request(MODELS_LIST, ModelListParams(discover=False))
        rtts.append(time.perf_counter() - start)
    assert sorted(rtts)[10] < 0.05, rtts

    maps = " ".join(m.path for m in psutil.Process(daemon.process.pid).memory_maps())
    assert "libtorch" not in maps and "llama" not in maps, "the daemon loaded a model runtime"


async def test_a_damaged_registry_is_an_error_not_an_empty_list(daemon: DaemonClient) -> None:
    registry_path().parent.mkdir(parents=True, exist_ok=True)
    registry_path().write_text("[1, 2")
    with pytest.raises(JsonRpcException) as err:
        await daemon.request(MODELS_LIST, ModelListParams())
    assert "is not valid JSON (line 1" in str(err.value) and "Traceback" not in str(err.value)
    assert registry_path().read_text() == "[1, 2"
