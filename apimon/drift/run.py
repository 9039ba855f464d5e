"""Which evaluations a refresh or `apimon evaluate` runs, and the latest verdicts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from apimon.config import Project
from apimon.drift.evaluate import Evaluation, evaluate_model, fit_profile, update_histograms
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
) -> EvaluationReport:
    """Bring profiles and daily histograms up to date, then evaluate the windows.

    With `changed_only`, only windows touching a day whose histograms were just rebuilt
    are evaluated again, unless the profile or the drift settings changed, which makes
    every window stale.
    """
    report = EvaluationReport()
    settings = project.settings.drift
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
            only_days = rebuilt
            if not only_days:
                continue
        for kind in windows or settings.windows:
            done = evaluate_model(
                con, project, shape, window_kind=kind, baseline=baseline, since=since,
                until=until, only_days=only_days, run_id=run_id,
            )  # fmt: skip
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
