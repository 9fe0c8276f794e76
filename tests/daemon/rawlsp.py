"""`deepdive serve` driven with raw bytes over its stdin, the way a broken or hostile client would.

pygls's client always frames correctly, so the tests of the daemon's framing and JSON-RPC envelope
checks write bytes themselves. A reader thread splits the daemon's stdout into messages; the daemon's
stderr is kept for assertions about what it logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

_NO_TRUST_FLAG = object()


def frame(message: Any, *, length_error: int = 0) -> bytes:
    """One LSP message: headers and a JSON body; ``length_error`` skews the declared Content-Length."""
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return f"Content-Length: {len(body) + length_error}\r\n\r\n".encode() + body


class RawDaemon:
    """A daemon subprocess and its framed stdout as a queue of decoded messages."""

    def __init__(self, workspace: Path, state_dir: Path) -> None:
        env = {**os.environ, "DEEPDIVE_STATE_DIR": str(state_dir)}
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "deepdive", "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workspace, env=env,
        )
        self.workspace = workspace
        self.unclaimed: list[Any] = []  # messages no message() call has taken yet
        self.closed = False
        self._arrived = threading.Condition()
        self.stderr: list[str] = []
        self._next_id = 1000
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- the daemon's output ----------------------------------------------------------------------

    def _read_stdout(self) -> None:
        try:
            self._split_messages()
        except (OSError, ValueError):  # the test closed the pipe
            pass
        with self._arrived:
            self.closed = True
            self._arrived.notify_all()

    def _deliver(self, message: Any) -> None:
        with self._arrived:
            self.unclaimed.append(message)
            self._arrived.notify_all()

    def _split_messages(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line == b"\r\n":
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length is not None, "the daemon sent a message without Content-Length"
            self._deliver(json.loads(out.read(length)))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self.stderr.append(line.decode(errors="replace").rstrip())
        except (OSError, ValueError):  # the test closed the pipe
            pass

    def message(self, match: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Take the first message for which ``match(message)`` is true (safe to call from several threads)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for i, msg in enumerate(self.unclaimed):
                    if match(msg):
                        return self.unclaimed.pop(i)
                if self.closed:
                    raise EOFError(f"the daemon closed stdout; stderr: {self.stderr[-5:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message within {timeout} s; stderr: {self.stderr[-5:]}")
                self._arrived.wait(left)

    def response(self, msg_id: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The response (result or error) to request ``msg_id``."""
        return self.message(lambda m: "method" not in m and m.get("id", object()) == msg_id, timeout)

    # -- the daemon's input -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: Any, **kwargs: Any) -> None:
        self.write(frame(message, **kwargs))

    def request(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        """Send a request; returns its id."""
        if msg_id is None:
            self._next_id += 1
            msg_id = self._next_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return msg_id

    def call(self, method: str, params: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        return self.response(self.request(method, params), timeout)

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def initialize(self, trusted: Any = _NO_TRUST_FLAG) -> dict[str, Any]:
        """initialize with the workspace folder; ``trusted`` is left out of the options unless given."""
        options: dict[str, Any] = {"clientName": "raw-test-client"}
        if trusted is not _NO_TRUST_FLAG:
            options["trusted"] = trusted
        uri = self.workspace.resolve().as_uri()
        answer = self.call("initialize", {
            "processId": os.getpid(), "rootUri": uri, "capabilities": {},
            "workspaceFolders": [{"uri": uri, "name": self.workspace.name}], "initializationOptions": options,
        })
        assert "result" in answer, answer
        return answer

    # -- the process ------------------------------------------------------------------------------

    def wait(self, timeout: float = 15.0) -> Optional[int]:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
