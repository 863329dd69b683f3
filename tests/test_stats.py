"""stats.py against scipy's own numbers and a hand-computed Holm adjustment."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from scipy import stats as st

from cromo_bench import stats

A = {"0": 0.61, "1": 0.64, "2": 0.60, "3": 0.66}
B = {"0": 0.55, "1": 0.61, "2": 0.56, "3": 0.57}


def test_summarize_matches_scipy_describe():
    x = list(A.values())
    s = stats.summarize(x)
    d = st.describe(x)
    assert s.n == 4
    assert s.mean == pytest.approx(d.mean, abs=1e-15)
    assert s.std == pytest.approx(math.sqrt(d.variance), abs=1e-15)  # sample std, ddof=1


def test_summarize_single_value_has_no_std():
    s = stats.summarize([0.5])
    assert (s.mean, s.n) == (0.5, 1)
    assert math.isnan(s.std)


def test_auto_with_same_seeds_is_paired_ttest():
    c = stats.compare(A, B, "auto")
    ref = st.ttest_rel(list(A.values()), list(B.values()))
    assert c.test == "paired"
    assert (c.n_pairs, c.note) == (4, "")
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert c.statistic == pytest.approx(ref.statistic, rel=1e-12)


def test_pairing_follows_seeds_not_insertion_order():
    shuffled = {k: B[k] for k in ("3", "1", "0", "2")}
    c = stats.compare(A, shuffled, "auto")
    aligned = st.ttest_rel([A[k] for k in "0123"], [B[k] for k in "0123"]).pvalue
    misaligned = st.ttest_rel(list(A.values()), list(shuffled.values())).pvalue
    assert c.p == pytest.approx(aligned, rel=1e-12)
    assert not math.isclose(aligned, misaligned, rel_tol=1e-6)


def test_auto_with_different_seeds_falls_back_to_welch_and_says_so():
    other = {"7": 0.52, "8": 0.58, "9": 0.55}
    c = stats.compare(A, other, "auto")
    ref = st.ttest_ind(list(A.values()), list(other.values()), equal_var=False)
    assert c.test == "welch"
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert "seed sets differ" in c.note and "Welch" in c.note


def test_auto_with_partly_shared_seeds_is_welch_but_paired_uses_the_intersection():
    partial = {"0": 0.55, "1": 0.61, "2": 0.56, "9": 0.40}
    assert stats.compare(A, partial, "auto").test == "welch"
    c = stats.compare(A, partial, "paired")
    ref = st.ttest_rel([A[k] for k in "012"], [partial[k] for k in "012"])
    assert (c.test, c.n_pairs) == ("paired", 3)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert "3 shared seeds" in c.note


def test_paired_with_fewer_than_two_shared_seeds_is_welch():
    c = stats.compare(A, {"0": 0.5, "9": 0.52}, "paired")
    assert c.test == "welch"
    assert "fewer than 2 shared seeds" in c.note


def test_welch_option_ignores_pairing():
    c = stats.compare(A, B, "welch")
    ref = st.ttest_ind(list(A.values()), list(B.values()), equal_var=False)
    assert c.test == "welch"
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_wilcoxon_option_matches_scipy():
    a = {str(i): v for i, v in enumerate([0.61, 0.64, 0.60, 0.66, 0.63, 0.59])}
    b = {str(i): v for i, v in enumerate([0.55, 0.65, 0.56, 0.57, 0.60, 0.58])}
    c = stats.compare(a, b, "wilcoxon")
    ref = st.wilcoxon(list(a.values()), list(b.values()))
    assert c.test == "wilcoxon"
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_n_below_two_is_no_test():
    c = stats.compare({"0": 0.7}, B, "auto")
    assert (c.test, c.p, c.statistic) == ("none", None, None)
    assert "n<2" in c.note


def test_identical_values_give_p_one():
    c = stats.compare(A, dict(A), "auto")
    assert c.p == 1.0
    assert "identical" in c.note


def test_unknown_test_is_an_error():
    with pytest.raises(ValueError, match="welch"):
        stats.compare(A, B, "welsh")


def test_holm_matches_hand_computation():
    # m = 4 tested; sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005 = 0.02, 3*0.01 = 0.03, 2*0.03 = 0.06,
    # then max(1*0.04, 0.06) = 0.06 (monotone step-down)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, None])
    assert adjusted[4] is None
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)


def test_holm_caps_at_one_and_is_monotone():
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    rng = np.random.default_rng(1)
    p = list(rng.uniform(0, 0.2, size=12))
    adjusted = stats.holm(p)
    order = np.argsort(p)
    ranked = [adjusted[i] for i in order]
    assert ranked == sorted(ranked)
    assert all(q >= r for q, r in zip(adjusted, p, strict=True))


def test_adjust_none_keeps_values():
    assert stats.adjust([0.01, None, 0.2], "none") == [0.01, None, 0.2]
    with pytest.raises(ValueError):
        stats.adjust([0.1], "bonferoni")


def test_bootstrap_ci_matches_scipy_with_the_same_generator():
    x = list(A.values())
    ci = stats.bootstrap_ci(x, 0.9, n_resamples=2000, seed=3)
    assert ci is not None
    low, high = ci
    kw = "rng" if "rng" in inspect.signature(st.bootstrap).parameters else "random_state"
    ref = st.bootstrap((np.array(x),), np.mean, confidence_level=0.9, n_resamples=2000, method="percentile",
                       **{kw: np.random.default_rng(3)})
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert low <= np.mean(x) <= high
    assert stats.bootstrap_ci([0.5]) is None
    assert stats.bootstrap_ci([0.5, 0.5]) == (0.5, 0.5)
