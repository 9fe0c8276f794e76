"""`pull` against a local file server that plays the Hugging Face hub (huggingface_hub honours
HF_ENDPOINT): the hub's URL layout and headers, a cut connection resumed, an interrupted pull resumed
by the next one, and a sha256 mismatch refused with its reason. The real hub cannot be reached from
these machines; these tests are what `pull` is checked against."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepdive.models import ModelError
from deepdive.models.catalog import PINS, Pin, parse_target
from deepdive.models.pull import PullError, destination, pull

from .conftest import free_port
from .gguf_file import TINY_METADATA, gguf_bytes
from .servers import HubServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO, FILE = "Org/Tiny-Coder-GGUF", "tiny-coder-q4_k_m.gguf"
# 24 MiB: huggingface_hub writes what arrives in 10 MiB pieces, so a resume starts at the last whole one.
DATA = gguf_bytes(TINY_METADATA, payload=bytes(range(256)) * (24 * 4096))
PIECE = 10 * 1024 * 1024
SHA = hashlib.sha256(DATA).hexdigest()


def pin(data: bytes = DATA, sha256: str = SHA) -> Pin:
    return Pin(name="tiny-coder", repo=REPO, revision=COMMIT, filename=FILE, sha256=sha256, size_bytes=len(data))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    with HubServer({(REPO, COMMIT, FILE): DATA}, commit=COMMIT) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        yield srv


def test_pull_downloads_from_the_pinned_revision_checks_and_keeps_it_in_the_cache(hub: HubServer, isolated_dirs) -> None:
    path = pull(pin())
    assert path == destination(pin()) and path.read_bytes() == DATA
    assert path.is_relative_to(isolated_dirs["cache"] / "deepdive" / "models")
    assert [(m, p) for m, p, _ in hub.requests if "/resolve/" in p] == [
        ("HEAD", f"/{REPO}/resolve/{COMMIT}/{FILE}"), ("GET", f"/{REPO}/resolve/{COMMIT}/{FILE}")]
    assert sorted(p.name for p in path.parent.iterdir()) == [FILE, FILE + ".sha256"]  # no partial file left
    again = pull(pin())  # already there and verified: nothing is downloaded
    assert again == path and len(hub.gets()) == 1


def test_a_cut_connection_is_resumed_where_it_stopped(hub: HubServer) -> None:
    hub.cut_after, hub.cuts = 15 * 1024 * 1024, 1
    path = pull(pin())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    assert hub.gets() == [None, f"bytes={PIECE}-"]  # the second request asked only for the rest


def test_a_sha256_mismatch_is_refused_with_its_reason_and_nothing_is_kept(hub: HubServer) -> None:
    wrong = DATA[:-1] + b"!"  # the same size, one byte changed (a proxy, a corrupted mirror)
    hub.files[(REPO, COMMIT, FILE)] = wrong
    hub.etag = SHA  # the server even claims the pinned hash
    with pytest.raises(PullError) as err:
        pull(pin())
    got = hashlib.sha256(wrong).hexdigest()
    assert str(err.value) == (
        f"sha256 mismatch for {FILE}: got {got}, pinned {SHA}: the download was deleted; run the pull again, "
        "and if it repeats the file on the hub is not the pinned one (or a proxy changed it)"
    )
    assert not destination(pin()).exists() and not Path(str(destination(pin())) + ".part").exists()


def test_a_hub_that_announces_another_file_is_refused_before_downloading(hub: HubServer) -> None:
    hub.files[(REPO, COMMIT, FILE)] = DATA + b"more"
    with pytest.raises(PullError) as err:
        pull(pin())
    other = hashlib.sha256(DATA + b"more").hexdigest()
    assert str(err.value) == (f"the hub's {REPO}/{FILE} at {COMMIT[:12]} is {other} ({len(DATA) + 4:,} bytes), "
                              f"not the pinned {SHA} ({len(DATA):,} bytes): not downloaded")
    assert hub.gets() == []


def test_missing_file_and_unreachable_hub_are_one_line(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Pin(name="x", repo=REPO, revision=COMMIT, filename="nope.gguf", sha256=SHA, size_bytes=1)
    with pytest.raises(PullError, match=rf"^{REPO} has no file nope\.gguf at revision {COMMIT[:12]} \(HTTP 404\)$"):
        pull(missing)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PullError, match=r"^cannot reach the Hugging Face hub at http://127\.0\.0\.1:\d+: .*offline"):
        pull(pin())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PullError, match="HF_HUB_OFFLINE is set: unset it to pull"):
        pull(pin())


def test_what_pull_accepts() -> None:
    assert parse_target("qwen2.5-coder-0.5b") is PINS["qwen2.5-coder-0.5b"]
    spec = parse_target(f"{REPO}/{FILE}", revision=COMMIT, sha256=SHA.upper())
    assert (spec.repo, spec.filename, spec.revision, spec.sha256, spec.name) == (REPO, FILE, COMMIT, SHA, "tiny-coder-q4_k_m")
    with pytest.raises(ModelError, match=r"unknown model 'qwen9': pull knows qwen2\.5-coder-0\.5b, qwen2\.5-coder-1\.5b"):
        parse_target("qwen9")
    with pytest.raises(ModelError, match=r"pin it: give --revision COMMIT \(40 hex digits\) and --sha256 HEX"):
        parse_target(f"{REPO}/{FILE}")
    with pytest.raises(ModelError, match=r"--revision must be a commit hash \(40 hex digits\), not 'main'"):
        parse_target(f"{REPO}/{FILE}", revision="main", sha256=SHA)
    with pytest.raises(ModelError, match=r"--sha256 must be 64 hex digits"):
        parse_target(f"{REPO}/{FILE}", revision=COMMIT, sha256="abc")
    with pytest.raises(ModelError, match=r"only \.gguf files"):
        parse_target(f"{REPO}/model.safetensors", revision=COMMIT, sha256=SHA)


def _cli(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepdive", "model", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_an_interrupted_pull_is_resumed_by_the_next_one(hub: HubServer) -> None:
    target = [f"{REPO}/{FILE}", "--revision", COMMIT, "--sha256", SHA, "--no-bench"]
    env = dict(os.environ)
    part = Path(str(destination(pin())) + ".part")
    # the hub stops sending a little past the first 10 MiB piece until released: the interrupt certainly
    # comes in the middle (a throttled hub raced with it: a CI run saw the pull finish first)
    hub.hold_after = PIECE + 512 * 1024
    for _ in range(3):
        hub.release.clear()
        proc = _cli("pull", *target, env=env)
        deadline = time.monotonic() + 60
        while (not part.exists() or part.stat().st_size < PIECE) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, f"the pull ended before a whole piece was kept: {proc.communicate()[1][-500:]}"
        proc.send_signal(signal.SIGINT)
        try:
            # The kernel hands the signal to any thread of the pull (tqdm's monitor, say): then the main thread,
            # blocked in recv() on the held body, sees it only when the next bytes come. A real hub keeps sending;
            # this one holds until released, so it is released after a few seconds (a CI run hung the full 30 s).
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                hub.release.set()
                out, err = proc.communicate(timeout=30)
        finally:
            hub.release.set()
        if proc.returncode != 0:
            break
        # Once in a loaded CI run the interrupt was not acted on and the pull finished (exit 0; not reproduced
        # in 10 tries beside two busy loops, cause not found): that try proves nothing about resuming; again.
        destination(pin()).unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    assert proc.returncode == 130, err
    kept = part.stat().st_size
    assert kept % PIECE == 0 and 0 < kept < len(DATA)
    assert f"interrupted: {kept:,} of {len(DATA):,} bytes kept; run the same command to resume" in err
    hub.hold_after = None
    proc = _cli("pull", *target, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert hub.gets()[-1] == f"bytes={kept}-"  # it continued, it did not start over
    assert hashlib.sha256(destination(pin()).read_bytes()).hexdigest() == SHA
    listed = subprocess.run([sys.executable, "-m", "deepdive", "model", "list", "--json", "--no-discover"],
                            env=env, capture_output=True, text=True, timeout=60)
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert models["tiny-coder-q4_k_m"]["kind"] == "gguf" and models["tiny-coder-q4_k_m"]["isDefault"]
