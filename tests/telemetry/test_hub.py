"""The telemetry hub against real websockets clients and the engine's real reporter, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from deepdive.engine.reporter import Reporter
from deepdive.netutil import is_loopback
from deepdive.telemetry.hub import Hub

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0  # seconds any single expected message may take


def ws(url: str, **options):
    options.setdefault("max_size", None)
    return connect(url, proxy=None, open_timeout=WAIT, close_timeout=1, compression=None, **options)


async def recv_json(client) -> dict:
    return json.loads(await asyncio.wait_for(client.recv(), WAIT))


def batch(run: str, seq: int, samples: list[dict], *, rank: int = 0, events: list[dict] = (), **extra) -> str:
    return json.dumps({"type": "samples", "v": 1, "run": run, "rank": rank, "seq": seq, "dropped": 0,
                       "dropped_events": 0, "events": list(events), "samples": samples, **extra})


async def until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def next_of_type(client, kind: str) -> dict:
    while True:
        message = await recv_json(client)
        if message["type"] == kind:
            return message


def http_get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=WAIT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
async def hub():
    server = Hub()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_connection_without_the_right_token_is_refused(hub: Hub):
    for path in ("/ingest", "/stream"):
        with pytest.raises(InvalidStatus) as missing:
            async with ws(hub.url + path):
                pass
        assert missing.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as wrong:
            async with ws(hub.url + path + "?token=" + "x" * len(hub.token)):
                pass
        assert wrong.value.response.status_code == 403
        assert b"token" in wrong.value.response.body
    assert hub.stats()["refused_connections"] == 4
    assert hub.stats()["connections_total"] == 0
    async with ws(hub.stream_url) as client:  # the right token works
        assert (await recv_json(client))["type"] == "snapshot"


async def test_listens_on_loopback_only_and_refuses_remote_binds(hub: Hub):
    assert hub.addresses and all(is_loopback(address) for address in hub.addresses)
    assert hub.url == f"ws://127.0.0.1:{hub.port}" and hub.port > 0
    assert hub.ingest_url == f"ws://127.0.0.1:{hub.port}/ingest?token={hub.token}"
    assert len(hub.token) >= 32 and Hub().token != hub.token
    with pytest.raises(ValueError, match="allow_remote=True"):
        Hub("0.0.0.0")
    assert Hub("0.0.0.0", allow_remote=True).host == "0.0.0.0"


async def test_oversized_message_closes_that_connection_only():
    hub = Hub(max_message_bytes=4096)
    await hub.start()
    try:
        async with ws(hub.stream_url) as subscriber:
            await recv_json(subscriber)  # snapshot
            async with ws(hub.ingest_url) as big:
                await big.send(batch("r", 0, [{"pad": "x" * 8000}]))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(big.recv(), WAIT)
                assert closed.value.rcvd.code == 1009
            async with ws(hub.ingest_url) as small:
                await small.send(batch("r", 0, [{"loss": 1.0, "t": 1.0}]))
                message = await next_of_type(subscriber, "samples")
            assert message["samples"] == [{"loss": 1.0, "t": 1.0}]
        await until(lambda: hub.stats()["oversized_messages"] == 1, "the oversized message to be counted")
    finally:
        await hub.stop()


async def test_malformed_messages_get_an_error_and_the_connection_stays(hub: Hub):
    async with ws(hub.stream_url) as subscriber, ws(hub.ingest_url) as producer:
        await recv_json(subscriber)
        for bad, words in (("{not json", "not JSON"), ("[1, 2]", "JSON object"),
                           (json.dumps({"type": "nope"}), "unknown message type"),
                           (batch("r", 0, [{"loss": 1}], v=2), "schema version"),
                           (batch("r", 0, [1, 2]), "every sample")):
            await producer.send(bad)
            reply = await recv_json(producer)
            assert reply["type"] == "error" and words in reply["message"], reply
        await producer.send(batch("r", 0, [{"loss": 0.5, "t": 2.0}]))
        message = await next_of_type(subscriber, "samples")
        assert message["samples"] == [{"loss": 0.5, "t": 2.0}]
    stats = hub.stats()
    assert stats["malformed_messages"] == 5 and stats["ingested_messages"] == 1


async def test_reporter_delivers_samples_and_events_live_and_in_the_snapshot(hub: Hub):
    async with ws(hub.stream_url) as live:
        assert (await recv_json(live))["messages"] == []
        reporter = Reporter("run-1", 0, hub_url=hub.ingest_url, interval=0.02)
        for step in range(5):
            reporter.record({"step": step, "loss": 1.0 / (step + 1), "nan_loss": float("nan")})
        reporter.event("setup", message="precision bf16")
        await asyncio.to_thread(reporter.close, 5.0)  # the hub runs in this loop: never block it
        samples, events = [], []
        while len(samples) < 5 or not events:
            message = await next_of_type(live, "samples")
            assert message["run"] == "run-1" and message["rank"] == 0 and message["dropped"] == 0
            samples += message["samples"]
            events += message["events"]
    assert [s["step"] for s in samples] == list(range(5))
    assert all(isinstance(s["t"], float) and s["nan_loss"] == "NaN" for s in samples)
    assert events[0]["kind"] == "setup" and events[0]["message"] == "precision bf16"

    async with ws(hub.stream_url) as late:
        snapshot = await recv_json(late)
    assert snapshot["type"] == "snapshot"
    late_samples = [s for m in snapshot["messages"] for s in m["samples"]]
    assert late_samples == samples
    assert [e["kind"] for m in snapshot["messages"] for e in m["events"]] == ["setup"]
    assert hub.stats()["ingested_samples"] == 5 and hub.stats()["ingested_events"] == 1


async def test_duplicate_seq_is_ignored_and_gaps_are_counted(hub: Hub):
    async with ws(hub.stream_url) as subscriber, ws(hub.ingest_url) as producer:
        await recv_json(subscriber)
        for seq in (0, 1, 1, 4):
            await producer.send(batch("r", seq, [{"seq_sample": seq}]))
        await producer.send(batch("r", 4, [{"seq_sample": 4}], rank=1))  # another rank: its own seq
        got = [(m["rank"], m["samples"][0]["seq_sample"]) for m in
               [await next_of_type(subscriber, "samples") for _ in range(4)]]
    assert got == [(0, 0), (0, 1), (0, 4), (1, 4)]
    stats = hub.stats()
    assert (stats["ingested_messages"], stats["duplicate_messages"], stats["seq_gaps"]) == (4, 1, 2)


async def test_subscriber_that_stops_reading_slows_nobody_and_its_drops_are_counted():
    hub = Hub(subscriber_queue=1000)
    await hub.start()
    pad = "x" * 200
    messages_per_round, per_message = 100, 500  # 50k samples, about 12 MB per round

    async def push(producer, first_seq: int) -> float:
        start = time.perf_counter()
        target = hub.stats()["ingested_samples"] + messages_per_round * per_message
        for seq in range(first_seq, first_seq + messages_per_round):
            await producer.send(batch("r", seq, [{"step": seq, "i": i, "pad": pad} for i in range(per_message)]))
        await until(lambda: hub.stats()["ingested_samples"] >= target, "the hub to ingest a round")
        return time.perf_counter() - start

    try:
        async with ws(hub.ingest_url) as producer:
            await push(producer, 0)  # warm-up
            alone = await push(producer, 1000)
            async with ws(hub.stream_url, max_queue=1) as stalled, ws(hub.stream_url) as reader:
                reading = asyncio.ensure_future(_read_until_step(reader, 2000 + messages_per_round - 1))
                with_stalled = await push(producer, 2000)
                await asyncio.wait_for(reading, WAIT)  # a reading subscriber still gets the newest
                detail = sorted(hub.stats()["subscriber_detail"], key=lambda d: d["id"])
                assert len(detail) == 2
                stalled_id = detail[0]["id"]  # connected first
                stalled_dropped = detail[0]["dropped"]
                assert stalled_dropped > 0
                # It resumes reading: the drops it was told about add up to the hub's count.
                told = 0
                while True:
                    message = await recv_json(stalled)
                    told += message["dropped"]
                    if message["type"] == "samples" and message["seq"] == 2000 + messages_per_round - 1:
                        break
                detail = hub.stats()["subscriber_detail"]
                final = next(d["dropped"] for d in detail if d["id"] == stalled_id)
                assert told == final >= stalled_dropped
                assert hub.stats()["dropped_total"] == sum(d["dropped"] for d in detail)
        assert with_stalled < 3 * alone + 1.0, (alone, with_stalled)
    finally:
        await hub.stop()


async def _read_until_step(client, last_seq: int) -> None:
    while True:
        message = await recv_json(client)
        if message["type"] == "samples" and message["seq"] == last_seq:
            return


async def test_run_and_kind_filters(hub: Hub):
    async with ws(hub.stream_url + "&run=a") as only_a, \
            ws(hub.stream_url + "&run=a,b&kinds=events") as events_ab, \
            ws(hub.stream_url + "&kinds=machine") as machine, \
            ws(hub.ingest_url) as producer:
        for client in (only_a, events_ab, machine):
            await recv_json(client)
        event = {"kind": "setup", "t": 1.0}
        await producer.send(batch("c", 0, [{"loss": 3}], events=[event]))
        await producer.send(batch("b", 0, [{"loss": 2}], events=[event]))
        await producer.send(batch("a", 0, [{"loss": 1}]))
        await producer.send(batch("a", 1, [], events=[event]))
        await until(lambda: hub.stats()["ingested_messages"] == 4, "ingest")
        hub.publish({"gpu_util": 0.5})
        hub.publish({"type": "job", "run": "c", "state": "running"})

        first = await recv_json(only_a)
        assert first["run"] == "a" and [s["loss"] for s in first["samples"]] == [1]
        assert isinstance(first["samples"][0]["t"], float)  # the hub's receive time where the producer gave none
        second = await recv_json(only_a)
        assert (second["run"], second["events"]) == ("a", [event])
        third = await recv_json(only_a)  # machine-wide messages pass a run filter
        assert third["type"] == "machine" and third["gpu_util"] == 0.5 and isinstance(third["t"], float)

        got = [await recv_json(events_ab) for _ in range(2)]
        assert [(m["run"], m["samples"], m["events"]) for m in got] == [("b", [], [event]), ("a", [], [event])]

        published = [await recv_json(machine) for _ in range(2)]
        assert [m["type"] for m in published] == ["machine", "job"]
    with pytest.raises(ValueError, match="reserves"):
        hub.publish({"type": "samples"})


async def test_dashboard_page_requires_the_token(tmp_path):
    (tmp_path / "index.html").write_text("<html>dashboard</html>")
    (tmp_path / "app.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("secret")
    hub = Hub(static_dir=tmp_path)
    await hub.start()
    base = "http" + hub.url[2:]
    try:
        status, _, _ = await asyncio.to_thread(http_get, base + "/")
        assert status == 401
        status, _, _ = await asyncio.to_thread(http_get, base + "/?token=wrong")
        assert status == 403
        status, headers, body = await asyncio.to_thread(http_get, hub.dashboard_url)
        assert (status, body) == (200, b"<html>dashboard</html>")
        assert headers["Content-Type"].startswith("text/html") and headers["Referrer-Policy"] == "no-referrer"
        cookie = headers["Set-Cookie"].split(";")[0]
        status, headers, body = await asyncio.to_thread(http_get, base + "/dashboard/app.js", {"Cookie": cookie})
        assert (status, body) == (200, b"console.log(1)")
        status, _, _ = await asyncio.to_thread(http_get, base + "/dashboard/app.js")
        assert status == 401
        status, _, _ = await asyncio.to_thread(http_get, base + "/dashboard/%2e%2e/secret.txt?token=" + hub.token)
        assert status == 404
    finally:
        await hub.stop()

    bare = Hub(static_dir=None)
    await bare.start()
    try:
        status, _, body = await asyncio.to_thread(http_get, bare.dashboard_url)
        assert status == 404 and b"not built" in body and body.count(b"\n") == 1
    finally:
        await bare.stop()


async def test_metrics_only_when_enabled(hub: Hub):
    status, _, body = await asyncio.to_thread(http_get, hub.metrics_url)
    assert status == 404 and b"prometheus=True" in body

    on = Hub(prometheus=True)
    await on.start()
    try:
        async with ws(on.ingest_url) as producer:
            await producer.send(batch('r"1', 0, [{"loss": 0.75, "step": 3, "precision": "bf16", "t": 5.0},
                                                 {"loss": "NaN", "t": 6.0}], rank=2))
            await until(lambda: on.stats()["ingested_samples"] == 2, "ingest")
        status, _, _ = await asyncio.to_thread(http_get, "http" + on.url[2:] + "/metrics")
        assert status == 401
        status, _, body = await asyncio.to_thread(
            http_get, "http" + on.url[2:] + "/metrics", {"Authorization": f"Bearer {on.token}"})
        text = body.decode()
        assert status == 200
        assert 'deepdive_run_loss{run="r\\"1",rank="2"} NaN' in text
        assert 'deepdive_run_step{run="r\\"1",rank="2"} 3' in text
        assert "precision" not in text
        assert "deepdive_hub_ingested_samples_total 2" in text
        assert 'deepdive_hub_connections{path="stream"} 0' in text
    finally:
        await on.stop()


async def test_snapshot_is_bounded_by_entries_per_run_and_by_age():
    hub = Hub(history_entries=3, history_seconds=0.5)
    await hub.start()
    try:
        async with ws(hub.ingest_url) as producer:
            for seq in range(5):
                await producer.send(batch("a", seq, [{"i": seq}]))
            await producer.send(batch("b", 0, [{"i": 0}]))
            await until(lambda: hub.stats()["ingested_messages"] == 6, "ingest")
            hub.publish({"gpu": 1})
            async with ws(hub.stream_url) as late:
                snapshot = await recv_json(late)
            got = [(m.get("run"), m["samples"][0]["i"]) for m in snapshot["messages"] if m["type"] == "samples"]
            assert got == [("a", 2), ("a", 3), ("a", 4), ("b", 0)]
            assert [m["gpu"] for m in snapshot["messages"] if m["type"] == "machine"] == [1]
            await asyncio.sleep(0.6)
            await producer.send(batch("c", 0, [{"i": 9}]))  # a newer message; the old ones have expired
            await until(lambda: hub.stats()["ingested_messages"] == 7, "ingest")
            async with ws(hub.stream_url) as later:
                snapshot = await recv_json(later)
            assert [(m["run"], m["samples"][0]["i"]) for m in snapshot["messages"]] == [("c", 9)]
    finally:
        await hub.stop()


async def test_binary_frames_and_nan_literals_are_accepted_and_relayed_as_strict_json(hub: Hub):
    async with ws(hub.stream_url) as subscriber, ws(hub.ingest_url) as producer:
        await recv_json(subscriber)
        text = '{"type": "samples", "run": "r", "rank": 0, "seq": 0, "samples": [{"loss": NaN, "t": 1.0}]}'
        await producer.send(text.encode())
        raw = await asyncio.wait_for(subscriber.recv(), WAIT)
    message = json.loads(raw, parse_constant=lambda name: pytest.fail(f"{name} literal relayed"))
    assert message["samples"] == [{"loss": "NaN", "t": 1.0}]


async def test_publish_threadsafe_from_a_worker_thread(hub: Hub):
    async with ws(hub.stream_url + "&kinds=machine") as subscriber:
        await recv_json(subscriber)
        await asyncio.to_thread(hub.publish_threadsafe, {"gpu_util": 0.9, "t": 123.0})
        message = await recv_json(subscriber)
    assert message == {"type": "machine", "gpu_util": 0.9, "t": 123.0, "dropped": 0}
    with pytest.raises(RuntimeError, match="start"):
        Hub().publish_threadsafe({})


async def test_subscribers_query_stored_history_and_bad_queries_get_a_reason(tmp_path):
    from deepdive.telemetry.store import MetricsStore

    store = MetricsStore(tmp_path / "metrics.db")
    store.start_run("old", name="digits", started=100.0)
    store.add_samples("old", 0, [{"t": 100.0 + i, "step": i, "loss": 2.0 / (i + 1)} for i in range(5)])
    store.end_run("old", "succeeded", ended=110.0)

    def history(query: dict) -> dict:
        if query.get("what") == "runs":
            return {"runs": store.runs()}
        if query.get("what") == "run":
            return {"run": query["run"], "rows": store.query(query["run"], fields=query.get("fields"))}
        raise ValueError(f"unknown query {query.get('what')!r}")

    server = Hub(history=history)
    await server.start()
    try:
        async with ws(server.stream_url) as client:
            assert (await recv_json(client))["type"] == "snapshot"
            await client.send(json.dumps({"type": "query", "id": 1, "what": "runs"}))
            reply = await next_of_type(client, "reply")
            assert reply["id"] == 1 and reply["ok"]
            assert [(r["run"], r["name"], r["outcome"]) for r in reply["runs"]] == [("old", "digits", "succeeded")]
            await client.send(json.dumps({"type": "query", "id": 2, "what": "run", "run": "old", "fields": ["step", "loss"]}))
            reply = await next_of_type(client, "reply")
            assert reply["id"] == 2 and [r["step"] for r in reply["rows"]] == [0, 1, 2, 3, 4]
            assert reply["rows"][-1]["loss"] == pytest.approx(0.4)
            await client.send(json.dumps({"type": "query", "id": 3, "what": "everything"}))
            reply = await next_of_type(client, "reply")
            assert reply == {"type": "reply", "id": 3, "ok": False, "error": "unknown query 'everything'"}
            await client.send("not json")
            assert (await next_of_type(client, "reply"))["ok"] is False
            # the connection still streams after bad queries
            server.publish({"gpu_util": 1.0})
            assert (await next_of_type(client, "machine"))["gpu_util"] == 1.0
    finally:
        await server.stop()
        store.close()
    with pytest.raises(ValueError, match="reserves"):
        Hub().publish({"type": "reply"})


# ------------------------------------------------------------------------------------------------
# malformed input that used to crash a connection, and messages that are large in bytes
# ------------------------------------------------------------------------------------------------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def tracebacks(caplog) -> list[str]:
    """Log records that carry a traceback or name RecursionError (the symptoms of a crashed handler)."""
    return [r.getMessage() for r in caplog.records
            if r.exc_info or "RecursionError" in r.getMessage() or r.levelno >= logging.ERROR]


async def test_deeply_nested_json_on_ingest_gets_the_malformed_answer_and_the_connection_stays(hub: Hub, caplog):
    caplog.set_level(logging.DEBUG)
    async with ws(hub.stream_url) as subscriber, ws(hub.ingest_url) as producer:
        await recv_json(subscriber)
        too_deep_to_parse = '{"type": "samples", "run": "r", "rank": 0, "samples": [{"x": ' + deep(100_000) + "}]}"
        parsed_but_deep = batch("r", 0, [{"x": json.loads(deep(200))}])
        for bad in (too_deep_to_parse, deep(100_000), parsed_but_deep):
            await producer.send(bad)
            reply = await recv_json(producer)
            assert reply["type"] == "error" and "nested" in reply["message"], reply
        await producer.send(batch("r", 1, [{"loss": 0.5, "t": 2.0, "gpus": [{"index": 0, "util": [1, 2]}]}]))
        message = await next_of_type(subscriber, "samples")
        assert message["samples"] == [{"loss": 0.5, "t": 2.0, "gpus": [{"index": 0, "util": [1, 2]}]}]
    assert hub.stats()["malformed_messages"] == 3 and hub.stats()["ingested_messages"] == 1
    assert tracebacks(caplog) == []


async def test_deeply_nested_json_on_stream_gets_the_malformed_answer_and_the_connection_stays(hub: Hub, caplog):
    caplog.set_level(logging.DEBUG)
    async with ws(hub.stream_url) as client:
        await recv_json(client)
        await client.send("{not json")
        plain = await next_of_type(client, "reply")
        for bad in (deep(100_000), json.dumps({"type": "query", "id": 4, "what": json.loads(deep(200))})):
            await client.send(bad)
            reply = await next_of_type(client, "reply")
            assert reply["ok"] is False and reply["type"] == plain["type"] and "nested" in reply["error"], reply
        hub.publish({"gpu_util": 1.0})  # the connection still streams
        assert (await next_of_type(client, "machine"))["gpu_util"] == 1.0
    assert tracebacks(caplog) == []


def wide_message(run: str, seq: int, kib: int = 900) -> str:
    """A message of about ``kib`` KiB made of many 4,000-character strings (none is over the hub's cap)."""
    return batch(run, seq, [{"step": seq, "i": i, "pad": "y" * 4000} for i in range(kib // 4)])


async def test_a_flood_of_900_kb_messages_keeps_the_hub_within_its_byte_bounds(caplog):
    run_cap, total_cap, queue_cap = 3 * 1024 * 1024, 6 * 1024 * 1024, 4 * 1024 * 1024
    hub = Hub(history_run_bytes=run_cap, history_bytes=total_cap, subscriber_queue_bytes=queue_cap)
    await hub.start()
    try:
        async with ws(hub.stream_url, max_queue=1) as stalled, ws(hub.ingest_url) as producer:
            await recv_json(stalled)  # the snapshot; then it stops reading
            for seq in range(20):  # ~18 MB of one run, and a single 900 KB string
                await producer.send(wide_message("a", seq))
            await producer.send(batch("a", 20, [{"step": 20, "note": "x" * 900_000}]))
            for run in ("b", "c"):
                for seq in range(2):
                    await producer.send(wide_message(run, seq))
            await until(lambda: hub.stats()["ingested_messages"] == 25, "the flood to be ingested")
            stats = hub.stats()
            # the hub's own accounting: per run and in total under the bounds, the evictions counted
            assert 0 < stats["history_bytes"] <= total_cap
            per_key = {d["key"]: d for d in stats["history_detail"] if d["kind"] == "samples"}
            assert set(per_key) == {"a", "b", "c"}
            assert all(0 < d["bytes"] <= run_cap for d in per_key.values())
            assert sum(d["bytes"] for d in stats["history_detail"]) == stats["history_bytes"]
            held = sum(d["messages"] for d in per_key.values())
            assert held <= total_cap // (900 * 1024) + 1  # the one truncated message is small
            assert stats["history_evicted_messages"] == 25 - held, "every message is held or counted as evicted"
            assert stats["history_evicted_bytes"] >= stats["history_evicted_messages"] * 880 * 1024
            # the stalled subscriber's queue is bounded in bytes too, and what it lost is counted
            (detail,) = stats["subscriber_detail"]
            assert detail["queued_bytes"] <= queue_cap and detail["dropped"] > 0
            # the single oversized string was cut, with a marker that says so, and counted
            assert stats["truncated_strings"] == 1

            async with ws(hub.stream_url) as late:
                snapshot = await recv_json(late)
            got = [(m["run"], m["seq"]) for m in snapshot["messages"]]
            a_seqs = [seq for run, seq in got if run == "a"]
            assert a_seqs and a_seqs == list(range(a_seqs[0], 21)), "the newest messages of a run are kept"
            assert ("b", 1) in got and ("c", 1) in got, "the newest messages of every run are kept"
            note = next(m for m in snapshot["messages"] if m["seq"] == 20 and m["run"] == "a")["samples"][0]["note"]
            assert len(note) < 10_000 and note.startswith("x" * 100) and "truncated" in note and "900000" in note
    finally:
        await hub.stop()
    assert tracebacks(caplog) == []


async def test_byte_bounds_are_checked(hub: Hub):
    for name in ("history_run_bytes", "history_bytes", "subscriber_queue_bytes", "max_string_chars"):
        with pytest.raises(ValueError, match=name):
            Hub(**{name: 0})
