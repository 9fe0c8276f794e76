"""The serve process's figures for the dashboard: the batcher's snapshot as a ``serve.stats`` hub event.

``deepdive deploy serve`` calls :func:`start` once the server's URL is known and the returned function when
it stops. A thread then reads :meth:`deepdive.deploy.batcher.Batcher.snapshot` about every second and sends
it through the engine's telemetry reporter (:meth:`deepdive.engine.reporter.Reporter.from_env`, run
``serve-<model name>``), declared as :class:`deepdive.protocol.hub_events.ServeStatsEvent`: the dashboard's
Serving section draws requests/s over time, the batch-size histogram, queue delay and latency p50/p99 from it.

Why a thread and not the request path: a request never pays for telemetry, and the reporter itself never
blocks (a bounded queue that counts what it drops). Without a hub (``DEEPDIVE_HUB``) or a telemetry file
(``DEEPDIVE_METRICS_OUT``) the reporter is disabled and :func:`start` starts nothing.

An event goes out every ``interval_s`` (1 s) while requests come or wait, and every ``idle_interval_s``
(15 s) while the server is idle, so an idle server does not fill the hub's history; one more goes out when
the server stops, with its final figures.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Protocol

RUN_PREFIX = "serve-"
"""The reporter's run id is ``serve-<model name>``: the dashboard keeps these runs out of its training panels."""
EVENT_KIND = "serve.stats"
INTERVAL_S = 1.0
IDLE_INTERVAL_S = 15.0


class _Snapshots(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


class _Sink(Protocol):
    enabled: bool

    def event(self, kind: str, **fields: Any) -> None: ...


def run_id(model: str) -> str:
    """The telemetry run of a server of ``model``."""
    return f"{RUN_PREFIX}{model}"


class StatsPublisher:
    """Sends ``batcher``'s snapshot as ``serve.stats`` events to ``sink`` from a thread of its own.

    ``rate_per_s`` is the requests answered ``ok`` per second since the previous look at the batcher (from its
    totals, over ``interval_s``), the point the requests/s chart adds; the snapshot's own ``requests_per_s``
    averages the whole recent window.
    """

    def __init__(self, batcher: _Snapshots, sink: _Sink, *, model: str, form: str, url: str,
                 interval_s: float = INTERVAL_S, idle_interval_s: float = IDLE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        if interval_s <= 0 or idle_interval_s < interval_s:
            raise ValueError("interval_s must be > 0 and idle_interval_s at least interval_s")
        self.batcher = batcher
        self.sink = sink
        self.model, self.form, self.url = model, form, url
        self.interval_s = interval_s
        self.idle_interval_s = idle_interval_s
        self.clock = clock
        self.sent = 0
        self._last_t: Optional[float] = None
        self._last_totals: dict[str, int] = {}
        self._look_t: Optional[float] = None
        self._look_ok = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def publish(self, *, force: bool = False) -> Optional[dict[str, Any]]:
        """Look at the batcher; send an event if something changed since the last one, the idle interval passed,
        or ``force``.

        The rate covers the time since the previous look (about ``interval_s``), so the first event after an idle
        spell does not average the spell in. Returns the event's fields, or None when nothing was sent.
        """
        now = self.clock()
        snap = self.batcher.snapshot()
        totals = {str(k): int(v) for k, v in (snap.get("totals") or {}).items()}
        span = 0.0 if self._look_t is None else now - self._look_t
        answered = totals.get("ok", 0) - self._look_ok
        self._look_t, self._look_ok = now, totals.get("ok", 0)
        busy = totals != self._last_totals or snap.get("queue_depth") or snap.get("running_batches")
        due = self._last_t is None or now - self._last_t >= self.idle_interval_s - 1e-9
        if not (force or busy or due):
            return None
        fields = {"model": self.model, "form": self.form, "url": self.url, "interval_s": round(span, 3),
                  "rate_per_s": round(answered / span, 3) if span > 0 else 0.0, "stats": snap}
        self.sink.event(EVENT_KIND, **fields)
        self.sent += 1
        self._last_t, self._last_totals = now, totals
        return fields

    def start(self) -> None:
        """Send the first event now (the Serving section appears as the server is up), then one per interval."""
        if self._thread is not None:
            return
        self.publish(force=True)
        self._thread = threading.Thread(target=self._loop, name="deepdive-serve-stats", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.publish()

    def stop(self) -> None:
        """Stop the thread and send the final figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
            self.publish(force=True)


def start(batcher: _Snapshots, manifest: Any, url: str, form: str, *,
          interval_s: float = INTERVAL_S) -> Callable[[], None]:
    """Publish ``batcher``'s figures for the dashboard until the returned function is called.

    ``manifest`` is the served :class:`~deepdive.deploy.manifest.Manifest` (its ``name`` names the run), ``url``
    the server's base URL and ``form`` the runtime served. Without a hub or telemetry file in the environment
    nothing starts and the returned function does nothing.
    """
    from deepdive.engine.reporter import Reporter

    reporter = Reporter.from_env(run_id(manifest.name), 0)
    if not reporter.enabled:
        reporter.close()
        return lambda: None
    publisher = StatsPublisher(batcher, reporter, model=manifest.name, form=form, url=url, interval_s=interval_s)
    publisher.start()

    def stop() -> None:
        publisher.stop()
        reporter.close()

    return stop
