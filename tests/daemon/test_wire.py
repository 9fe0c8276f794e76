"""The daemon's wire discipline: framing, the JSON-RPC envelope, the LSP lifecycle, size limits, trust.

Each test writes raw bytes to a real ``deepdive serve`` (see :mod:`tests.daemon.rawlsp`), because
pygls's own client cannot send what these tests are about.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from deepdive.protocol import MAX_PROMPT_CHARS
from tests.conftest import write_script
from tests.daemon.rawlsp import RawDaemon, frame

BROKEN_STREAM_STATUS = 3
INVALID_REQUEST, PARSE_ERROR, INVALID_PARAMS = -32600, -32700, -32602


@pytest.fixture
def raw(workspace: Path, tmp_path: Path):
    daemon = RawDaemon(workspace, tmp_path / "state")
    yield daemon
    daemon.close()


def version_pid(raw: RawDaemon, timeout: float = 10.0) -> int:
    answer = raw.call("deepdive/version", timeout=timeout)
    assert "result" in answer, answer
    return answer["result"]["pid"]


# -- framing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("length_error", [-5, +5], ids=["content-length-short", "content-length-long"])
def test_a_misframed_message_makes_the_daemon_exit_so_the_editor_restarts_it(raw: RawDaemon, length_error: int):
    raw.initialize(trusted=True)
    assert version_pid(raw) == raw.proc.pid
    raw.send({"jsonrpc": "2.0", "id": 1, "method": "deepdive/version"}, length_error=length_error)
    for i in range(8):  # what the issue saw: valid requests after it, all unanswered by a deaf daemon
        raw.send({"jsonrpc": "2.0", "id": 10 + i, "method": "deepdive/version"})
    assert raw.wait(15) == BROKEN_STREAM_STATUS, f"the daemon did not exit; stderr: {raw.stderr[-5:]}"
    broken = [line for line in raw.stderr if "message stream is broken" in line]
    assert len(broken) == 1, raw.stderr[-10:]


def test_a_garbage_header_line_makes_the_daemon_exit(raw: RawDaemon):
    raw.initialize(trusted=True)
    raw.write(b"hello there\r\n")
    assert raw.wait(15) == BROKEN_STREAM_STATUS
    assert any("hello there" in line for line in raw.stderr if "broken" in line), raw.stderr[-5:]


def test_a_well_framed_body_that_is_not_json_is_a_parse_error_and_the_daemon_stays_up(raw: RawDaemon):
    raw.initialize(trusted=True)
    raw.send(b'{"jsonrpc": "2.0", "id": 7, "method": oops}')
    error = raw.message(lambda m: "error" in m and m["id"] is None)
    assert error["error"]["code"] == PARSE_ERROR
    assert "not valid JSON" in error["error"]["message"] and "\n" not in error["error"]["message"]
    assert version_pid(raw) == raw.proc.pid
    assert raw.proc.poll() is None


# -- the JSON-RPC envelope -------------------------------------------------------------------------


def test_an_object_as_id_is_an_invalid_request_without_a_traceback(raw: RawDaemon):
    raw.initialize(trusted=True)
    for method in ("deepdive/version", "shutdown", "textDocument/hover"):
        raw.send({"jsonrpc": "2.0", "id": {"x": 1}, "method": method, "params": {}})
        error = raw.message(lambda m: "error" in m and m.get("id", "absent") is None)
        assert error["error"]["code"] == INVALID_REQUEST, error
        assert "id" in error["error"]["message"] and "\n" not in error["error"]["message"]
        assert "data" not in error["error"], error  # no Python traceback for the client
    assert version_pid(raw) == raw.proc.pid  # and not shut down by the `shutdown` with a bad id


def test_other_envelope_faults_are_invalid_requests(raw: RawDaemon):
    raw.initialize(trusted=True)
    raw.send({"jsonrpc": "1.0", "id": 5, "method": "deepdive/version"})
    assert raw.response(5)["error"]["code"] == INVALID_REQUEST
    raw.send([{"jsonrpc": "2.0", "id": 6, "method": "deepdive/version"}])  # a batch: not part of LSP
    batch = raw.message(lambda m: "error" in m and m["id"] is None)
    assert batch["error"]["code"] == INVALID_REQUEST and "batch" in batch["error"]["message"]
    raw.send({"jsonrpc": "2.0", "id": 8, "method": 42})
    assert raw.response(8)["error"]["code"] == INVALID_REQUEST
    assert version_pid(raw) == raw.proc.pid


# -- the LSP lifecycle -----------------------------------------------------------------------------


def test_requests_after_shutdown_are_invalid_requests_and_exit_then_returns_0(raw: RawDaemon):
    raw.initialize(trusted=True)
    assert raw.call("shutdown") == {"jsonrpc": "2.0", "id": raw._next_id, "result": None}
    answer = raw.call("deepdive/version", timeout=10)
    assert answer["error"]["code"] == INVALID_REQUEST, answer
    assert "shutdown" in answer["error"]["message"]
    raw.notify("exit")
    assert raw.wait(15) == 0


def test_exit_without_shutdown_exits_1(raw: RawDaemon):
    raw.initialize(trusted=True)
    raw.notify("exit")
    assert raw.wait(15) == 1


# -- sizes -----------------------------------------------------------------------------------------


def test_a_40_mb_prompt_is_refused_while_version_keeps_answering(raw: RawDaemon):
    raw.initialize(trusted=True)
    big = frame({"jsonrpc": "2.0", "id": 1, "method": "deepdive/generate",
                 "params": {"prompt": "a " * 20_000_000, "verify": False}})
    latencies: list[float] = []

    def client() -> None:  # the big request, then a version request every 0.1 s for 3 s
        raw.write(big)
        for i in range(30):
            sent = time.monotonic()
            answer = raw.response(raw.request("deepdive/version"), timeout=10)
            assert "result" in answer
            latencies.append(time.monotonic() - sent)
            time.sleep(0.1)

    started = time.monotonic()
    worker = threading.Thread(target=client)
    worker.start()
    refused = raw.response(1, timeout=60)
    refused_after = time.monotonic() - started
    worker.join(120)
    error = refused["error"]
    assert "\n" not in error["message"] and "limit" in error["message"], error
    assert refused_after < 5, f"the 40 MB request was answered after {refused_after:.1f} s"
    assert len(latencies) == 30 and max(latencies) < 1.0, f"deepdive/version latencies: {latencies}"


def test_a_long_prompt_is_refused_naming_the_limit(raw: RawDaemon):
    raw.initialize(trusted=True)
    answer = raw.call("deepdive/generate", {"prompt": "x" * (MAX_PROMPT_CHARS + 1), "verify": False})
    assert answer["error"]["code"] == INVALID_PARAMS
    assert "params.prompt" in answer["error"]["message"] and f"{MAX_PROMPT_CHARS:,}" in answer["error"]["message"]


def test_a_document_sized_message_is_read(raw: RawDaemon):
    raw.initialize(trusted=True)
    text = "x = 1\n" * 1_000_000  # 6 MB: an editor may send documents this big (didOpen, #22)
    raw.notify("textDocument/didOpen", {"textDocument": {
        "uri": (raw.workspace / "big.py").as_uri(), "languageId": "python", "version": 1, "text": text}})
    assert version_pid(raw) == raw.proc.pid
    assert not [line for line in raw.stderr if "limit" in line or "broken" in line]


# -- trust -----------------------------------------------------------------------------------------


def test_a_client_that_does_not_say_trusted_is_untrusted(raw: RawDaemon, workspace: Path):
    raw.initialize()  # no `trusted` in initializationOptions
    script = write_script(workspace, "hello.py", "print('hello')\n")
    answer = raw.call("deepdive/jobs/start", {"kind": "script", "options": {"path": script}})
    assert "error" in answer, f"a job that runs workspace code started for a client that never said trusted: {answer}"
    assert "trust" in answer["error"]["message"]
    assert any("untrusted" in line for line in raw.stderr), raw.stderr[-5:]
