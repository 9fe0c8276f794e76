"""The telemetry hub: a websockets server on loopback between producers and dashboards.

One :class:`Hub` runs inside the daemon's asyncio loop. It never blocks that loop on a peer: every
subscriber has its own bounded queue and sender task, so a dashboard that stops reading loses its
own oldest messages (counted, and told) and slows nobody else.

Endpoints (all on one port; every request needs the hub's token, given as the query parameter
``token=``, as ``Authorization: Bearer TOKEN``, or as the cookie the dashboard page sets):

* ``/ingest`` (websocket, producers): the messages of :mod:`deepdive.engine.reporter` (``type``
  ``"samples"``, ``v`` 1, ``run``, ``rank``, ``seq``, ``dropped``, ``dropped_events``, ``events``,
  ``samples``). A message larger than ``max_message_bytes`` closes the connection with code 1009;
  a malformed one (not JSON, not an object of this shape, or nested deeper than ``max_depth``
  levels) is answered with ``{"type": "error", "message": str}`` and the connection stays. A string
  longer than ``max_string_chars`` characters is cut, with a marker giving its length, and counted
  (``truncated_strings``); see :mod:`deepdive.telemetry.limits`.
  A repeated ``seq`` of one ``(run, rank)`` is ignored (the reporter resends after a reconnect); a
  jump counts the missing messages as ``seq_gaps``; a ``seq`` below the last one is a restarted
  producer and is accepted.
* ``/stream`` (websocket, subscribers), with optional filters ``run=A&run=B`` or ``run=A,B`` and
  ``kinds=samples,events,machine`` (``machine`` stands for every message given to
  :meth:`Hub.publish`; any other ``type`` a published message has may be named as well). First a
  snapshot, then live messages::

      {"type": "snapshot", "t": float, "dropped": 0, "messages": [MESSAGE, ...]}   # oldest first
      {"type": "samples", "run": str, "rank": int, "seq": int, "t": float,
       "samples": [SAMPLE, ...], "events": [EVENT, ...],
       "producer_dropped": int, "producer_dropped_events": int, "dropped": int}
      {"type": "machine", "t": float, ...}          # whatever publish() got, "t" added when absent

  ``seq`` is the producer's (null when it sent none). ``t`` of a ``samples`` message is when the
  hub received it; every sample and event keeps the ``t`` its producer gave it (``time.time()``;
  the hub's receive time where it had none), published messages carry theirs, so all of them are
  on one time axis. ``dropped`` is the number of entries (samples + events of a ``samples``
  message, 1 for any other message) this subscriber lost to its full queue since its previous
  message. The snapshot holds the messages of the last ``history_seconds``, at most
  ``history_entries`` entries and ``history_run_bytes`` bytes per run (and per published ``type``)
  and ``history_bytes`` in all, the oldest evicted first (:mod:`deepdive.telemetry.history`),
  filtered like live ones and without their own ``dropped``. A subscriber's queue holds at most
  ``subscriber_queue`` entries and ``subscriber_queue_bytes`` bytes of live messages. websockets'
  keepalive (a ping every 20 s, 20 s for its pong) closes a subscriber that stays unresponsive.
  A subscriber may also ask for stored history on the same connection (when the hub was given a
  ``history`` function): it sends ``{"type": "query", "id": int, "what": "runs"}`` for the past
  runs with their outcome, or ``{"type": "query", "id": int, "what": "run", "run": str,
  "fields": [str, ...]}`` for one run's stored samples (rank 0, at most ``max_points`` rows), and
  gets ``{"type": "reply", "id": int, "ok": true, ...}`` (``runs`` or ``run`` and ``rows``) or
  ``{"type": "reply", "id": int, "ok": false, "error": str}`` (also for anything that is not a
  query: not JSON, nested too deep, another type). Queries of one connection are answered in order,
  one at a time; replies are never dropped.
* ``GET /`` and ``GET /dashboard/...`` (HTTP): the dashboard bundle from ``static_dir``
  (``/`` is its ``index.html``); 404 with a one-line reason when there is no bundle.
* ``GET /metrics`` (HTTP, only with ``prometheus=True``): Prometheus text exposition of the latest
  numeric sample fields per run and rank (``deepdive_run_<field>{run=..., rank=...}``) and the
  hub's own counters (``deepdive_hub_*``).

The websocket messages are declared in :mod:`deepdive.protocol.hub` (``IngestBatch``, ``HubError``,
``StreamSnapshot``, ``StreamSamples``, ``MachineMessage``, ``VerdictMessage``, ``HubQuery``,
``HubReply``), and the dashboard's TypeScript types are generated from there.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import hmac
import http
import json
import logging
import math
import mimetypes
import re
import secrets
import time
from json.decoder import scanstring as _scanstring
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from urllib.parse import parse_qs, quote, urlsplit

import attrs
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from deepdive.netutil import is_loopback
from deepdive.protocol import (
    HUB_SCHEMA_VERSION, HubError, HubQuery, HubReply, IngestBatch, InvalidPayload, StreamSamples, StreamSnapshot,
    from_wire, to_wire,
)
from deepdive.protocol.hub import message_type
from deepdive.telemetry.history import History
from deepdive.telemetry.limits import MAX_DEPTH, MAX_STRING_CHARS, TOO_DEEP, TooDeep, bound, check_depth
from deepdive.telemetry.outgoing import Outgoing
from deepdive.telemetry.outgoing import encode as _encode
from deepdive.telemetry.outgoing import encode_lenient as _encode_lenient

log = logging.getLogger("deepdive.telemetry.hub")

MAX_MESSAGE_BYTES = 1 << 20
SUBSCRIBER_QUEUE = 10_000
HISTORY_SECONDS = 600.0
HISTORY_ENTRIES = 10_000
MIB = 1 << 20
HISTORY_RUN_BYTES = 16 * MIB  # the snapshot's bytes per run (and per published type)
HISTORY_BYTES = 64 * MIB  # the snapshot's bytes in all
SUBSCRIBER_QUEUE_BYTES = 32 * MIB  # live messages queued per subscriber (its snapshot is bounded by HISTORY_BYTES)
MAX_RUN_ID_CHARS = 512
SEQ_MEMORY_SECONDS = 600.0  # a producer silent this long is forgotten (its next seq starts afresh)
COOKIE = "deepdive_hub_token"
# The types the hub itself sends (deepdive.protocol.hub): publish() may not send them.
_RESERVED = frozenset(message_type(cls) for cls in (StreamSamples, StreamSnapshot, HubReply, HubError))
_INGEST, _SAMPLES, _SNAPSHOT = message_type(IngestBatch), message_type(StreamSamples), message_type(StreamSnapshot)
_QUERY = message_type(HubQuery)

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


class _Subscriber:
    """One /stream connection: its filters, its bounded queue and its counters."""

    __slots__ = ("id", "ws", "runs", "kinds", "queue", "queued", "queued_bytes", "dropped", "unsent_dropped", "wake",
                 "task", "sent")

    def __init__(self, ident: int, ws: ServerConnection, runs: Optional[frozenset], kinds: Optional[frozenset]):
        self.id = ident
        self.ws = ws
        self.runs = runs
        self.kinds = kinds
        self.queue: collections.deque = collections.deque()
        self.queued = 0  # entries in the queue
        self.queued_bytes = 0  # their Outgoing.nbytes
        self.dropped = 0  # entries dropped so far
        self.unsent_dropped = 0  # dropped since the last message sent
        self.sent = 0
        self.wake = asyncio.Event()
        self.task: Optional[asyncio.Task] = None

    def wants(self, out: Outgoing) -> Optional[tuple[bool, bool]]:
        """Which parts of ``out`` this subscriber takes (samples, events), or None for nothing."""
        if self.runs is not None and out.run is not None and out.run not in self.runs:
            return None
        if out.kind == "samples":
            if self.kinds is None:
                return True, True
            samples, events = "samples" in self.kinds, "events" in self.kinds
            if not (samples and out.samples) and not (events and out.events):
                return None
            return samples, events
        if self.kinds is None or "machine" in self.kinds or out.kind in self.kinds:
            return True, True
        return None


class Hub:
    """The telemetry hub: ``/ingest`` for producers, ``/stream`` for subscribers, the dashboard page.

    Create it, ``await start()`` inside a running asyncio loop, hand :attr:`ingest_url` to jobs
    (``DEEPDIVE_HUB``), :meth:`publish` machine samples and job events, ``await stop()``.

    Attributes:
        token (str): the secret every request must carry.
        host (str): the address bound.
        port (int): the port bound (0 until :meth:`start`, then the real one).
        allow_remote (bool): whether a non-loopback ``host`` was allowed.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: Optional[str] = None,
        allow_remote: bool = False,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        subscriber_queue: int = SUBSCRIBER_QUEUE,
        history_seconds: float = HISTORY_SECONDS,
        history_entries: int = HISTORY_ENTRIES,
        history_run_bytes: int = HISTORY_RUN_BYTES,
        history_bytes: int = HISTORY_BYTES,
        subscriber_queue_bytes: int = SUBSCRIBER_QUEUE_BYTES,
        max_string_chars: int = MAX_STRING_CHARS,
        max_depth: int = MAX_DEPTH,
        static_dir: Optional[str | Path] = None,
        prometheus: bool = False,
        on_batch: Optional[Callable[[dict, int], None]] = None,
        history: Optional[Callable[[dict], dict]] = None,
    ) -> None:
        """Configure the hub; nothing is bound until :meth:`start`.

        Args:
            host (str): the address to bind; loopback unless ``allow_remote``.
            port (int): the port; 0 picks a free one.
            token (str | None): the secret; None makes one with ``secrets.token_urlsafe(32)``.
            allow_remote (bool): allow a ``host`` other than loopback (the token then crosses the
                network in clear: prefer an SSH tunnel).
            max_message_bytes (int): the largest websocket message accepted; larger ones close the
                connection with code 1009.
            subscriber_queue (int): entries (samples + events; 1 per published message) queued per
                subscriber before the oldest messages are dropped and counted.
            history_seconds (float): how far back the snapshot on connect goes.
            history_entries (int): at most this many entries per run (and per published type) in
                the snapshot.
            history_run_bytes (int): at most this many bytes of messages per run (and per published
                type) in the snapshot, the oldest evicted first (default 16 MiB).
            history_bytes (int): at most this many bytes of messages in the snapshot in all, the
                oldest of any run evicted first (default 64 MiB).
            subscriber_queue_bytes (int): bytes of live messages queued per subscriber before its
                oldest messages are dropped and counted, like ``subscriber_queue`` (default 32 MiB;
                the snapshot it gets first is bounded by ``history_bytes`` instead).
            max_string_chars (int): longer strings in ``/ingest`` messages are cut, with a marker
                (default 8192).
            max_depth (int): ``/ingest`` messages and ``/stream`` queries nested deeper are refused
                as malformed (default 32).
            static_dir (str | Path | None): the dashboard bundle (with ``index.html``), or None.
            prometheus (bool): serve ``/metrics``.
            on_batch (Callable[[dict, int], None] | None): called in the loop with every accepted
                ``/ingest`` message (the parsed dict, duplicates excluded; samples and events
                without ``t`` have the hub's receive time, long strings are cut) and the length of
                its JSON text after the cuts (to weigh what the callee keeps), e.g. to store it. It
                must return quickly; its exceptions are logged and ignored.
            history (Callable[[dict], dict] | None): answers a subscriber's ``query`` message (see
                the module docstring) with the reply's fields; called in a worker thread; a
                ``ValueError`` or ``KeyError`` becomes an ``ok: false`` reply with its message.

        Raises:
            ValueError: a non-loopback ``host`` without ``allow_remote=True``, or a bad size.
        """
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"the telemetry hub binds to loopback only, not {host!r}: its token would cross the "
                             "network in clear; use 127.0.0.1 with an SSH tunnel, or pass allow_remote=True")
        for name, value in (("max_message_bytes", max_message_bytes), ("subscriber_queue", subscriber_queue),
                            ("history_entries", history_entries), ("history_run_bytes", history_run_bytes),
                            ("history_bytes", history_bytes), ("subscriber_queue_bytes", subscriber_queue_bytes),
                            ("max_string_chars", max_string_chars), ("max_depth", max_depth)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if history_seconds < 0:
            raise ValueError(f"history_seconds must be 0 or more, got {history_seconds}")
        self.host = host
        self.port = int(port)
        self.token = token if token is not None else secrets.token_urlsafe(32)
        if not self.token:
            raise ValueError("token must not be empty: pass None to have one made")
        self.allow_remote = allow_remote
        self.max_message_bytes = int(max_message_bytes)
        self.subscriber_queue = int(subscriber_queue)
        self.history_seconds = float(history_seconds)
        self.history_entries = int(history_entries)
        self.subscriber_queue_bytes = int(subscriber_queue_bytes)
        self.max_string_chars = int(max_string_chars)
        self.max_depth = int(max_depth)
        self.static_dir = Path(static_dir).resolve() if static_dir is not None else None
        self.prometheus = prometheus
        self.on_batch = on_batch
        self.history = history

        self._server: Optional[Server] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._saw_constant = False
        self._decoder = json.JSONDecoder(parse_constant=self._constant)
        self._token_bytes = self.token.encode()
        self._subscribers: dict[int, _Subscriber] = {}
        self._next_id = 0
        self._last_seq: dict[tuple[str, int], tuple[int, float]] = {}  # (run, rank) -> (seq, when)
        self._history = History(self.history_seconds, self.history_entries, int(history_run_bytes), int(history_bytes))
        self._next_sweep = 0.0
        self._latest: dict[tuple[str, int], dict[str, float]] = {}
        self._producers = 0
        self._stats = dict.fromkeys((
            "ingested_messages", "ingested_samples", "ingested_events", "duplicate_messages", "seq_gaps",
            "producer_restarts", "producer_dropped_samples", "producer_dropped_events", "malformed_messages",
            "oversized_messages", "published_messages", "dropped_total", "refused_connections",
            "connections_total", "http_requests", "queries", "truncated_strings"), 0)

    # ------------------------------------------------------------------------------------------
    # lifecycle and addresses
    # ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving in the running loop.

        Raises:
            RuntimeError: already started.
            OSError: the address cannot be bound (port in use: pass port=0).
        """
        if self._server is not None:
            raise RuntimeError("the hub is already started: call stop() first")
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handle, self.host, self.port, process_request=self._process_request,
            max_size=self.max_message_bytes, compression=None, max_queue=16, write_limit=1 << 16,
            open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=2, server_header=None,
            logger=logging.getLogger("deepdive.telemetry.hub.ws"))
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection (code 1001) and the listening socket; bounded to a few seconds."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for sub in list(self._subscribers.values()):
            if sub.task is not None:
                sub.task.cancel()
        try:
            await asyncio.wait_for(server.wait_closed(), 5)
        except asyncio.TimeoutError:
            log.warning("telemetry hub: connections still open 5 s after stop(); abandoning them")

    @property
    def addresses(self) -> list[str]:
        """The addresses the listening sockets are bound to (empty before :meth:`start`)."""
        if self._server is None:
            return []
        return [sock.getsockname()[0] for sock in self._server.sockets]

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` (no token, no path)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def ingest_url(self) -> str:
        """``ws://HOST:PORT/ingest?token=...``: the value of ``DEEPDIVE_HUB`` for jobs."""
        return f"{self.url}/ingest?token={quote(self.token, safe='')}"

    @property
    def stream_url(self) -> str:
        """``ws://HOST:PORT/stream?token=...``: for subscribers (add ``&run=...&kinds=...``)."""
        return f"{self.url}/stream?token={quote(self.token, safe='')}"

    @property
    def dashboard_url(self) -> str:
        """``http://HOST:PORT/?token=...``: the dashboard page for a browser."""
        return "http" + self.url[2:] + f"/?token={quote(self.token, safe='')}"

    @property
    def metrics_url(self) -> str:
        """``http://HOST:PORT/metrics?token=...`` (served only with ``prometheus=True``)."""
        return "http" + self.url[2:] + f"/metrics?token={quote(self.token, safe='')}"

    def stats(self) -> dict:
        """The hub's counters.

        Returns:
            dict: ``ingested_messages``, ``ingested_samples``, ``ingested_events``,
            ``duplicate_messages``, ``seq_gaps`` (messages missing in some seq), ``producer_restarts``,
            ``producer_dropped_samples`` and ``producer_dropped_events`` (what producers reported
            dropping), ``malformed_messages``, ``oversized_messages``, ``published_messages``,
            ``dropped_total`` (entries dropped for slow subscribers), ``refused_connections``,
            ``connections_total``, ``http_requests``, ``queries``, ``truncated_strings`` (strings cut
            to ``max_string_chars``), ``producers`` and ``subscribers`` (connected now),
            ``subscriber_detail``: one dict per subscriber (``id``, ``queued``, ``queued_bytes``,
            ``dropped``, ``sent``), ``history_bytes`` (held for the snapshot now),
            ``history_evicted_messages``, ``history_evicted_entries`` and ``history_evicted_bytes``
            (evicted by the entry and byte bounds so far), and ``history_detail``: one dict per run
            or published type (``kind``, ``key``, ``messages``, ``entries``, ``bytes``).
        """
        out: dict[str, Any] = dict(self._stats)
        out["producers"] = self._producers
        out["subscribers"] = len(self._subscribers)
        out["subscriber_detail"] = [{"id": s.id, "queued": s.queued, "queued_bytes": s.queued_bytes,
                                     "dropped": s.dropped, "sent": s.sent} for s in self._subscribers.values()]
        out["history_bytes"] = self._history.nbytes
        for name, value in self._history.evicted.items():
            out[f"history_evicted_{name}"] = value
        out["history_detail"] = self._history.detail()
        return out

    # ------------------------------------------------------------------------------------------
    # in-process producers
    # ------------------------------------------------------------------------------------------

    def publish(self, message: dict) -> None:
        """Fan a message out to subscribers; never blocks. Call it from the hub's loop thread.

        Args:
            message (dict): e.g. a machine sample. ``type`` defaults to ``"machine"`` and ``t`` to
                ``time.time()``; the dict is copied, never changed. A ``run`` key lets ``run=``
                filters select it (messages without one reach every subscriber).

        Raises:
            TypeError: ``message`` is not a dict.
            ValueError: its ``type`` is one the hub reserves (``samples``, ``snapshot``, ``error``).
        """
        if not isinstance(message, dict):
            raise TypeError(f"publish() takes a dict, got {type(message).__name__}")
        now = time.time()
        message = dict(message)
        message.setdefault("type", "machine")
        if message["type"] in _RESERVED:
            raise ValueError(f"publish() cannot send type {message['type']!r}, which /stream reserves: use "
                             "\"machine\" or a type of your own (jobs' samples go through /ingest)")
        message.setdefault("t", now)
        run = message.get("run")
        out = Outgoing.published(message, run if isinstance(run, str) else None, now)
        self._stats["published_messages"] += 1
        self._remember(out.kind, out.run or out.kind, out, now)
        self._fan_out(out)

    def publish_threadsafe(self, message: dict) -> None:
        """:meth:`publish` from any thread (a sampler's worker thread): scheduled on the hub's loop.

        Args:
            message (dict): as for :meth:`publish`; copied now, so the caller may reuse it.

        Raises:
            RuntimeError: the hub is not started.
        """
        loop = self._loop
        if loop is None or self._server is None:
            raise RuntimeError("the hub is not started: await hub.start() in the daemon's loop first")
        loop.call_soon_threadsafe(self._publish_quietly, dict(message))

    def _publish_quietly(self, message: dict) -> None:
        try:
            self.publish(message)
        except (TypeError, ValueError) as exc:
            log.warning("telemetry hub: publish_threadsafe refused a message: %s", exc)

    # ------------------------------------------------------------------------------------------
    # HTTP side: authentication, static files, metrics
    # ------------------------------------------------------------------------------------------

    def _authorized(self, request: Request, query: dict[str, list[str]]) -> Optional[bool]:
        """True for the right token, False for a wrong one, None when none was given."""
        candidates: list[str] = list(query.get("token", []))
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].strip())
        for part in request.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                candidates.append(value)
        if not candidates:
            return None
        ok = False
        for candidate in candidates:
            ok |= hmac.compare_digest(candidate.encode(), self._token_bytes)
        return ok

    async def _process_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        parts = urlsplit(request.path)
        path = parts.path
        query = parse_qs(parts.query)
        is_websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        authorized = self._authorized(request, query)
        if not authorized:
            self._stats["refused_connections"] += 1
            if authorized is None:
                return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                          "missing token: use the URL the Deepdive daemon prints, which ends in "
                                          "?token=...\n")
            return connection.respond(http.HTTPStatus.FORBIDDEN,
                                      "wrong token: the token changes at each daemon start; use the URL the "
                                      "running Deepdive daemon prints\n")
        if path in ("/ingest", "/stream"):
            if not is_websocket:
                return connection.respond(http.HTTPStatus.UPGRADE_REQUIRED,
                                          f"{path} is a websocket endpoint: connect with a websocket client\n")
            return None
        if is_websocket:
            return connection.respond(http.HTTPStatus.NOT_FOUND,
                                      f"no websocket endpoint {path}: use /ingest or /stream\n")
        self._stats["http_requests"] += 1
        if path == "/metrics":
            if not self.prometheus:
                return connection.respond(http.HTTPStatus.NOT_FOUND,
                                          "the Prometheus endpoint is off: start the hub with prometheus=True\n")
            return self._response(200, self.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/" or path == "/dashboard" or path.startswith("/dashboard/"):
            return await self._static(connection, path, query)
        return connection.respond(http.HTTPStatus.NOT_FOUND,
                                  f"nothing at {path}: the dashboard is at /, the data at /stream\n")

    def _response(self, status: int, body: bytes, content_type: str, extra: Iterable[tuple[str, str]] = ()) -> Response:
        headers = Headers([
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),  # the page's URL carries the token
        ])
        for name, value in extra:
            headers[name] = value
        status_enum = http.HTTPStatus(status)
        return Response(status_enum.value, status_enum.phrase, headers, body)

    async def _static(self, connection: ServerConnection, path: str, query: dict) -> Response:
        if self.static_dir is None or not (self.static_dir / "index.html").is_file():
            where = f" ({self.static_dir} has no index.html)" if self.static_dir is not None else ""
            return connection.respond(http.HTTPStatus.NOT_FOUND,
                                      f"the dashboard bundle is not built{where}: run `npm run build` in the "
                                      "extension's folder, or use the editor's Deepdive sidebar\n")
        relative = path[len("/dashboard"):] if path.startswith("/dashboard") else path
        relative = relative.lstrip("/") or "index.html"
        target = (self.static_dir / relative).resolve()
        if not target.is_relative_to(self.static_dir) or not target.is_file():
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"no file {path} in the dashboard bundle\n")
        body = await asyncio.to_thread(target.read_bytes)
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
            content_type += "; charset=utf-8"
        extra = []
        if query.get("token"):  # the page: later requests (scripts, styles) carry the token as a cookie
            extra.append(("Set-Cookie", f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"))
        return self._response(200, body, content_type, extra)

    def metrics_text(self) -> str:
        """The Prometheus text exposition served at ``/metrics``.

        Returns:
            str: ``deepdive_run_<field>{run="...",rank="..."}`` for the latest numeric value of each
            sample field of each run and rank, then the hub's counters (``deepdive_hub_<stat>_total``,
            ``deepdive_hub_history_evicted_{messages,entries,bytes}_total``,
            ``deepdive_hub_subscriber_dropped_total{subscriber=...}``), ``deepdive_hub_history_bytes`` and
            ``deepdive_hub_connections{path="ingest"|"stream"}``.
        """
        lines: list[str] = []
        by_field: dict[str, list[str]] = {}
        for (run, rank), fields in self._latest.items():
            labels = f'run="{_label(run)}",rank="{rank}"'
            for field, value in fields.items():
                by_field.setdefault(field, []).append(f"deepdive_run_{field}{{{labels}}} {_number(value)}")
        for field in sorted(by_field):
            lines.append(f"# TYPE deepdive_run_{field} gauge")
            lines.extend(by_field[field])
        counters = ("ingested_messages", "ingested_samples", "ingested_events", "duplicate_messages", "seq_gaps",
                    "producer_dropped_samples", "producer_dropped_events", "malformed_messages",
                    "oversized_messages", "published_messages", "dropped_total", "refused_connections",
                    "connections_total", "truncated_strings")
        for name in counters:
            lines.append(f"# TYPE deepdive_hub_{name}_total counter")
            lines.append(f"deepdive_hub_{name}_total {self._stats[name]}")
        for name, value in self._history.evicted.items():
            lines.append(f"# TYPE deepdive_hub_history_evicted_{name}_total counter")
            lines.append(f"deepdive_hub_history_evicted_{name}_total {value}")
        lines.append("# TYPE deepdive_hub_history_bytes gauge")
        lines.append(f"deepdive_hub_history_bytes {self._history.nbytes}")
        lines.append("# TYPE deepdive_hub_connections gauge")
        lines.append(f'deepdive_hub_connections{{path="ingest"}} {self._producers}')
        lines.append(f'deepdive_hub_connections{{path="stream"}} {len(self._subscribers)}')
        lines.append("# TYPE deepdive_hub_subscriber_dropped_total counter")
        for sub in self._subscribers.values():
            lines.append(f'deepdive_hub_subscriber_dropped_total{{subscriber="{sub.id}"}} {sub.dropped}')
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------------------------------
    # websocket side
    # ------------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self._stats["connections_total"] += 1
        path = urlsplit(ws.request.path).path
        if path == "/ingest":
            await self._ingest(ws)
        else:
            await self._stream(ws, parse_qs(urlsplit(ws.request.path).query))

    async def _ingest(self, ws: ServerConnection) -> None:
        self._producers += 1
        try:
            async for raw in ws:
                problem = self._accept(raw)
                if problem is not None:
                    self._stats["malformed_messages"] += 1
                    try:
                        await asyncio.wait_for(ws.send(_encode(to_wire(HubError(message=problem)))), 5)
                    except asyncio.TimeoutError:
                        pass
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == 1009:
                self._stats["oversized_messages"] += 1
                log.warning("telemetry hub: closed a producer that sent a message over %d bytes",
                            self.max_message_bytes)
        finally:
            self._producers -= 1

    def _parse(self, text: str) -> tuple[Any, dict[str, tuple[int, int]], bool]:
        """Parse a message in one pass, keeping where each top-level value of an object lies.

        Returns:
            tuple[Any, dict[str, tuple[int, int]], bool]: the value, the spans of the object's
            values by key (empty for anything but an object), and whether a ``NaN``/``Infinity``
            literal was read (it is kept as the string ``"NaN"``/``"Infinity"``/``"-Infinity"``).

        Raises:
            ValueError: not JSON.
        """
        self._saw_constant = False
        ws = _WHITESPACE.match
        idx = ws(text, 0).end()
        if text[idx:idx + 1] != "{":
            return self._decoder.decode(text), {}, self._saw_constant
        obj: dict[str, Any] = {}
        spans: dict[str, tuple[int, int]] = {}
        scan = self._decoder.scan_once
        try:
            idx = ws(text, idx + 1).end()
            if text[idx] != "}":
                while True:
                    if text[idx] != '"':
                        raise ValueError(f"expecting a property name in double quotes at char {idx}")
                    key, idx = _scanstring(text, idx + 1, True)
                    idx = ws(text, idx).end()
                    if text[idx] != ":":
                        raise ValueError(f"expecting ':' delimiter at char {idx}")
                    idx = ws(text, idx + 1).end()
                    try:
                        value, end = scan(text, idx)
                    except StopIteration as exc:
                        raise ValueError(f"expecting a value at char {exc.value}") from None
                    obj[key] = value
                    spans[key] = (idx, end)
                    idx = ws(text, end).end()
                    if text[idx] == "}":
                        break
                    if text[idx] != ",":
                        raise ValueError(f"expecting ',' delimiter at char {idx}")
                    idx = ws(text, idx + 1).end()
            if ws(text, idx + 1).end() != len(text):
                raise ValueError(f"extra data at char {idx + 1}")
        except IndexError:
            raise ValueError("the message ends in the middle of the object") from None
        return obj, spans, self._saw_constant

    def _constant(self, name: str) -> str:
        self._saw_constant = True
        return name

    def _accept(self, raw: str | bytes) -> Optional[str]:
        """Validate, deduplicate, remember and fan out one /ingest message; the problem, or None."""
        try:
            text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
            message, spans, saw_constant = self._parse(text)
        except RecursionError:  # json's scanner gives up on deep nesting: malformed, like the rest
            return TOO_DEEP.format(depth=self.max_depth)
        except (ValueError, UnicodeDecodeError) as exc:
            return f"not JSON ({exc}): send one JSON object per message, as deepdive.engine.reporter does"
        if not isinstance(message, dict):
            return f"expected a JSON object, got {type(message).__name__}"
        try:
            truncated, removed = bound(message, self.max_depth, self.max_string_chars)
        except TooDeep as exc:
            return str(exc)
        if message.get("type") != _INGEST:
            return f"unknown message type {message.get('type')!r}: /ingest takes type \"{_INGEST}\""
        version = message.get("v", HUB_SCHEMA_VERSION)
        if version != HUB_SCHEMA_VERSION:
            return (f"schema version {version!r} is not supported (this hub speaks v {HUB_SCHEMA_VERSION}): use the "
                    "deepdive engine of the same release as the daemon")
        run, rank, seq = message.get("run"), message.get("rank"), message.get("seq")
        if not isinstance(run, str) or not run or len(run) > MAX_RUN_ID_CHARS:
            return f"run must be a non-empty string of at most {MAX_RUN_ID_CHARS} characters"
        if type(rank) is not int:
            return "rank must be an integer"
        if seq is not None and type(seq) is not int:
            return "seq must be an integer"
        samples, events = message.get("samples", []), message.get("events", [])
        if not isinstance(samples, list) or not isinstance(events, list):
            return "samples and events must be lists of objects"
        now = time.time()
        raw_parts: dict[str, str] = {}
        for name, entries in (("samples", samples), ("events", events)):
            changed = False
            for entry in entries:
                if type(entry) is not dict:
                    return f"every {name[:-1]} must be a JSON object"
                if "t" not in entry:
                    entry["t"] = now
                    changed = True
            if not changed and not saw_constant and not truncated and name in spans:
                raw_parts[name] = text[spans[name][0]:spans[name][1]]
        dropped, dropped_events = message.get("dropped", 0), message.get("dropped_events", 0)
        dropped = dropped if type(dropped) is int and dropped > 0 else 0
        dropped_events = dropped_events if type(dropped_events) is int and dropped_events > 0 else 0

        stats = self._stats
        if seq is not None:
            key = (run, rank)
            last = self._last_seq.get(key, (None, 0.0))[0]
            if last is not None:
                if seq == last:
                    stats["duplicate_messages"] += 1
                    return None
                if seq < last:
                    stats["producer_restarts"] += 1
                elif seq > last + 1:
                    stats["seq_gaps"] += seq - last - 1
            self._last_seq[key] = (seq, now)
        stats["ingested_messages"] += 1
        stats["ingested_samples"] += len(samples)
        stats["ingested_events"] += len(events)
        stats["producer_dropped_samples"] += dropped
        stats["producer_dropped_events"] += dropped_events
        stats["truncated_strings"] += truncated

        if self.prometheus and samples:
            merged: dict = {}
            for entry in samples:
                merged.update(entry)
            latest = self._latest.setdefault((run, rank), {})
            for field, value in merged.items():
                if field in ("t", "run", "rank"):
                    continue
                if isinstance(value, (int, float)) or value in ("NaN", "Infinity", "-Infinity"):
                    latest[_METRIC_NAME.sub("_", field)] = value

        if self.on_batch is not None:
            try:
                self.on_batch(message, len(text) - removed)
            except Exception:
                log.exception("telemetry hub: on_batch failed on a message of run %s; continuing", run)

        out_message = {"type": _SAMPLES, "run": run, "rank": rank, "seq": seq, "t": now, "samples": samples,
                       "events": events, "producer_dropped": dropped, "producer_dropped_events": dropped_events}
        out = Outgoing.relayed(out_message, now, raw_parts)
        self._remember("samples", run, out, now)
        self._fan_out(out)
        return None

    # ------------------------------------------------------------------------------------------
    # history and fan-out
    # ------------------------------------------------------------------------------------------

    def _remember(self, kind: str, key: str, out: Outgoing, now: float) -> None:
        self._history.add(kind, key, out, now)
        if now >= self._next_sweep:
            self._sweep(now - self.history_seconds)
            self._next_sweep = now + 1.0

    def _sweep(self, horizon: float) -> None:
        """Forget what is older than ``horizon`` everywhere: runs that went quiet free their memory."""
        self._history.expire(horizon)
        live = self._history.keys("samples")
        for run_rank in [k for k in self._latest if k[0] not in live]:
            del self._latest[run_rank]
        seq_horizon = min(horizon, time.time() - SEQ_MEMORY_SECONDS)
        for run_rank in [k for k, (_, seen) in self._last_seq.items() if seen < seq_horizon]:
            del self._last_seq[run_rank]

    def _snapshot(self, sub: _Subscriber) -> Outgoing:
        """The snapshot for ``sub``: its share of the history, oldest first, from encoded parts."""
        now = time.time()
        chosen: list[tuple[float, Outgoing, tuple[bool, bool]]] = []
        for out in self._history.messages(now - self.history_seconds):
            parts = sub.wants(out)
            if parts is not None:
                chosen.append((out.received, out, parts))
        chosen.sort(key=lambda item: item[0])
        text = (_encode({"type": _SNAPSHOT, "t": now})[:-1] + ',"messages":['
                + ",".join(out.body(*parts) + "}" for _, out, parts in chosen) + "]")
        return Outgoing.snapshot(text, now)

    def _fan_out(self, out: Outgoing) -> None:
        cap, cap_bytes = self.subscriber_queue, self.subscriber_queue_bytes
        for sub in self._subscribers.values():
            parts = sub.wants(out)
            if parts is None:
                continue
            queue = sub.queue
            queue.append((out, parts))
            sub.queued += out.weight
            sub.queued_bytes += out.nbytes
            while (sub.queued > cap or sub.queued_bytes > cap_bytes) and len(queue) > 1:
                old, _ = queue.popleft()
                sub.queued -= old.weight
                sub.queued_bytes -= _live_bytes(old)
                sub.dropped += old.weight
                sub.unsent_dropped += old.weight
                self._stats["dropped_total"] += old.weight
            sub.wake.set()

    async def _stream(self, ws: ServerConnection, query: dict[str, list[str]]) -> None:
        runs = _split(query.get("run"))
        kinds = _split(query.get("kinds"))
        self._next_id += 1
        sub = _Subscriber(self._next_id, ws, runs, kinds)
        # No await between the snapshot and the registration: nothing is missed, nothing repeated.
        sub.queue.append((self._snapshot(sub), (True, True)))
        sub.queued = 1
        self._subscribers[sub.id] = sub
        sub.task = asyncio.ensure_future(self._send_loop(sub))
        try:
            async for raw in ws:  # reading also keeps pings answered
                reply = await self._query(raw)
                await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self._subscribers.pop(sub.id, None)
            sub.task.cancel()

    async def _query(self, raw: str | bytes) -> str:
        """The reply to one subscriber message (a ``query``; anything else gets an error reply)."""
        try:
            message = json.loads(raw)
            check_depth(message, self.max_depth)
        except (RecursionError, TooDeep):  # json's scanner gives up on deep nesting: malformed, like the rest
            return _refusal(None, f"{TOO_DEEP.format(depth=self.max_depth)}: send a query object")
        except ValueError:
            return _refusal(None, "not JSON: send a query object")
        ident = message.get("id") if isinstance(message, dict) else None
        if not isinstance(message, dict) or message.get("type") != _QUERY:
            return _refusal(ident, f'subscribers may only send {{"type": "{_QUERY}", ...}}')
        if self.history is None:
            return _refusal(ident, "this hub keeps no history")
        self._stats["queries"] += 1
        try:
            reply = await asyncio.to_thread(self._answer, message, ident)
        except (ValueError, KeyError) as exc:
            return _refusal(ident, str(exc).strip('"'))
        except Exception:
            log.exception("telemetry hub: history query %r failed", message)
            return _refusal(ident, "the query failed; see the daemon log")
        return _encode_lenient(to_wire(reply, omit_absent=True))

    def _answer(self, message: dict, ident: Any) -> HubReply:
        """The history function's answer to ``message`` as a reply (in a worker thread: rows may be many)."""
        assert self.history is not None
        answer = self.history(message)
        try:
            reply = from_wire({**answer, "id": None, "ok": True}, HubReply, what="reply")
        except InvalidPayload as exc:  # the history function and the protocol disagree: the daemon's bug
            raise RuntimeError(str(exc)) from None
        return attrs.evolve(reply, id=ident)  # whatever the query's id was, the reply carries it back

    async def _send_loop(self, sub: _Subscriber) -> None:
        queue = sub.queue
        try:
            while True:
                if not queue:
                    sub.wake.clear()
                    await sub.wake.wait()
                    continue
                out, parts = queue.popleft()
                sub.queued -= out.weight
                sub.queued_bytes -= _live_bytes(out)
                dropped, sub.unsent_dropped = sub.unsent_dropped, 0
                await sub.ws.send(f'{out.body(*parts)},"dropped":{dropped}}}')
                sub.sent += 1
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("telemetry hub: sending to subscriber %d failed; closing it", sub.id)
            sub.ws.transport.abort()


def _refusal(ident: Any, error: str) -> str:
    """A reply that says why a subscriber's message got no answer."""
    return _encode(to_wire(HubReply(id=ident, ok=False, error=error), omit_absent=True))


def _live_bytes(out: Outgoing) -> int:
    """What ``out`` weighs against ``subscriber_queue_bytes``: its bytes, but nothing for the snapshot,
    which ``history_bytes`` bounds (so a full snapshot is never dropped for its own size)."""
    return 0 if out.kind == "snapshot" else out.nbytes


def _split(values: Optional[list[str]]) -> Optional[frozenset]:
    if not values:
        return None
    items = frozenset(item.strip() for value in values for item in value.split(",") if item.strip())
    return items or None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value == "NaN":
        return "NaN"
    if value == "Infinity":
        return "+Inf"
    if value == "-Infinity":
        return "-Inf"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
    return repr(value)
