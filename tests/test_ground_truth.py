"""Drift model, performance with and without labels, late labels, export, checked independently."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import DEFAULT_TIME, event_line, rows, write_lines
from scipy import stats as sps
from sklearn import metrics as skm

from apimon.cli import main
from apimon.config import load_project
from apimon.drift import performance
from apimon.drift.model import fit_drift_model, wilson_interval
from apimon.refresh import refresh

# --- the drift model -----------------------------------------------------------------------


def _samples(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(shift, 1.0, n),
        "y": rng.normal(0.0, 1.0, n),
        "c": rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2]),
    }


COLUMNS = [("x", "numeric"), ("y", "numeric"), ("c", "categorical")]


def test_drift_model_accuracy_is_near_half_and_rarely_detects_without_drift() -> None:
    results = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        result = fit_drift_model(
            _samples(rng, 1500, 0.0), _samples(rng, 1500, 0.0), COLUMNS,
            confidence=0.95, seed=seed,
        )  # fmt: skip
        assert result is not None
        results.append(result)

    accuracies = [r.accuracy for r in results]
    assert abs(float(np.mean(accuracies)) - 0.5) < 0.02
    assert sum(r.drift_detected for r in results) <= 4  # about 5 % of 40 seeds


def test_drift_model_detects_a_strong_shift_and_names_the_column() -> None:
    rng = np.random.default_rng(1)

    result = fit_drift_model(
        _samples(rng, 2000, 0.0), _samples(rng, 2000, 1.0), COLUMNS, confidence=0.95, seed=3
    )

    assert result is not None and result.drift_detected
    assert result.accuracy > 0.65
    assert max(result.importance, key=result.importance.__getitem__) == "x"


def test_drift_model_is_reproducible() -> None:
    def once() -> Any:
        rng = np.random.default_rng(5)
        return fit_drift_model(
            _samples(rng, 800, 0.2), _samples(rng, 600, 0.0), COLUMNS, confidence=0.95, seed=9
        )

    first, second = once(), once()

    assert first is not None and second is not None
    assert (first.accuracy, first.pvalue, first.importance) == (
        second.accuracy, second.pvalue, second.importance,
    )  # fmt: skip


def test_wilson_interval_and_binomial_test_equal_their_formulas() -> None:
    k, n, confidence = 640, 1000, 0.95
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)

    assert wilson_interval(k, n, confidence) == pytest.approx((centre - half, centre + half))
    assert float(sps.binomtest(k, n, 0.5, alternative="greater").pvalue) == pytest.approx(
        float(sps.binom.sf(k - 1, n, 0.5))
    )


# --- performance metrics against scikit-learn ----------------------------------------------


def test_binary_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    score = rng.random(500)
    truth = rng.random(500) < score
    predicted = score >= 0.4

    got = performance.binary_metrics(truth, predicted, score)

    tn, fp, fn, tp = skm.confusion_matrix(truth, predicted).ravel()
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(truth, predicted))
    assert got["recall"] == pytest.approx(skm.recall_score(truth, predicted))
    assert got["f1"] == pytest.approx(skm.f1_score(truth, predicted))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, score))
    assert got["log_loss"] == pytest.approx(skm.log_loss(truth, score))
    assert [got[k] for k in ("true_positives", "false_positives", "false_negatives",
                             "true_negatives")] == [tp, fp, fn, tn]  # fmt: skip


def test_roc_auc_with_ties_equals_scikit_learn() -> None:
    truth = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    score = np.array([0.5, 0.5, 0.9, 0.2, 0.2, 0.1, 0.5, 0.9])

    assert performance.roc_auc(truth, score) == pytest.approx(skm.roc_auc_score(truth, score))


def test_multiclass_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(4)
    classes = ["A", "B", "C"]
    probabilities = rng.dirichlet([1, 1, 1], 400)
    truth = np.array([rng.choice(classes, p=p) for p in probabilities])
    predicted = np.array(classes)[probabilities.argmax(axis=1)]

    got = performance.multiclass_metrics(truth, predicted, probabilities, classes)

    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(truth, predicted, average="macro"))
    assert got["recall"] == pytest.approx(skm.recall_score(truth, predicted, average="macro"))
    assert got["f1"] == pytest.approx(skm.f1_score(truth, predicted, average="macro"))
    assert got["roc_auc"] == pytest.approx(
        skm.roc_auc_score(truth, probabilities, multi_class="ovr", average="macro", labels=classes)
    )
    assert got["log_loss"] == pytest.approx(skm.log_loss(truth, probabilities, labels=classes))


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(6)
    truth = rng.normal(100, 20, 300)
    predicted = truth + rng.normal(0, 5, 300)

    got = performance.regression_metrics(truth, predicted)

    assert got["mae"] == pytest.approx(skm.mean_absolute_error(truth, predicted))
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(truth, predicted)))
    assert got["r2"] == pytest.approx(skm.r2_score(truth, predicted))
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(truth, predicted))


# --- estimated performance (without labels) ------------------------------------------------

# Tolerances for windows of 5,000 rows: the sampling error of the realised accuracy is about
# sqrt(0.8 * 0.2 / 5000) = 0.006, of the ROC AUC about 0.008.
ACCURACY_TOLERANCE = 0.02
AUC_TOLERANCE = 0.025


def _calibrated(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, ...]:
    score = 1 / (1 + np.exp(-(rng.normal(shift, 1.5, n))))
    truth = rng.random(n) < score  # the score is the true probability: calibrated
    return score, truth


def test_estimated_performance_is_close_to_realised_on_calibrated_data() -> None:
    rng = np.random.default_rng(10)
    ref_score, ref_truth = _calibrated(rng, 20_000)
    calibration = performance.Calibration.fit(ref_truth, ref_score, chunk_rows=5000, seed=0)

    for shift in (0.0, 0.8, -0.8):  # a window whose mix of cases moved, still calibrated
        score, truth = _calibrated(rng, 5000, shift)
        predicted = score >= 0.5
        estimated = calibration.estimate(predicted, score)
        realised = performance.binary_metrics(truth, predicted, score)

        assert estimated["accuracy"] == pytest.approx(realised["accuracy"], abs=ACCURACY_TOLERANCE)
        assert estimated["roc_auc"] == pytest.approx(realised["roc_auc"], abs=AUC_TOLERANCE)


def test_estimated_performance_misses_a_change_of_calibration_as_documented() -> None:
    rng = np.random.default_rng(11)
    ref_score, ref_truth = _calibrated(rng, 20_000)
    calibration = performance.Calibration.fit(ref_truth, ref_score, chunk_rows=5000, seed=0)
    score = 1 / (1 + np.exp(-(rng.normal(0, 1.5, 5000))))
    truth = rng.random(5000) < 0.5  # the outcome no longer follows the score (concept drift)
    predicted = score >= 0.5

    estimated = calibration.estimate(predicted, score)
    realised = performance.binary_metrics(truth, predicted, score)

    # The estimate still believes the reference's calibration: it cannot see this change.
    assert realised["accuracy"] == pytest.approx(0.5, abs=0.03)
    assert estimated["accuracy"] - realised["accuracy"] > 0.15


# --- labels end to end -----------------------------------------------------------------------


def _labelled_project(tmp_path: Path) -> Any:
    rng = np.random.default_rng(12)
    ref_score = rng.random(2000)
    pq.write_table(
        pa.table({
            "x": rng.normal(size=2000), "is_bad": (rng.random(2000) < ref_score).astype(int),
            "prediction": np.where(ref_score >= 0.5, "BAD", "GOOD"),
            "proba_BAD": ref_score, "proba_GOOD": 1 - ref_score,
        }),
        tmp_path / "reference.parquet",
    )  # fmt: skip
    (tmp_path / "apimon.toml").write_text(
        "[ingest]\npartial_line_grace_seconds = 0\n[drift]\nmin_rows = 10\n"
        "drift_model_rows = 500\n"
        '[[sources]]\npath = "logs"\n'
        '[[labels]]\npath = "labels"\nmodel = "m"\n'
        '[[models]]\nname = "m"\nservice = "s"\nendpoint = "e"\n'
        'reference = "reference.parquet"\ntarget = "is_bad"\nprediction = "prediction"\n'
        '[models.probabilities]\nBAD = "proba_BAD"\nGOOD = "proba_GOOD"\n'
    )
    for d in range(3):
        at = DEFAULT_TIME + dt.timedelta(days=d)
        lines = []
        for i in range(200):
            p = float(rng.random())
            lines.append(event_line(
                i, at=at + dt.timedelta(seconds=i), serviceId="s", endpointId="e",
                features={"x": float(rng.normal())}, userContext={"request_id": f"r{d}-{i}"},
                result={"prediction": "BAD" if p >= 0.5 else "GOOD",
                        "probas": {"BAD": p, "GOOD": 1 - p}},
            ))  # fmt: skip
        write_lines(tmp_path / "logs/apinode-query/k" / at.strftime("%Y/%m/%d/%H") / "e.log", lines)
    project = load_project(tmp_path)
    refresh(project)
    return project


def _evaluation_ids(project: Any) -> dict[tuple[str, dt.date], int]:
    return {
        (kind, start): eid
        for eid, kind, start in rows(
            project, "select evaluation_id, window_kind, window_start from evaluations"
        )
    }


def test_late_labels_change_only_the_evaluations_of_their_days(tmp_path: Path) -> None:
    project = _labelled_project(tmp_path)
    before = _evaluation_ids(project)
    flat = rows(project, "select request_id, prediction from m.flat where day = '2026-11-03'")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "late.csv").write_text(
        "request_id,label\n" + "".join(f"{r},{p}\n" for r, p in flat) + ",BAD\nr9,\n"
    )

    report = refresh(project)
    after = _evaluation_ids(project)

    assert report.labels.loaded == 200 and report.labels.quarantined == 2
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {("day", dt.date(2026, 11, 3)), ("all", dt.date(2026, 11, 2))}
    realised = rows(
        project,
        'select p.metric, p."value", p."rows" from performance p join evaluations e '
        "using (evaluation_id) where e.window_kind = 'day' and e.window_start = '2026-11-03' "
        "and p.source = 'realised' and p.metric in ('accuracy', 'roc_auc') order by 1",
    )
    assert realised == [("accuracy", 1.0, 200), ("roc_auc", 1.0, 200)]
    assert rows(project, "select reason from label_quarantine order by 1") == [
        ("missing key",), ("missing label",),
    ]  # fmt: skip
    coverage = rows(project, "select day, coverage from m.label_coverage order by day")
    assert [c for _, c in coverage] == [0.0, 1.0, 0.0]
    again = refresh(project)
    assert (again.labels.files_read, again.drift.evaluations) == (0, [])


def test_every_reference_evaluation_has_a_drift_model_and_estimates(tmp_path: Path) -> None:
    project = _labelled_project(tmp_path)

    got = rows(
        project,
        "select e.window_kind, d.accuracy between d.accuracy_low and d.accuracy_high, "
        "d.sample_rows, (select count(*) from performance p where p.evaluation_id = "
        "e.evaluation_id and p.source = 'estimated') from evaluations e join drift_models d "
        "using (evaluation_id) order by e.window_kind, e.window_start",
    )
    importance = rows(project, "select distinct column_name from drift_model_importance")

    assert [(k, inside, n) for k, inside, n, _ in got] == [
        ("all", True, 1000), ("day", True, 400), ("day", True, 400), ("day", True, 400),
    ]  # fmt: skip
    assert all(estimates == 5 for *_, estimates in got)
    assert importance == [("x",)]


def test_export_queries_writes_one_row_per_key(tmp_path: Path) -> None:
    project = _labelled_project(tmp_path)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "some.csv").write_text("request_id,label\nr0-0,BAD\nr0-1,GOOD\n")
    refresh(project)
    out_all, out_unlabelled = tmp_path / "all.parquet", tmp_path / "unlabelled.csv"

    first = CliRunner().invoke(main, ["export-queries", "-p", str(tmp_path), "-o", str(out_all)])
    second = CliRunner().invoke(
        main, ["export-queries", "-p", str(tmp_path), "--unlabelled-only", "--format", "csv",
               "-o", str(out_unlabelled)],
    )  # fmt: skip

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    con = duckdb.connect()
    exported = con.execute(f"select count(*), count(distinct request_id) from '{out_all}'")
    assert exported.fetchall() == [(600, 600)]
    unlabelled = con.execute(f"select count(*) from read_csv('{out_unlabelled}')").fetchall()
    assert unlabelled == [(598,)]
