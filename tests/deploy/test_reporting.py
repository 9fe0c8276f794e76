"""The Serving section's data: a real batcher's figures sent as ``serve.stats`` events the protocol declares."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from deepdive.deploy import manifest as manifest_mod
from deepdive.deploy import reporting
from deepdive.deploy.batcher import Batcher, BatchConfig
from deepdive.deploy.runners import open_runner
from deepdive.engine.reporter import Reporter
from deepdive.protocol import ServeStatsEvent, from_wire
from tests.deploy._serving import run


def events_in(path: Path) -> list[ServeStatsEvent]:
    """The telemetry file's ``serve.stats`` events, each read as the protocol's class (a wrong field fails)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [from_wire({k: v for k, v in line.items() if k != "type"}, ServeStatsEvent, what="event")
            for line in lines if line.get("type") == "event" and line.get("kind") == "serve.stats"]


def test_a_serving_batcher_is_published_every_interval_with_its_histogram_rate_and_latency(
        digits_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "metrics.jsonl"
    monkeypatch.delenv("DEEPDIVE_HUB", raising=False)
    monkeypatch.setenv("DEEPDIVE_METRICS_OUT", str(out))  # the reporter's file sink: what the hub would get
    m = manifest_mod.read(digits_export)
    examples = m.example_rows(digits_export)["input__0"]
    batcher = Batcher([open_runner(digits_export, m, "eager")],
                      BatchConfig(max_batch_size=8, max_queue_delay_us=5000, timeout_ms=20000), name=m.name)

    async def load() -> int:
        batcher.start()
        answered = 0
        try:
            for wave in range(6):  # waves of 12 concurrent one-row requests, spread over ~0.6 s
                answers = await asyncio.gather(*(batcher.infer([examples[i:i + 1]]) for i in range(12)))
                answered += len(answers)
                await asyncio.sleep(0.1)
        finally:
            await batcher.aclose()
        return answered

    stop = reporting.start(batcher, m, "http://127.0.0.1:8123", "eager", interval_s=0.1)
    answered = run(load())
    stop()

    events = events_in(out)
    assert len(events) >= 3, "the first event at start, some while serving, the last at stop"
    assert {e.run for e in events} == {f"serve-{m.name}"} and {e.kind for e in events} == {"serve.stats"}
    assert {(e.model, e.form, e.url) for e in events} == {(m.name, "eager", "http://127.0.0.1:8123")}
    first, last = events[0], events[-1]
    assert first.interval_s == 0.0 and first.rate_per_s == 0.0
    assert last.stats.totals["ok"] == answered == 72
    assert any(e.rate_per_s > 0 for e in events[1:]), "requests/s points while requests came"
    histogram = {int(k): n for k, n in last.stats.batch_size_histogram.items()}
    assert sum(size * n for size, n in histogram.items()) == 72, "every answered row is in one batch of the histogram"
    assert max(histogram) > 1 and max(histogram) <= 8, "concurrent requests were joined, within the max batch"
    assert last.stats.latency_ms.p50 is not None and last.stats.latency_ms.p99 >= last.stats.latency_ms.p50
    assert last.stats.queue_delay_ms.p99 is not None and last.stats.queue_delay_ms.p99 <= last.stats.latency_ms.p99
    assert last.stats.config.max_batch_size == 8 and last.stats.config.batching
    assert [e.t for e in events] == sorted(e.t for e in events)


def test_an_idle_server_sends_only_every_idle_interval(digits_export: Path, tmp_path: Path) -> None:
    m = manifest_mod.read(digits_export)
    batcher = Batcher([open_runner(digits_export, m, "eager")], BatchConfig(), name=m.name)
    out = tmp_path / "idle.jsonl"
    reporter = Reporter("serve-idle", 0, metrics_out=str(out))
    now = [100.0]
    publisher = reporting.StatsPublisher(batcher, reporter, model=m.name, form="eager", url="http://x",
                                         interval_s=1.0, idle_interval_s=15.0, clock=lambda: now[0])
    assert publisher.publish() is not None, "the first is always sent"
    now[0] += 1.0
    assert publisher.publish() is None, "nothing changed: not sent"
    now[0] += 14.0
    sent = publisher.publish()
    assert sent is not None and sent["interval_s"] == 14.0 and sent["rate_per_s"] == 0.0, "15 s after the last event"

    async def one() -> None:
        batcher.start()
        try:
            await batcher.infer([np.zeros((2, 1, 8, 8), dtype=np.float32)])
        finally:
            await batcher.aclose()

    run(one())
    now[0] += 2.0
    busy = publisher.publish()
    assert busy is not None and busy["rate_per_s"] == 0.5 and busy["stats"]["totals"] == {"ok": 1}
    reporter.close()
    assert len(events_in(out)) == 3


def test_without_a_hub_or_telemetry_file_nothing_starts(digits_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.delenv("DEEPDIVE_HUB", raising=False)
    monkeypatch.delenv("DEEPDIVE_METRICS_OUT", raising=False)
    m = manifest_mod.read(digits_export)
    batcher = Batcher([open_runner(digits_export, m, "eager")], BatchConfig(), name=m.name)
    before = {t.name for t in threading.enumerate()}
    stop = reporting.start(batcher, m, "http://127.0.0.1:1", "eager")
    assert "deepdive-serve-stats" not in {t.name for t in threading.enumerate()} - before
    stop()
