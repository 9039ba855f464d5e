"""The seeded simulation behind the default drift verdict.

    python benchmarks/verdicts.py [--trials 100]

Draws a reference of 20,000 values from N(0, 1) and current samples of n values from
N(shift, 1), and reports how often three rules call a numeric column drifted:
- p-value: KS p <= 0.05 (what naive tools do);
- PSI: PSI > 0.2 on reference deciles;
- default: PSI > 0.2, or KS p <= 0.05 with a Wasserstein distance above 0.1 reference
  standard deviations (apimon's rule; one column, so Benjamini-Hochberg changes nothing).
A good rule stays near 0 at shift 0 whatever n, and detects practically relevant shifts.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as sps

from apimon.drift import stats


def rates(n: int, shift: float, trials: int, rng: np.random.Generator) -> tuple[float, ...]:
    """Share of trials each rule calls drift: (p-value, PSI, default)."""
    calls = np.zeros(3)
    for _ in range(trials):
        reference = rng.normal(size=20_000)
        current = rng.normal(shift, 1.0, size=n)
        edges = np.unique(np.quantile(reference, np.arange(1, 10) / 10))
        ref_counts = np.bincount(np.searchsorted(edges, reference), minlength=len(edges) + 1)
        cur_counts = np.bincount(np.searchsorted(edges, current), minlength=len(edges) + 1)
        psi = stats.psi(ref_counts, cur_counts)
        pvalue = float(sps.ks_2samp(reference, current).pvalue)
        effect = sps.wasserstein_distance(reference, current) / reference.std()
        calls += [
            pvalue <= 0.05,
            psi > 0.2,
            stats.drifted("numeric", psi, pvalue, float(effect), math_nan(), stats.Thresholds()),
        ]
    return tuple(calls / trials)


def math_nan() -> float:
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    trials = parser.parse_args().trials
    rng = np.random.default_rng(20261203)
    print(f"{'n':>8}{'shift (sd)':>12}{'p-value':>10}{'PSI':>8}{'default':>10}")
    for n in (1_000, 10_000, 100_000):
        for shift in (0.0, 0.05, 0.1, 0.25, 0.5):
            p, psi, default = rates(n, shift, trials, rng)
            print(f"{n:>8,}{shift:>12.2f}{p:>10.2f}{psi:>8.2f}{default:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
