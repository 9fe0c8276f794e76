"""The median and its distribution-free confidence interval that the paired benchmarks report."""

from __future__ import annotations

import math
import random

import pytest

from tests.bench.load import load_bench

pairstats = load_bench("pairstats")


def test_interval_of_20_values_is_the_6th_and_15th_smallest_with_its_binomial_coverage():
    values = [float(v) for v in range(1, 21)]
    random.Random(0).shuffle(values)
    ci = pairstats.median_ci(values, 0.95)
    assert (ci.low, ci.high, ci.k, ci.n) == (6.0, 15.0, 6, 20)
    assert ci.median == 10.5
    # 1 - 2 P(Binomial(20, 1/2) <= 5)
    assert ci.coverage == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2**20)
    assert ci.coverage == pytest.approx(0.9586, abs=1e-4)


def test_the_interval_is_the_narrowest_that_reaches_the_confidence():
    ci = pairstats.median_ci(list(range(24)), 0.95)
    assert ci.coverage >= 0.95
    one_narrower = 1 - 2 * sum(math.comb(24, i) for i in range(ci.k + 1)) / 2**24
    assert one_narrower < 0.95


def test_the_interval_holds_the_true_median_as_often_as_it_claims_on_skewed_timings():
    # Log-normal "timings" (skewed, like step times on a shared machine): true median exp(0) = 1.
    rng = random.Random(1)
    trials, hits, claimed = 3000, 0, None
    for _ in range(trials):
        ci = pairstats.median_ci([rng.lognormvariate(0.0, 0.5) for _ in range(24)], 0.95)
        hits += ci.low <= 1.0 <= ci.high
        claimed = ci.coverage
    assert claimed is not None
    # Binomial noise of 3000 trials is about 0.003; an interval one order statistic too narrow covers 0.936.
    assert hits / trials >= 0.95
    assert abs(hits / trials - claimed) < 0.015


def test_too_few_values_for_the_confidence_is_refused_saying_how_many_are_needed():
    assert pairstats.min_pairs(0.95) == 6
    assert pairstats.min_pairs(0.99) == 8
    with pytest.raises(ValueError, match="at least 6 values, got 5"):
        pairstats.median_ci([1.0, 2.0, 3.0, 4.0, 5.0], 0.95)
    ci = pairstats.median_ci([3.0, 1.0, 2.0, 6.0, 5.0, 4.0], 0.95)
    assert (ci.low, ci.high, ci.median) == (1.0, 6.0, 3.5)
    assert ci.coverage == pytest.approx(1 - 2 / 64)


def test_non_finite_values_and_impossible_confidences_are_refused():
    with pytest.raises(ValueError, match="finite"):
        pairstats.median_ci([1.0] * 9 + [float("inf")], 0.95)
    with pytest.raises(ValueError, match="confidence"):
        pairstats.median_ci([1.0] * 10, 1.0)
