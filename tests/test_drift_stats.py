"""Drift statistics against independent computations, and the seeded verdict simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from apimon.drift import stats


def test_psi_of_identical_distributions_is_zero() -> None:
    assert stats.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)


def test_psi_equals_the_formula_with_floored_shares() -> None:
    ref, cur = np.array([50, 30, 20, 0]), np.array([10, 10, 70, 10])
    p = np.maximum(ref / ref.sum(), 0.001)
    q = np.maximum(cur / cur.sum(), 0.001)

    assert stats.psi(ref, cur) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)


def test_js_distance_equals_the_entropy_definition_in_base_2() -> None:
    ref, cur = np.array([5.0, 3.0, 2.0, 0.0]), np.array([1.0, 1.0, 1.0, 7.0])
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    expected = math.sqrt((kl(p, m) + kl(q, m)) / 2)
    assert stats.js_distance(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert stats.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_tv_distance_is_half_the_l1_distance_of_shares() -> None:
    assert stats.tv_distance([1, 1, 2], [2, 1, 1]) == pytest.approx(0.25)


def test_chi2_equals_the_textbook_homogeneity_test() -> None:
    ref, cur = np.array([40, 35, 25, 0]), np.array([30, 30, 30, 10])
    table = np.vstack([ref, cur]).astype(float)[:, [0, 1, 2, 3]]
    expected_counts = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    statistic = float(((table - expected_counts) ** 2 / expected_counts).sum())
    pvalue = float(sps.chi2.sf(statistic, df=3))

    assert stats.chi2(ref, cur) == pytest.approx((statistic, pvalue), rel=1e-10)


def test_chi2_of_a_single_category_is_no_evidence() -> None:
    assert stats.chi2([10, 0], [20, 0]) == (0.0, 1.0)


def test_ks_pvalue_equals_scipy_asymptotic_method() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=20_000), rng.normal(0.02, size=15_000)
    expected = sps.ks_2samp(a, b, method="asymp")

    got = stats.ks_pvalue(float(expected.statistic), len(a), len(b))

    assert got == pytest.approx(float(expected.pvalue), rel=1e-12)


def test_benjamini_hochberg_equals_a_direct_implementation() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan, 0.002])
    present = p[~np.isnan(p)]
    order = np.argsort(present)
    ranked = present[order] * len(present) / np.arange(1, len(present) + 1)
    adjusted_sorted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1)
    direct = np.empty_like(present)
    direct[order] = adjusted_sorted

    got = stats.benjamini_hochberg(p)

    assert math.isnan(got[4])
    assert [got[i] for i in (0, 1, 2, 3, 5)] == pytest.approx(list(direct), rel=1e-12)


def test_an_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: psi, ks, wasserstein_norm"):
        stats.method("hellinger")
    assert stats.method("psi").threshold == 0.2


# --- the seeded simulation behind the default thresholds ----------------------------------


def _verdict(reference: np.ndarray, current: np.ndarray) -> bool:
    """The default verdict of one numeric column, from the same pieces apimon computes."""
    edges = np.unique(np.quantile(reference, np.arange(1, 10) / 10))
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=11)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="left"), minlength=11)
    ks = sps.ks_2samp(reference, current)
    wasserstein_norm = sps.wasserstein_distance(reference, current) / reference.std()
    return stats.drifted(
        "numeric",
        stats.psi(ref_counts, cur_counts),
        float(ks.pvalue),
        float(wasserstein_norm),
        stats.js_distance(ref_counts, cur_counts),
        stats.Thresholds(),
    )


def test_default_verdict_rarely_flags_no_drift_on_large_samples() -> None:
    rng = np.random.default_rng(20261203)
    flagged = [_verdict(rng.normal(size=20_000), rng.normal(size=100_000)) for _ in range(60)]

    assert sum(flagged) / len(flagged) <= 0.05


def test_default_verdict_detects_a_quarter_sigma_shift_at_ten_thousand_rows() -> None:
    rng = np.random.default_rng(7)
    detected = [
        _verdict(rng.normal(size=20_000), rng.normal(0.25, 1.0, size=10_000)) for _ in range(30)
    ]

    assert all(detected)
