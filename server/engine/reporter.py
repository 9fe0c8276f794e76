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
``deepdive.engine.commstats`` for the ``comm_*`` figures), each optional; units are in the names:

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

The modules
-----------
This module holds :class:`Reporter`'s construction and the training thread's side (``record``,
``event``, ``close``) and re-exports the names callers import from it.
:mod:`~deepdive.engine.reporter_config` holds the environment variables and the hub URL check,
:mod:`~deepdive.engine.reporter_encoding` the JSON, :mod:`~deepdive.engine.reporter_thread` the
background thread (the drain and the JSONL file) and :mod:`~deepdive.engine.reporter_hub` the hub
sink; :class:`Reporter` inherits the last two, which work on the state its constructor sets.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import logging
import os
import threading
import time
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from deepdive.engine.reporter_config import ALLOW_REMOTE_ENV, HUB_ENV, METRICS_OUT_ENV, hub_url_problem, redact
from deepdive.engine.reporter_encoding import encode
from deepdive.engine.reporter_hub import CLOSE_TIMEOUT, HEAD_ROOM, SCHEMA_VERSION, HubSender
from deepdive.engine.reporter_thread import ReporterThread

__all__ = ["ALLOW_REMOTE_ENV", "CLOSE_TIMEOUT", "EVENT_QUEUE_SIZE", "HUB_ENV", "INTERVAL", "MAX_MESSAGE_BYTES",
           "MAX_MESSAGE_SAMPLES", "METRICS_OUT_ENV", "QUEUE_SIZE", "SCHEMA_VERSION", "Reporter", "encode",
           "hub_url_problem"]

log = logging.getLogger("deepdive.engine.reporter")  # one logger for the whole reporter: the name users filter on

MAX_MESSAGE_BYTES = 256 * 1024
MAX_MESSAGE_SAMPLES = 4096
QUEUE_SIZE = 10_000
EVENT_QUEUE_SIZE = 1_000
INTERVAL = 0.2


class Reporter(ReporterThread, HubSender):
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
        self.hub = redact(hub_url) if hub_url else None
        self.metrics_out = os.fspath(metrics_out) if metrics_out else None
        self.interval = float(interval)
        self.messages_sent = 0
        self.connects = 0
        self._hub_url = hub_url
        self._token = (parse_qs(urlsplit(hub_url).query).get("token") or [""])[0] if hub_url else ""
        self._max_bytes = int(max_message_bytes)
        self._max_samples = int(max_message_samples)
        self._item_limit = self._max_bytes - HEAD_ROOM - 1  # a larger sample could never be sent

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
