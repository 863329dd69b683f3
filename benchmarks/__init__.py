"""Frozen, versioned benchmark specs and named suites. `ALL_BENCHMARKS` and `ALL_SUITES` feed the registry."""

from __future__ import annotations

from benchmarks.embedded import DIGITS_5X2
from benchmarks.suites import ALL_SUITES, Suite
from cromo_bench.benchmark import BenchmarkSpec

ALL_BENCHMARKS: tuple[BenchmarkSpec, ...] = (DIGITS_5X2,)

__all__ = ["ALL_BENCHMARKS", "ALL_SUITES", "BenchmarkSpec", "Suite"]
