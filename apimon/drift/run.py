"""Which evaluations a refresh or `apimon evaluate` runs, and the latest verdicts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from apimon.config import Project
from apimon.drift.evaluate import Evaluation, evaluate_model, fit_profile, update_histograms
from apimon.sqlutil import quote_ident
from apimon.views import ModelShape

log = logging.getLogger(__name__)


@dataclass
class EvaluationReport:
    """The evaluations one run computed."""

    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def drifting(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.status in ("drift", "partial drift")]

    def as_dict(self) -> dict[str, Any]:
        return {"evaluations": [e.as_dict() for e in self.evaluations]}


def run_evaluations(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    shapes: Sequence[ModelShape],
    run_id: int,
    *,
    windows: Sequence[str] | None = None,
    baseline: str = "reference",
    since: dt.date | None = None,
    until: dt.date | None = None,
    changed_only: bool = False,
    changed_days: dict[str, set[dt.date]] | None = None,
) -> EvaluationReport:
    """Bring profiles and daily histograms up to date, then evaluate the windows.

    With `changed_only`, only windows touching a day whose histograms were just rebuilt
    are evaluated again, unless the profile or the drift settings changed, which makes
    every window stale.
    """
    report = EvaluationReport()
    settings = project.settings.drift
    cache = _ModelCache()
    for shape in shapes:
        model = shape.model
        row = con.execute(
            "select sha256 from reference_files where model = ?", [model.name]
        ).fetchone()
        refitted = fit_profile(con, shape, settings, row[0] if row else "", run_id)
        rebuilt = set(update_histograms(con, shape, run_id))
        stale_config = con.execute(
            "select count(*) from evaluations where model = ? and config_hash <> ?",
            [model.name, project.config_hash],
        ).fetchone()
        only_days: set[dt.date] | None = None
        if changed_only and not refitted and not (stale_config and stale_config[0]):
            only_days = rebuilt | (changed_days or {}).get(model.name, set())
            if not only_days:
                continue
        for kind in windows or settings.windows:
            done = evaluate_model(
                con, project, shape, window_kind=kind, baseline=baseline, since=since,
                until=until, only_days=only_days, run_id=run_id,
            )  # fmt: skip
            assess(con, project, shape, done, cache)
            report.evaluations += done
        log.info(
            "model %s: %d evaluations", model.name,
            len([e for e in report.evaluations if e.model == model.name]),
        )  # fmt: skip
    return report


def latest_status(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[dict[str, Any]]:
    """The latest evaluation of each model and window kind, with its drifting columns."""
    rows = con.execute(
        "with latest as (select * from evaluations where (? is null or model = ?) "
        "and baseline = 'reference' qualify row_number() over (partition by model, window_kind "
        "order by window_end desc, window_start) = 1) "
        "select e.evaluation_id, e.model, e.model_version, e.window_kind, e.window_start, "
        "e.window_end, e.baseline, e.current_rows, e.status, e.drift_share, "
        "(select list(c.column_name order by c.column_name) from column_drift as c "
        "where c.evaluation_id = e.evaluation_id and c.drifted) "
        "from latest as e order by e.model, e.window_kind",
        [model, model],
    ).fetchall()
    keys = (
        "evaluation_id", "model", "model_version", "window", "window_start", "window_end",
        "baseline", "current_rows", "status", "drift_share", "drifting_columns",
    )  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in rows]


def column_status(con: duckdb.DuckDBPyConnection, evaluation_id: int) -> list[dict[str, Any]]:
    """The per-column results of one evaluation."""
    cursor = con.execute(
        "select column_name, role, kind, baseline, psi, ks_statistic, ks_pvalue, "
        "wasserstein_norm, js_distance, chi2_pvalue, unseen_share, null_share_current, "
        "pvalue_adjusted, drifted from column_drift where evaluation_id = ? order by drifted "
        "desc nulls last, psi desc nulls last",
        [evaluation_id],
    )
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def positive_class(shape: ModelShape) -> str | None:
    """The positive class of a binary classifier: configured, else 1/true, else the first."""
    classes = [c.name for c in shape.classes]
    if len(classes) != 2:
        return None
    if shape.model.positive_class:
        return shape.model.positive_class
    for name in ("1", "true", "True", "yes"):
        if name in classes:
            return name
    return sorted(classes)[0]


def _binary_truth(values: Sequence[Any] | np.ndarray, positive: str) -> np.ndarray:
    texts = ["" if v is None else str(v) for v in values]
    if positive in texts:
        return np.array([t == positive for t in texts])
    return np.array([_as_number(t) == 1.0 for t in texts])


def _as_number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


class _ModelCache:
    """What one run fits once per model: the surrogate importance and the calibration."""

    def __init__(self) -> None:
        self.importance: dict[str, dict[str, float]] = {}
        self.calibration: dict[str, Any] = {}


def assess(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    shape: ModelShape,
    evaluations: Sequence[Evaluation],
    cache: _ModelCache,
) -> None:
    """Drift model and performance (realised, estimated) of each evaluation, stored."""
    from apimon.drift.model import (
        fit_drift_model,
        sample_reference,
        sample_window,
        surrogate_importance,
    )

    settings = project.settings.drift
    model = shape.model
    features = [(f.name, f.kind) for f in shape.features]
    if model.name not in cache.importance:
        cache.importance[model.name] = (
            surrogate_importance(con, model.name, features, model.target,
                                 settings.drift_model_rows, settings.seed)
            if model.target and features else {}
        )  # fmt: skip
    reference = (
        sample_reference(con, model.name, features, settings.drift_model_rows, settings.seed)
        if settings.drift_model and features
        else None
    )
    for evaluation in evaluations:
        if evaluation.baseline != "reference" or evaluation.status == "not enough data":
            continue
        if reference is not None:
            current = sample_window(
                con, model.name, features, evaluation.window.start, evaluation.window.end,
                settings.drift_model_rows, settings.seed,
            )  # fmt: skip
            result = fit_drift_model(
                reference, current, features, confidence=settings.confidence, seed=settings.seed
            )
            if result is not None:
                con.execute(
                    "insert into drift_models values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [evaluation.evaluation_id, result.sample_rows, result.test_rows,
                     result.accuracy, result.accuracy_low, result.accuracy_high, result.pvalue,
                     result.confidence, result.drift_detected, result.seed],
                )  # fmt: skip
                con.executemany(
                    "insert into drift_model_importance values (?, ?, ?, ?)",
                    [[evaluation.evaluation_id, name, value,
                      cache.importance[model.name].get(name)]
                     for name, value in result.importance.items()],
                )  # fmt: skip
        _performance(con, shape, evaluation, cache, settings.seed)


def _performance(
    con: duckdb.DuckDBPyConnection,
    shape: ModelShape,
    evaluation: Evaluation,
    cache: _ModelCache,
    seed: int,
) -> None:
    from apimon.drift import performance

    model = shape.model
    schema = quote_ident(model.name)
    metrics: list[performance.Metric] = []
    positive = positive_class(shape)
    probability_columns = [c.column for c in shape.classes]
    labelled_rows: list[tuple[Any, ...]] = []
    has_labels = bool(shape.keys) and con.execute(
        "select count(*) from duckdb_views() where schema_name = ? and view_name = 'labelled'",
        [model.name],
    ).fetchone() == (1,)
    if has_labels:
        columns = ", ".join(
            ["label", "label_value", "prediction", "prediction_value"]
            + [quote_ident(c) for c in probability_columns]
        )
        labelled_rows = con.execute(
            f"select {columns} from {schema}.labelled where day between ? and ?",
            [evaluation.window.start, evaluation.window.end],
        ).fetchall()
    n, total = len(labelled_rows), evaluation.current_rows
    coverage = n / total if total else None
    if n:
        rows = np.array(labelled_rows, dtype=object)
        if positive is not None:
            score = rows[:, 4 + probability_columns.index(f"proba_{positive}")].astype(float)
            got = performance.binary_metrics(
                _binary_truth(rows[:, 0], positive), rows[:, 2] == positive, score
            )
        elif shape.classes:
            got = performance.multiclass_metrics(
                rows[:, 0].astype(str), rows[:, 2].astype(str),
                np.nan_to_num(rows[:, 4:].astype(float)), [c.name for c in shape.classes],
            )  # fmt: skip
        else:
            truth = np.array([_as_number(str(v)) for v in rows[:, 1]])
            predicted = rows[:, 3].astype(float)
            keep = np.isfinite(truth) & np.isfinite(predicted)
            got = performance.regression_metrics(truth[keep], predicted[keep])
        metrics += [performance.Metric("realised", k, v, rows=n, coverage=coverage)
                    for k, v in got.items()]  # fmt: skip

    if positive is not None and model.target and model.probabilities.get(positive):
        calibration = _calibration(con, shape, positive, total, cache, seed)
        if calibration is not None:
            window = con.execute(
                f"select prediction, {quote_ident('proba_' + positive)} from {schema}.evaluated "
                f"where day between ? and ? and {quote_ident('proba_' + positive)} is not null",
                [evaluation.window.start, evaluation.window.end],
            ).fetchall()
            if window:
                values = np.array(window, dtype=object)
                estimate = calibration.estimate(
                    values[:, 0] == positive, values[:, 1].astype(float)
                )
                for name, value in estimate.items():
                    spread = calibration.chunk_std.get(name)
                    metrics.append(performance.Metric(
                        "estimated", name, value,
                        value - 3 * spread if spread is not None else None,
                        value + 3 * spread if spread is not None else None,
                        rows=len(window), coverage=coverage,
                    ))  # fmt: skip
    if metrics:
        con.executemany(
            "insert into performance values (?, ?, ?, ?, ?, ?, ?, ?)",
            [[evaluation.evaluation_id, m.source, m.metric, _finite(m.value), m.band_low,
              m.band_high, m.rows, m.coverage] for m in metrics],
        )  # fmt: skip


def _finite(value: float) -> float | None:
    return None if value is None or value != value else value


def _calibration(
    con: duckdb.DuckDBPyConnection,
    shape: ModelShape,
    positive: str,
    window_rows: int,
    cache: _ModelCache,
    seed: int,
) -> Any:
    from apimon.drift.performance import Calibration

    model = shape.model
    if model.name in cache.calibration:
        return cache.calibration[model.name]
    column = model.probabilities[positive]
    rows = con.execute(
        f"select {quote_ident(model.target or '')}, {quote_ident(column)} "
        f"from {quote_ident(model.name)}.reference where {quote_ident(column)} is not null "
        f"and {quote_ident(model.target or '')} is not null"
    ).fetchall()
    calibration = None
    if len(rows) >= 100:
        values = np.array(rows, dtype=object)
        calibration = Calibration.fit(
            _binary_truth(values[:, 0], positive), values[:, 1].astype(float),
            chunk_rows=max(window_rows, 50), seed=seed,
        )  # fmt: skip
    cache.calibration[model.name] = calibration
    return calibration
