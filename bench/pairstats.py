"""The paired benchmarks' statistics: :mod:`deepdive.pairstats` (moved there so that *Apply and measure*
uses the same median and interval); the benchmarks keep importing ``pairstats`` from here."""

from deepdive.pairstats import MedianCI, median_ci, min_pairs

__all__ = ["MedianCI", "median_ci", "min_pairs"]
