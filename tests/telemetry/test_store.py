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
        {"run": "b", "job": "job-2", "name": None, "started": T0 + 10, "ended": None, "outcome": None, "dropped": 0,
         "kind": "train", "script": None},
        {"run": "a", "job": "job-1", "name": "digits", "started": T0, "ended": T0 + 60, "outcome": "succeeded",
         "dropped": 0, "kind": "train", "script": None},
    ]
    assert store.runs(limit=1)[0]["run"] == "b"
    with pytest.raises(KeyError, match="start_run"):
        store.end_run("nope", "failed")
    with pytest.raises(ValueError, match="non-empty"):
        store.add_samples("", 0, [step(T0, 0)])


def test_runs_say_what_they_are_and_which_script_they_ran(store, clock):
    store.start_run("job-1", job="job-1", name="train digits.py ×2", kind="train", started=T0)
    store.start_run("job-2", job="job-2", name="Deep environment check", kind="check", started=T0 + 1)
    store.start_run("job-3", job="job-3", name="python plain.py", kind="script", started=T0 + 2)
    store.start_run("job-4", job="job-4", name="python engine.py", kind="script", started=T0 + 3)
    store.note_script("job-4", "/work/engine.py")  # that script set up deepdive.engine: it trains
    store.note_script("job-1", "/work/digits.py")
    clock.t = T0 + 5
    store.note_script("term", "/home/me/digits.py")  # a run from a terminal: its setup event comes first
    store.add_samples("term", 0, [step(T0 + 6, 0)])
    store.add_samples("tune-study", 0, [step(T0 + 7, 0)])  # the id prefixes the engine's CLI gives
    store.add_samples("compress-digits", 0, [step(T0 + 8, 0)])
    store.start_run("job-5", job="job-5", name="tune digits.py", kind="tune", started=T0 + 9)
    store.note_script("job-5", "/work/digits.py")  # a setup event never turns a search into a training run
    got = {r["run"]: (r["kind"], r["script"]) for r in store.runs()}
    assert got == {
        "job-1": ("train", "/work/digits.py"), "job-2": ("check", None), "job-3": ("script", None),
        "job-4": ("train", "/work/engine.py"), "term": ("train", "/home/me/digits.py"),
        "tune-study": ("tune", None), "compress-digits": ("compress", None), "job-5": ("tune", "/work/digits.py"),
    }
    assert [r["started"] for r in store.runs() if r["run"] == "term"] == [T0 + 5], "the setup event's time is its start"
    with pytest.raises(ValueError, match="kind must be one of train, tune, compress, check, script"):
        store.start_run("x", kind="eval")


def test_runs_stored_before_kinds_existed_get_one_from_their_name_or_id(tmp_path, clock):
    path = tmp_path / "metrics.db"
    db = sqlite3.connect(path)  # the runs table of an earlier release: no kind, no script
    db.execute("CREATE TABLE runs (run TEXT PRIMARY KEY, job TEXT, name TEXT, started REAL, ended REAL, outcome TEXT)")
    db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, NULL, NULL)", [
        ("j1", "j1", "Deep environment check", T0), ("j2", "j2", "tune digits.py", T0 + 1),
        ("j3", "j3", "compress digits.pt", T0 + 2), ("j4", "j4", "train digits.py ×1", T0 + 3),
        ("tune-s", None, None, T0 + 4), ("abc123", None, None, T0 + 5)])
    db.commit()
    db.close()
    with MetricsStore(path, clock=clock) as s:
        got = {r["run"]: r["kind"] for r in s.runs()}
        s.note_script("abc123", "/w/digits.py")
        assert [r["script"] for r in s.runs() if r["run"] == "abc123"] == ["/w/digits.py"]
    assert got == {"j1": "check", "j2": "tune", "j3": "compress", "j4": "train", "tune-s": "tune", "abc123": "train"}


def test_aggregate_rules():
    rows = [({"loss": 1.0, "ok": True, "mem_used_mib": 5, "lr": "NaN", "gpus": [{"index": 0, "u": 10}]}, 1),
            ({"loss": 3.0, "ok": False, "mem_used_mib": 2, "lr": 0.1, "gpus": [{"index": 0, "u": 30}]}, 3)]
    assert aggregate_rows(rows) == {"loss": 2.5, "ok": False, "mem_used_mib": 5.0, "lr": "NaN",
                                    "gpus": [{"index": 0, "u": 25.0}]}


# ------------------------------------------------------------------------------------------------
# bytes on disk: a bound per run and in total, oldest first, drops counted, a file that shrinks
# ------------------------------------------------------------------------------------------------

MIB = 1024 * 1024


def wide(t: float, i: int, chars: int = 4000) -> dict:
    return {"t": t, "step": i, "loss": 1.0 / (i + 1), "pad": "z" * chars}


def flood(store: MetricsStore, run: str, t0: float, batches: int, per_batch: int = 25) -> None:
    """``batches`` batches of ``per_batch`` 4 KB samples (about 100 KB a batch), one sample per 10 ms."""
    for b in range(batches):
        first = b * per_batch
        store.add_samples(run, 0, [wide(t0 + (first + i) * 0.01, first + i) for i in range(per_batch)])


def file_bytes(path) -> int:
    return path.stat().st_size + (path.with_name(path.name + "-wal").stat().st_size
                                  if path.with_name(path.name + "-wal").exists() else 0)


def test_disk_is_bounded_per_run_oldest_first_and_drops_are_counted(tmp_path, clock):
    path = tmp_path / "metrics.db"
    with MetricsStore(path, clock=clock, max_bytes=12 * MIB, run_max_bytes=4 * MIB) as s:
        s.start_run("old", name="earlier run", started=T0 - 3600)
        s.add_samples("old", 0, [step(T0 - 3600 + i, i) for i in range(50)])
        s.end_run("old", "succeeded", ended=T0 - 3000)
        flood(s, "big", T0, 200)  # 5,000 samples, about 20 MB
        steps = [r["step"] for r in s.query("big", fields=["step"], resolution="raw")]
        assert steps == list(range(steps[0], 5000)) and steps[0] > 0, "the newest samples are kept, whole"
        stats = s.stats()
        assert stats["runs"]["big"]["bytes"] <= 4 * MIB and stats["used_bytes"] <= 12 * MIB
        assert stats["runs"]["big"]["dropped_samples"] == steps[0] == stats["dropped_samples"]
        assert stats["runs"]["old"]["dropped_samples"] == 0 and len(s.query("old")) == 50, \
            "one run's flood does not evict another run's data"
        assert {r["run"]: r["dropped"] for r in s.runs()} == {"big": steps[0], "old": 0}
    assert path.stat().st_size <= 12 * MIB


def test_disk_is_bounded_in_total_the_oldest_data_goes_first_and_summaries_stay(tmp_path, clock):
    path = tmp_path / "metrics.db"
    with MetricsStore(path, clock=clock, max_bytes=6 * MIB, run_max_bytes=4 * MIB) as s:
        s.start_run("old", name="earlier run", started=T0 - 3600)
        s.add_samples("old", 0, [step(T0 - 3600 + i, i) for i in range(50)])
        s.end_run("old", "succeeded", ended=T0 - 3000)
        for n, run in enumerate(("r1", "r2", "r3")):  # each under its own bound, together over the total
            flood(s, run, T0 + n * 100, 30)  # 750 samples, about 3 MB
            assert s.stats()["used_bytes"] <= 6 * MIB
        stats = s.stats()
        assert stats["runs"]["old"]["dropped_samples"] == 50 and s.query("old") == []
        assert stats["runs"]["r1"]["dropped_samples"] > 0
        assert stats["runs"]["r3"]["dropped_samples"] == 0 and len(s.query("r3")) == 750, "the newest run is whole"
        r1 = [r["step"] for r in s.query("r1", fields=["step"])]
        assert r1 == list(range(750 - len(r1), 750)), "a run loses its oldest samples first"
        assert stats["dropped_samples"] == sum(r["dropped_samples"] for r in stats["runs"].values())
        summary = next(r for r in s.runs() if r["run"] == "old")  # the summary of a run outlives its samples
        assert (summary["name"], summary["outcome"], summary["dropped"]) == ("earlier run", "succeeded", 50)
    assert path.stat().st_size <= 6 * MIB


def test_compaction_keeps_the_byte_accounting(tmp_path, clock):
    with MetricsStore(tmp_path / "m.db", clock=clock, max_bytes=64 * MIB, run_max_bytes=64 * MIB) as s:
        flood(s, "r", T0, 8)
        clock.t = T0 + 3600
        assert s.compact()["raw"] == 200
        stored = s._db.execute("SELECT SUM(LENGTH(data)) FROM m_1s WHERE run = 'r'").fetchone()[0]
        assert stored < s.stats()["runs"]["r"]["bytes"] < stored + 200 * 2
        s.add_samples("r", 0, [wide(T0 + 3600, 999)])
        assert s.stats()["runs"]["r"]["dropped_samples"] == 0


def test_a_store_from_an_earlier_release_is_bounded_and_shrinks(tmp_path, clock):
    path = tmp_path / "metrics.db"
    with MetricsStore(path, clock=clock, max_bytes=1024 * MIB, run_max_bytes=1024 * MIB) as s:
        flood(s, "big", T0, 100)  # about 10 MB
    # what an earlier release left: no auto_vacuum, no byte accounting
    db = sqlite3.connect(path)
    db.execute("DROP TABLE usage")
    db.execute("PRAGMA auto_vacuum=NONE")
    db.execute("VACUUM")
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    db.close()
    before = path.stat().st_size
    assert before > 9 * MIB
    with MetricsStore(path, clock=clock, max_bytes=4 * MIB, run_max_bytes=3 * MIB) as s:
        s.add_samples("big", 0, [wide(T0 + 100, 10_000)])
        assert s.stats()["runs"]["big"]["bytes"] <= 3 * MIB and s.stats()["dropped_samples"] > 0
    assert path.stat().st_size <= 4 * MIB


def test_byte_bounds_must_be_sensible(tmp_path):
    with pytest.raises(ValueError, match="run_max_bytes"):
        MetricsStore(tmp_path / "m.db", max_bytes=4 * MIB, run_max_bytes=8 * MIB)
    with pytest.raises(ValueError, match="max_bytes"):
        MetricsStore(tmp_path / "m.db", max_bytes=0)
