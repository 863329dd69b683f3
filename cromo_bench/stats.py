"""Significance tests for the leaderboard. The only module that imports scipy.stats.

Two methods are compared on one metric from their per-seed values (`{seed: value}`):

- paired t-test (`scipy.stats.ttest_rel`) over the seeds both ran, when the comparison can be paired;
- Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`) when it cannot;
- Wilcoxon signed-rank (`scipy.stats.wilcoxon`) on the paired differences, as an option.

All tests are two-sided. `holm` adjusts the p-values of one table (Holm 1979, step-down), and
`bootstrap_ci` gives a percentile bootstrap interval for a mean.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

TESTS = ("auto", "paired", "welch", "wilcoxon")
CORRECTIONS = ("holm", "none")
TEST_NAMES = {"paired": "paired t-test", "welch": "Welch's t-test", "wilcoxon": "Wilcoxon signed-rank"}

Values = Mapping[str, float]  # seed -> metric value


@dataclass(frozen=True)
class Comparison:
    """The outcome of one two-sided test of `a` against `b`; `test` is "none" when no test was possible."""

    test: str
    statistic: float | None
    p: float | None
    n_a: int
    n_b: int
    n_pairs: int
    note: str = ""


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN when n < 2
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample std (ddof=1) and n of one method's per-seed values."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Summary(math.nan, math.nan, 0)
    std = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    return Summary(float(np.mean(x)), std, int(x.size))


def compare(a: Values, b: Values, test: str = "auto") -> Comparison:
    """Test `a` against `b` (two-sided).

    auto: paired t-test when both ran exactly the same seeds, Welch otherwise.
    paired / wilcoxon: paired over the shared seeds if there are at least 2, else Welch (with a note).
    welch: Welch's t-test on all values.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    shared = sorted(set(a) & set(b))
    if test == "auto":
        same = set(a) == set(b) and len(shared) >= 2
        return _paired(a, b, shared, "paired", "") if same else _welch(a, b, _unpaired_note(a, b, shared))
    if test == "welch":
        return _welch(a, b, "")
    if len(shared) >= 2:
        note = "" if set(a) == set(b) else f"paired over {len(shared)} shared seeds"
        return _paired(a, b, shared, test, note)
    return _welch(a, b, f"fewer than 2 shared seeds ({len(shared)}): Welch instead of {TEST_NAMES[test]}")


def _unpaired_note(a: Values, b: Values, shared: list[str]) -> str:
    if len(a) < 2 or len(b) < 2:
        return ""
    return f"seed sets differ ({len(shared)} shared of {len(a)} and {len(b)}), so Welch's t-test, not paired"


def _paired(a: Values, b: Values, seeds: list[str], test: str, note: str) -> Comparison:
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    n = len(seeds)
    if np.all(x == y):
        return Comparison(test, 0.0, 1.0, len(a), len(b), n, _join(note, "identical values: p = 1"))
    with warnings.catch_warnings():  # near-constant differences: scipy warns, the limit (p -> 0) is right
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_rel(x, y) if test == "paired" else st.wilcoxon(x, y)
    return Comparison(test, float(res.statistic), float(res.pvalue), len(a), len(b), n, note)


def _welch(a: Values, b: Values, note: str) -> Comparison:
    x = np.array(list(a.values()), dtype=float)
    y = np.array(list(b.values()), dtype=float)
    if x.size < 2 or y.size < 2:
        return Comparison("none", None, None, x.size, y.size, 0, f"n<2 (n={x.size} vs n={y.size}): no test")
    if np.ptp(x) == 0 and np.ptp(y) == 0 and x[0] == y[0]:
        return Comparison("welch", 0.0, 1.0, x.size, y.size, 0, _join(note, "identical values: p = 1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_ind(x, y, equal_var=False)
    return Comparison("welch", float(res.statistic), float(res.pvalue), x.size, y.size, 0, note)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment; None (no test) stays None and does not count towards m.

    Sorted ascending, p_(i) becomes min(1, max_{j<=i} (m - j + 1) p_(j)), so adjusted values are monotone.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def adjust(pvalues: Sequence[float | None], correction: str) -> list[float | None]:
    """Apply `correction` ("holm" or "none") to the p-values of one table."""
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; valid: {', '.join(CORRECTIONS)}")
    return holm(pvalues) if correction == "holm" else list(pvalues)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 9999,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (`scipy.stats.bootstrap`); None when n < 2."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    rng_kw = "rng" if "rng" in inspect.signature(st.bootstrap).parameters else "random_state"
    res = st.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", **{rng_kw: np.random.default_rng(seed)})
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
