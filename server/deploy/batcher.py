"""The dynamic batcher: concurrent requests joined into batches for the model instances, Triton's way.

Requests arrive on an asyncio event loop (the server's); each model instance is a thread of its own
with its own runner (torch and onnxruntime release the GIL while they compute, so instances run in
parallel). The semantics are Triton's ``dynamic_batching``:

- a batch never holds more than ``max_batch_size`` rows; a request's own batch dimension counts toward
  it and a request is never split (one larger than ``max_batch_size`` is refused at once);
- when a free instance looks at the queue it takes, oldest first, the requests that fit. If they reach
  the largest preferred size (``max_batch_size`` without preferred sizes), or the next request cannot
  join (it would overflow the batch, or its non-batch shape differs), the batch runs now; if some prefix
  of them is exactly a preferred size, the largest such prefix runs now; otherwise the instance waits
  until the oldest request has waited ``max_queue_delay_us``, then runs what it has;
- each request has a deadline (``timeout_ms``, or the client's own shorter one): a request still queued
  past it fails with :class:`RequestTimeout` and never runs; a request already running finishes;
- the queue is bounded (``max_queue`` requests): one more fails at once with :class:`QueueFull`, which
  the server answers with 503 and ``Retry-After``;
- ``batching=False`` (the benchmark's "off" arm) runs every request alone, as soon as an instance is free.

Each response is sliced from the batch's outputs at its own request's rows, so answers never mix.
:class:`Stats` keeps what the metrics and the dashboard show: queue time, batch sizes, run time,
latency and errors, with :meth:`Batcher.snapshot` summarising a recent window.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from typing import Any, Callable, Optional, Protocol, Sequence

import attrs
import numpy as np

from deepdive.deploy.errors import DeployError
from deepdive.deploy.runners import Runner


class BatcherError(Exception):
    """A request the batcher could not serve; ``status`` is the HTTP status the server answers with."""

    status = 500


class RequestInvalid(BatcherError):
    """The request cannot run here (too many rows, inputs of different batch sizes)."""

    status = 400


class QueueFull(BatcherError):
    """The queue holds ``max_queue`` requests already; ``retry_after_s`` is when one may try again."""

    status = 503

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeout(BatcherError):
    """The request waited in the queue past its deadline and was not run."""

    status = 504


class Unavailable(BatcherError):
    """The batcher is shutting down (or not started): no new requests."""

    status = 503


class RunFailed(BatcherError):
    """The model raised on the batch this request was in."""

    status = 500


@attrs.define(frozen=True)
class BatchConfig:
    """The batcher's settings (the defaults are ``deepdive deploy serve``'s)."""

    max_batch_size: int = 32
    """Most rows in one batch, and in one request."""
    preferred_batch_sizes: tuple[int, ...] = ()
    """Batch sizes sent as soon as the queue holds them (Triton's ``preferred_batch_size``)."""
    max_queue_delay_us: int = 2000
    """How long the oldest queued request may wait for the batch to fill."""
    timeout_ms: float = 1000.0
    """A request still queued this long after it arrived fails and never runs."""
    max_queue: int = 256
    """Most requests waiting; one more is refused (503)."""
    batching: bool = True
    """False: every request runs alone (no joining, no delay)."""

    def __attrs_post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise DeployError(f"max batch size {self.max_batch_size} must be at least 1")
        bad = [p for p in self.preferred_batch_sizes if p < 1 or p > self.max_batch_size]
        if bad:
            raise DeployError(f"preferred batch sizes {', '.join(map(str, bad))} are outside 1..{self.max_batch_size} "
                              "(the max batch size): drop them or raise --max-batch")
        if self.max_queue_delay_us < 0:
            raise DeployError(f"max queue delay {self.max_queue_delay_us} µs must be 0 or more")
        if self.timeout_ms <= 0:
            raise DeployError(f"timeout {self.timeout_ms} ms must be more than 0")
        if self.max_queue < 1:
            raise DeployError(f"max queue {self.max_queue} must be at least 1")

    @classmethod
    def off(cls, *, max_batch_size: int = 32, timeout_ms: float = 1000.0, max_queue: int = 256) -> "BatchConfig":
        """No dynamic batching: each request alone, at once (``max_batch_size`` still bounds a request's rows)."""
        return cls(max_batch_size=max_batch_size, preferred_batch_sizes=(), max_queue_delay_us=0,
                   timeout_ms=timeout_ms, max_queue=max_queue, batching=False)

    def to_json(self) -> dict[str, Any]:
        return {"batching": self.batching, "max_batch_size": self.max_batch_size,
                "preferred_batch_sizes": list(self.preferred_batch_sizes),
                "max_queue_delay_us": self.max_queue_delay_us, "timeout_ms": self.timeout_ms,
                "max_queue": self.max_queue}


class Listener(Protocol):
    """Who hears about each batch and each finished request (the Prometheus metrics); called from worker threads."""

    def on_batch(self, rows: int, requests: int, run_s: float) -> None: ...

    def on_request(self, outcome: str, queue_s: Optional[float], latency_s: float) -> None: ...

    def on_queue_depth(self, depth: int) -> None: ...


def _quantile(values: Sequence[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Stats:
    """Counters since start and a recent window (``window_s``) of requests and batches, thread-safe."""

    def __init__(self, window_s: float = 60.0, keep: int = 20000):
        self.window_s = window_s
        self._lock = threading.Lock()
        self._requests: collections.deque[tuple[float, str, Optional[float], float]] = collections.deque(maxlen=keep)
        self._batches: collections.deque[tuple[float, int, int, float]] = collections.deque(maxlen=keep)
        self.totals: collections.Counter[str] = collections.Counter()
        self.batches = 0
        self.rows = 0

    def request(self, outcome: str, queue_s: Optional[float], latency_s: float) -> None:
        with self._lock:
            self._requests.append((time.monotonic(), outcome, queue_s, latency_s))
            self.totals[outcome] += 1

    def batch(self, rows: int, requests: int, run_s: float) -> None:
        with self._lock:
            self._batches.append((time.monotonic(), rows, requests, run_s))
            self.batches += 1
            self.rows += rows

    def mean_run_s(self) -> Optional[float]:
        with self._lock:
            recent = [b[3] for b in list(self._batches)[-50:]]
        return sum(recent) / len(recent) if recent else None

    def snapshot(self) -> dict[str, Any]:
        """The recent window: requests/s, batch-size histogram, queue delay and latency p50/p99 (ms)."""
        now = time.monotonic()
        since = now - self.window_s
        with self._lock:
            requests = [r for r in self._requests if r[0] >= since]
            batches = [b for b in self._batches if b[0] >= since]
            totals = dict(self.totals)
        ok = [r for r in requests if r[1] == "ok"]
        span = min(self.window_s, now - requests[0][0]) if requests else 0.0
        histogram: collections.Counter[int] = collections.Counter(b[1] for b in batches)

        def ms(value: Optional[float]) -> Optional[float]:
            return None if value is None else round(value * 1000.0, 3)

        queue = [r[2] for r in ok if r[2] is not None]
        latency = [r[3] for r in ok]
        return {
            "window_s": self.window_s,
            "requests": len(requests),
            "requests_per_s": round(len(ok) / span, 3) if span > 0 else 0.0,
            "outcomes": dict(collections.Counter(r[1] for r in requests)),
            "batches": len(batches),
            "batch_size_histogram": {str(k): histogram[k] for k in sorted(histogram)},
            "mean_batch_size": round(sum(b[1] for b in batches) / len(batches), 3) if batches else None,
            "queue_delay_ms": {"p50": ms(_quantile(queue, 0.5)), "p99": ms(_quantile(queue, 0.99))},
            "latency_ms": {"p50": ms(_quantile(latency, 0.5)), "p99": ms(_quantile(latency, 0.99))},
            "run_ms": {"p50": ms(_quantile([b[3] for b in batches], 0.5)),
                       "p99": ms(_quantile([b[3] for b in batches], 0.99))},
            "totals": totals,
        }


class _Request:
    __slots__ = ("inputs", "rows", "shapes", "arrived", "deadline", "future", "loop", "state", "taken")

    def __init__(self, inputs: list[np.ndarray], arrived: float, deadline: float, future: "asyncio.Future[Any]",
                 loop: asyncio.AbstractEventLoop):
        self.inputs = inputs
        self.rows = int(inputs[0].shape[0])
        self.shapes = tuple(a.shape[1:] for a in inputs)
        self.arrived = arrived
        self.deadline = deadline
        self.future = future
        self.loop = loop
        self.state = "queued"  # -> "taken" (a worker has it), "expired" (timed out in the queue) or "cancelled"
        self.taken = 0.0


def _settle(future: "asyncio.Future[Any]", value: Any = None, error: Optional[BaseException] = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class Batcher:
    """Requests from an asyncio loop joined into batches run by one worker thread per runner (instance)."""

    def __init__(self, runners: Sequence[Runner], config: BatchConfig, *, listener: Optional[Listener] = None,
                 stats: Optional[Stats] = None, name: str = "model"):
        if not runners:
            raise DeployError("the batcher needs at least one model instance")
        self.config = config
        self.runners = list(runners)
        self.listener = listener
        self.stats = stats or Stats()
        self.name = name
        self._queue: collections.deque[_Request] = collections.deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._accepting = False
        self._stopping = False
        self._running = 0  # batches being run right now

    # -- life -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start one worker thread per instance; requests are accepted from now on."""
        with self._cond:
            if self._threads:
                return
            self._accepting, self._stopping = True, False
            for index, runner in enumerate(self.runners):
                thread = threading.Thread(target=self._work, args=(runner,), name=f"deepdive-batcher-{self.name}-{index}",
                                          daemon=True)
                self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: Optional[float] = None) -> None:
        """Refuse new requests, let the workers finish the queued and running ones, then join them."""
        with self._cond:
            self._accepting = False
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]

    async def aclose(self) -> None:
        """:meth:`stop` without blocking the event loop (the server's shutdown)."""
        await asyncio.get_running_loop().run_in_executor(None, self.stop)

    @property
    def ready(self) -> bool:
        return self._accepting and any(t.is_alive() for t in self._threads)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def snapshot(self) -> dict[str, Any]:
        """:meth:`Stats.snapshot` plus the queue's state and the settings (what a dashboard shows)."""
        snap = self.stats.snapshot()
        snap.update(queue_depth=len(self._queue), running_batches=self._running, instances=len(self.runners),
                    config=self.config.to_json())
        return snap

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained a little: its length × a batch's run time / instances."""
        per_batch = self.stats.mean_run_s() or 0.01
        rows_per_batch = self.config.max_batch_size if self.config.batching else 1
        batches = len(self._queue) / max(1, rows_per_batch) / len(self.runners)
        return max(1, math.ceil(batches * per_batch))

    # -- the front ----------------------------------------------------------------------------------------
    async def infer(self, inputs: list[np.ndarray], *, timeout_ms: Optional[float] = None) -> list[np.ndarray]:
        """Queue one request (batch-first arrays, one per model input) and wait for its own outputs.

        Raises :class:`RequestInvalid`, :class:`QueueFull`, :class:`RequestTimeout`, :class:`Unavailable`
        or :class:`RunFailed`.
        """
        started = time.monotonic()
        if not inputs:
            raise RequestInvalid("the request has no inputs")
        rows = {int(a.shape[0]) if a.ndim else -1 for a in inputs}
        if len(rows) != 1 or -1 in rows:
            sizes = ", ".join(str(int(a.shape[0])) if a.ndim else "none" for a in inputs)
            raise RequestInvalid(f"the inputs have different batch sizes ({sizes}): every input needs the same number "
                                 "of rows, first")
        count = rows.pop()
        if count < 1:
            raise RequestInvalid("the request has 0 rows: send at least one")
        if count > self.config.max_batch_size:
            raise RequestInvalid(f"the request has {count} rows; this server takes at most {self.config.max_batch_size} "
                                 "per request: split it")
        budget = self.config.timeout_ms if timeout_ms is None else min(self.config.timeout_ms, timeout_ms)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[np.ndarray]] = loop.create_future()
        request = _Request(inputs, started, started + budget / 1000.0, future, loop)
        with self._cond:
            if not self._accepting:
                self._finished("unavailable", None, started)
                raise Unavailable("the server is shutting down: try another replica or again shortly")
            if len(self._queue) >= self.config.max_queue:
                self._finished("queue_full", None, started)
                raise QueueFull(f"the queue is full ({self.config.max_queue} requests waiting): retry later",
                                self.retry_after_s())
            self._queue.append(request)
            self._depth_changed()
            self._cond.notify()
        # the deadline is a timer on the loop (cheaper than wait_for): it fails the request only if still queued
        timer = loop.call_at(loop.time() + max(0.0, request.deadline - time.monotonic()), self._expire, request, budget)
        try:
            return await future
        except asyncio.CancelledError:  # the client went away: a request not yet taken is dropped, never run
            with self._cond:
                if request.state == "queued":
                    request.state = "cancelled"
                    self._remove(request)
            raise
        finally:
            timer.cancel()

    def _expire(self, request: _Request, budget_ms: float) -> None:
        """The request's deadline passed (on the loop): fail it if it is still waiting in the queue."""
        with self._cond:
            if request.state != "queued":
                return  # taken (its answer comes) or already failed
            request.state = "expired"
            self._remove(request)
        self._finished("timeout", None, request.arrived)
        _settle(request.future, None, RequestTimeout(f"waited {budget_ms:.0f} ms in the queue without being run: the "
                                                     "server is overloaded (add instances, or raise --timeout-ms)"))

    # -- the workers ------------------------------------------------------------------------------------
    def _depth_changed(self) -> None:
        if self.listener is not None:
            self.listener.on_queue_depth(len(self._queue))

    def _remove(self, request: _Request) -> None:
        try:
            self._queue.remove(request)
        except ValueError:
            pass
        self._depth_changed()

    def _finished(self, outcome: str, queue_s: Optional[float], started: float) -> None:
        latency = time.monotonic() - started
        self.stats.request(outcome, queue_s, latency)
        if self.listener is not None:
            self.listener.on_request(outcome, queue_s, latency)

    def _expire_queued(self, now: float) -> Optional[float]:
        """Fail every queued request past its deadline; the earliest deadline left (None: empty queue)."""
        earliest, removed = None, False
        for request in list(self._queue):
            if request.deadline <= now:
                request.state, removed = "expired", True
                self._queue.remove(request)
                self._finished("timeout", None, request.arrived)
                request.loop.call_soon_threadsafe(
                    _settle, request.future, None,
                    RequestTimeout(f"waited {1000 * (request.deadline - request.arrived):.0f} ms in the queue without being run: the "
                                   "server is overloaded (add instances, or raise --timeout-ms)"))
            elif earliest is None or request.deadline < earliest:
                earliest = request.deadline
        if removed:
            self._depth_changed()
        return earliest

    def _plan(self, now: float) -> tuple[int, Optional[float]]:
        """How many queued requests to take now (0: wait), and until when to wait."""
        cfg = self.config
        if not cfg.batching:
            return 1, None
        total, take, best_preferred, grows = 0, 0, 0, True
        head = self._queue[0]
        target = max(cfg.preferred_batch_sizes) if cfg.preferred_batch_sizes else cfg.max_batch_size
        for request in self._queue:
            if request.shapes != head.shapes or total + request.rows > cfg.max_batch_size:
                grows = False
                break
            total += request.rows
            take += 1
            if total in cfg.preferred_batch_sizes:
                best_preferred = take
            if total >= target:
                return take, None
        if not grows:
            return (best_preferred or take), None
        if best_preferred:
            return best_preferred, None
        ready_at = head.arrived + cfg.max_queue_delay_us / 1e6
        if now >= ready_at:
            return take, None
        return 0, ready_at

    def _next_batch(self) -> Optional[list[_Request]]:
        """Block until a batch is due; None when stopping with an empty queue."""
        with self._cond:
            while True:
                now = time.monotonic()
                earliest_deadline = self._expire_queued(now)
                if not self._queue:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                take, ready_at = self._plan(now)
                if take or self._stopping:  # stopping: no more requests will come, run what is there
                    take = take or len(self._queue)
                    batch = []
                    for _ in range(take):
                        request = self._queue.popleft()
                        request.state, request.taken = "taken", now
                        batch.append(request)
                    self._running += 1
                    self._depth_changed()
                    if self._queue:  # more waiting: another idle instance may take them
                        self._cond.notify()
                    return batch
                wake = ready_at if ready_at is not None else now
                if earliest_deadline is not None:
                    wake = min(wake, earliest_deadline)
                self._cond.wait(max(0.0, wake - now))

    def _work(self, runner: Runner) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(runner, batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def _run(self, runner: Runner, batch: list[_Request]) -> None:
        rows = sum(r.rows for r in batch)
        count = len(batch[0].inputs)
        try:
            joined = [batch[0].inputs[i] if len(batch) == 1 else np.concatenate([r.inputs[i] for r in batch])
                      for i in range(count)]
            begun = time.monotonic()
            outputs = runner.run(joined)
            run_s = time.monotonic() - begun
            bad = [o.shape for o in outputs if o.ndim == 0 or o.shape[0] != rows]
            if bad:
                raise DeployError(f"the model returned outputs of shape {list(bad[0])} for a batch of {rows} rows: "
                                  "deploy serves models whose outputs have the batch first")
        except Exception as exc:  # noqa: BLE001 - the model's failure goes to each request in the batch
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            error = RunFailed(f"the model failed on a batch of {rows} rows: {type(exc).__name__}: {text}"[:500])
            for request in batch:
                self._finished("error", request.taken - request.arrived, request.arrived)
                request.loop.call_soon_threadsafe(_settle, request.future, None, error)
            return
        self.stats.batch(rows, len(batch), run_s)
        if self.listener is not None:
            self.listener.on_batch(rows, len(batch), run_s)
        start = 0
        for request in batch:
            end = start + request.rows
            mine = [o[start:end] for o in outputs]
            start = end
            self._finished("ok", request.taken - request.arrived, request.arrived)
            request.loop.call_soon_threadsafe(_settle, request.future, mine)


def measure(runner: Runner, examples: list[np.ndarray], batch_sizes: Sequence[int], *, repeats: int = 20,
            budget_s: float = 2.0, progress: Optional[Callable[[float, str], None]] = None) -> dict[int, dict[str, float]]:
    """Run time of ``runner`` per batch size (p50 and p99 in seconds, ``repeats`` runs or ``budget_s`` each)."""
    results: dict[int, dict[str, float]] = {}
    for index, size in enumerate(batch_sizes):
        if progress:
            progress(index / len(batch_sizes), f"measuring batch {size}")
        batch = [np.ascontiguousarray(np.resize(a, (size, *a.shape[1:]))) for a in examples]
        runner.run(batch)  # warm-up
        times: list[float] = []
        begun = time.monotonic()
        while len(times) < repeats and (len(times) < 3 or time.monotonic() - begun < budget_s):
            t0 = time.perf_counter()
            runner.run(batch)
            times.append(time.perf_counter() - t0)
        results[size] = {"p50": _quantile(times, 0.5) or 0.0, "p99": _quantile(times, 0.99) or 0.0, "runs": len(times)}
    if progress:
        progress(1.0, "measured")
    return results
