"""``serve --target-p99 MS``: the batcher's max batch size and queue delay chosen to meet a latency target.

The run time of one batch is measured on this machine for each candidate batch size
(:func:`deepdive.deploy.batcher.measure`: p99 of repeated runs on the example rows, one instance alone).
The predicted p99 latency of a request with max batch ``B`` and queue delay ``D`` is

    ``D + 2 × run_p99(B)``

a request that arrives just after its instance started a batch waits for that batch to finish (at most
one run of ``B`` rows), waits at most ``D`` for its own batch to form, then runs in it. The model holds
while the offered load is within what the instances serve (beyond it the queue grows and
``--max-queue``/``--timeout-ms`` answer instead); network and JSON time are outside it.

The choice: among the sizes whose ``2 × run_p99`` fits the target, the smallest one that reaches 95 % of
the best throughput (rows per second at p50) of those that fit: a larger batch past that point only
adds latency. The delay is what is left of the target, but at most one batch's run time: while one
batch runs the next one fills, so waiting longer seldom makes batches larger.
"""

from __future__ import annotations

from typing import Optional

import attrs

from deepdive.deploy.errors import DeployError

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128)
THROUGHPUT_SHARE = 0.95


@attrs.define(frozen=True)
class TargetChoice:
    max_batch_size: int
    max_queue_delay_us: int
    predicted_p99_ms: float
    reason: str


def predicted_ms(run_p99_s: float, delay_us: int) -> float:
    """The model above: ``delay + 2 × run_p99(max batch)``, in milliseconds."""
    return delay_us / 1000.0 + 2000.0 * run_p99_s


def candidates(max_batch: Optional[int]) -> list[int]:
    """The batch sizes to measure: powers of two up to 128, or just the one given with ``--max-batch``."""
    return [max_batch] if max_batch is not None else list(CANDIDATES)


def choose(times: dict[int, dict[str, float]], target_ms: float, *, max_batch: Optional[int] = None,
           delay_us: Optional[int] = None) -> TargetChoice:
    """Max batch size and queue delay meeting ``target_ms`` by the model above, or one :class:`DeployError` line.

    ``times`` is ``{batch size: {"p50": s, "p99": s}}``; ``max_batch``/``delay_us`` are the user's explicit
    settings, which are checked (refused when they break the target) rather than chosen.
    """
    if target_ms <= 0:
        raise DeployError(f"--target-p99 {target_ms:g} must be more than 0 ms")
    if max_batch is not None:
        if max_batch not in times:
            raise DeployError(f"batch {max_batch} was not measured")
        run = times[max_batch]["p99"]
        delay = delay_us if delay_us is not None else _delay(run, target_ms)
        predicted = predicted_ms(run, delay)
        if predicted > target_ms:
            given = f"--max-batch {max_batch}" + (f" with --max-queue-delay-us {delay_us}" if delay_us is not None else "")
            raise DeployError(f"{given} predicts p99 {predicted:.2f} ms ({delay} µs delay + 2 × {1000 * run:.2f} ms per "
                              f"batch of {max_batch}, measured here) > --target-p99 {target_ms:g}: lower them, or drop "
                              "them and let --target-p99 choose")
        return TargetChoice(max_batch, delay, predicted,
                            f"--max-batch {max_batch} as given: a batch of {max_batch} runs in {1000 * run:.2f} ms (p99 "
                            f"measured here); predicted p99 {predicted:.2f} ms = {delay} µs delay + 2 × that")
    fixed = delay_us or 0
    fits = sorted(b for b, t in times.items() if predicted_ms(t["p99"], fixed) <= target_ms)
    if not fits:
        smallest = min(times)
        run = times[smallest]["p99"]
        extra = f" + {fixed} µs delay" if fixed else ""
        raise DeployError(f"no batch size meets --target-p99 {target_ms:g} ms: a batch of {smallest} already takes "
                          f"{1000 * run:.2f} ms (p99 measured here) and the prediction is 2 × that{extra} = "
                          f"{predicted_ms(run, fixed):.2f} ms: raise the target, or serve a faster form "
                          "(deepdive deploy bench)")
    rate = {b: b / max(times[b]["p50"], 1e-9) for b in fits}
    best = max(rate.values())
    size = min(b for b in fits if rate[b] >= THROUGHPUT_SHARE * best)
    run = times[size]["p99"]
    delay = delay_us if delay_us is not None else _delay(run, target_ms)
    predicted = predicted_ms(run, delay)
    larger = [b for b in fits if b > size]
    why = (f"larger batches that fit add latency for under {100 * (1 - THROUGHPUT_SHARE):.0f} % more throughput"
           if larger else "the largest batch measured whose prediction fits")
    return TargetChoice(size, delay, predicted,
                        f"max batch {size}: a batch of {size} runs in {1000 * run:.2f} ms (p99 measured here, "
                        f"{rate[size]:.0f} rows/s); {why}; queue delay {delay} µs; predicted p99 {predicted:.2f} ms "
                        f"= delay + 2 × run time <= target {target_ms:g} ms")


def _delay(run_p99_s: float, target_ms: float) -> int:
    """What the target leaves after two runs, at most one run's time (µs)."""
    left_us = target_ms * 1000.0 - 2e6 * run_p99_s
    return max(0, int(min(left_us, 1e6 * run_p99_s)))
