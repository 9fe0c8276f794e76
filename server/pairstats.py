"""Statistics for timing two arms in pairs: the median and its confidence interval.

Used by the paired benchmarks (``bench/bench_engine.py`` …) and by *Apply and measure*
(:mod:`deepdive.diagnose.compare`), which times a script and its fixed copy in alternating pairs.

Timings on a shared machine are skewed and heavy-tailed (another process takes a core for a
while), so neither a mean nor a normal-theory interval describes them. The median of the per-pair
ratios does, and its confidence interval here is the distribution-free one from order statistics:
for ``n`` independent values sorted ``x(1) <= ... <= x(n)``, the interval ``[x(k), x(n+1-k)]``
contains the population median with probability ``1 - 2 P(B <= k-1)``, ``B ~ Binomial(n, 1/2)``,
whatever the distribution (continuous). It needs no resampling, so the same timings always give
the same interval, and its coverage is exact rather than asymptotic (a bootstrap of the median is
neither). The widest ``k`` whose coverage reaches the asked confidence is taken, and the coverage
actually reached is reported with it (the binomial steps, so it is usually a little above).

Standard library only: the CLI and the daemon may import it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

__all__ = ["MedianCI", "median_ci", "min_pairs"]


@dataclass(frozen=True)
class MedianCI:
    """The median of some values and a distribution-free confidence interval for it.

    Attributes:
        median (float): the sample median.
        low (float): the interval's lower end, the ``k``-th smallest value.
        high (float): its upper end, the ``k``-th largest value.
        coverage (float): the probability that such an interval holds the true median (>= the
            confidence asked for).
        k (int): the order statistic used (1-based).
        n (int): how many values.
    """

    median: float
    low: float
    high: float
    coverage: float
    k: int
    n: int


def _coverage(n: int, k: int) -> float:
    """Coverage of ``[x(k), x(n+1-k)]`` for the median of ``n`` values: ``1 - 2 P(Bin(n, 1/2) <= k-1)``."""
    tail = sum(math.comb(n, i) for i in range(k)) / 2**n
    return 1.0 - 2.0 * tail


def min_pairs(confidence: float = 0.95) -> int:
    """The fewest values for which an interval of at least ``confidence`` exists (6 for 95 %).

    Raises:
        ValueError: ``confidence`` is not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    n = 1
    while _coverage(n, 1) < confidence:
        n += 1
    return n


def median_ci(values: Sequence[float], confidence: float = 0.95) -> MedianCI:
    """The median of ``values`` with the order-statistic confidence interval (see the module docstring).

    Args:
        values (Sequence[float]): independent measurements, e.g. per-pair ratios.
        confidence (float): the coverage wanted, in (0, 1).

    Returns:
        MedianCI: the median, the interval, and the coverage it reaches.

    Raises:
        ValueError: too few values for that confidence (the message says how many are needed), or
            a value that is not finite.
    """
    need = min_pairs(confidence)
    xs = sorted(float(v) for v in values)
    if len(xs) < need:
        raise ValueError(
            f"a {confidence:.0%} interval for the median needs at least {need} values, got {len(xs)}: "
            f"run more pairs"
        )
    if not all(math.isfinite(x) for x in xs):
        raise ValueError("median_ci: every value must be finite (a timing of 0 or inf makes a ratio meaningless)")
    n = len(xs)
    k = 1
    while k + 1 <= (n + 1) // 2 and _coverage(n, k + 1) >= confidence:
        k += 1
    return MedianCI(median=statistics.median(xs), low=xs[k - 1], high=xs[n - k], coverage=_coverage(n, k), k=k,
                    n=n)
