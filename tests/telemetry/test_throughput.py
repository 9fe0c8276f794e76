"""The one throughput definition: samples/s over the newest steps covering the window, loader wait included,
all ranks; and the newest figure a consumer shows (status bar, CLI), never an average of its own."""

from __future__ import annotations

import pytest

from deepdive.throughput import WINDOW_S, ThroughputWindow, describe, label, newest


def test_the_rate_counts_loader_wait_and_every_rank():
    w = ThroughputWindow(world_size=2, window_s=10.0)
    assert w.rate() is None and w.covered_s == 0.0
    w.add(samples=64, seconds=0.5)  # 0.1 s waiting on the loader + 0.4 s of step: the wall time of the iteration
    w.add(samples=64, seconds=0.5)
    assert w.rate() == pytest.approx(2 * 128 / 1.0)
    assert w.covered_s == pytest.approx(1.0)


def test_old_steps_leave_the_window_and_a_short_last_batch_counts_as_what_it_is():
    w = ThroughputWindow(world_size=1, window_s=2.0)
    for _ in range(10):
        w.add(samples=100, seconds=1.0)  # 100 samples/s
    w.add(samples=10, seconds=0.05)  # the epoch's short last batch: 200 samples/s, but only 10 samples
    # the newest steps that cover 2 s: two full steps and the short one
    assert w.covered_s == pytest.approx(2.05)
    assert w.rate() == pytest.approx(210 / 2.05)
    w.add(samples=100, seconds=10.0)  # one step longer than the window: the window is that step
    assert w.covered_s == pytest.approx(10.0) and w.rate() == pytest.approx(10.0)


def test_running_sums_stay_exact_over_many_steps():
    w = ThroughputWindow(world_size=4, window_s=0.5)
    steps = [0.00123 * (1 + i % 7) + 0.0000171 * (i % 3) for i in range(100_000)]
    for seconds in steps:
        w.add(samples=32, seconds=seconds)
    kept, total = 0, 0.0
    for s in reversed(steps):
        if total >= 0.5:
            break
        kept, total = kept + 1, total + s
    assert w.covered_s == pytest.approx(total, rel=1e-9)
    assert w.rate() == pytest.approx(4 * 32 * kept / total, rel=1e-9)


def test_no_samples_counted_gives_no_rate():
    w = ThroughputWindow(world_size=2)
    w.add(samples=0, seconds=0.1)  # a batch whose size the engine cannot tell
    assert w.rate() is None and w.window_s == WINDOW_S


def test_the_label_states_the_window_and_the_ranks():
    assert label(10.004) == "samples/s over the last 10 s, all ranks"
    assert label(2.34) == "samples/s over the last 2.3 s, all ranks"
    assert describe(11747.6, 10.0) == "11,748 samples/s over the last 10 s, all ranks"
    assert describe(None, None) == "-"


def test_newest_is_the_newest_step_sample_not_a_mean():
    samples = [{"step": i, "step_time_s": 0.01, "samples_per_s": float(1000 + i), "samples_per_s_window_s": 10.0}
               for i in range(20)]
    samples.append({"step": 20, "loss": 0.5})  # not a step sample
    got = newest(samples)
    assert got is not None
    assert (got.value, got.unit, got.step, got.label) == (1019.0, "samples/s", 19,
                                                          "samples/s over the last 10 s, all ranks")


def test_newest_falls_back_to_steps_per_second_when_no_sample_count_is_reported():
    samples = [{"step": i, "step_time_s": 0.2, "data_wait_s": 0.05} for i in range(4)]
    got = newest(samples)
    assert got is not None and got.unit == "steps/s" and got.value == pytest.approx(4.0) and got.step == 3
    assert got.label == "steps/s over the newest 4 steps, loader wait included"
    assert newest([{"loss": 1.0}]) is None and newest([]) is None
