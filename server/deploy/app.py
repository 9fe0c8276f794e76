"""The inference server: an ASGI application (Starlette) speaking the Open Inference Protocol v2 REST.

Served by uvicorn (:func:`serve`, or :class:`ServerThread` in a background thread); nothing here
parses HTTP by hand. Endpoints (``{v}`` is the model's version, ``1``; Triton's client uses both forms):

=====================================================  =========================================================
``GET /v2/health/live``, ``GET /v2/health/ready``        200 when the process is up / the model's instances are ready
``GET /v2``                                              server metadata: name, version, extensions
``GET /v2/models/{name}[/versions/{v}]``                 model metadata from ``deploy.json``: inputs, outputs, platform
``GET /v2/models/{name}[/versions/{v}]/ready``           200 when the model is ready, else 503
``POST /v2/models/{name}[/versions/{v}]/infer``          inference (JSON tensors or the binary-data extension)
``GET /metrics``                                         Prometheus text: requests by status, queue time, batch
                                                         sizes, latency histogram, errors
``GET /deepdive/snapshot``                               the batcher's recent-window summary as JSON (dashboards)
=====================================================  =========================================================

Statuses: 400 bad request (one line naming the input), 401 missing or wrong token, 404 unknown model or
version, 413 body over the limit, 415 compressed body, 500 the model failed, 503 queue full (with
``Retry-After``) or shutting down, 504 the request waited past its timeout and never ran. Errors are
``{"error": "one line"}``, as Triton sends them.

**Token**: with a token set every request must carry ``Authorization: Bearer TOKEN`` except the two
health probes (``/v2/health/live`` and ``/v2/health/ready``: orchestrators probe them without
credentials and they reveal only up or down). ``/metrics`` needs the token too (Prometheus sends it with
``authorization: {credentials: TOKEN}`` in its scrape config).
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from deepdive.deploy import oip
from deepdive.deploy.batcher import Batcher, BatcherError, QueueFull
from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import Manifest
from deepdive.deploy.metrics import ServerMetrics

if TYPE_CHECKING:
    import numpy as np

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""Paths answered without the token (liveness and readiness probes)."""
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
EXTENSIONS = ("binary_tensor_data",)
PLATFORMS = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
_PARSE_IN_THREAD_BYTES = 256 * 1024  # bodies larger than this are parsed off the event loop


@attrs.define
class ServedModel:
    """One exported model being served: its manifest, the form run, its batcher and its metrics."""

    manifest: Manifest
    form: str
    batcher: Batcher
    metrics: ServerMetrics
    version: str = "1"
    folder: Optional[Path] = None

    @property
    def name(self) -> str:
        return self.manifest.name


def _error(status: int, message: str, headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _TokenGate:
    """Pure ASGI middleware: ``Authorization: Bearer TOKEN`` on every path but :data:`OPEN_PATHS`."""

    def __init__(self, app: ASGIApp, token: str, metrics: ServerMetrics):
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        self.metrics.http("unauthorized", 401)
        response = _error(401, "missing or wrong token: send the header `Authorization: Bearer TOKEN` "
                               "(the token `deepdive deploy serve` was started with)",
                          {"WWW-Authenticate": 'Bearer realm="deepdive"'})
        await response(scope, receive, send)


class _TooLarge(Exception):
    """The request body grew past the limit while it was read (answered 413)."""


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(served: ServedModel, *, token: Optional[str] = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """The ASGI app for ``served``; its lifespan starts the batcher and, on shutdown, drains it."""
    from deepdive import __version__

    metrics = served.metrics
    manifest = served.manifest

    def model_or_error(request: Request, endpoint: str) -> Optional[Response]:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != served.name:
            metrics.http(endpoint, 404)
            return _error(404, f"unknown model {name!r}: this server serves {served.name!r}")
        if version not in (None, "", served.version):
            metrics.http(endpoint, 404)
            return _error(404, f"model {name!r} has no version {version!r}: its version is {served.version}")
        return None

    async def live(request: Request) -> Response:
        metrics.http("live", 200)
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = served.batcher.ready
        metrics.http("ready", 200 if ok else 503)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(request: Request) -> Response:
        metrics.http("server_metadata", 200)
        return JSONResponse({"name": "deepdive", "version": __version__, "extensions": list(EXTENSIONS)})

    async def model_metadata(request: Request) -> Response:
        problem = model_or_error(request, "model_metadata")
        if problem is not None:
            return problem
        metrics.http("model_metadata", 200)
        return JSONResponse({"name": served.name, "versions": [served.version],
                             "platform": PLATFORMS.get(served.form, "pytorch"),
                             "inputs": [t.to_json() for t in manifest.inputs],
                             "outputs": [t.to_json() for t in manifest.outputs],
                             "parameters": {"form": served.form, "max_batch_size": served.batcher.config.max_batch_size}})

    async def model_ready(request: Request) -> Response:
        problem = model_or_error(request, "model_ready")
        if problem is not None:
            return problem
        ok = served.batcher.ready
        metrics.http("model_ready", 200 if ok else 503)
        return JSONResponse({"name": served.name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request) -> Response:
        started = time.monotonic()
        problem = model_or_error(request, "infer")
        if problem is not None:
            return problem
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            metrics.http("infer", 415)
            return _error(415, f"Content-Encoding {encoding} is not supported: send the request uncompressed")
        try:
            body = await _read_body(request, max_body_bytes)
        except _TooLarge:
            metrics.http("infer", 413)
            return _error(413, f"the request body is over {max_body_bytes / 2**20:g} MiB: send fewer rows per request "
                               "(or start the server with a larger --max-body-mb)")
        header = request.headers.get(oip.HEADER)
        try:
            if len(body) > _PARSE_IN_THREAD_BYTES:
                import anyio.to_thread

                parsed = await anyio.to_thread.run_sync(
                    lambda: oip.parse_request(body, header, manifest.inputs, outputs=manifest.outputs))
            else:
                parsed = oip.parse_request(body, header, manifest.inputs, outputs=manifest.outputs)
        except DeployError as exc:
            metrics.http("infer", 400)
            return _error(400, str(exc))
        try:
            outputs = await served.batcher.infer(parsed.inputs, timeout_ms=parsed.timeout_ms)
        except QueueFull as exc:
            metrics.http("infer", 503)
            return _error(503, str(exc), {"Retry-After": str(exc.retry_after_s)})
        except BatcherError as exc:
            metrics.http("infer", exc.status)
            headers = {"Retry-After": "1"} if exc.status == 503 else None
            return _error(exc.status, str(exc), headers)
        content, headers = oip.encode_response(served.name, served.version, parsed, outputs, manifest.outputs)
        metrics.http("infer", 200, time.monotonic() - started)
        return Response(content, headers=headers)

    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.http("metrics", 200)
        return Response(generate_latest(metrics.registry), headers={"content-type": CONTENT_TYPE_LATEST})

    async def snapshot(request: Request) -> Response:
        metrics.http("snapshot", 200)
        return JSONResponse({"model": served.name, "form": served.form, **served.batcher.snapshot()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        served.batcher.start()
        try:
            yield
        finally:
            await served.batcher.aclose()  # refuse new requests, finish the queued and running batches

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", server_metadata),
        Route(model, model_metadata), Route(versioned, model_metadata),
        Route(model + "/ready", model_ready), Route(versioned + "/ready", model_ready),
        Route(model + "/infer", infer, methods=["POST"]), Route(versioned + "/infer", infer, methods=["POST"]),
        Route("/metrics", prometheus), Route("/deepdive/snapshot", snapshot),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    if token:
        app.add_middleware(_TokenGate, token=token, metrics=metrics)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), for uvicorn to serve on."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise DeployError(f"cannot resolve --host {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DeployError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port)") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _uvicorn_server(app: Starlette, graceful_s: float) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=graceful_s, server_header=False)
    return uvicorn.Server(config)


def serve(app: Starlette, sock: socket.socket, *, graceful_s: float = 30.0) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until Ctrl-C or SIGTERM (in-flight requests finish first)."""
    _uvicorn_server(app, graceful_s).run(sockets=[sock])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port unless given) in a background thread, for tests and benches."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0):
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = _uvicorn_server(app, 5.0)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="deepdive-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the inference server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()



def request_work(served: ServedModel, examples: list[np.ndarray], *, token: Optional[str] = None,
                 requests: int = 200, warmup: int = 20) -> Optional[float]:
    """The server's own work per request, in milliseconds: the CPU time its event loop spends on one infer
    request of one example row sent as JSON (HTTP parsing, the token check, routing, decoding, handing the
    rows to the batcher and encoding the answer; the model runs in the batcher's threads, outside it).

    ``served`` (its own batcher and metrics, not the ones that will serve) is run by uvicorn on a free
    loopback port in a background thread; ``requests`` are sent one after another over one keep-alive
    connection from this thread, and the loop thread's CPU clock (``pthread_getcpuclockid``) is read
    before and after, so the client's work is not counted. None where the platform has no per-thread CPU
    clock. :mod:`deepdive.deploy.target` counts it once for each request waiting at the same time."""
    clock_of = getattr(time, "pthread_getcpuclockid", None)
    if clock_of is None:
        return None
    import http.client

    body, headers = oip.encode_request({spec.name: array[:1] for spec, array in zip(served.manifest.inputs, examples)})
    if token:
        headers = {**headers, "authorization": f"Bearer {token}"}
    path = f"/v2/models/{served.name}/infer"
    with ServerThread(create_app(served, token=token)) as server:
        assert server.thread.ident is not None
        clock = clock_of(server.thread.ident)
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            def send(count: int) -> None:
                for _ in range(count):
                    connection.request("POST", path, body=body, headers=headers)
                    answer = connection.getresponse()
                    answer.read()
                    if answer.status != 200:
                        raise DeployError(f"measuring the server's work per request: infer answered {answer.status}")

            send(warmup)
            began = time.clock_gettime(clock)
            send(requests)
            spent = time.clock_gettime(clock) - began
        finally:
            connection.close()
    return 1000.0 * spent / requests
