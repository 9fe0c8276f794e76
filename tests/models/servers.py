"""Local HTTP servers on 127.0.0.1 that play the Hugging Face hub and Ollama for the models tests.

The hub serves ``/{repo}/resolve/{revision}/{filename}`` with the headers huggingface_hub reads
(``X-Repo-Commit``, ``ETag``, ``Content-Length``, ranges with ``Content-Range``), and can cut a
connection after some bytes or send slowly, so that a resume is tested for real. The Ollama server
answers ``/api/tags``, ``/v1/models`` and a streaming ``/v1/chat/completions``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Callable, Optional


class _Server:
    def __init__(self, handler: type) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HubServer(_Server):
    """Files by (repo, revision, filename); ``cut_after`` bytes of the first ``cuts`` GETs, then the
    connection closes; ``bytes_per_s`` throttles the body; ``hold_after`` bytes into a body the server
    waits until ``release`` is set (a download that is certainly in the middle); ``etag`` overrides the
    advertised sha256."""

    def __init__(self, files: dict[tuple[str, str, str], "bytes | Path"], *, commit: str = "c" * 40) -> None:
        self.files = files
        self.commit = commit
        self.cut_after: Optional[int] = None
        self.cuts = 0
        self.bytes_per_s: Optional[float] = None
        self.hold_after: Optional[int] = None
        self.release = threading.Event()
        self.etag: Optional[str] = None
        self.requests: list[tuple[str, str, Optional[str]]] = []  # method, path, Range header
        self.lock = threading.Lock()
        super().__init__(_HubHandler)

    def gets(self) -> list[Optional[str]]:
        """The Range header of each GET of a file, in order (None: the whole file)."""
        return [rng for method, path, rng in self.requests if method == "GET" and "/resolve/" in path]


class _HubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _find(self) -> Optional[bytes]:
        hub: HubServer = self.server.owner  # type: ignore[attr-defined]
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        data = hub.files.get((repo, revision, filename))
        if isinstance(data, Path):  # a large file: served from disk, not from memory
            import mmap

            with open(data, "rb") as f:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # type: ignore[return-value]
        return data

    def _head(self, data: bytes, status: int, length: int, extra: dict[str, str]) -> None:
        hub: HubServer = self.server.owner  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("X-Repo-Commit", hub.commit)
        self.send_header("ETag", f'"{hub.etag or hashlib.sha256(data).hexdigest()}"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Type", "application/octet-stream")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def _missing(self) -> None:
        body = b'{"error": "Entry not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound")
        self.send_header("X-Error-Message", "Entry not found")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        hub: HubServer = self.server.owner  # type: ignore[attr-defined]
        hub.requests.append(("HEAD", self.path, None))
        data = self._find()
        if data is None:
            self._missing()
            return
        self._head(data, 200, len(data), {})

    def do_GET(self) -> None:  # noqa: N802
        hub: HubServer = self.server.owner  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        hub.requests.append(("GET", self.path, rng))
        data = self._find()
        if data is None:
            self._missing()
            return
        start = 0
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0])
            body = data[start:]
            self._head(data, 206, len(body), {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        else:
            body = data
            self._head(data, 200, len(body), {})
        with hub.lock:
            cut = hub.cut_after if hub.cuts > 0 else None
            if cut is not None:
                hub.cuts -= 1
        limit = len(body) if cut is None else max(0, min(len(body), cut - start))
        sent = 0
        step = 256 * 1024
        try:
            while sent < limit:
                piece = body[sent:min(limit, sent + step)]
                self.wfile.write(piece)
                sent += len(piece)
                if hub.bytes_per_s:
                    time.sleep(len(piece) / hub.bytes_per_s)
                if hub.hold_after is not None and start + sent >= hub.hold_after and not hub.release.is_set():
                    self.wfile.flush()
                    hub.release.wait(120)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(2)  # the cut: fewer bytes than Content-Length said


class OllamaServer(_Server):
    """``/api/tags`` lists ``models``; chat completions stream ``reply(body)`` in small SSE chunks."""

    def __init__(self, models: list[dict], reply: Optional[Callable[[dict], str]] = None) -> None:
        self.models = models
        self.reply = reply or (lambda body: "```python\nprint('hi')\n```\n")
        self.chats: list[dict] = []
        self.missing: set[str] = set()  # paths this server lacks (another OpenAI-compatible server: /api/tags)
        super().__init__(_OllamaHandler)


class _OllamaHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _json(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        srv: OllamaServer = self.server.owner  # type: ignore[attr-defined]
        if self.path in srv.missing:
            self._json(404, {"error": "not found"})
        elif self.path == "/api/tags":
            self._json(200, {"models": srv.models})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m["name"], "object": "model"} for m in srv.models]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        srv: OllamaServer = self.server.owner  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": "not found"})
            return
        srv.chats.append(body)
        if body.get("model") not in [m["name"] for m in srv.models]:
            self._json(404, {"error": {"message": f"model \"{body.get('model')}\" not found, try pulling it first"}})
            return
        text = srv.reply(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(0, len(text), 5):
            event = {"choices": [{"index": 0, "delta": {"content": text[i:i + 5]}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True
