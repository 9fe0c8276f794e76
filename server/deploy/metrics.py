"""The inference server's Prometheus metrics (``GET /metrics``), in a registry of its own per server.

- ``deepdive_serve_requests_total{model,endpoint,status}``   HTTP requests by endpoint and status code;
- ``deepdive_serve_request_latency_seconds{model}``          an infer request's time in the server (histogram:
  ``histogram_quantile(0.99, rate(..._bucket[1m]))`` gives the p99);
- ``deepdive_serve_queue_seconds{model}``                    time a request waited for its batch;
- ``deepdive_serve_batch_size{model}``                       rows per batch run (histogram);
- ``deepdive_serve_batch_run_seconds{model}``                the model's run time per batch;
- ``deepdive_serve_inferences_total{model,outcome}``         requests through the batcher: ok, timeout,
  queue_full, error (the model raised), unavailable (shutting down);
- ``deepdive_serve_queue_depth{model}``                      requests waiting now.
"""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                   0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512)


class ServerMetrics:
    """The collectors of one served model; also the batcher's :class:`~deepdive.deploy.batcher.Listener`."""

    def __init__(self, model: str, registry: Optional[CollectorRegistry] = None):
        self.model = model
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("deepdive_serve_requests", "HTTP requests by endpoint and status code",
                                ["model", "endpoint", "status"], registry=r)
        self.latency = Histogram("deepdive_serve_request_latency_seconds", "infer request time in the server",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Histogram("deepdive_serve_queue_seconds", "time a request waited for its batch",
                               ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("deepdive_serve_batch_size", "rows per batch run", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_run = Histogram("deepdive_serve_batch_run_seconds", "the model's run time per batch", ["model"],
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.inferences = Counter("deepdive_serve_inferences", "requests through the batcher by outcome",
                                  ["model", "outcome"], registry=r)
        self.depth = Gauge("deepdive_serve_queue_depth", "requests waiting for a batch", ["model"], registry=r)

    def on_batch(self, rows: int, requests: int, run_s: float) -> None:
        self.batch_size.labels(self.model).observe(rows)
        self.batch_run.labels(self.model).observe(run_s)

    def on_request(self, outcome: str, queue_s: Optional[float], latency_s: float) -> None:
        self.inferences.labels(self.model, outcome).inc()
        if queue_s is not None:
            self.queue.labels(self.model).observe(queue_s)

    def on_queue_depth(self, depth: int) -> None:
        self.depth.labels(self.model).set(depth)

    def http(self, endpoint: str, status: int, latency_s: Optional[float] = None) -> None:
        """One HTTP request answered (``latency_s`` for infer requests that reached the model's queue)."""
        self.requests.labels(self.model, endpoint, str(status)).inc()
        if latency_s is not None:
            self.latency.labels(self.model).observe(latency_s)
