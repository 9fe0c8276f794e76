"""The telemetry reporter of a training process: samples and events to the hub and/or a JSONL file.

A training process owns one :class:`Reporter` (``Reporter.from_env(run_id, rank)``) and calls
:meth:`Reporter.record` once per step and :meth:`Reporter.event` for rare, important news. The
training thread only appends to a bounded in-memory queue; a daemon thread with its own asyncio
loop serialises, writes and sends. Nothing the sinks do (a slow disk, a hub that stops reading, a
hub that goes away) can slow the training loop: the queue keeps the newest samples and counts the
oldest ones it drops, and that count is reported, never hidden.

Sinks, chosen by configuration (:meth:`Reporter.from_env`):

* the hub, when ``DEEPDIVE_HUB`` is set, e.g. ``ws://127.0.0.1:PORT/ingest?token=TOKEN``. Hosts
  other than loopback are refused (one-line warning, no hub) unless ``DEEPDIVE_HUB_ALLOW_REMOTE=1``,
  because the token would cross the network in clear;
* a JSONL file, when ``metrics_out`` is given or ``DEEPDIVE_METRICS_OUT`` is set;
* nothing otherwise: ``reporter.enabled`` is False, no thread exists and ``record`` returns at once.

Hub contract (``/ingest``; reporter -> hub)
-------------------------------------------
One websocket text message per batch, sent about every ``interval`` (0.2 s) while there is
something to say, each at most ``max_message_bytes`` (256 KiB) and ``max_message_samples`` (4096
samples) long, with no permessage-deflate compression. Every message is a JSON object::

    {
      "type": "samples",
      "v": 1,                  # schema version; bumped on an incompatible change
      "run": "run-id",         # str: the run this process belongs to
      "rank": 0,               # int: the process's global rank (0 outside torchrun)
      "seq": 17,               # int: 0, 1, 2, ... per reporter. A message whose send failed is
                               #   resent with the same seq after reconnecting, so the hub may see a
                               #   seq twice (keep one) and a gap means messages lost in transit
      "dropped": 0,            # int: samples dropped since the previous message (queue overflow
                               #   while the hub was slow or away, unserialisable or oversized
                               #   samples); the hub adds these up
      "dropped_events": 0,     # int: the same for events (their own queue; rarely non-zero)
      "events": [ EVENT, ...], # oldest first
      "samples": [SAMPLE, ...] # oldest first
    }

``SAMPLE`` is the dict given to :meth:`Reporter.record` plus ``t`` (float, ``time.time()`` when
recorded), ``run`` and ``rank`` where the caller did not set them. The reporter checks no other
key; these are the ones the engine's ``Run`` sends (``deepdive.engine.run``, ``Run._sample``, and
``deepdive.engine.compression`` for the ``comm_*`` figures), each optional; units are in the names:

===========================  ==================================================================
key                          meaning
===========================  ==================================================================
``step``, ``epoch``          batch index and epoch; ``total_steps`` when known
``step_time_s``              wall time of the step (forward, backward, optimizer)
``data_wait_s``              time waiting on the data loader before the step
``samples_per_s``            samples/s over the newest steps covering 10 s (loader wait included),
                             all ranks: :mod:`deepdive.throughput`, the figure every
                             consumer shows; null before a step with a known batch size
``samples_per_s_window_s``   the seconds of steps ``samples_per_s`` covers (under 10 early on)
``loss``, ``lr``             training loss; learning rate; plus any metric the script logs
``loss_scale``               the gradient scaler's current scale (meaningful in fp16 runs)
``skipped_steps``            optimizer steps skipped on overflow so far
``precision``                ``fp32``, ``bf16`` or ``fp16``
``comm_bytes_sent``          bytes this rank passed to collectives this step (after compression)
``comm_bytes_uncompressed``  the same for a plain allreduce of the gradient buckets
``comm_time_s``              time with a collective in flight this step
``comm_exposed_s``           the part of ``comm_time_s`` that backward did not hide
``comm_overlap``             ``1 - comm_exposed_s / comm_time_s`` (0..1)
``comm_mode``                the gradient compression that ran (``comm_warmup`` 1 in its warm-up)
``comm_buckets``             gradient buckets this step
``mem_allocated_mib``        ``torch.cuda.memory_allocated`` (GPU runs); also ``mem_reserved_mib``
                             and ``mem_peak_mib`` (``max_memory_allocated``)
``alloc_retries``            GPU runs: the caching allocator's ``num_alloc_retries`` so far (it
                             emptied its cache and retried ``cudaMalloc``: memory pressure)
``mem_rss_mib``              resident set size of the process (CPU runs)
===========================  ==================================================================

``EVENT`` is ``{"kind": str, "t": float, "run": str, "rank": int, ...fields}`` from
:meth:`Reporter.event`. The engine's kinds: ``setup`` (with ``link``, ``loopback`` when every process is
on this host), ``prepare``, ``overflow``, ``promotion``
(with ``module``), ``compression`` (with ``mode``, ``reason``, ``evidence``, ``step``: the engine's
own decision, which the verdict does not contradict), ``summary``, and with
checkpoints ``checkpoint`` (step, reason, bytes, snapshot and write seconds), ``preempted`` and
``resumed`` (step, epoch, batch, the world size that wrote it); by
convention a ``message`` field holds one human sentence.

Values: JSON numbers, strings, booleans, null, lists and objects. Non-finite floats are sent as
the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (strict JSON has no literal for them and a
NaN loss must reach the dashboard). Objects with ``.item()`` (0-d tensors, NumPy scalars) are sent
as their number, other objects with ``.tolist()`` as lists, anything else as ``str(value)``; the
conversion happens in the background thread, so pass Python numbers where a tensor would force a
device sync there. The key ``type`` is reserved: it is removed from samples and events (with a
one-time warning).

Hub -> reporter: the reporter reads and ignores everything except ``{"type": "error", "message":
str}``, which it logs as a warning. The hub refuses a connection without the right token at the
handshake (the reporter then retries with backoff and says so once).

JSONL file (``metrics_out``)
----------------------------
Opened for appending (several ranks may share one file: each batch is one ``write`` of whole lines
on an ``O_APPEND`` descriptor, so lines never interleave or end half-written). One JSON object per
line, with the same value rules as above::

    {"type": "sample", "t": ..., "run": ..., "rank": ..., <sample keys>}
    {"type": "event", "kind": ..., "t": ..., "run": ..., "rank": ..., <event fields>}
    {"type": "dropped", "t": ..., "run": ..., "rank": ..., "samples": n, "events": m}

A ``dropped`` line reports the samples and events dropped before the lines that follow it.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import inspect
import json
import logging
import math
import os
import random
import threading
import time
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from deepdive.netutil import is_loopback

log = logging.getLogger("deepdive.engine.reporter")

HUB_ENV = "DEEPDIVE_HUB"
ALLOW_REMOTE_ENV = "DEEPDIVE_HUB_ALLOW_REMOTE"
METRICS_OUT_ENV = "DEEPDIVE_METRICS_OUT"

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
MAX_MESSAGE_SAMPLES = 4096
QUEUE_SIZE = 10_000
EVENT_QUEUE_SIZE = 1_000
INTERVAL = 0.2
BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0
OPEN_TIMEOUT = 5.0
CLOSE_TIMEOUT = 1.0
MAX_SEND_FAILURES = 3  # a message whose send fails this many times in a row is dropped and counted

_SEPARATORS = (",", ":")
# Bytes of a hub message that are not samples or events: its head (run_id is at most 512 bytes of
# JSON, the numbers a few dozen) and brackets.
_HEAD_ROOM = 1024


def hub_url_problem(url: str, allow_remote: bool = False) -> Optional[str]:
    """Why ``url`` cannot be used as the hub's ingest URL, or None when it can.

    Args:
        url (str): the candidate, e.g. ``ws://127.0.0.1:8765/ingest?token=abc``.
        allow_remote (bool): accept hosts other than loopback.

    Returns:
        Optional[str]: one sentence naming the problem and its fix (the token is never shown).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{HUB_ENV} is not a URL ({exc}): expected ws://127.0.0.1:PORT/ingest?token=TOKEN"
    if parts.scheme not in ("ws", "wss"):
        return (f"{HUB_ENV} must be a ws:// or wss:// URL such as ws://127.0.0.1:PORT/ingest?token=TOKEN, "
                f"not {parts.scheme or 'a URL without scheme'}")
    host = parts.hostname
    if not host or port is None:
        return f"{HUB_ENV} needs a host and a port, e.g. ws://127.0.0.1:PORT/ingest?token=TOKEN"
    if not parse_qs(parts.query).get("token"):
        return (f"{HUB_ENV} ({_redact(url)}) has no token=... query parameter: use the URL the Deepdive "
                "daemon gives its jobs, which carries the hub's token")
    if not allow_remote and not is_loopback(host):
        return (f"telemetry hub {_redact(url)} is not on this machine and its token would cross the network "
                f"in clear: not sending telemetry there; use an SSH tunnel to 127.0.0.1, or set "
                f"{ALLOW_REMOTE_ENV}=1 to send anyway")
    return None


def _redact(url: str) -> str:
    """``url`` without its query string (which carries the token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return shown + ("?…" if parts.query else "")


def _plain(value: Any) -> Any:
    """JSON fallback for objects json does not know: tensors, NumPy values, anything else."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (ValueError, RuntimeError, TypeError):
            pass  # more than one element: fall through to tolist
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (str, int)) or value is None:
        return value
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return _finite(_plain(value))


def encode(obj: dict) -> str:
    """Compact, strict JSON of a sample or event (non-finite floats as strings).

    Raises:
        TypeError, ValueError, RecursionError: when ``obj`` cannot be made JSON (e.g. a key that is
            not a string, number or bool, or a reference cycle).
    """
    try:
        return _ENCODER.encode(obj)
    except ValueError:  # a non-finite float somewhere (or a cycle, which _finite turns into RecursionError)
        return _ENCODER.encode(_finite(obj))


# One encoder for all calls: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(default=_plain, allow_nan=False, separators=_SEPARATORS)


_CONNECT_HAS_PROXY: Optional[bool] = None


class Reporter:
    """The telemetry reporter of one training process (one per rank).

    Build it with :meth:`from_env`; the constructor is for explicit configuration (tests, tools).
    ``record`` and ``event`` are safe to call from any thread and never block on I/O.

    Attributes:
        run_id (str): the run's identifier, added to every sample as ``run``.
        rank (int): the process's global rank, added to every sample as ``rank``.
        enabled (bool): True while at least one sink is configured and the reporter is open. When
            False, ``record`` and ``event`` return at once: callers may skip building samples.
        hub (str | None): the hub URL without its token, or None.
        metrics_out (str | None): the JSONL file, or None.
        messages_sent (int): hub messages handed to the websocket so far.
        connects (int): successful hub connections so far (more than one after reconnects).
    """

    def __init__(
        self,
        run_id: str,
        rank: int = 0,
        *,
        hub_url: Optional[str] = None,
        metrics_out: Optional[str] = None,
        allow_remote: bool = False,
        queue_size: int = QUEUE_SIZE,
        event_queue_size: int = EVENT_QUEUE_SIZE,
        interval: float = INTERVAL,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_message_samples: int = MAX_MESSAGE_SAMPLES,
    ) -> None:
        """Open the configured sinks and, when there is one, start the background thread.

        Args:
            run_id (str): the run's identifier.
            rank (int): the process's global rank.
            hub_url (str | None): the hub's ingest URL with its token
                (``ws://127.0.0.1:PORT/ingest?token=TOKEN``), or None for no hub.
            metrics_out (str | None): a JSONL file to append to (its folder is created), or None.
            allow_remote (bool): accept a hub that is not on loopback.
            queue_size (int): samples kept while the sinks lag; beyond it the oldest are dropped.
            event_queue_size (int): the same for events, in their own queue.
            interval (float): seconds between batches.
            max_message_bytes (int): the largest hub message, in bytes (at least 4096).
            max_message_samples (int): the most samples in one hub message.

        Raises:
            TypeError: ``run_id`` is not a str or ``rank`` not an int.
            ValueError: a bad ``hub_url`` (the message names the fix) or a non-positive size.
            OSError: ``metrics_out`` cannot be opened for appending.
        """
        if not isinstance(run_id, str):
            raise TypeError(f"run_id must be a str, got {type(run_id).__name__}: pass str(run_id)")
        if not isinstance(rank, int) or isinstance(rank, bool):
            raise TypeError(f"rank must be an int, got {type(rank).__name__}: pass int(rank)")
        if len(json.dumps(run_id)) > 512:
            raise ValueError(f"run_id is too long ({len(run_id)} characters): keep it under 200 ASCII characters")
        for name, value in (("queue_size", queue_size), ("event_queue_size", event_queue_size),
                            ("max_message_samples", max_message_samples)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_message_bytes < 4096:
            raise ValueError(f"max_message_bytes must be at least 4096, got {max_message_bytes}")
        if interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval}")
        if hub_url is not None:
            problem = hub_url_problem(hub_url, allow_remote)
            if problem:
                raise ValueError(problem)

        self.run_id = run_id
        self.rank = rank
        self.hub = _redact(hub_url) if hub_url else None
        self.metrics_out = os.fspath(metrics_out) if metrics_out else None
        self.interval = float(interval)
        self.messages_sent = 0
        self.connects = 0
        self._hub_url = hub_url
        self._token = (parse_qs(urlsplit(hub_url).query).get("token") or [""])[0] if hub_url else ""
        self._max_bytes = int(max_message_bytes)
        self._max_samples = int(max_message_samples)
        self._item_limit = self._max_bytes - _HEAD_ROOM - 1  # a larger sample could never be sent

        # Shared with the training thread, under _lock.
        self._lock = threading.Lock()
        self._queue_size = int(queue_size)
        self._event_queue_size = int(event_queue_size)
        self._samples: collections.deque = collections.deque(maxlen=self._queue_size)
        self._events: collections.deque = collections.deque(maxlen=self._event_queue_size)
        self._queue_dropped = 0
        self._queue_dropped_events = 0

        # Owned by the background thread (plain int reads from other threads are fine).
        self._seen_dropped = 0
        self._seen_dropped_events = 0
        self._sink_dropped = 0
        self._sink_dropped_events = 0
        self._hub_samples: collections.deque = collections.deque(maxlen=self._queue_size)  # str or (t, dict)
        self._hub_events: collections.deque = collections.deque(maxlen=self._event_queue_size)
        self._hub_dropped = 0
        self._hub_dropped_events = 0
        self._pending: Optional[tuple[str, int, int]] = None  # (text, samples, events) of an unsent message
        self._seq = 0
        self._pending_failures = 0
        self._hub_down = False
        self._warned: set[str] = set()
        self._final_drained = False
        self._stop_requested = False
        self._fd: Optional[int] = None

        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._pid = os.getpid()
        self.enabled = bool(hub_url or self.metrics_out)
        if not self.enabled:
            return

        if self.metrics_out:
            folder = os.path.dirname(os.path.abspath(self.metrics_out))
            os.makedirs(folder, exist_ok=True)
            self._fd = os.open(self.metrics_out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._loop = asyncio.new_event_loop()
        self._stop_event = asyncio.Event()
        self._hub_ready = asyncio.Event()
        self._main_task = self._loop.create_task(self._main())
        self._thread = threading.Thread(target=self._thread_main, name=f"deepdive-reporter-{rank}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ------------------------------------------------------------------------------------------
    # construction from the environment
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, run_id: str, rank: int, metrics_out: Optional[str] = None) -> "Reporter":
        """The reporter the environment asks for.

        ``DEEPDIVE_HUB`` (the hub's ingest URL with its token) adds the hub sink; a host that is not
        loopback is refused with a one-line warning unless ``DEEPDIVE_HUB_ALLOW_REMOTE=1``, and so is
        a malformed URL. ``metrics_out``, or else ``DEEPDIVE_METRICS_OUT``, adds the JSONL sink.
        With neither, the reporter is disabled and costs nothing.

        Args:
            run_id (str): the run's identifier.
            rank (int): the process's global rank.
            metrics_out (str | None): a JSONL file; overrides ``DEEPDIVE_METRICS_OUT``.

        Returns:
            Reporter: enabled when at least one sink was configured.

        Raises:
            OSError: the JSONL file cannot be opened for appending.
        """
        hub_url = os.environ.get(HUB_ENV) or None
        allow_remote = os.environ.get(ALLOW_REMOTE_ENV, "").strip() == "1"
        if hub_url:
            problem = hub_url_problem(hub_url, allow_remote)
            if problem:
                log.warning("%s", problem)
                hub_url = None
        out = metrics_out or os.environ.get(METRICS_OUT_ENV) or None
        return cls(run_id, rank, hub_url=hub_url, metrics_out=out, allow_remote=allow_remote)

    # ------------------------------------------------------------------------------------------
    # the training thread's side
    # ------------------------------------------------------------------------------------------

    def record(self, sample: dict) -> None:
        """Queue one sample; never blocks. Adds ``t``, ``run`` and ``rank`` where absent.

        The dict is copied (shallowly), so the caller may reuse it. When the queue is full the
        oldest sample is dropped and counted.

        Args:
            sample (dict): metric name -> value, e.g. ``{"step": 10, "loss": 0.31, "step_time": 0.05}``.
        """
        if not self.enabled:
            return
        entry = (time.time(), sample.copy())  # the full dict is built in the background thread
        lock = self._lock
        lock.acquire()
        try:
            queue = self._samples
            if len(queue) == self._queue_size:
                self._queue_dropped += 1
            queue.append(entry)
        finally:
            lock.release()

    def event(self, kind: str, **fields: Any) -> None:
        """Queue one rare, important event; never blocks. Kept apart from samples, so a flood of
        samples never drops an event.

        Args:
            kind (str): what happened, e.g. ``"precision"``, ``"compression"``, ``"overflow"``.
            **fields: details; by convention ``message`` holds one human sentence.
        """
        if not self.enabled:
            return
        entry = {"kind": kind, "t": time.time(), "run": self.run_id, "rank": self.rank}
        entry.update(fields)
        with self._lock:
            queue = self._events
            if len(queue) == self._event_queue_size:
                self._queue_dropped_events += 1
            queue.append(entry)

    @property
    def dropped(self) -> int:
        """Samples lost so far: queue overflow, hub lag or absence, unserialisable or oversized
        samples, and what was still unsent when :meth:`close` gave up."""
        return self._queue_dropped + self._sink_dropped

    @property
    def dropped_events(self) -> int:
        """Events lost so far, counted like :attr:`dropped`."""
        return self._queue_dropped_events + self._sink_dropped_events

    def close(self, timeout: float = 2.0) -> None:
        """Flush what can be flushed within ``timeout`` seconds and stop the thread. Idempotent;
        registered with :mod:`atexit`. Later ``record`` and ``event`` calls do nothing.

        Args:
            timeout (float): seconds to wait for the last batches; past it, what is unsent is
                counted as dropped and the connection aborted (a second or so more at most).
        """
        if self._closed:
            return
        self._closed = True
        self.enabled = False
        atexit.unregister(self.close)
        thread = self._thread
        if thread is None or os.getpid() != self._pid:  # no sink, or a forked child without the thread
            return
        self._stop_requested = True
        self._call_soon(self._stop_event.set)
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            self._call_soon(self._main_task.cancel)
            thread.join(CLOSE_TIMEOUT + 1.0)
        if thread.is_alive():
            log.warning("telemetry reporter: the background thread did not stop within %.1f s; "
                        "leaving it (a daemon thread) behind", timeout + CLOSE_TIMEOUT + 1.0)

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call_soon(self, callback) -> None:
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop already finished
            pass

    # ------------------------------------------------------------------------------------------
    # the background thread
    # ------------------------------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main_task)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug here must not take training down, and must not pass unseen
            log.exception("telemetry reporter stopped: no more telemetry from this process")
            self.enabled = False
        finally:
            try:
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        tasks = [asyncio.ensure_future(self._drain_loop())]
        if self._hub_url:
            tasks.append(asyncio.ensure_future(self._hub_loop()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._drain_once()
            self._close_file()
            if self._hub_url:
                unsent_samples = len(self._hub_samples) + (self._pending[1] if self._pending else 0)
                unsent_events = len(self._hub_events) + (self._pending[2] if self._pending else 0)
                self._sink_dropped += unsent_samples
                self._sink_dropped_events += unsent_events
                self._hub_samples.clear()
                self._hub_events.clear()
                self._pending = None
                if unsent_samples or unsent_events:
                    log.warning("telemetry hub %s: %d samples and %d events unsent at close",
                                self.hub, unsent_samples, unsent_events)

    async def _drain_loop(self) -> None:
        while not self._stop_requested:
            try:
                await asyncio.wait_for(self._stop_event.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self._drain_once()
        self._drain_once()
        self._final_drained = True
        self._hub_ready.set()

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _encode_one(self, entry: Any, what: str) -> Optional[str]:
        """``entry`` (an event dict or a sample's ``(t, dict)``) as JSON, or None (with a one-time
        warning) when it cannot be sent."""
        if isinstance(entry, tuple):
            t, sample = entry
            entry = {"t": t, "run": self.run_id, "rank": self.rank}
            entry.update(sample)
        if "type" in entry:
            entry = {key: value for key, value in entry.items() if key != "type"}
            self._warn_once(f"type-{what}", "telemetry: the key 'type' is reserved; removed it from %ss", what)
        try:
            text = encode(entry)
        except (TypeError, ValueError, RecursionError) as exc:
            self._warn_once(f"bad-{what}", "telemetry: dropped a %s that cannot be made JSON (%s): record "
                            "numbers, strings, lists and dicts with string keys", what, exc)
            return None
        if self._hub_url and len(text) > self._item_limit:
            self._warn_once(f"big-{what}", "telemetry: dropped a %s of %d bytes, over the hub's %d-byte "
                            "message limit: record scalars, not large arrays", what, len(text), self._max_bytes)
            return None
        return text

    def _encode_all(self, entries: collections.deque, what: str) -> tuple[list[str], int]:
        out = []
        for entry in entries:
            text = self._encode_one(entry, what)
            if text is not None:
                out.append(text)
        return out, len(entries) - len(out)

    def _drain_once(self) -> None:
        """Move everything queued to the sinks: write the JSONL lines, fill the hub's buffers.

        With a JSONL file, entries are encoded here once for both sinks. With the hub alone they go
        to its buffers as they are and are encoded when a message is built, so a hub that lags costs no
        encoding of the samples that its full buffer then drops.
        """
        fresh_samples = collections.deque(maxlen=self._queue_size)
        fresh_events = collections.deque(maxlen=self._event_queue_size)
        with self._lock:
            samples, self._samples = self._samples, fresh_samples
            events, self._events = self._events, fresh_events
            queue_dropped, queue_dropped_events = self._queue_dropped, self._queue_dropped_events
        new_dropped = queue_dropped - self._seen_dropped
        new_dropped_events = queue_dropped_events - self._seen_dropped_events
        self._seen_dropped, self._seen_dropped_events = queue_dropped, queue_dropped_events
        if not (samples or events or new_dropped or new_dropped_events):
            return

        if self._fd is not None:
            samples, bad_samples = self._encode_all(samples, "sample")
            events, bad_events = self._encode_all(events, "event")
            self._sink_dropped += bad_samples
            self._sink_dropped_events += bad_events
            new_dropped += bad_samples
            new_dropped_events += bad_events
            lines = []
            if new_dropped or new_dropped_events:
                lines.append(encode({"type": "dropped", "t": time.time(), "run": self.run_id, "rank": self.rank,
                                     "samples": new_dropped, "events": new_dropped_events}))
            lines.extend('{"type":"event",' + text[1:] for text in events)
            lines.extend('{"type":"sample",' + text[1:] for text in samples)
            self._write_lines(lines)

        if self._hub_url:
            overflow = max(0, len(self._hub_samples) + len(samples) - self._queue_size)
            overflow_events = max(0, len(self._hub_events) + len(events) - self._event_queue_size)
            self._hub_samples.extend(samples)  # bounded deques: the oldest fall out
            self._hub_events.extend(events)
            self._sink_dropped += overflow
            self._sink_dropped_events += overflow_events
            self._hub_dropped += new_dropped + overflow
            self._hub_dropped_events += new_dropped_events + overflow_events
            self._hub_ready.set()

    def _write_lines(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:  # one write of whole lines; the loop only matters after a partial write
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            log.warning("telemetry: writing %s failed (%s); no more lines go to this file: free space or "
                        "choose another --metrics-out", self.metrics_out, exc)
            self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    # -- hub ------------------------------------------------------------------------------------

    def _hub_has_work(self) -> bool:
        return bool(self._pending or self._hub_samples or self._hub_events
                    or self._hub_dropped or self._hub_dropped_events)

    def _take(self, buffer: collections.deque, what: str, budget: int, most: int) -> tuple[list[str], int, int]:
        """Pop encoded entries from ``buffer`` while they fit ``budget`` bytes and ``most`` entries.

        Returns:
            tuple[list[str], int, int]: the texts, the budget left, and entries dropped as unsendable.
        """
        out: list[str] = []
        bad = 0
        while buffer and len(out) < most:
            item = buffer[0]
            if not isinstance(item, str):
                text = self._encode_one(item, what)
                if text is None:
                    buffer.popleft()
                    bad += 1
                    continue
                buffer[0] = item = text
            if len(item) + 1 > budget:
                break
            out.append(buffer.popleft())
            budget -= len(item) + 1
        return out, budget, bad

    def _build_message(self) -> Optional[tuple[str, int, int]]:
        """The next hub message from the buffers (oldest first), or None when there is nothing to say."""
        if not self._hub_has_work():
            return None
        budget = self._max_bytes - _HEAD_ROOM
        events, budget, bad_events = self._take(self._hub_events, "event", budget, self._event_queue_size)
        samples, budget, bad_samples = self._take(self._hub_samples, "sample", budget, self._max_samples)
        self._sink_dropped += bad_samples
        self._sink_dropped_events += bad_events
        dropped, self._hub_dropped = self._hub_dropped + bad_samples, 0
        dropped_events, self._hub_dropped_events = self._hub_dropped_events + bad_events, 0
        if not (events or samples or dropped or dropped_events):
            return None
        text = (f'{{"type":"samples","v":{SCHEMA_VERSION},"run":{json.dumps(self.run_id)},"rank":{self.rank},'
                f'"seq":{self._seq},"dropped":{dropped},"dropped_events":{dropped_events},'
                f'"events":[{",".join(events)}],"samples":[{",".join(samples)}]}}')
        self._seq += 1
        return text, len(samples), len(events)

    def _connect(self):
        global _CONNECT_HAS_PROXY
        from websockets.asyncio.client import connect

        if _CONNECT_HAS_PROXY is None:
            _CONNECT_HAS_PROXY = "proxy" in inspect.signature(connect.__init__).parameters
        options: dict[str, Any] = dict(compression=None, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                                       max_size=64 * 1024, max_queue=4)
        if _CONNECT_HAS_PROXY:
            options["proxy"] = None  # loopback: never through an HTTP proxy from the environment
        return connect(self._hub_url, **options)

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(self._token, "…") if self._token else text

    async def _hub_loop(self) -> None:
        from websockets.exceptions import WebSocketException

        delay = BACKOFF_MIN
        while True:
            if self._final_drained and not self._hub_has_work():
                return
            sent_before = self.messages_sent
            try:
                ws = await self._connect()
                self.connects += 1
                reader = asyncio.ensure_future(self._hub_read(ws))
                try:
                    await self._hub_send_all(ws)
                    # Everything sent: a polite close, but bounded (a hub that stopped reading
                    # would keep websockets' close waiting for the socket to drain forever).
                    try:
                        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
                    except asyncio.TimeoutError:
                        ws.transport.abort()
                except BaseException:
                    ws.transport.abort()  # cancelled by close() or failed: never wait on the socket
                    raise
                finally:
                    reader.cancel()
                return
            except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
                if self.messages_sent > sent_before:  # the connection worked for a while
                    delay = BACKOFF_MIN
                if not self._hub_down:  # once per outage
                    self._hub_down = True
                    log.warning("%s", self._outage_message(exc))
            if self._stop_requested:
                return  # a failed attempt after close(): what is left is counted as dropped
            try:
                await asyncio.wait_for(self._stop_event.wait(), delay * random.uniform(0.8, 1.2))
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, BACKOFF_MAX)

    def _outage_message(self, exc: BaseException) -> str:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return (f"telemetry hub {self.hub} refused this process's token (HTTP {status}): DEEPDIVE_HUB must be "
                    "the URL the running Deepdive daemon gave, and its token changes at each daemon start; "
                    "retrying with backoff")
        return (f"telemetry hub {self.hub} unreachable ({self._describe(exc)}); retrying with backoff while the "
                f"newest {self._queue_size} samples wait and older ones are dropped and counted")

    async def _hub_send_all(self, ws) -> None:
        while True:
            if self._pending is None:
                self._pending = self._build_message()
            if self._pending is None:
                if self._final_drained:
                    return
                self._hub_ready.clear()
                await self._hub_ready.wait()
                continue
            try:
                await ws.send(self._pending[0])
            except Exception as exc:
                self._pending_failures += 1
                if self._pending_failures >= MAX_SEND_FAILURES:
                    # The hub keeps closing the connection on this very message (too big for
                    # it, or malformed in its eyes): give up on it rather than on everything.
                    _, samples, events = self._pending
                    self._pending, self._pending_failures = None, 0
                    self._sink_dropped += samples
                    self._sink_dropped_events += events
                    self._hub_dropped += samples
                    self._hub_dropped_events += events
                    self._warn_once("send-failures", "telemetry hub %s: dropped a message of %d samples that failed "
                                    "to send %d times in a row (%s); later ones are dropped alike, counted",
                                    self.hub, samples, MAX_SEND_FAILURES, self._describe(exc))
                raise
            self._pending, self._pending_failures = None, 0
            self.messages_sent += 1
            if self._hub_down:
                self._hub_down = False
                log.warning("telemetry hub %s: reconnected", self.hub)

    async def _hub_read(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("type") == "error":
                    log.warning("telemetry hub %s: %s", self.hub, message.get("message"))
        except ConnectionClosed:
            pass
