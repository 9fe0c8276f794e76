"""The hub's websocket messages are the protocol's (deepdive.protocol.hub), in both directions.

A real hub with a real engine reporter, a real machine sampler (NVML through the pynvml test double:
this machine has no GPU), a real verdict and a real metrics store: everything it takes and sends is
read back with the protocol's classes, strictly (an unknown key fails), the way the dashboard's
generated TypeScript types describe them.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from deepdive.engine.reporter import Reporter
from deepdive.protocol import (
    HUB_SCHEMA_VERSION, HubError, HubReply, IngestBatch, MachineMessage, StreamSamples, StreamSnapshot, VerdictMessage,
    from_wire,
)
from deepdive.telemetry.hub import Hub
from deepdive.telemetry.samplers import MachineSampler
from deepdive.telemetry.store import MetricsStore
from deepdive.telemetry.verdict import verdict
from tests.telemetry.test_hub import next_of_type, recv_json, ws
from tests.telemetry.test_samplers import H100, FakeNvml

pytestmark = pytest.mark.timeout(60)


def _store(tmp_path: Path) -> MetricsStore:
    store = MetricsStore(tmp_path / "metrics.db")
    store.start_run("old", name="digits", started=100.0)
    store.add_samples("old", 0, [{"t": 100.0 + i, "step": i, "loss": 2.0 / (i + 1)} for i in range(5)])
    store.end_run("old", "succeeded", ended=110.0)
    return store


async def test_what_a_real_hub_takes_and_sends_is_the_protocols(tmp_path: Path):
    store = _store(tmp_path)

    def history(query: dict) -> dict:
        if query["what"] == "runs":
            return {"runs": store.runs()}
        return {"run": query["run"], "rows": store.query(query["run"], fields=query.get("fields")), "total_rows": 5}

    batches: list[dict] = []
    hub = Hub(history=history, on_batch=lambda message, _size: batches.append(json.loads(json.dumps(message))))
    await hub.start()
    try:
        async with ws(hub.stream_url) as live:
            from_wire(await recv_json(live), StreamSnapshot, what="message")
            reporter = Reporter("run-p", 0, hub_url=hub.ingest_url, interval=0.02)
            reporter.record({"step": 0, "loss": 1.0})
            reporter.event("note", message="hello")
            await asyncio.to_thread(reporter.close, 5.0)  # the hub runs in this loop: never block it
            relayed = from_wire(await next_of_type(live, "samples"), StreamSamples, what="message")
            assert relayed.run == "run-p" and relayed.samples[0]["loss"] == 1.0

            sampler = MachineSampler(nvml=FakeNvml([dict(H100)]))
            sampler.sample()
            hub.publish(sampler.sample())  # the second reading has its rates
            machine = from_wire(await next_of_type(live, "machine"), MachineMessage, what="message")
            assert machine.gpus and machine.gpus[0].name and machine.host.mem_total_mib

            window = [{"t": time.time() + i, "step": i, "step_time_s": 0.1, "data_wait_s": 0.3} for i in range(30)]
            hub.publish({"type": "verdict", "run": "run-p", **verdict(window, [])})  # as the daemon publishes it
            assert from_wire(await next_of_type(live, "verdict"), VerdictMessage, what="message").kind == "input-bound"

            await live.send(json.dumps({"type": "query", "id": 1, "what": "runs"}))
            runs = from_wire(await next_of_type(live, "reply"), HubReply, what="message")
            assert [(r.run, r.outcome) for r in runs.runs] == [("old", "succeeded")]
            await live.send(json.dumps({"type": "query", "id": 2, "what": "run", "run": "old", "fields": ["loss"]}))
            rows = from_wire(await next_of_type(live, "reply"), HubReply, what="message")
            assert rows.id == 2 and len(rows.rows) == 5 and rows.total_rows == 5
            await live.send("not json")
            refused = await next_of_type(live, "reply")
            assert from_wire(refused, HubReply, what="message").ok is False and set(refused) == {"type", "id", "ok", "error"}
        async with ws(hub.ingest_url) as producer:
            await producer.send("not json")
            assert "not JSON" in from_wire(await recv_json(producer), HubError, what="message").message
    finally:
        await hub.stop()
    sent = [from_wire(b, IngestBatch, what="message") for b in batches]
    assert sent and all(b.v == HUB_SCHEMA_VERSION for b in sent)


async def test_a_history_answer_the_protocol_does_not_know_is_the_daemons_bug_not_the_users(tmp_path: Path, caplog):
    """The reply is built from the protocol's class: a history function that drifts from it is logged, and
    the page gets a one-line reason instead of keys its types do not declare."""
    hub = Hub(history=lambda query: {"runs": [], "colour": "red"})
    await hub.start()
    try:
        async with ws(hub.stream_url) as live:
            await recv_json(live)
            await live.send(json.dumps({"type": "query", "id": 7, "what": "runs"}))
            reply = await next_of_type(live, "reply")
    finally:
        await hub.stop()
    assert reply == {"type": "reply", "id": 7, "ok": False, "error": "the query failed; see the daemon log"}
    assert "colour" in caplog.text
