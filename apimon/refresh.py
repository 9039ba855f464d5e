"""`apimon refresh`: the command a scheduler calls: ingest, views, then the stale evaluations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from apimon.checks import CheckRunReport, evaluate_checks
from apimon.config import Project
from apimon.drift.run import EvaluationReport, run_evaluations
from apimon.ingest import IngestReport, Progress, finish_run, ingest, start_run
from apimon.labels import LabelReport, create_label_views, labelled_days, load_labels
from apimon.views import BuildReport, build_views
from apimon.warehouse import writing

log = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    """What one refresh did, step by step."""

    ingest: IngestReport | None
    views: BuildReport
    drift: EvaluationReport
    labels: LabelReport
    checks: CheckRunReport

    @property
    def warnings(self) -> list[str]:
        return self.views.warnings

    def as_dict(self) -> dict[str, Any]:
        return {
            "ingest": self.ingest.as_dict() if self.ingest else None,
            "views": self.views.as_dict(),
            "drift": self.drift.as_dict(),
            "labels": self.labels.as_dict(),
            "checks": self.checks.as_dict(),
            "warnings": self.warnings,
        }


def refresh(
    project: Project,
    *,
    skip_ingest: bool = False,
    progress: Progress | None = None,
    wait_seconds: float = 0.0,
) -> RefreshReport:
    """Ingest new log lines, rebuild what they changed, publish; each step is a transaction."""
    with writing(project.database_path, "refresh", wait_seconds=wait_seconds) as con:
        ingested = None if skip_ingest else ingest(project, progress=progress, con=con)
        con.execute("begin transaction")
        try:
            run_id = start_run(con, project, "refresh")
            labels = load_labels(con, project, run_id)
            views = build_views(con, project, run_id)
            shapes = [m.shape for m in views.models if m.shape is not None]
            for shape in shapes:
                create_label_views(con, shape)
                labels.days[shape.model.name] |= labelled_days(con, shape, run_id)
            drift = run_evaluations(
                con, project, shapes, run_id, changed_only=True, changed_days=labels.days
            )
            checks = evaluate_checks(con, project, run_id)
            finish_run(con, run_id)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return RefreshReport(ingested, views, drift, labels, checks)
