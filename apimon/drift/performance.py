"""Model performance per window: realised on labelled rows, estimated without labels.

Realised metrics are computed here from their definitions (tests compare them with
scikit-learn's). Estimated metrics follow confidence-based performance estimation: the
logged probabilities are calibrated on a reference that has both the target and the
model's probability, and the expected confusion matrix of a window is the sum of the
calibrated probabilities. It holds as long as the model's calibration holds: when the
relation between probability and outcome shifts in production, the estimate is wrong,
and only labels can tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EPSILON = 1e-15


@dataclass(frozen=True)
class Metric:
    """One performance figure of a window."""

    source: str  # realised or estimated
    metric: str
    value: float
    band_low: float | None = None
    band_high: float | None = None
    rows: int | None = None
    coverage: float | None = None


def binary_metrics(truth: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall, F1, ROC AUC, log loss and the confusion counts."""
    truth = truth.astype(bool)
    predicted = predicted.astype(bool)
    tp = float(np.sum(truth & predicted))
    fp = float(np.sum(~truth & predicted))
    fn = float(np.sum(truth & ~predicted))
    tn = float(np.sum(~truth & ~predicted))
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    clipped = np.clip(score.astype(float), EPSILON, 1 - EPSILON)
    return {
        "accuracy": (tp + tn) / n if n else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": roc_auc(truth, score),
        "log_loss": float(-np.mean(truth * np.log(clipped) + (~truth) * np.log(1 - clipped)))
        if n
        else math.nan,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
    }


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic with average ranks for ties."""
    from scipy.stats import rankdata

    positives = int(np.sum(truth))
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[truth.astype(bool)].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))  # fmt: skip


def multiclass_metrics(
    truth: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Accuracy, macro precision, recall and F1, macro one-vs-rest ROC AUC, log loss."""
    truth = truth.astype(str)
    predicted = predicted.astype(str)
    precisions, recalls, f1s, aucs = [], [], [], []
    for i, label in enumerate(classes):
        is_true, is_predicted = truth == label, predicted == label
        tp = float(np.sum(is_true & is_predicted))
        precision = tp / is_predicted.sum() if is_predicted.sum() else 0.0
        recall = tp / is_true.sum() if is_true.sum() else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        aucs.append(roc_auc(is_true, probabilities[:, i]))
    index = {label: i for i, label in enumerate(classes)}
    rows = np.array([index.get(t, -1) for t in truth])
    known = rows >= 0
    normalised = probabilities / np.clip(probabilities.sum(axis=1, keepdims=True), EPSILON, None)
    chosen = np.clip(normalised[np.arange(len(rows))[known], rows[known]], EPSILON, 1 - EPSILON)
    return {
        "accuracy": float(np.mean(truth == predicted)) if len(truth) else math.nan,
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
        "roc_auc": float(np.mean(aucs)),
        "log_loss": float(-np.mean(np.log(chosen))) if known.any() else math.nan,
    }


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and MAPE."""
    truth = truth.astype(float)
    predicted = predicted.astype(float)
    errors = predicted - truth
    variance = float(np.sum((truth - truth.mean()) ** 2))
    nonzero = np.abs(truth) > EPSILON
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(math.sqrt(np.mean(errors**2))),
        "r2": 1 - float(np.sum(errors**2)) / variance if variance else math.nan,
        "mape": float(np.mean(np.abs(errors[nonzero] / truth[nonzero]))) if nonzero.any()
        else math.nan,
    }  # fmt: skip


@dataclass
class Calibration:
    """Calibrated probability of the positive class, fitted on the reference."""

    model: Any
    chunk_std: dict[str, float]

    @classmethod
    def fit(cls, truth: np.ndarray, score: np.ndarray, chunk_rows: int, seed: int) -> Calibration:
        """Isotonic calibration of the score; the chunk-to-chunk spread of realised metrics."""
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        model.fit(score, truth.astype(float))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(truth))
        spreads: dict[str, list[float]] = {"accuracy": [], "precision": [], "recall": [],
                                           "f1": [], "roc_auc": []}  # fmt: skip
        size = max(chunk_rows, 50)
        for start in range(0, len(order) - size + 1, size):
            chunk = order[start : start + size]
            got = binary_metrics(truth[chunk], score[chunk] >= 0.5, score[chunk])
            for name in spreads:
                if not math.isnan(got[name]):
                    spreads[name].append(got[name])
        chunk_std = {k: float(np.std(v)) for k, v in spreads.items() if len(v) >= 2}
        return cls(model, chunk_std)

    def estimate(self, predicted: np.ndarray, score: np.ndarray) -> dict[str, float]:
        """Expected accuracy, precision, recall, F1 and ROC AUC of a window without labels."""
        p = np.asarray(self.model.predict(score.astype(float)), dtype=float)
        predicted = predicted.astype(bool)
        tp, fp = float(p[predicted].sum()), float((1 - p[predicted]).sum())
        fn, tn = float(p[~predicted].sum()), float((1 - p[~predicted]).sum())
        n = len(p)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        return {
            "accuracy": (tp + tn) / n if n else math.nan,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "roc_auc": expected_roc_auc(score, p),
        }


def expected_roc_auc(score: np.ndarray, probability: np.ndarray) -> float:
    """ROC AUC expected when each row is positive with its calibrated probability."""
    order = np.argsort(-score, kind="stable")
    positive = probability[order]
    negative = 1 - positive
    total_positive, total_negative = positive.sum(), negative.sum()
    if total_positive <= 0 or total_negative <= 0:
        return math.nan
    # Rows with equal scores share a step of the curve (ties count half).
    sorted_scores = score[order]
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    groups = np.split(np.arange(len(order)), boundaries)
    auc, negatives_above = 0.0, 0.0
    for group in groups:
        pos, neg = positive[group].sum(), negative[group].sum()
        auc += pos * (negatives_above + neg / 2)
        negatives_above += neg
    return float(1 - auc / (total_positive * total_negative))
