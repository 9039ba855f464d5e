"""Drift statistics finished in Python from what SQL counted, and the verdict rules.

SQL hands over bin counts (reference and current, same bins) and, for numeric columns,
the exact two-sample KS statistic and Wasserstein distance. This module turns them into
PSI, Jensen-Shannon and total-variation distances, chi-square and KS p-values, adjusts the
p-values of one evaluation together (Benjamini-Hochberg) and decides which columns drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

# Shares below this floor are raised to it in PSI, so that an empty bin counts as rare,
# not as infinitely surprising.
PSI_FLOOR = 0.001
# scipy.stats.ks_2samp uses its exact p-value up to this sample size, the asymptotic one
# above; apimon follows the same rule so that its p-values equal scipy's.
KS_EXACT_MAX_N = 10_000


@dataclass(frozen=True)
class Method:
    """A drift measure: the column kinds it applies to and its default threshold."""

    name: str
    kinds: tuple[str, ...]
    threshold: float | None
    description: str


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("psi", ("numeric", "categorical"), 0.2, "population stability index on bins"),
        Method("ks", ("numeric",), None, "two-sample Kolmogorov-Smirnov test (exact statistic)"),
        Method("wasserstein_norm", ("numeric",), 0.1,
               "Wasserstein distance divided by the reference standard deviation"),
        Method("chi2", ("categorical",), None, "chi-square test of the table of counts"),
        Method("js", ("numeric", "categorical"), 0.1, "Jensen-Shannon distance (base 2)"),
        Method("tv", ("categorical",), None, "total-variation distance"),
    )
}  # fmt: skip


def method(name: str) -> Method:
    """A drift method by name; an unknown name gets the list of known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown drift method '{name}'; known: {', '.join(METHODS)}") from None


def shares(counts: Sequence[float]) -> np.ndarray:
    """Counts as shares of their total (all zero when the total is zero)."""
    array = np.asarray(counts, dtype=float)
    total = array.sum()
    return array / total if total > 0 else np.zeros_like(array)


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """PSI = sum of (q - p) * ln(q / p), p and q the bin shares floored at 0.001."""
    p = np.maximum(shares(reference), PSI_FLOOR)
    q = np.maximum(shares(current), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance in base 2 (0 identical, 1 disjoint) of the bin shares."""
    p, q = shares(reference), shares(current)
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    return float(jensenshannon(p, q, base=2))


def tv_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Total-variation distance: half the sum of absolute share differences."""
    return float(0.5 * np.abs(shares(reference) - shares(current)).sum())


def chi2(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Chi-square test of homogeneity of the two rows of counts (empty bins left out)."""
    table = np.vstack([np.asarray(reference, float), np.asarray(current, float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def ks_pvalue(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided KS p-value for a statistic and sample sizes, as scipy's asymptotic method."""
    if n_reference == 0 or n_current == 0:
        return math.nan
    m, n = sorted([float(n_reference), float(n_current)], reverse=True)
    en = m * n / (m + n)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0, 1))


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN and is not counted."""
    values = np.asarray(pvalues, dtype=float)
    adjusted = np.full(values.shape, np.nan)
    present = ~np.isnan(values)
    if present.any():
        adjusted[present] = stats.false_discovery_control(values[present], method="bh")
    return [float(v) for v in adjusted]


@dataclass(frozen=True)
class Thresholds:
    """The verdict rule's thresholds (from the [drift] section of apimon.toml)."""

    confidence: float = 0.95
    psi: float = 0.2
    wasserstein_norm: float = 0.1
    js: float = 0.1


def drifted(
    kind: str,
    psi_value: float,
    adjusted_pvalue: float,
    wasserstein_norm: float,
    js: float,
    thresholds: Thresholds,
) -> bool:
    """A column drifts on PSI alone, or on a significant test with a relevant effect size.

    Significance alone is not enough: on large samples every test is significant. The
    effect size is the normalised Wasserstein distance for numeric columns and the
    Jensen-Shannon distance for categorical ones.
    """
    if not math.isnan(psi_value) and psi_value > thresholds.psi:
        return True
    significant = not math.isnan(adjusted_pvalue) and adjusted_pvalue <= 1 - thresholds.confidence
    effect = wasserstein_norm if kind == "numeric" else js
    return (
        significant
        and not math.isnan(effect)
        and effect > (thresholds.wasserstein_norm if kind == "numeric" else thresholds.js)
    )
