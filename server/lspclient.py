"""A Python client for the daemon, built on pygls's own LanguageClient.

It starts ``deepdive serve`` the way the editor does (an LSP client over stdio), speaks the custom
methods of :mod:`deepdive.protocol` with typed results, and collects notifications. The tests, the
benchmarks and ``make demo`` use it.

Example::

    async with DaemonClient.spawn(workspace=".") as client:
        report = await client.request(DOCTOR, DoctorParams())
        print(report.torch.version)
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from lsprotocol import types
from pygls.io_ import run_async
from pygls.lsp.client import LanguageClient
from pygls.protocol import JsonRPCNotification, JsonRPCResponseMessage, LanguageServerProtocol

from deepdive.protocol import NOTIFICATIONS, Request, from_wire, to_wire

_CUSTOM_NOTIFICATIONS = {n.method: n for n in NOTIFICATIONS}


class _ClientProtocol(LanguageServerProtocol):
    """Keeps custom results and notification params as plain JSON (validated by DaemonClient)."""

    def structure_message(self, data: dict[str, Any]) -> Any:
        if "jsonrpc" in data:
            if "id" in data and "result" in data and "method" not in data:
                if self._result_types.get(data["id"]) is None:
                    self._result_types.pop(data["id"], None)
                    return JsonRPCResponseMessage(id=data["id"], jsonrpc=data["jsonrpc"], result=data["result"])
            if "id" not in data and data.get("method") in _CUSTOM_NOTIFICATIONS:
                return JsonRPCNotification(method=data["method"], jsonrpc=data["jsonrpc"], params=data.get("params"))
        return super().structure_message(data)


class DaemonClient(LanguageClient):
    """An LSP client connected to a ``deepdive serve`` subprocess."""

    def __init__(self) -> None:
        super().__init__("deepdive-python-client", "1", protocol_cls=_ClientProtocol)
        self.notifications: dict[str, list[Any]] = collections.defaultdict(list)
        self.log_messages: list[types.LogMessageParams] = []
        self.progress: list[types.ProgressParams] = []
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._listeners: dict[str, list[Callable[[Any], None]]] = collections.defaultdict(list)
        self.process: Optional[asyncio.subprocess.Process] = None
        self.initialize_result: Optional[types.InitializeResult] = None

        for note in NOTIFICATIONS:
            self.feature(note.method)(self._make_notification_handler(note))

        @self.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params: types.LogMessageParams) -> None:
            self.log_messages.append(params)
            for listener in self._listeners[types.WINDOW_LOG_MESSAGE]:
                listener(params)

        @self.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def _create(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @self.feature(types.PROGRESS)
        def _progress(params: types.ProgressParams) -> None:
            self.progress.append(params)
            for listener in self._listeners[types.PROGRESS]:
                listener(params)

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def _show(params: types.ShowMessageParams) -> None:
            self.log_messages.append(types.LogMessageParams(type=params.type, message=params.message))

    def _make_notification_handler(self, note: Any) -> Callable[[Any], None]:
        def handler(params: Any) -> None:
            value = from_wire(params, note.params)
            self.notifications[note.method].append(value)
            for listener in self._listeners[note.method]:
                listener(value)

        return handler

    def on(self, method: str, listener: Callable[[Any], None]) -> None:
        """Call ``listener`` for each notification ``method`` (typed for Deepdive's own)."""
        self._listeners[method].append(listener)

    # -- process ------------------------------------------------------------------------------

    async def start_daemon(self, python: str = sys.executable, env: Optional[dict[str, str]] = None,
                           cwd: Optional[str] = None) -> None:
        """Spawn ``python -m deepdive serve`` with stdio pipes; stderr is drained, never left to fill."""
        self.process = await asyncio.create_subprocess_exec(
            python, "-P", "-m", "deepdive", "serve",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=cwd or os.path.expanduser("~"),
        )
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.protocol.set_writer(self.process.stdin)
        self._server = self.process
        self._async_tasks.extend([
            asyncio.create_task(run_async(stop_event=self._stop_event, reader=self.process.stdout,
                                          protocol=self.protocol, error_handler=self.report_server_error)),
            asyncio.create_task(self._server_exit()),
            asyncio.create_task(self._drain_stderr(self.process.stderr)),
        ])

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    async def initialize_daemon(self, workspace: Optional[str] = None, *, trusted: bool = True,
                                work_done_progress: bool = True) -> types.InitializeResult:
        """``initialize`` + ``initialized``. ``trusted`` is always sent: the daemon treats a client that
        leaves it out as untrusted (no job that runs workspace code). The CLI, the tour and the tests
        run code the user asked for in their own workspace, hence the default."""
        root = Path(workspace).resolve() if workspace else None
        params = types.InitializeParams(
            process_id=os.getpid(),
            root_uri=root.as_uri() if root else None,
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)] if root else None,
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=work_done_progress)
            ),
            initialization_options={"trusted": trusted, "clientName": "deepdive-python-client"},
        )
        self.initialize_result = await self.initialize_async(params)
        self.initialized(types.InitializedParams())
        return self.initialize_result

    @classmethod
    def spawn(cls, workspace: Optional[str] = None, *, env: Optional[dict[str, str]] = None,
              trusted: bool = True, work_done_progress: bool = True) -> "_Session":
        return _Session(cls(), workspace, env, trusted, work_done_progress)

    async def close(self, timeout: float = 10.0) -> Optional[int]:
        """shutdown + exit, then wait for the process; returns its exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.shutdown_async(None), timeout)
                self.exit(None)
            except (asyncio.TimeoutError, RuntimeError, ConnectionError):
                pass
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self.stop()
        return self.process.returncode

    # -- requests -----------------------------------------------------------------------------

    async def request(self, spec: Request, params: Any = None, timeout: float = 60.0) -> Any:
        """Send a custom request; params an attrs payload (or None); returns the typed result."""
        wire = to_wire(params) if params is not None else None
        result = await asyncio.wait_for(self.protocol.send_request_async(spec.method, wire), timeout)
        return from_wire(result, spec.result)

    async def raw_request(self, method: str, params: Any, timeout: float = 30.0) -> Any:
        """Send any request with any params (for testing the daemon's error handling)."""
        return await asyncio.wait_for(self.protocol.send_request_async(method, params), timeout)

    async def wait_for(self, method: str, predicate: Callable[[Any], bool], timeout: float = 60.0) -> Any:
        """Wait for a notification matching ``predicate`` (those already received count too)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            items = self.notifications[method]
            for item in items[seen:]:
                if predicate(item):
                    return item
            seen = len(items)
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"no {method} notification matched within {timeout} s")
            await asyncio.sleep(0.02)


class _Session:
    def __init__(self, client: DaemonClient, workspace: Optional[str], env: Optional[dict[str, str]],
                 trusted: bool, work_done_progress: bool) -> None:
        self.client, self.workspace, self.env = client, workspace, env
        self.trusted, self.work_done_progress = trusted, work_done_progress

    async def __aenter__(self) -> DaemonClient:
        await self.client.start_daemon(env=self.env)
        await self.client.initialize_daemon(self.workspace, trusted=self.trusted,
                                            work_done_progress=self.work_done_progress)
        return self.client

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.close()
