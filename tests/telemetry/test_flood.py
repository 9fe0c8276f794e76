"""A flood of 900 KB messages against a real ``deepdive dashboard`` process stays within its byte bounds.

The dashboard runs the daemon's telemetry service (hub, sampler, store) in its own process, so its
resident set is the telemetry's memory; the bounds are set small through the environment (the same
variables a user sets) so that a few hundred messages overflow each of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive.telemetry.store import MetricsStore

from .flood import MIB, measure

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

BOUNDS = {"DEEPDIVE_HUB_MEMORY_MIB": "16", "DEEPDIVE_HUB_RUN_MEMORY_MIB": "8",
          "DEEPDIVE_METRICS_DB_MIB": "24", "DEEPDIVE_METRICS_RUN_MIB": "8"}
MESSAGES = 150  # of each shape: ~135 MB of one long string each, ~135 MB of 4,000-character strings
RSS_GROWTH_MIB = 120  # the hub's 16 MiB, the store's writes in flight, the allocator's slack


def test_a_flood_of_900_kb_messages_stays_within_the_byte_bounds(tmp_path: Path):
    figures = measure(tmp_path, MESSAGES, 900 * 1024, settle=3.0, env=BOUNDS, shapes=("string", "wide"))
    assert figures["exit_code"] == 0, figures["stderr_tail"]
    assert "Traceback" not in figures["stderr_tail"]
    # memory: the hub's own accounting, and the process's resident set
    assert figures["hub"]["history_bytes"] <= 16 * MIB
    assert figures["hub"]["history_evicted_entries_total"] > 0
    assert figures["hub"]["truncated_strings_total"] == MESSAGES
    assert figures["rss_growth_mib"] < RSS_GROWTH_MIB, figures
    assert figures["rss_growth_later_mib"] < RSS_GROWTH_MIB, figures
    # disk: under its bound after the flood, the oldest data gone first, the drop counted
    assert figures["db_bytes"] <= 24 * MIB, figures
    with MetricsStore(tmp_path / "metrics.db") as store:
        stats = store.stats()
        wide = stats["runs"]["flood-wide"]
        assert wide["bytes"] <= 8 * MIB and wide["dropped_samples"] > 0
        kept = [(r["step"], r["i"]) for r in store.query("flood-wide", fields=["step", "i"], resolution="raw")]
        per_message = (900 * 1024) // 4000
        every = [(seq, i) for seq in range(MESSAGES) for i in range(per_message)]
        assert kept == every[len(every) - len(kept):], "the newest samples are kept, the oldest dropped"
        assert wide["dropped_samples"] == len(every) - len(kept)
        runs = {r["run"]: r for r in store.runs()}
        assert runs["flood-wide"]["dropped"] == wide["dropped_samples"]
        strings = store.query("flood-string", fields=["step", "note"], resolution="raw")
        assert [r["step"] for r in strings] == list(range(MESSAGES)), "truncated strings leave every sample"
        assert all("truncated" in r["note"] and len(r["note"]) < 10_000 for r in strings)
