"""The telemetry reporter: no sink, JSONL sink, a real websockets hub (reading, stuck, restarting)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import socket
import threading
import time
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.asyncio.server import serve

from deepdive.engine.reporter import Reporter, encode, hub_url_problem

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token"


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity literals, as a browser's JSON.parse does."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def reporter_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("deepdive-reporter")]


class Hub:
    """A websockets server on 127.0.0.1 in its own thread, standing in for the daemon's /ingest.

    Args:
        port (int): 0 for a free port.
        read (bool): False makes a hub that accepts and then never reads: a tiny receive buffer and
            ``max_queue=1`` so the reporter's sends stall at once.
    """

    def __init__(self, port: int = 0, read: bool = True):
        self.port = port
        self.read = read
        self.messages: queue.Queue = queue.Queue()
        self.paths: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(10), "test hub did not start"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ingest?token={TOKEN}"

    @staticmethod
    def _check_token(connection, request):
        """Refuse a connection without the token, as the daemon's hub does."""
        if request.path != f"/ingest?token={TOKEN}":
            return connection.respond(HTTPStatus.FORBIDDEN, "bad token\n")
        return None

    async def _handler(self, ws) -> None:
        self.paths.append(ws.request.path)
        if not self.read:
            await ws.wait_closed()
            return
        async for raw in ws:
            self.messages.put(strict_json(raw))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if not self.read:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind(("127.0.0.1", self.port))
            self.server = await serve(self._handler, sock=sock, process_request=self._check_token,
                                      max_queue=1 if not self.read else 64,
                                      max_size=1 << 20, compression=None, close_timeout=0.5)
            self.port = sock.getsockname()[1]

        self.loop.run_until_complete(start())
        self.started.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self) -> None:
        async def shutdown():
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 5)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def collect(self, until, timeout: float = 10.0) -> list[dict]:
        """Messages received until ``until(messages)`` is true or ``timeout`` passes."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while not until(got) and time.monotonic() < deadline:
            try:
                got.append(self.messages.get(timeout=0.05))
            except queue.Empty:
                pass
        return got


def samples_of(messages: list[dict]) -> list[dict]:
    return [s for m in messages for s in m["samples"]]


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("DEEPDIVE_HUB", "DEEPDIVE_HUB_ALLOW_REMOTE", "DEEPDIVE_METRICS_OUT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---------------------------------------------------------------------------------------------
# no sink
# ---------------------------------------------------------------------------------------------


def test_no_sink_is_disabled_starts_no_thread_and_record_touches_nothing(clean_env):
    before = reporter_threads()
    reporter = Reporter.from_env("run", 0)
    assert reporter.enabled is False
    assert reporter.hub is None and reporter.metrics_out is None
    assert reporter_threads() == before
    # A sample that would fail if touched (not a dict): a disabled reporter returns before looking.
    assert reporter.record(None) is None
    reporter.event("precision", message="x")
    assert reporter.dropped == 0 and reporter.dropped_events == 0
    reporter.close()
    reporter.close()  # idempotent


# ---------------------------------------------------------------------------------------------
# JSONL sink
# ---------------------------------------------------------------------------------------------


def test_jsonl_sink_writes_every_sample_and_event(clean_env, tmp_path: Path):
    out = tmp_path / "sub" / "metrics.jsonl"
    reporter = Reporter.from_env("run-7", 3, metrics_out=str(out))
    assert reporter.enabled and reporter.metrics_out == str(out) and reporter.hub is None
    sample = {}
    for step in range(500):
        sample["step"] = step  # the same dict reused: record() must copy it
        sample["loss"] = 1.0 / (step + 1)
        reporter.record(sample)
    reporter.record({"step": 500, "loss": float("nan"), "lr": float("inf"), "t": 123.0})
    reporter.event("precision", message="promoted encoder.ln to fp32", module="encoder.ln")
    reporter.event("compression", message="enabled PowerSGD r=2", evidence={"comm_share": 0.61})
    reporter.close(timeout=5)

    lines = out.read_text().splitlines()
    rows = [strict_json(line) for line in lines]
    samples = [r for r in rows if r["type"] == "sample"]
    events = [r for r in rows if r["type"] == "event"]
    assert [s["step"] for s in samples] == list(range(501))
    assert all(s["run"] == "run-7" and s["rank"] == 3 and isinstance(s["t"], float) for s in samples)
    assert samples[10]["loss"] == pytest.approx(1 / 11)
    assert samples[-1]["loss"] == "NaN" and samples[-1]["lr"] == "Infinity" and samples[-1]["t"] == 123.0
    assert [(e["kind"], e["message"]) for e in events] == [
        ("precision", "promoted encoder.ln to fp32"), ("compression", "enabled PowerSGD r=2")]
    assert events[0]["module"] == "encoder.ln" and events[1]["evidence"] == {"comm_share": 0.61}
    assert all(e["run"] == "run-7" and e["rank"] == 3 for e in events)
    assert not any(r["type"] == "dropped" for r in rows)
    assert reporter.dropped == 0 and reporter.enabled is False
    reporter.record({"step": 999})  # after close: ignored
    assert len(out.read_text().splitlines()) == len(lines)


def test_jsonl_path_from_the_environment(clean_env, tmp_path: Path):
    out = tmp_path / "env.jsonl"
    clean_env.setenv("DEEPDIVE_METRICS_OUT", str(out))
    with Reporter.from_env("r", 0) as reporter:
        reporter.record({"step": 1})
    assert strict_json(out.read_text())["step"] == 1


def test_overflow_drops_the_oldest_and_counts_them_but_keeps_events(clean_env, tmp_path: Path):
    out = tmp_path / "m.jsonl"
    # interval=60: the only drain is at close(), so the overflow is deterministic.
    reporter = Reporter("r", 0, metrics_out=str(out), queue_size=100, event_queue_size=5, interval=60)
    for step in range(1000):
        reporter.record({"step": step})
        if step == 10:
            reporter.event("precision", message="important")
    for i in range(7):
        reporter.event("flood", i=i)
    assert reporter.dropped == 900
    reporter.close(timeout=5)

    rows = [strict_json(line) for line in out.read_text().splitlines()]
    assert rows[0]["type"] == "dropped" and rows[0]["samples"] == 900 and rows[0]["events"] == 3
    assert [r["step"] for r in rows if r["type"] == "sample"] == list(range(900, 1000))
    assert [r.get("i") for r in rows if r["type"] == "event"] == [2, 3, 4, 5, 6]
    assert reporter.dropped == 900 and reporter.dropped_events == 3


def test_unserialisable_values_are_converted_or_dropped_and_counted(clean_env, tmp_path: Path, caplog):
    torch = pytest.importorskip("torch")
    out = tmp_path / "m.jsonl"
    reporter = Reporter("r", 0, metrics_out=str(out))
    reporter.record({"loss": torch.tensor(0.25), "dtype": torch.bfloat16, "hist": torch.tensor([1.0, float("nan")])})
    reporter.record({(1, 2): "tuple keys are not JSON"})
    reporter.record({"type": "reserved", "step": 3})
    with caplog.at_level(logging.WARNING, logger="deepdive.engine.reporter"):
        reporter.close(timeout=5)
    rows = [strict_json(line) for line in out.read_text().splitlines()]
    samples = [r for r in rows if r["type"] == "sample"]
    assert samples[0]["loss"] == 0.25 and samples[0]["dtype"] == "torch.bfloat16"
    assert samples[0]["hist"] == [1.0, "NaN"]
    assert samples[1]["step"] == 3
    assert [r["samples"] for r in rows if r["type"] == "dropped"] == [1]
    assert reporter.dropped == 1
    assert "cannot be made JSON" in caplog.text and "'type' is reserved" in caplog.text


def test_ranks_sharing_one_file_write_whole_lines(clean_env, tmp_path: Path):
    out = tmp_path / "shared.jsonl"
    reporters = [Reporter("r", rank, metrics_out=str(out), interval=0.01) for rank in range(2)]
    for step in range(3000):
        for reporter in reporters:
            reporter.record({"step": step, "pad": "x" * 200})
    for reporter in reporters:
        reporter.close(timeout=5)
    rows = [strict_json(line) for line in out.read_text().splitlines()]
    for rank, reporter in enumerate(reporters):
        got = [r for r in rows if r["rank"] == rank]
        assert sum(r["type"] == "sample" for r in got) + reporter.dropped == 3000


def test_encode_is_strict_json():
    assert encode({"a": float("-inf"), "b": [float("nan"), 1.5]}) == '{"a":"-Infinity","b":["NaN",1.5]}'
    assert math.isnan(float(strict_json(encode({"x": float("nan")}))["x"]))


# ---------------------------------------------------------------------------------------------
# hub sink
# ---------------------------------------------------------------------------------------------


def test_hub_receives_batched_samples_and_events_with_the_token(clean_env):
    hub = Hub()
    try:
        clean_env.setenv("DEEPDIVE_HUB", hub.url)
        reporter = Reporter.from_env("run-1", 2)
        assert reporter.hub == f"ws://127.0.0.1:{hub.port}/ingest?…" and TOKEN not in reporter.hub
        reporter.close()
        reporter = Reporter("run-1", 2, hub_url=hub.url, max_message_bytes=8192)
        for step in range(500):
            reporter.record({"step": step, "loss": 0.5})
        reporter.event("precision", message="promoted encoder.ln to fp32")
        reporter.close(timeout=5)
        messages = hub.collect(lambda got: len(samples_of(got)) >= 500)
    finally:
        hub.stop()

    assert hub.paths and all(path == f"/ingest?token={TOKEN}" for path in hub.paths)
    assert [s["step"] for s in samples_of(messages)] == list(range(500))
    assert 1 < len(messages) < 100  # batched, and split by the 8 KiB bound
    for m in messages:
        assert m["type"] == "samples" and m["v"] == 1 and m["run"] == "run-1" and m["rank"] == 2
        assert m["dropped"] == 0 and m["dropped_events"] == 0
        assert len(json.dumps(m, separators=(",", ":"))) <= 8192
    assert [m["seq"] for m in messages] == list(range(len(messages)))
    sample = samples_of(messages)[0]
    assert sample["run"] == "run-1" and sample["rank"] == 2 and isinstance(sample["t"], float)
    events = [e for m in messages for e in m["events"]]
    assert [(e["kind"], e["message"]) for e in events] == [("precision", "promoted encoder.ln to fp32")]
    assert reporter.messages_sent == len(messages) and reporter.dropped == 0


NOTE = "x" * 300  # big enough samples that a stuck hub fills the socket buffers within the loop


def work_loop(reporter: Reporter, first: int, n: int) -> float:
    """``n`` training 'steps': a few microseconds of arithmetic and one record() each. Returns seconds."""
    start = time.perf_counter()
    acc = 0.0
    for step in range(first, first + n):
        for k in range(32):
            acc += k * 0.5
        reporter.record({"step": step, "loss": acc, "step_time": 0.001, "note": NOTE})
    return time.perf_counter() - start


def test_a_hub_that_stops_reading_does_not_slow_training(clean_env, caplog):
    baseline = Reporter.from_env("r", 0)
    assert not baseline.enabled
    hub = Hub(read=False)
    reporter = Reporter("r", 0, hub_url=hub.url)
    try:
        # 200k steps each way, interleaved in chunks so that a noisy machine slows both alike.
        t_none = t_hub = 0.0
        for chunk in range(10):
            t_none += work_loop(baseline, chunk * 20_000, 20_000)
            t_hub += work_loop(reporter, chunk * 20_000, 20_000)
        print(f"200k steps: {t_none:.2f} s without a hub, {t_hub:.2f} s with a stuck hub")
        assert t_hub < 3 * t_none + 0.5, f"record() with a stuck hub: {t_hub:.2f} s vs {t_none:.2f} s without"
        start = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="deepdive.engine.reporter"):
            reporter.close(timeout=0.5)
        assert time.perf_counter() - start < 2.0  # the stuck socket is aborted, not drained
        assert not reporter._thread.is_alive()
        assert "unsent at close" in caplog.text  # the hub really stalled the sender
        assert reporter.dropped > 0
        assert hub.paths == [f"/ingest?token={TOKEN}"]
    finally:
        reporter.close(timeout=0.5)
        hub.stop()


def test_reconnects_after_the_hub_restarts(clean_env, caplog):
    hub = Hub()
    port = hub.port
    reporter = Reporter("r", 0, hub_url=hub.url, interval=0.05)
    try:
        for step in range(10):
            reporter.record({"step": step})
        first = hub.collect(lambda got: len(samples_of(got)) >= 10)
        assert [s["step"] for s in samples_of(first)] == list(range(10))
        with caplog.at_level(logging.WARNING, logger="deepdive.engine.reporter"):
            hub.stop()
            time.sleep(0.3)  # the reporter notices and starts retrying
            for step in range(10, 20):
                reporter.record({"step": step})
            time.sleep(0.3)
            hub = Hub(port=port)
            for step in range(20, 30):
                reporter.record({"step": step})
            second = hub.collect(lambda got: len(samples_of(got)) >= 20)
        assert [s["step"] for s in samples_of(second)] == list(range(10, 30))
        assert reporter.connects == 2 and reporter.dropped == 0
        seqs = [m["seq"] for m in first + second]
        assert seqs == sorted(set(seqs))
        assert "unreachable" in caplog.text and "reconnected" in caplog.text and TOKEN not in caplog.text
    finally:
        reporter.close(timeout=2)
        hub.stop()


def test_a_refused_token_is_reported_once_with_the_fix(clean_env, caplog):
    hub = Hub()
    try:
        with caplog.at_level(logging.WARNING, logger="deepdive.engine.reporter"):
            reporter = Reporter("r", 0, hub_url=f"ws://127.0.0.1:{hub.port}/ingest?token=stale", interval=0.05)
            for step in range(20):
                reporter.record({"step": step})
            time.sleep(1.0)  # several attempts with backoff
            reporter.close(timeout=0.5)
        assert reporter.connects == 0 and reporter.dropped == 20 and hub.messages.empty()
        refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1 and "HTTP 403" in refusals[0] and "DEEPDIVE_HUB" in refusals[0]
        assert "stale" not in caplog.text
    finally:
        hub.stop()


def test_samples_recorded_while_the_hub_is_away_are_dropped_and_counted(clean_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reporter = Reporter("r", 0, hub_url=f"ws://127.0.0.1:{port}/ingest?token={TOKEN}", queue_size=50)
    for step in range(200):
        reporter.record({"step": step})
    start = time.perf_counter()
    reporter.close(timeout=1)
    assert time.perf_counter() - start < 3.0
    assert reporter.dropped == 200


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------


def test_non_loopback_hub_is_refused_with_one_warning(clean_env, caplog):
    clean_env.setenv("DEEPDIVE_HUB", f"ws://192.0.2.7:8765/ingest?token={TOKEN}")
    with caplog.at_level(logging.WARNING, logger="deepdive.engine.reporter"):
        reporter = Reporter.from_env("r", 0)
    assert reporter.enabled is False and reporter.hub is None
    warnings = [r for r in caplog.records if r.name == "deepdive.engine.reporter"]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "DEEPDIVE_HUB_ALLOW_REMOTE=1" in warnings[0].getMessage() and TOKEN not in caplog.text
    with pytest.raises(ValueError, match="ALLOW_REMOTE"):
        Reporter("r", 0, hub_url=f"ws://example.com:1/ingest?token={TOKEN}")


def test_remote_hub_allowed_by_the_environment(clean_env):
    clean_env.setenv("DEEPDIVE_HUB", f"ws://192.0.2.7:8765/ingest?token={TOKEN}")
    clean_env.setenv("DEEPDIVE_HUB_ALLOW_REMOTE", "1")
    reporter = Reporter.from_env("r", 0)
    try:
        assert reporter.enabled and reporter.hub == "ws://192.0.2.7:8765/ingest?…"
    finally:
        start = time.perf_counter()
        reporter.close(timeout=0.2)
        assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize("url, expected", [
    ("ws://127.0.0.1:1/ingest?token=t", None),
    ("ws://localhost:1/ingest?token=t", None),
    ("ws://[::1]:1/ingest?token=t", None),
    ("http://127.0.0.1:1/ingest?token=t", "ws:// or wss://"),
    ("ws://127.0.0.1/ingest?token=t", "host and a port"),
    ("ws://127.0.0.1:1/ingest", "no token"),
    ("ws://10.0.0.1:1/ingest?token=t", "not on this machine"),
])
def test_hub_url_problems_name_the_fix(url, expected):
    problem = hub_url_problem(url)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem


def test_bad_arguments_name_the_fix(tmp_path: Path):
    with pytest.raises(TypeError, match="str"):
        Reporter(7, 0, metrics_out=str(tmp_path / "m.jsonl"))
    with pytest.raises(TypeError, match="int"):
        Reporter("r", "0", metrics_out=str(tmp_path / "m.jsonl"))
    with pytest.raises(ValueError, match="queue_size"):
        Reporter("r", 0, metrics_out=str(tmp_path / "m.jsonl"), queue_size=0)
