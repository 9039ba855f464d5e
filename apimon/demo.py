"""`apimon demo`: fill the embedded default project with a month of traffic, run every step."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apimon.config import CONFIG_FILE, load_project
from apimon.errors import ApimonError
from apimon.warehouse import WarehouseFiles

log = logging.getLogger(__name__)

DEMO_MARKER = "# apimon-demo-project"


def template_config() -> Path:
    """The default project's apimon.toml: shipped in the wheel, or in the source checkout."""
    packaged = Path(__file__).resolve().parent / "default_project" / CONFIG_FILE
    if packaged.is_file():
        return packaged
    source = Path(__file__).resolve().parent.parent / "warehouse" / CONFIG_FILE
    if source.is_file():
        return source
    raise ApimonError("the default project's apimon.toml is missing: reinstall apimon")


def default_project_dir() -> Path:
    """`./warehouse` when it holds a project, else the source checkout's, else a new one."""
    local = Path.cwd() / "warehouse"
    if (local / CONFIG_FILE).is_file():
        return local
    source = Path(__file__).resolve().parent.parent / "warehouse"
    if (source / CONFIG_FILE).is_file():
        return source
    local.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_config(), local / CONFIG_FILE)
    return local


@dataclass
class DemoSummary:
    """What the demo generated and what each step found."""

    project: str
    facts: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    story: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.project, "facts": self.facts, "steps": self.steps}

    def lines(self) -> list[str]:
        return [f"apimon demo in {self.project}", *self.story]


def run_demo(
    project: Path | None, *, rows: int = 100_000, seed: int = 42, progress: bool = True
) -> DemoSummary:
    """Generate the demo's data into the default project and run the pipeline on it."""
    from apimon.demo_data import generate_demo_data
    from apimon.refresh import refresh
    from apimon.report import write_report

    root = (project or default_project_dir()).resolve()
    config = root / CONFIG_FILE
    if not config.is_file() or DEMO_MARKER not in config.read_text(encoding="utf-8"):
        raise ApimonError(
            f"{root} is not the demo project: `apimon demo` only writes into a project made "
            f"for it (its apimon.toml starts with '{DEMO_MARKER}'); run it without --project"
        )
    loaded = load_project(root)

    log.info("generating %d queries in %s", rows, root / "data")
    story = generate_demo_data(root, rows, seed=seed)
    # The demo starts from an empty warehouse: its data were just generated anew.
    database = loaded.database_path
    for stale in (database, database.with_name(database.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(WarehouseFiles(database).folder, ignore_errors=True)

    summary = DemoSummary(project=str(root))
    summary.facts = {
        "first_day": story.first_day.isoformat(),
        "last_day": story.last_day.isoformat(),
        "rows": story.rows,
        "malformed_lines": story.malformed_lines,
        "files": story.files,
        "version_change_day": story.version_change_day.isoformat(),
        "sudden_drift_day": story.sudden_drift_day.isoformat(),
    }
    summary.story.append(
        f"generated {story.rows:,} queries from {story.first_day} to {story.last_day} in "
        f"{story.files:,} files ({story.malformed_lines} malformed lines among them)"
    )

    refreshed = refresh(loaded)
    report = refreshed.ingest
    assert report is not None
    summary.steps["ingest"] = report.as_dict()
    summary.steps["views"] = refreshed.views.as_dict()
    summary.story.append(
        f"ingest: read {report.lines_read:,} lines, loaded {report.loaded:,}, "
        f"quarantined {report.quarantined:,} "
        f"({', '.join(f'{n} {r}' for s in report.sources for r, n in s.reasons.items())})"
    )
    labelled = _write_labels(loaded.database_path, root / "data" / "labels", seed)
    summary.story.append(
        f"labels: {labelled:,} queries labelled a week late (none for the last 7 days); "
        "refreshing again loads them"
    )
    relabelled = refresh(loaded)
    summary.steps["labels"] = relabelled.labels.as_dict()
    summary.story.extend(_log_store_story(loaded.database_path))
    summary.story.extend(_views_story(loaded.database_path, refreshed.views))
    summary.steps["drift"] = refreshed.drift.as_dict()
    summary.story.extend(_drift_story(loaded.database_path))
    summary.story.extend(_performance_story(loaded.database_path))
    summary.story.append(f"warehouse: {loaded.database_path} (open it with duckdb or a BI tool)")
    report_path = write_report(loaded)
    summary.steps["report"] = str(report_path)
    summary.story.append(
        f"report: {report_path} (open it in a browser; `apimon status` lists failing checks)"
    )
    return summary


def _log_store_story(database: Path) -> list[str]:
    from apimon.warehouse import connect

    with connect(database, read_only=True) as con:
        days = con.execute(
            'select count(*), min("rows"), max("rows"), min(day), max(day) from partitions'
        ).fetchone()
        versions = con.execute(
            "select model_version, count(*), min(day), max(day) from queries "
            "group by model_version order by min(day)"
        ).fetchall()
        outcomes = con.execute(
            "select count(*) filter (ignored), count(*) filter (failed) from queries"
        ).fetchone()
    assert days is not None and outcomes is not None
    lines = [
        f"log store: {days[0]} days from {days[3]} to {days[4]}, "
        f"{days[1]:,} to {days[2]:,} rows a day"
    ]
    for version, count, first, last in versions:
        lines.append(f"  model version {version}: {count:,} queries from {first} to {last}")
    lines.append(f"  {outcomes[0]:,} ignored queries, {outcomes[1]:,} failed")
    return lines


def _views_story(database: Path, views: Any) -> list[str]:
    from apimon.sqlutil import quote_ident
    from apimon.warehouse import connect

    lines = []
    with connect(database, read_only=True) as con:
        for build in views.models:
            schema = quote_ident(build.model)
            lines.append(
                f"model {build.model}: {build.flat_rows:,} answered queries in {build.model}.flat, "
                f"{build.evaluated_rows:,} scored by the version under evaluation"
            )
            for column, wrong, missing in con.execute(
                f"select column_name, sum(wrong_type), sum(missing) from {schema}.data_quality "
                "group by 1 having sum(wrong_type) + sum(missing) > 0 order by 1"
            ).fetchall():
                lines.append(
                    f"  data quality: {column}: {wrong} of the wrong type, {missing} missing"
                )
            for column, status in con.execute(
                f"select column_name, status from {schema}.schema_check where status <> 'ok'"
            ).fetchall():
                lines.append(f"  schema check: {column}: {status}")
            for warning in build.warnings:
                lines.append(f"  warning: {warning}")
    return lines


def _drift_story(database: Path) -> list[str]:
    """Which days and columns drift, in runs of days with the same drifting columns."""
    from apimon.warehouse import connect

    with connect(database, read_only=True) as con:
        days = con.execute(
            "select e.model, e.model_version, e.window_start, e.status, "
            "coalesce(list(c.column_name order by c.role, c.column_name) "
            "filter (where c.drifted), []) "
            "from evaluations as e left join column_drift as c using (evaluation_id) "
            "where e.window_kind = 'day' and e.baseline = 'reference' "
            "group by all order by e.model, e.window_start"
        ).fetchall()
        whole = con.execute(
            "select model, window_start, window_end, status, drifting_columns, features "
            "from evaluations where window_kind = 'all' and baseline = 'reference' order by model"
        ).fetchall()
    lines = []
    runs: list[list[Any]] = []
    for model, version, day, status, columns in days:
        if runs and runs[-1][0] == model and runs[-1][3] == status and runs[-1][4] == columns:
            runs[-1][2] = day
        else:
            runs.append([model, day, day, status, columns, version])
    for model, first, last, status, columns, version in runs:
        if first == runs[0][1] and model == runs[0][0]:
            lines.append(
                f"drift of {model} against its reference (version {version or 'any'}; "
                f"evaluations start on {first}, its first day in the logs):"
            )
        span = f"{first}" if first == last else f"{first} to {last}"
        lines.append(f"  {span}: {status}" + (f": {', '.join(columns)}" if columns else ""))
    for _model, start, end, status, drifting, features in whole:
        lines.append(
            f"  whole range {start} to {end}: {status} ({drifting} drifting columns, "
            f"{features} features); see `apimon status`"
        )
    return lines


def _write_labels(database: Path, folder: Path, seed: int) -> int:
    """Ground truth for 80 % of the queries older than a week, one CSV file a day."""
    import numpy as np

    from apimon.warehouse import connect

    with connect(database, read_only=True) as con:
        rows = con.execute(
            "select day, request_id, proba_FRAUDULENT from fraud.flat "
            "where day <= (select max(day) from fraud.flat) - 7 order by day, request_id"
        ).fetchall()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    by_day: dict[Any, list[str]] = {}
    for day, request_id, probability in rows:
        if request_id is None or probability is None or rng.random() >= 0.8:
            continue
        label = "FRAUDULENT" if rng.random() < probability else "NOT_FRAUDULENT"
        by_day.setdefault(day, []).append(f"{request_id},{label}")
    for day, lines in by_day.items():
        (folder / f"labels-{day}.csv").write_text("request_id,label\n" + "\n".join(lines) + "\n")
    return sum(len(lines) for lines in by_day.values())


def _performance_story(database: Path) -> list[str]:
    from apimon.warehouse import connect

    with connect(database, read_only=True) as con:
        rows = con.execute(
            'select e.window_kind, e.window_start, e.window_end, p.source, p."value", '
            "p.band_low, p.band_high, p.coverage from performance as p "
            "join evaluations as e using (evaluation_id) "
            "where p.metric = 'accuracy' and e.window_kind = 'all' order by p.source"
        ).fetchall()
        drift_model = con.execute(
            "select d.accuracy, d.accuracy_low, d.accuracy_high, d.drift_detected "
            "from drift_models as d join evaluations as e using (evaluation_id) "
            "where e.window_kind = 'all'"
        ).fetchone()
    lines = []
    if drift_model:
        accuracy, low, high, detected = drift_model
        lines.append(
            f"drift model over the whole range: accuracy {accuracy:.3f} "
            f"[{low:.3f}, {high:.3f}], drift {'detected' if detected else 'inconclusive'}"
        )
    for _kind, start, end, source, value, low, high, coverage in rows:
        band = f" (band {low:.3f} to {high:.3f})" if low is not None else ""
        cover = f", {coverage:.0%} of queries labelled" if coverage is not None else ""
        lines.append(f"{source} accuracy {start} to {end}: {value:.3f}{band}{cover}")
    return lines
