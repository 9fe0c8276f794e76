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
  ``history`` function): see :mod:`deepdive.telemetry.queries`.
* ``GET /`` and ``GET /dashboard/...`` (HTTP): the dashboard bundle from ``static_dir``
  (``/`` is its ``index.html``); 404 with a one-line reason when there is no bundle.
* ``GET /metrics`` (HTTP, only with ``prometheus=True``): Prometheus text exposition of the latest
  numeric sample fields per run and rank (``deepdive_run_<field>{run=..., rank=...}``) and the
  hub's own counters (``deepdive_hub_*``).

The websocket messages are declared in :mod:`deepdive.protocol.hub` (``IngestBatch``, ``HubError``,
``StreamSnapshot``, ``StreamSamples``, ``MachineMessage``, ``VerdictMessage``, ``HubQuery``,
``HubReply``), and the dashboard's TypeScript types are generated from there.

The modules
-----------
This module holds :class:`Hub`: the state its endpoints share (each producer's last ``seq``, the
snapshot history, the subscribers, the counters) and the routing between them, which is why it runs
past 500 lines (its constructor's options and counters are documented here, in one place). What needs
none of that state lives beside it: :mod:`~deepdive.telemetry.ingest` (reading and checking an
``/ingest`` message), :mod:`~deepdive.telemetry.subscribers` (a subscriber's queue, fan-out and
sender), :mod:`~deepdive.telemetry.queries` (history queries), :mod:`~deepdive.telemetry.web` (token,
responses, the dashboard bundle), :mod:`~deepdive.telemetry.prometheus` (``/metrics``),
:mod:`~deepdive.telemetry.history` and :mod:`~deepdive.telemetry.outgoing`. This module re-exports the
names callers import from it.
"""

from __future__ import annotations

import asyncio
import http
import logging
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, quote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from deepdive.netutil import is_loopback
from deepdive.protocol import HubError, HubReply, StreamSamples, StreamSnapshot, to_wire
from deepdive.protocol.hub import message_type
from deepdive.telemetry import prometheus, queries, web
from deepdive.telemetry.history import History
from deepdive.telemetry.ingest import MAX_RUN_ID_CHARS, Batch, SpanParser, read_batch
from deepdive.telemetry.limits import MAX_DEPTH, MAX_STRING_CHARS
from deepdive.telemetry.outgoing import Outgoing
from deepdive.telemetry.outgoing import encode as _encode
from deepdive.telemetry.subscribers import Subscriber, fan_out, snapshot, split_filter
from deepdive.telemetry.web import COOKIE

__all__ = ["COOKIE", "HISTORY_BYTES", "HISTORY_ENTRIES", "HISTORY_RUN_BYTES", "HISTORY_SECONDS", "MAX_MESSAGE_BYTES",
           "MAX_RUN_ID_CHARS", "SEQ_MEMORY_SECONDS", "SUBSCRIBER_QUEUE", "SUBSCRIBER_QUEUE_BYTES", "Hub"]

log = logging.getLogger("deepdive.telemetry.hub")

MAX_MESSAGE_BYTES = 1 << 20
SUBSCRIBER_QUEUE = 10_000
HISTORY_SECONDS = 600.0
HISTORY_ENTRIES = 10_000
MIB = 1 << 20
HISTORY_RUN_BYTES = 16 * MIB  # the snapshot's bytes per run (and per published type)
HISTORY_BYTES = 64 * MIB  # the snapshot's bytes in all
SUBSCRIBER_QUEUE_BYTES = 32 * MIB  # live messages queued per subscriber (its snapshot is bounded by HISTORY_BYTES)
SEQ_MEMORY_SECONDS = 600.0  # a producer silent this long is forgotten (its next seq starts afresh)
# The types the hub itself sends (deepdive.protocol.hub): publish() may not send them.
_RESERVED = frozenset(message_type(cls) for cls in (StreamSamples, StreamSnapshot, HubReply, HubError))
_SAMPLES = message_type(StreamSamples)


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
        self._parser = SpanParser()
        self._token_bytes = self.token.encode()
        self._subscribers: dict[int, Subscriber] = {}
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

    async def _process_request(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        parts = urlsplit(request.path)
        path = parts.path
        query = parse_qs(parts.query)
        is_websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        authorized = web.authorized(request, query, self._token_bytes)
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
            return web.response(200, self.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/" or path == "/dashboard" or path.startswith("/dashboard/"):
            return await web.static(connection, self.static_dir, self.token, path, query)
        return connection.respond(http.HTTPStatus.NOT_FOUND,
                                  f"nothing at {path}: the dashboard is at /, the data at /stream\n")

    def metrics_text(self) -> str:
        """The Prometheus text exposition served at ``/metrics``: the runs' latest numbers and the
        hub's counters (:func:`deepdive.telemetry.prometheus.metrics_text` lists them)."""
        return prometheus.metrics_text(self._latest, self._stats, self._history, self._producers,
                                       ((sub.id, sub.dropped) for sub in self._subscribers.values()))

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

    def _accept(self, raw: str | bytes) -> Optional[str]:
        """Validate, deduplicate, remember and fan out one /ingest message; the problem, or None."""
        batch = read_batch(raw, self._parser, self.max_depth, self.max_string_chars)
        if isinstance(batch, str):
            return batch
        if self._duplicate(batch):
            return None
        self._count(batch)
        run, rank, now = batch.run, batch.rank, batch.received
        if self.prometheus and batch.samples:
            prometheus.latest_fields(self._latest.setdefault((run, rank), {}), batch.samples)
        if self.on_batch is not None:
            try:
                self.on_batch(batch.message, batch.nbytes)
            except Exception:
                log.exception("telemetry hub: on_batch failed on a message of run %s; continuing", run)

        out_message = {"type": _SAMPLES, "run": run, "rank": rank, "seq": batch.seq, "t": now,
                       "samples": batch.samples, "events": batch.events, "producer_dropped": batch.dropped,
                       "producer_dropped_events": batch.dropped_events}
        out = Outgoing.relayed(out_message, now, batch.raw_parts)
        self._remember("samples", run, out, now)
        self._fan_out(out)
        return None

    def _duplicate(self, batch: Batch) -> bool:
        """Whether ``batch`` repeats its producer's last ``seq``; otherwise remember it, counting gaps
        and restarts."""
        if batch.seq is None:
            return False
        seq, key = batch.seq, (batch.run, batch.rank)
        last = self._last_seq.get(key, (None, 0.0))[0]
        if last is not None:
            if seq == last:
                self._stats["duplicate_messages"] += 1
                return True
            if seq < last:
                self._stats["producer_restarts"] += 1
            elif seq > last + 1:
                self._stats["seq_gaps"] += seq - last - 1
        self._last_seq[key] = (seq, batch.received)
        return False

    def _count(self, batch: Batch) -> None:
        stats = self._stats
        stats["ingested_messages"] += 1
        stats["ingested_samples"] += len(batch.samples)
        stats["ingested_events"] += len(batch.events)
        stats["producer_dropped_samples"] += batch.dropped
        stats["producer_dropped_events"] += batch.dropped_events
        stats["truncated_strings"] += batch.truncated

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

    def _fan_out(self, out: Outgoing) -> None:
        self._stats["dropped_total"] += fan_out(self._subscribers.values(), out, self.subscriber_queue,
                                                self.subscriber_queue_bytes)

    async def _stream(self, ws: ServerConnection, query: dict[str, list[str]]) -> None:
        runs = split_filter(query.get("run"))
        kinds = split_filter(query.get("kinds"))
        self._next_id += 1
        sub = Subscriber(self._next_id, ws, runs, kinds)
        # No await between the snapshot and the registration: nothing is missed, nothing repeated.
        now = time.time()
        sub.queue.append((snapshot(sub, self._history.messages(now - self.history_seconds), now), (True, True)))
        sub.queued = 1
        self._subscribers[sub.id] = sub
        sub.task = asyncio.ensure_future(sub.send_loop())
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
        message = queries.read(raw, self.max_depth)
        if isinstance(message, str):
            return message
        if self.history is None:
            return queries.refusal(message.get("id"), "this hub keeps no history")
        self._stats["queries"] += 1
        return await queries.answer(self.history, message)
