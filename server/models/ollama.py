"""An Ollama already running on this machine: its models, found through ``/api/tags``.

Generation then goes through Ollama's OpenAI-compatible API (``/v1/chat/completions``, the
``openai-compatible`` backend). Only this machine is probed (``OLLAMA_HOST`` when it names it,
else 127.0.0.1:11434), with a short timeout, so that a listing never waits on the network. A server
on that port without ``/api/tags`` (llama.cpp's server, LM Studio) is listed from ``/v1/models``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from deepdive.codegen.backends.openai_compat import is_loopback

from .registry import ModelEntry

DEFAULT_PORT = 11434
TIMEOUT_S = 0.5


@dataclass
class OllamaFound:
    endpoint: str
    running: bool
    models: list[ModelEntry] = field(default_factory=list)
    reason: Optional[str] = None
    """Why nothing was found, in one line."""


def default_endpoint() -> str:
    """Where Ollama listens: ``OLLAMA_HOST`` (host, host:port or a URL) else 127.0.0.1:11434."""
    raw = os.environ.get("OLLAMA_HOST", "").strip()
    if not raw:
        return f"http://127.0.0.1:{DEFAULT_PORT}"
    parts = urlsplit(raw if "://" in raw else "http://" + raw)
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # a bind address: every interface, so this machine too
        host = "127.0.0.1"
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        port = DEFAULT_PORT
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme or 'http'}://{host}:{port}"


def _get(endpoint: str, path: str, timeout: float) -> tuple[int, Any]:
    parts = urlsplit(endpoint)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(4 * 1024 * 1024)
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body or b"null")
    except ValueError:
        return resp.status, None


def _title(details: Any) -> str:
    if not isinstance(details, dict):
        return ""
    parts = [details.get("family"), details.get("parameter_size"), details.get("quantization_level")]
    return " · ".join(str(p) for p in parts if p)


def _entry(endpoint: str, name: str, size: Any = None, details: Any = None) -> ModelEntry:
    return ModelEntry(
        name=f"ollama:{name}",
        kind="ollama",
        endpoint=endpoint,
        model=name,
        size_bytes=size if isinstance(size, int) else None,
        source="ollama",
        title=_title(details),
    )


def detect(endpoint: Optional[str] = None, *, timeout: float = TIMEOUT_S) -> OllamaFound:
    """The models of the server at ``endpoint`` (default: :func:`default_endpoint`); never raises."""
    endpoint = (endpoint or default_endpoint()).rstrip("/")
    host = urlsplit(endpoint).hostname or ""
    if not is_loopback(host):
        return OllamaFound(endpoint, False, reason=f"OLLAMA_HOST names {host}, not on this machine: not probed "
                                                   "(prompts stay local)")
    try:
        status, data = _get(endpoint, "/api/tags", timeout)
        if status == 200 and isinstance(data, dict) and isinstance(data.get("models"), list):
            models = [_entry(endpoint, m["name"], m.get("size"), m.get("details"))
                      for m in data["models"] if isinstance(m, dict) and isinstance(m.get("name"), str)]
            return OllamaFound(endpoint, True, models, None if models else
                               f"Ollama at {endpoint} has no models (ollama pull qwen2.5-coder:1.5b)")
        status, data = _get(endpoint, "/v1/models", timeout)
        if status == 200 and isinstance(data, dict) and isinstance(data.get("data"), list):
            models = [_entry(endpoint, m["id"]) for m in data["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]
            return OllamaFound(endpoint, True, models, None if models else f"{endpoint} lists no models")
        return OllamaFound(endpoint, False, reason=f"{endpoint} answered HTTP {status}: not Ollama nor an "
                                                   "OpenAI-compatible server")
    except ConnectionRefusedError:
        return OllamaFound(endpoint, False, reason=f"no Ollama at {endpoint}: connection refused "
                                                   "(start it with `ollama serve`)")
    except socket.timeout:
        return OllamaFound(endpoint, False, reason=f"{endpoint} did not answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return OllamaFound(endpoint, False, reason=f"cannot reach {endpoint}: {getattr(exc, 'strerror', None) or exc}")
