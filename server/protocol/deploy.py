"""Deployment on the wire: what a running ``deepdive deploy serve`` tells the dashboard.

The serve process publishes its batcher's figures every second as a ``serve.stats`` hub event (run
``serve-<model name>``; :mod:`deepdive.deploy.reporting` sends it, :class:`~deepdive.protocol.hub_events.ServeStatsEvent`
declares it) and the dashboard's Serving section draws them: requests/s over time, the batch-size histogram,
queue delay and latency p50/p99. :class:`ServeStats` is :meth:`deepdive.deploy.batcher.Batcher.snapshot`'s dict,
typed. The job kinds that run export, bench and serve take the options in :mod:`.job_options`
(``DeployExportOptions``, ``DeployBenchOptions``, ``DeployServeOptions``). Keys are the attribute names (hub
convention).
"""

from __future__ import annotations

from typing import Optional

import attrs

from deepdive.protocol.base import keys_as_named


@keys_as_named
@attrs.define(kw_only=True)
class ServeQuantiles:
    """Milliseconds at the 50th and 99th percentile of the recent window; null: nothing measured in it."""

    p50: Optional[float]
    p99: Optional[float]


@keys_as_named
@attrs.define(kw_only=True)
class ServeBatching:
    """The batcher's settings (``deepdive.deploy.batcher.BatchConfig``)."""

    batching: bool
    """False: every request runs alone."""
    max_batch_size: int
    preferred_batch_sizes: list[int]
    max_queue_delay_us: int
    timeout_ms: float
    max_queue: int


@keys_as_named
@attrs.define(kw_only=True)
class ServeStats:
    """The batcher's recent window (``window_s``) and its state now."""

    window_s: float
    requests: int
    """Requests that ended in the window, whatever their outcome."""
    requests_per_s: float
    """Requests answered ``ok`` per second over the window (the part of it since the first request)."""
    outcomes: dict[str, int]
    """In the window, by outcome: ok, error, timeout, queue_full, unavailable."""
    batches: int
    batch_size_histogram: dict[str, int]
    """Batches run in the window by their rows (keys are the row counts as strings)."""
    mean_batch_size: Optional[float]
    queue_delay_ms: ServeQuantiles
    """Time from arrival until a model instance took the request (answered requests)."""
    latency_ms: ServeQuantiles
    """Time from arrival until the answer (answered requests)."""
    run_ms: ServeQuantiles
    """The model's run time per batch."""
    totals: dict[str, int]
    """Since the server started, by outcome."""
    queue_depth: int
    running_batches: int
    instances: int
    config: ServeBatching
