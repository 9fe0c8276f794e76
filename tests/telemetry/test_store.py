"""The metrics store: round trip, downsampling tiers with an injected clock, runs and their outcome."""

from __future__ import annotations

import sqlite3

import pytest

from deepdive.telemetry.store import MetricsStore, aggregate_rows

T0 = 1_800_000_000.0  # a whole minute


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(tmp_path, clock):
    with MetricsStore(tmp_path / "sub" / "metrics.sqlite", clock=clock) as s:
        yield s


def step(t: float, i: int, **extra):
    return {"t": t, "run": "r1", "rank": 0, "step": i, "step_time_s": 0.1 * (i % 4 + 1), "loss": 2.0 - i / 100,
            "precision": "bf16", "mem_peak_mib": 100.0 + i, **extra}


def test_round_trip_and_wal(store, tmp_path):
    assert store.add_samples("r1", 0, [step(T0 + i * 0.25, i) for i in range(8)]) == 8
    assert store.add_samples("r1", 1, [step(T0 + 0.1, 0, loss="NaN")]) == 1
    rows = store.query("r1")
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows) and len(rows) == 9
    assert rows[0] == {"t": T0, "rank": 0, "step": 0, "step_time_s": 0.1, "loss": 2.0, "precision": "bf16",
                       "mem_peak_mib": 100.0}
    assert rows[1]["rank"] == 1 and rows[1]["loss"] == "NaN"
    assert store.query("r1", fields=["loss"], since=T0 + 1, until=T0 + 1.5) == [
        {"t": T0 + 1.0, "rank": 0, "loss": 1.96}, {"t": T0 + 1.25, "rank": 0, "loss": 1.95}, {"t": T0 + 1.5, "rank": 0, "loss": 1.94}]
    assert store.query("r1", rank=1, fields=["step"]) == [{"t": T0 + 0.1, "rank": 1, "step": 0}]
    assert store.query("other") == []
    mode = sqlite3.connect(tmp_path / "sub" / "metrics.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_reopened_store_keeps_committed_rows(tmp_path, clock):
    path = tmp_path / "m.sqlite"
    with MetricsStore(path, clock=clock) as s:
        s.add_samples("r1", 0, [step(T0, 0)])
        s.end_run("r1", "succeeded", ended=T0 + 5)
    with MetricsStore(path, clock=clock) as s:
        assert len(s.query("r1")) == 1 and s.runs()[0]["outcome"] == "succeeded"


def test_an_unserialisable_batch_stores_nothing(store):
    with pytest.raises(TypeError):
        store.add_samples("r1", 0, [step(T0, 0), {"t": T0 + 1, "bad": object.__new__(BadFloat)}])
    assert store.query("r1") == [] and store.runs() == []


class BadFloat(float):
    def __repr__(self) -> str:  # json's float encoder calls float.__repr__
        raise TypeError("not serialisable")


def test_a_compaction_that_fails_half_way_loses_no_row(store, clock, monkeypatch):
    from deepdive.telemetry import store as store_module

    store.add_samples("r1", 0, [step(T0 + i * 0.5, i) for i in range(6)])  # 3 seconds, 2 samples each
    real, calls = store_module.aggregate_rows, []

    def fail_on_second_bucket(rows):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(rows)

    monkeypatch.setattr(store_module, "aggregate_rows", fail_on_second_bucket)
    clock.t = T0 + 3 + 600 + 1
    with pytest.raises(RuntimeError, match="disk full"):
        store.compact()
    assert len(store.query("r1", resolution="raw")) == 6  # rolled back: every raw row is still there
    monkeypatch.setattr(store_module, "aggregate_rows", real)
    assert store.compact()["raw"] == 6
    assert [r["step"] for r in store.query("r1", resolution="raw")] == [1, 3, 5]


def test_compaction_tiers_and_idempotence(store, clock):
    # 3 s of steps at 4 Hz, rank 0, plus one machine sample per second
    store.add_samples("r1", 0, [step(T0 + i * 0.25, i) for i in range(12)])
    for s in range(3):
        store.add_machine({"type": "machine", "t": T0 + s + 0.5, "gpus": [
            {"index": 0, "util_gpu_pct": 50.0 + s * 10, "mem_used_mib": 1000.0 + s, "throttle_reasons": [f"r{s}"]}],
            "gpu_reason": None, "host": {"cpu_pct": 10.0 * s}, "jobs": {}})
    clock.t = T0 + 600  # nothing is 10 minutes old yet
    assert store.compact() == {"raw": 0, "1s": 0}
    assert len(store.query("r1", resolution="raw")) == 12

    clock.t = T0 + 3 + 600 + 0.5  # all of it is older than 10 minutes
    assert store.compact() == {"raw": 15, "1s": 0}
    assert store.compact() == {"raw": 0, "1s": 0}  # idempotent
    rows = store.query("r1", resolution="raw")  # only 1 s aggregates remain
    assert [r["t"] for r in rows] == [T0, T0 + 1, T0 + 2]
    first = rows[0]
    assert first["step_time_s"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4) / 4)  # mean
    assert first["loss"] == pytest.approx((2.0 + 1.99 + 1.98 + 1.97) / 4)
    assert first["mem_peak_mib"] == 103.0  # max
    assert first["step"] == 3 and first["precision"] == "bf16"  # last
    machine = store.query_machine(resolution="raw")
    assert [m["t"] for m in machine] == [T0, T0 + 1, T0 + 2]
    assert machine[2]["gpus"] == [{"index": 0, "util_gpu_pct": 70.0, "mem_used_mib": 1002.0, "throttle_reasons": ["r2"]}]
    assert machine[2]["host"] == {"cpu_pct": 20.0} and "type" not in machine[2]

    # a late sample for a folded second merges into it (weighted: 4 earlier samples + 1)
    store.add_samples("r1", 0, [step(T0 + 0.9, 99, step_time_s=1.1)])
    clock.t += 1
    assert store.compact()["raw"] == 1
    assert store.query("r1", resolution="raw")[0]["step_time_s"] == pytest.approx((1.0 + 1.1) / 5)

    # a day later the 1 s rows fold into one minute, weighted by the samples behind each
    clock.t = T0 + 86_400 + 120
    assert store.compact() == {"raw": 0, "1s": 6}  # 3 engine rows and 3 machine rows
    assert store.compact() == {"raw": 0, "1s": 0}
    (minute,) = store.query("r1", resolution="raw")
    assert minute["t"] == T0 and minute["step"] == 11
    mean = (sum(0.1 * (i % 4 + 1) for i in range(12)) + 1.1) / 13
    assert minute["step_time_s"] == pytest.approx(mean)
    assert minute["mem_peak_mib"] == 199.0  # the late step 99 had the highest peak
    (m,) = store.query_machine(resolution="1m")
    assert m["gpus"][0]["util_gpu_pct"] == pytest.approx(60.0) and m["gpus"][0]["mem_used_mib"] == 1002.0


def test_resolutions_aggregate_on_the_fly(store, clock):
    store.add_samples("r1", 0, [step(T0 + i * 0.25, i) for i in range(8)])
    store.add_samples("r1", 1, [step(T0 + i * 0.5, i) for i in range(4)])
    one_s = store.query("r1", resolution="1s", fields=["step"])
    assert one_s == [{"t": T0, "rank": 0, "step": 3}, {"t": T0, "rank": 1, "step": 1},
                     {"t": T0 + 1, "rank": 0, "step": 7}, {"t": T0 + 1, "rank": 1, "step": 3}]
    assert len(store.query("r1", resolution="auto")) == 12  # a short span: raw
    store.add_samples("r1", 0, [step(T0 + 4 * 3600, 100)])  # a span over 3 hours: 1 min rows
    assert [r["t"] for r in store.query("r1", resolution="auto", rank=0)] == [T0, T0 + 4 * 3600]
    with pytest.raises(ValueError, match="auto, raw, 1s, 1m"):
        store.query("r1", resolution="5s")


def test_runs_listing_with_outcome(store, clock):
    store.start_run("a", job="job-1", name="digits", started=T0)
    store.add_samples("b", 0, [step(T0 + 10, 0)])
    store.start_run("b", job="job-2")  # fills in the job, keeps the start of its first sample
    store.end_run("a", "succeeded", ended=T0 + 60)
    runs = store.runs()
    assert runs == [
        {"run": "b", "job": "job-2", "name": None, "started": T0 + 10, "ended": None, "outcome": None},
        {"run": "a", "job": "job-1", "name": "digits", "started": T0, "ended": T0 + 60, "outcome": "succeeded"},
    ]
    assert store.runs(limit=1)[0]["run"] == "b"
    with pytest.raises(KeyError, match="start_run"):
        store.end_run("nope", "failed")
    with pytest.raises(ValueError, match="non-empty"):
        store.add_samples("", 0, [step(T0, 0)])


def test_aggregate_rules():
    rows = [({"loss": 1.0, "ok": True, "mem_used_mib": 5, "lr": "NaN", "gpus": [{"index": 0, "u": 10}]}, 1),
            ({"loss": 3.0, "ok": False, "mem_used_mib": 2, "lr": 0.1, "gpus": [{"index": 0, "u": 30}]}, 3)]
    assert aggregate_rows(rows) == {"loss": 2.5, "ok": False, "mem_used_mib": 5.0, "lr": "NaN",
                                    "gpus": [{"index": 0, "u": 25.0}]}
