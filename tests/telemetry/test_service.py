"""The daemon's telemetry service under a flood: its write queue is bounded in bytes, its drops are counted."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from deepdive.daemon import telemetry
from deepdive.daemon.telemetry import TelemetryService
from deepdive.telemetry.store import MetricsStore

pytestmark = pytest.mark.timeout(120)


async def test_samples_waiting_for_the_store_are_bounded_and_what_overflows_is_counted(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(telemetry, "FLUSH_INTERVAL_S", 3600.0)  # the store lags: nothing is written until stop()
    service = TelemetryService(tmp_path, lambda: [])
    await service.start()
    per_message, messages = 225, 100  # ~900 KB each, ~90 MB in all: more than PENDING_BYTES
    try:
        async with connect(service.hub.ingest_url, max_size=None, proxy=None, compression=None) as producer:
            for seq in range(messages):
                samples = [{"t": 1.0 + seq, "step": seq, "i": i, "pad": "y" * 4000} for i in range(per_message)]
                await producer.send(json.dumps({"type": "samples", "run": "flood", "rank": 0, "seq": seq,
                                                "samples": samples}))
            while service.hub.stats()["ingested_messages"] < messages:
                await asyncio.sleep(0.05)
    finally:
        await service.stop()
    with MetricsStore(tmp_path / "metrics.db") as store:
        kept = [(r["step"], r["i"]) for r in store.query("flood", fields=["step", "i"], resolution="raw")]
        (run,) = [r for r in store.runs() if r["run"] == "flood"]
    every = [(seq, i) for seq in range(messages) for i in range(per_message)]
    assert 0 < len(kept) * 4000 <= telemetry.PENDING_BYTES + per_message * 4100, "the queue held at most its bound"
    assert kept == every[len(every) - len(kept):], "the newest batches are the ones written"
    assert run["dropped"] == len(every) - len(kept), "every sample is stored or counted as dropped"


def test_a_bad_byte_bound_in_the_environment_is_one_line_that_names_it(tmp_path: Path):
    env = {**os.environ, "DEEPDIVE_HOME": str(tmp_path), "DEEPDIVE_HUB_MEMORY_MIB": "lots"}
    done = subprocess.run([sys.executable, "-m", "deepdive", "dashboard", "--no-browser"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "DEEPDIVE_HUB_MEMORY_MIB" in done.stderr and "'lots'" in done.stderr
    env = {**env, "DEEPDIVE_HUB_MEMORY_MIB": "32", "DEEPDIVE_METRICS_DB_MIB": "100", "DEEPDIVE_METRICS_RUN_MIB": "200"}
    done = subprocess.run([sys.executable, "-m", "deepdive", "dashboard", "--no-browser"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "DEEPDIVE_METRICS_RUN_MIB (200)" in done.stderr


async def test_a_bad_byte_bound_leaves_the_service_unstarted_with_the_reason(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DEEPDIVE_METRICS_RUN_MIB", "0")
    service = TelemetryService(tmp_path, lambda: [])  # constructing never raises: the daemon reports start()'s error
    with pytest.raises(ValueError, match="DEEPDIVE_METRICS_RUN_MIB must be a whole number of MiB"):
        await service.start()
    assert not (tmp_path / "metrics.db").exists()


async def test_past_runs_are_named_by_their_script_and_say_what_they_are(tmp_path: Path):
    """A terminal run is listed by the script its setup event names; a daemon job by its kind."""
    service = TelemetryService(tmp_path, lambda: [])
    await service.start()
    try:
        service.run_started("job-1", "Deep environment check", "doctor-deep")
        service.run_started("job-2", "tune digits.py", "tune")
        setup = {"kind": "setup", "t": 1_800_000_000.0, "run": "term-1", "rank": 0, "precision": "bf16",
                 "script": "/home/me/proj/digits.py", "pid": 42, "host": "h", "argv": [], "cwd": "/home/me/proj"}
        async with connect(service.hub.ingest_url, proxy=None) as producer:
            await producer.send(json.dumps({"type": "samples", "run": "term-1", "rank": 0, "seq": 0, "events": [setup],
                                            "samples": [{"t": 1_800_000_001.0, "step": 0, "loss": 1.0}]}))
            while service.hub.stats()["ingested_messages"] < 1:
                await asyncio.sleep(0.05)
        for _ in range(100):  # the store's writes run in worker threads
            runs = {r["run"]: r for r in service.store.runs()}
            if {"job-1", "job-2", "term-1"} <= set(runs) and runs["term-1"]["script"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await service.stop()
    with MetricsStore(tmp_path / "metrics.db") as store:
        runs = {r["run"]: r for r in store.runs()}
    assert (runs["term-1"]["kind"], runs["term-1"]["script"]) == ("train", "/home/me/proj/digits.py")
    assert runs["term-1"]["started"] == 1_800_000_000.0, "a terminal run starts when its setup event says"
    assert (runs["job-1"]["kind"], runs["job-1"]["name"]) == ("check", "Deep environment check")
    assert runs["job-2"]["kind"] == "tune"
