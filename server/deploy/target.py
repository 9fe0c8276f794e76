"""``serve --target-p99 MS [--clients N]``: the batcher's max batch size and queue delay chosen to meet a
latency target.

The run time of one batch is measured on this machine for each candidate batch size
(:func:`deepdive.deploy.batcher.measure`: p99 of repeated runs on the example rows, one instance alone).
The predicted p99 latency of a request with max batch ``B``, queue delay ``D`` and ``I`` instances is

    ``D + (k + 1) × run_p99(B) + W × c``,  ``k = ceil(W / (I × B))``

where ``W`` is how many requests can be waiting or running when it arrives: with ``--clients N`` (the
concurrency you expect: closed-loop clients or requests in flight, one row each), ``W = min(N, I × B +
max_queue)``; the request waits for the batch its instance is running (at most one run), for the ``k - 1``
full batches queued ahead of it, and runs in the k-th. Without ``--clients`` the load is assumed to stay
within what the instances serve (``k = 1``: ``D + 2 × run_p99(B)``, ``W = I × B``); beyond it the queue
grows, and at saturation that prediction is wrong (measured: 32 closed-loop clients on BERT-mini, chosen
for 50 ms, gave 128 ms): give ``--clients``.

``c`` is the server's own work per request on its one event loop (HTTP, routing, JSON decoding and
encoding; :func:`deepdive.deploy.app.request_work` measures it at start, on this machine, as the loop
thread's CPU time per request): the loop does it for one request after another, so a request waits for
the work of the ``W`` requests around it. Measured here: 0.36 ms on the digits CNN (12 ms at 32 clients,
which the model without it missed), 0.75 ms on BERT-mini. What the clients themselves cost (a load generator on the same cores)
and the network are outside the model.

The choice: without ``--clients``, among the sizes that fit the target, the smallest one that reaches
95 % of the best throughput (rows per second at p50) of those that fit (a larger batch past that point
only adds latency). With ``--clients`` the load is fixed, so the size with the lowest predicted p99 is
also the one with the highest throughput (closed loop: throughput = N / latency): that one is chosen.
The delay is what is left of the target, but at most one batch's run time: while one batch runs the next
one fills, so waiting longer seldom makes batches larger. When no size fits at ``N`` clients, the
refusal says which ``--max-queue`` (admission control: more waiting requests get 503 with Retry-After)
would keep the requests that are served within the target (planned for ``ADMISSION_SHARE`` of it, room for
the next start's measurement), or how many clients fit.
"""

from __future__ import annotations

import math
from typing import Optional

import attrs

from deepdive.deploy.errors import DeployError

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
THROUGHPUT_SHARE = 0.95
ADMISSION_SHARE = 0.75
"""The share of the target a suggested admission (``--max-batch B --max-queue Q``) is planned for. The p99 of
a few dozen batch runs on shared cores moves by a third between two starts (measured: BERT-mini's batch of 4,
4.4 then 5.8 ms a minute apart): a suggestion planned for the whole target was refused by the very server
started with it. At 75 % it still fits when the runs and the server's own work measure a third slower."""


@attrs.define(frozen=True)
class TargetChoice:
    max_batch_size: int
    max_queue_delay_us: int
    predicted_p99_ms: float
    reason: str


def predicted_ms(run_p99_s: float, delay_us: int, runs: int = 2, waiting: int = 0, request_ms: float = 0.0) -> float:
    """The model above: ``delay + runs × run_p99(max batch) + waiting × c``, in milliseconds (``runs = k + 1``,
    ``waiting = W``, ``request_ms = c``)."""
    return delay_us / 1000.0 + runs * 1000.0 * run_p99_s + waiting * request_ms


def runs_waited(batch: int, clients: Optional[int], instances: int = 1, max_queue: Optional[int] = None) -> int:
    """``k + 1`` of the model: the batch runs a request waits through, its own included."""
    if clients is None:
        return 2
    return math.ceil(waiting_requests(batch, clients, instances, max_queue) / (instances * batch)) + 1


def waiting_requests(batch: int, clients: Optional[int], instances: int = 1, max_queue: Optional[int] = None) -> int:
    """``W`` of the model: the requests waiting or running that a request's own waits through (at least 1)."""
    per_round = instances * batch
    if clients is None:
        return per_round
    return max(1, min(clients, per_round + max_queue) if max_queue is not None else clients)


def _load(clients: Optional[int], instances: int) -> str:
    if clients is None:
        return "load within what the instances serve (no --clients)"
    return f"{clients} concurrent requests on {instances} instance{'s' if instances > 1 else ''}"


def candidates(max_batch: Optional[int]) -> list[int]:
    """The batch sizes to measure: powers of two up to 128, or just the one given with ``--max-batch``."""
    return [max_batch] if max_batch is not None else list(CANDIDATES)


def choose(times: dict[int, dict[str, float]], target_ms: float, *, max_batch: Optional[int] = None,
           delay_us: Optional[int] = None, clients: Optional[int] = None, instances: int = 1,
           max_queue: Optional[int] = None, request_ms: float = 0.0) -> TargetChoice:
    """Max batch size and queue delay meeting ``target_ms`` by the model above, or one :class:`DeployError` line.

    ``times`` is ``{batch size: {"p50": s, "p99": s}}``; ``max_batch``/``delay_us`` are the user's explicit
    settings, which are checked (refused when they break the target) rather than chosen; ``clients``,
    ``instances`` and ``max_queue`` describe the load and the queue; ``request_ms`` is ``c``, the server's
    own work per request (see the module's docstring).
    """
    if target_ms <= 0:
        raise DeployError(f"--target-p99 {target_ms:g} must be more than 0 ms")
    if clients is not None and clients < 1:
        raise DeployError(f"--clients {clients} must be at least 1 (the concurrent requests you expect)")

    def runs(b: int) -> int:
        return runs_waited(b, clients, instances, max_queue)

    def waiting(b: int) -> int:
        return waiting_requests(b, clients, instances, max_queue)

    def predict(b: int, delay: int) -> float:
        return predicted_ms(times[b]["p99"], delay, runs(b), waiting(b), request_ms)

    def formula(b: int, delay: int) -> str:
        text = f"{delay} µs delay + {runs(b)} × {1000 * times[b]['p99']:.2f} ms per batch of {b}"
        if request_ms > 0:
            text += f" + {waiting(b)} × {request_ms:.2f} ms of the server's own work per request"
        return text

    load = _load(clients, instances)
    if max_batch is not None:
        if max_batch not in times:
            raise DeployError(f"batch {max_batch} was not measured")
        run = times[max_batch]["p99"]
        delay = delay_us if delay_us is not None else _delay(run, target_ms - waiting(max_batch) * request_ms,
                                                             runs(max_batch))
        predicted = predict(max_batch, delay)
        if predicted > target_ms:
            given = f"--max-batch {max_batch}" + (f" with --max-queue-delay-us {delay_us}" if delay_us is not None else "")
            raise DeployError(f"{given} predicts p99 {predicted:.2f} ms ({formula(max_batch, delay)}, measured here; "
                              f"{load}) > --target-p99 {target_ms:g}: lower them, or drop them and let --target-p99 "
                              "choose" + _admission(times, target_ms, delay_us, clients, instances, [max_batch],
                                                                       request_ms))
        return TargetChoice(max_batch, delay, predicted,
                            f"--max-batch {max_batch} as given: a batch of {max_batch} runs in {1000 * run:.2f} ms (p99 "
                            f"measured here); predicted p99 {predicted:.2f} ms = {formula(max_batch, delay)} at {load}")
    fixed = delay_us or 0
    fits = sorted(b for b in times if predict(b, fixed) <= target_ms)
    if not fits:
        best = min(times, key=lambda b: (predict(b, fixed), b))
        best_ms = predict(best, fixed)
        raise DeployError(f"no batch size meets --target-p99 {target_ms:g} ms at {load}: the best, a batch of {best}, "
                          f"predicts {best_ms:.2f} ms ({formula(best, fixed)}, measured here)"
                          + (_admission(times, target_ms, delay_us, clients, instances, list(times), request_ms)
                             if clients else
                             ": raise the target, or serve a faster form (deepdive deploy bench)"))
    rate = {b: b / max(times[b]["p50"], 1e-9) for b in fits}
    if clients is None:
        top = max(rate.values())
        size = min(b for b in fits if rate[b] >= THROUGHPUT_SHARE * top)
        larger = [b for b in fits if b > size]
        why = (f"larger batches that fit add latency for under {100 * (1 - THROUGHPUT_SHARE):.0f} % more throughput"
               if larger else "the largest batch measured whose prediction fits")
    else:
        size = min(fits, key=lambda b: (predict(b, fixed), b))
        why = f"the lowest predicted p99 at {clients} concurrent requests (and so the highest throughput)"
    run = times[size]["p99"]
    delay = delay_us if delay_us is not None else _delay(run, target_ms - waiting(size) * request_ms, runs(size))
    predicted = predict(size, delay)
    return TargetChoice(size, delay, predicted,
                        f"max batch {size}: a batch of {size} runs in {1000 * run:.2f} ms (p99 measured here, "
                        f"{rate[size]:.0f} rows/s); {why}; queue delay {delay} µs; predicted p99 {predicted:.2f} ms "
                        f"= {formula(size, delay)} at {load} <= target {target_ms:g} ms")


def _admission(times: dict[int, dict[str, float]], target_ms: float, delay_us: Optional[int], clients: Optional[int],
               instances: int, sizes: list[int], request_ms: float = 0.0) -> str:
    """What would meet the target at ``clients``: a ``--max-queue`` bound (admission control), else fewer clients."""
    if clients is None:
        return ""
    fixed = delay_us or 0
    options = []
    for b in sizes:
        per_round = instances * b
        run = 1000.0 * times[b]["p99"]
        room = ADMISSION_SHARE * target_ms - fixed / 1000.0
        # k full rounds of requests (W = k × I × B) wait through k + 1 runs and W × c of the server's own work:
        # delay + (k + 1) × run + k × I × B × c <= target
        rounds = int((room - run) // (run + per_round * request_ms))
        if rounds >= 1:
            options.append((rounds * per_round, b))  # at most this many requests waiting or running
    if not options:
        return (": even one batch alone breaks it (with room for the next measurement); raise the target, or serve "
                "a faster form (deepdive deploy bench)")
    served, b = max(options)
    queue = served - instances * b
    planned = f"planned for {100 * ADMISSION_SHARE:.0f} % of the target, room for the next start's measurement"
    if queue >= 1:
        return (f"; to keep the requests that are served within it, bound the queue: --max-batch {b} --max-queue "
                f"{queue} (more waiting requests get 503 with Retry-After; {planned}), or expect at most {served} "
                "concurrent requests, add instances, or serve a faster form")
    return (f"; at most {served} concurrent requests fit (--max-batch {b}; {planned}): expect fewer, add instances, "
            "or serve a faster form")


def _delay(run_p99_s: float, target_ms: float, runs: int = 2) -> int:
    """What the target leaves after the runs waited through, at most one run's time (µs)."""
    left_us = target_ms * 1000.0 - runs * 1e6 * run_p99_s
    return max(0, int(min(left_us, 1e6 * run_p99_s)))
