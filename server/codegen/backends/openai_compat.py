"""A local OpenAI-compatible server: Ollama, vLLM, LM Studio, llama.cpp's server.

Streaming ``POST {endpoint}/v1/chat/completions`` with ``"stream": true``; the answer is Server-Sent
Events (``data: {...}`` lines, ``data: [DONE]`` at the end). Standard library only (http.client).
Prompts contain the user's code and intentions, so endpoints off this machine are refused unless
``allow_remote`` is set.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import queue
import socket
import ssl
import threading
import time
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from . import Backend, BackendError, Cancelled, PromptTooLong

_END = object()


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpenAICompatibleBackend(Backend):
    name = "openai-compatible"

    def __init__(
        self,
        endpoint: Optional[str],
        *,
        model: Optional[str] = None,
        allow_remote: bool = False,
        temperature: float = 0.0,
        max_tokens: Optional[int] = 4096,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
        api_key: Optional[str] = None,
    ) -> None:
        if not endpoint:
            raise BackendError(
                "the openai-compatible backend needs endpoint: the server's base URL, e.g. http://127.0.0.1:11434"
            )
        parts = urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        if parts.scheme not in ("http", "https"):
            raise BackendError(f"endpoint {endpoint} is not an http(s) URL")
        if not parts.hostname:
            raise BackendError(f"endpoint {endpoint} names no host")
        if not allow_remote and not is_loopback(parts.hostname):
            raise BackendError(
                f"endpoint {endpoint} is not on this machine; prompts are only sent to localhost unless "
                "allow_remote is true (setting deepdive.codegen.allowRemoteEndpoint)"
            )
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise BackendError(f"endpoint {endpoint} has a bad port") from None
        self.endpoint = endpoint
        self.scheme = parts.scheme
        self.host = parts.hostname
        base = parts.path.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        self.path = base + "/chat/completions"
        self.model = model or "default"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.api_key = api_key

    def _connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.connect_timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout_s)

    def body(self, system: str, messages: list[dict]) -> dict[str, Any]:
        chat = ([{"role": "system", "content": system}] if system else []) + list(messages)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat,
            "stream": True,
            "temperature": self.temperature,
        }
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        return body

    def stream(self, system: str, messages: list[dict], cancel: Optional[threading.Event] = None) -> Iterator[str]:
        return self._stream(system, messages, cancel or threading.Event())

    def _stream(self, system: str, messages: list[dict], cancel: threading.Event) -> Iterator[str]:
        if cancel.is_set():
            raise Cancelled()
        conn = self._connection()
        payload = json.dumps(self.body(system, messages)).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        where = f"{self.scheme}://{self.host}:{self.port}"
        # One thread connects, sends and reads lines into a queue, so that a cancel is seen at once
        # even while the server is quiet (loading its model, or thinking); cancelling closes the
        # socket, which ends that thread.
        lines: "queue.Queue[object]" = queue.Queue()

        def reader() -> None:
            try:
                conn.request("POST", self.path, body=payload, headers=headers)
                if conn.sock is not None:
                    conn.sock.settimeout(self.read_timeout_s)
                resp = conn.getresponse()
            except ConnectionRefusedError:
                lines.put(
                    BackendError(
                        f"cannot connect to {where}: connection refused (is the server — Ollama, vLLM, "
                        "LM Studio, llama.cpp — running there?)"
                    )
                )
                return
            except socket.timeout:
                lines.put(BackendError(f"{where} did not answer within {self.read_timeout_s:.0f} s"))
                return
            except OSError as exc:
                lines.put(BackendError(f"cannot connect to {where}: {exc.strerror or exc}"))
                return
            except Exception as exc:  # noqa: BLE001 - e.g. http.client.RemoteDisconnected
                lines.put(BackendError(f"{where} did not answer: {type(exc).__name__}: {exc}"))
                return
            if resp.status != 200:
                try:
                    detail = _error_detail(resp.read(4096))
                except Exception:  # noqa: BLE001
                    detail = "no detail"
                hint = " (is the model name right?)" if resp.status == 404 else ""
                text = f"{where}{self.path} answered HTTP {resp.status} {resp.reason}{hint}: {detail}"
                low = detail.lower()
                too_long = resp.status in (400, 413) and "context" in low and any(
                    w in low for w in ("length", "window", "too long", "exceed", "maximum")
                )
                lines.put(PromptTooLong(text) if too_long else BackendError(text))
                return
            lines.put(("headers", resp.getheader("Content-Type", "") or ""))
            try:
                while True:
                    raw = resp.readline()
                    if not raw:
                        break
                    lines.put(raw)
            except Exception as exc:  # noqa: BLE001 - handed to the consumer
                lines.put(exc)
            lines.put(_END)

        threading.Thread(target=reader, name="openai-sse", daemon=True).start()
        content_type = ""
        plain_json: list[bytes] = []
        done = False
        last = time.monotonic()
        try:
            while True:
                if cancel.is_set():
                    raise Cancelled()
                try:
                    item = lines.get(timeout=0.05)
                except queue.Empty:
                    if time.monotonic() - last > self.read_timeout_s:
                        raise BackendError(f"{where} sent nothing for {self.read_timeout_s:.0f} s") from None
                    continue
                last = time.monotonic()
                if item is _END:
                    break
                if isinstance(item, tuple):
                    content_type = item[1]
                    continue
                if isinstance(item, BackendError):
                    raise item
                if isinstance(item, Exception):
                    if cancel.is_set():
                        raise Cancelled()
                    raise BackendError(f"the stream from {where} broke: {item}")
                line = item.decode("utf-8", "replace").strip()  # type: ignore[union-attr]
                if "text/event-stream" not in content_type and not line.startswith("data:"):
                    plain_json.append(item)  # type: ignore[arg-type]
                    continue
                if not line.startswith("data:"):
                    continue  # comments, event names, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                except ValueError:
                    raise BackendError(f"{where} sent a line that is not JSON: {data[:80]}") from None
                if isinstance(event, dict) and event.get("error"):
                    raise BackendError(f"{where} reported an error: {_error_detail(json.dumps(event).encode())}")
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or (choice.get("message") or {}).get("content")
                    if text:
                        yield text
            if plain_json and not done:
                # A server that ignored "stream": one JSON answer.
                try:
                    whole = json.loads(b"".join(plain_json))
                    text = whole["choices"][0]["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    raise BackendError(f"{where} answered something that is not a chat completion") from None
                if text:
                    yield text
        finally:
            try:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def _error_detail(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            text = str(err.get("message") or err.get("detail") or err)
        else:
            text = str(err)
    except ValueError:
        pass
    text = " ".join(text.split())
    return (text[:200] + "...") if len(text) > 200 else (text or "no detail")
