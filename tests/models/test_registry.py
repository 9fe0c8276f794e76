"""The registry: a small JSON file in the config folder, written whole (temp, fsync, rename), one
default, one-line errors that say what to do, and nothing lost when the file is damaged."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from deepdive.models import ModelError
from deepdive.models.paths import registry_path
from deepdive.models.registry import ModelEntry, Registry, Speed, editing


def entry(name: str, path: str = "/models/m.gguf") -> ModelEntry:
    return ModelEntry(name=name, kind="gguf", path=path, size_bytes=123, title="A model")


def test_missing_file_is_an_empty_registry_in_the_config_folder(isolated_dirs) -> None:
    reg = Registry.load()
    assert reg.models == {} and reg.default is None
    assert reg.path == isolated_dirs["config"] / "deepdive" / "models.json"
    assert not reg.path.exists()  # reading creates nothing


def test_add_default_remove_round_trip() -> None:
    with editing() as reg:
        reg.add(entry("small"))
        reg.add(entry("big", "/models/big.gguf"))
        reg.set_default("big")
    reg = Registry.load()
    assert list(reg.models) == ["small", "big"]
    assert reg.default == "big" and reg.default_entry().path == "/models/big.gguf"
    data = json.loads(registry_path().read_text())
    assert data["version"] == 1 and data["default"] == "big"
    with editing() as reg:
        reg.remove("big")
    reg = Registry.load()
    assert list(reg.models) == ["small"] and reg.default is None  # the default went with its model


def test_speed_is_kept(tmp_path: Path) -> None:
    with editing() as reg:
        e = entry("m")
        e.speed = Speed(ttft_s=0.35, tokens_per_s=46.0, tokens=64, threads=2, device="cpu", load_s=0.8,
                        measured_at=1.0e9, prompt_tokens=30)
        reg.add(e)
    got = Registry.load().get("m").speed
    assert got is not None and got.ttft_s == 0.35 and got.tokens_per_s == 46.0 and got.threads == 2


def test_errors_are_one_line_and_say_what_to_do() -> None:
    reg = Registry.load()
    with pytest.raises(ModelError) as err:
        reg.get("nope")
    assert str(err.value) == "no model named 'nope': `deepdive model list` shows the names"
    with pytest.raises(ModelError, match="no model named 'nope'"):
        reg.set_default("nope")
    reg.add(entry("m"))
    with pytest.raises(ModelError, match=r"a model named 'm' exists: choose another --name, or remove it first"):
        reg.add(entry("m"))
    for bad in ("", "with space", "a/b", "x" * 101, "builtin", "auto"):
        with pytest.raises(ModelError, match="model name"):
            reg.add(entry(bad))


def test_a_damaged_registry_is_reported_and_never_overwritten() -> None:
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "models": [', encoding="utf-8")
    with pytest.raises(ModelError) as err:
        Registry.load()
    assert str(err.value).startswith(f"the model registry {path} is not valid JSON (line 1")
    assert "fix it or move it away" in str(err.value)
    with pytest.raises(ModelError):
        with editing() as reg:
            reg.add(entry("m"))
    assert path.read_text(encoding="utf-8") == '{"version": 1, "models": ['  # untouched


def test_an_entry_of_unknown_kind_is_named() -> None:
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "default": None, "models": [{"name": "x", "kind": "onnx"}]}))
    with pytest.raises(ModelError, match=r"entry 'x' of .*models.json has kind 'onnx'"):
        Registry.load()


def test_a_newer_registry_version_is_refused() -> None:
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 9, "models": []}))
    with pytest.raises(ModelError, match="version 9.*newer Deepdive"):
        Registry.load()


def test_the_write_is_atomic_no_temp_file_is_left() -> None:
    with editing() as reg:
        reg.add(entry("m"))
    assert sorted(p.name for p in registry_path().parent.iterdir()) == ["models.json", "models.json.lock"]


def _add_many(prefix: str, n: int, config: str) -> None:
    os.environ["XDG_CONFIG_HOME"] = config
    for i in range(n):
        with editing() as reg:
            reg.add(entry(f"{prefix}{i}"))


def test_concurrent_editors_lose_no_entry(isolated_dirs) -> None:
    # Two processes (the CLI and the daemon, say) adding at once: each edit sees the other's.
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(p, 15, str(isolated_dirs["config"]))) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(Registry.load().models) == 30
