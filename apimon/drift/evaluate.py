"""Drift evaluations: fit the reference profile, count per-day histograms, judge windows.

The heavy counting runs in DuckDB (`sql/drift/`): bin counts per day and column, and the
exact KS statistic and Wasserstein distance from both empirical CDFs. Python finishes
the statistics (`apimon.drift.stats`) and writes the evaluation store: `evaluations`,
`column_drift` and `histograms`.

Bins: -1 holds missing values, -2 categories never seen in the baseline, -3 baseline
categories beyond the most frequent ones; numeric bins 0..n-1 have open outer edges.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from apimon import __version__
from apimon.config import DriftSettings, Model, Project
from apimon.drift import stats
from apimon.errors import ApimonError
from apimon.sqlutil import quote_ident, quote_literal, render_checked
from apimon.views import ModelShape

log = logging.getLogger(__name__)

MISSING_BIN, UNSEEN_BIN, OTHER_BIN = -1, -2, -3
WINDOW_KINDS = ("day", "week", "month", "all")
BASELINES = ("reference", "previous")


@dataclass(frozen=True)
class Monitored:
    """A column of the flat table that drift is measured on."""

    name: str
    kind: str
    role: str
    reference: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def monitored_columns(shape: ModelShape) -> list[Monitored]:
    """Features, the prediction and the class probabilities (or the regression value)."""
    model = shape.model
    columns = [Monitored(f.name, f.kind, "feature", f.name) for f in shape.features]
    if shape.classes:
        columns.append(Monitored("prediction", "categorical", "prediction", model.prediction))
        columns += [
            Monitored(c.column, "numeric", "probability", model.probabilities.get(c.name))
            for c in shape.classes
        ]
    else:
        columns.append(Monitored("prediction_value", "numeric", "prediction", model.prediction))
    return columns


@dataclass(frozen=True)
class Window:
    """A window of days to evaluate, and the window just before it (for months, the month)."""

    window_id: int
    kind: str
    start: dt.date
    end: dt.date
    previous_start: dt.date
    previous_end: dt.date


def windows_of(days: Sequence[dt.date], kind: str) -> list[Window]:
    """The windows of a kind that hold the given days, in time order."""
    if kind not in WINDOW_KINDS:
        raise ApimonError(f"unknown window '{kind}'; known: {', '.join(WINDOW_KINDS)}")
    if not days:
        return []
    spans: dict[tuple[dt.date, dt.date], None] = {}
    for day in sorted(days):
        if kind == "day":
            spans[(day, day)] = None
        elif kind == "week":
            start = day - dt.timedelta(days=day.weekday())
            spans[(start, start + dt.timedelta(days=6))] = None
        elif kind == "month":
            start = day.replace(day=1)
            following = (start + dt.timedelta(days=32)).replace(day=1)
            spans[(start, following - dt.timedelta(days=1))] = None
        else:
            spans[(min(days), max(days))] = None
    windows = []
    for i, (start, end) in enumerate(spans):
        previous_end = start - dt.timedelta(days=1)
        if kind == "month":
            previous_start = previous_end.replace(day=1)  # the calendar month before
        else:
            previous_start = start - (end - start + dt.timedelta(days=1))
        windows.append(Window(i + 1, kind, start, end, previous_start, previous_end))
    return windows


# --- the reference profile -------------------------------------------------------------


def fit_profile(
    con: duckdb.DuckDBPyConnection,
    shape: ModelShape,
    settings: DriftSettings,
    reference_sha: str,
    run_id: int,
) -> bool:
    """Fit bins on the reference once; again only when the reference or the settings change."""
    model = shape.model
    columns = [c for c in monitored_columns(shape) if c.reference]
    profile_hash = hashlib.sha256(
        json.dumps(
            [reference_sha, [c.as_dict() for c in columns], settings.bins, settings.top_categories]
        ).encode()
    ).hexdigest()
    stored = con.execute(
        "select profile_hash from profiles where model = ?", [model.name]
    ).fetchone()
    if stored is not None and stored[0] == profile_hash:
        return False

    for table in ("profiles", "profile_columns", "profile_bins", "profile_categories"):
        con.execute(f"delete from {table} where model = ?", [model.name])
    reference = f"{quote_ident(model.name)}.reference"
    for column in columns:
        assert column.reference is not None
        _fit_column(con, model, column, reference, settings)
    counting = _bin_counts_sql(
        relation=f"select * from {reference}",
        keys=[],
        columns=[(c.name, c.kind, quote_ident(c.reference or c.name)) for c in columns],
        bins=_profile_relation("profile_bins", model),
        categories=_profile_relation("profile_categories", model),
        profile_keys=[],
    )
    if counting:
        con.execute(
            f"update profile_bins set reference_count = counted.n from ({counting}) as counted "
            "where profile_bins.model = ? and profile_bins.column_name = counted.column_name "
            "and profile_bins.bin = counted.bin",
            [model.name],
        )
    con.execute("insert into profiles values (?, ?, ?)", [model.name, profile_hash, run_id])
    con.execute("delete from histograms_daily where model = ?", [model.name])
    con.execute("delete from histogram_days where model = ?", [model.name])
    log.info("model %s: fitted the reference profile of %d columns", model.name, len(columns))
    return True


def _fit_column(
    con: duckdb.DuckDBPyConnection,
    model: Model,
    column: Monitored,
    reference: str,
    settings: DriftSettings,
) -> None:
    source = quote_ident(column.reference or column.name)
    if column.kind == "numeric":
        probabilities = [i / settings.bins for i in range(1, settings.bins)]
        row = con.execute(
            f"select count(*), count(*) filter (where {source} is null or isnan({source})), "
            f"stddev_pop({source}) filter (where isfinite({source})), "
            f"quantile_cont({source}, ?) filter (where isfinite({source})) "
            f"from (select cast({source} as double) as {source} from {reference})",
            [probabilities],
        ).fetchone()
        assert row is not None
        rows, nulls, std, quantiles = row
        edges = sorted({float(q) for q in quantiles or []})
        bins = numeric_bins(edges)
        con.execute(
            "insert into profile_columns values (?, ?, ?, ?, ?, ?, ?, ?, null)",
            [model.name, column.name, column.role, column.kind, column.reference, rows, nulls, std],
        )
        for bin_, label, lower, upper in bins:
            con.execute(
                "insert into profile_bins values (?, ?, ?, ?, ?, ?, null, 0)",
                [model.name, column.name, bin_, label, lower, upper],
            )
        con.execute(
            "insert into profile_bins values (?, ?, ?, '(missing)', null, null, null, 0)",
            [model.name, column.name, MISSING_BIN],
        )
        return

    categories = con.execute(
        f"select cast({source} as varchar) as category, count(*) as n from {reference} "
        f"where {source} is not null group by 1 order by n desc, category"
    ).fetchall()
    total = con.execute(f"select count(*) from {reference}").fetchone()
    nulls = con.execute(f"select count(*) from {reference} where {source} is null").fetchone()
    assert total is not None and nulls is not None
    con.execute(
        "insert into profile_columns values (?, ?, ?, ?, ?, ?, ?, null, ?)",
        [model.name, column.name, column.role, column.kind, column.reference, total[0],
         nulls[0], UNSEEN_BIN],
    )  # fmt: skip
    _insert_categories(con, "profile", [model.name], column.name, categories, settings)


def numeric_bins(edges: Sequence[float]) -> list[tuple[int, str, float | None, float | None]]:
    """Bins between sorted edges, the outer ones open: (bin, label, lower, upper)."""
    bounds: list[float | None] = [None, *edges, None]
    bins = []
    for i in range(len(bounds) - 1):
        lower, upper = bounds[i], bounds[i + 1]
        label = f"({'-inf' if lower is None else f'{lower:.6g}'}, " + (
            "+inf)" if upper is None else f"{upper:.6g}]"
        )
        bins.append((i, label, lower, upper))
    return bins


def _insert_categories(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    key: list[Any],
    column_name: str,
    categories: Sequence[tuple[str, int]],
    settings: DriftSettings,
) -> None:
    """Bins of a categorical column: its most frequent categories, others, unseen, missing."""
    top = categories[: settings.top_categories]
    bins_table, categories_table = (
        ("profile_bins", "profile_categories")
        if kind == "profile"
        else ("window_bins", "window_categories")
    )
    width = len(key)
    rows = [(*key, column_name, i, str(c), None, None, str(c), 0) for i, (c, _) in enumerate(top)]
    rows += [
        (*key, column_name, OTHER_BIN, "(other)", None, None, None, 0),
        (*key, column_name, UNSEEN_BIN, "(unseen)", None, None, None, 0),
        (*key, column_name, MISSING_BIN, "(missing)", None, None, None, 0),
    ]
    placeholders = ", ".join(["?"] * (width + 7))
    con.executemany(f"insert into {bins_table} values ({placeholders})", rows)
    mapping = [
        (*key, column_name, str(c), i if i < settings.top_categories else OTHER_BIN, n)
        for i, (c, n) in enumerate(categories)
    ]
    if mapping:
        placeholders = ", ".join(["?"] * (width + 4))
        con.executemany(f"insert into {categories_table} values ({placeholders})", mapping)


def _profile_relation(table: str, model: Model) -> str:
    return f"(select * from {table} where model = {quote_literal(model.name)})"


def _bin_counts_sql(
    *,
    relation: str,
    keys: list[str],
    columns: list[tuple[str, str, str]],
    bins: str,
    categories: str,
    profile_keys: list[str],
) -> str:
    """The statement counting a relation's values in fitted bins ('' without columns)."""
    if not columns:
        return ""
    return render_checked(
        "drift/bin_counts.sql",
        relation=relation,
        keys=keys,
        columns=[
            {"name": name, "kind": kind, "expr": expr, "unseen_bin": UNSEEN_BIN}
            for name, kind, expr in columns
        ],
        bins=bins,
        categories=categories,
        profile_keys=profile_keys,
    )


def _count_bins(con: duckdb.DuckDBPyConnection, **spec: Any) -> list[tuple[Any, ...]]:
    sql = _bin_counts_sql(**spec)
    return con.execute(sql).fetchall() if sql else []


# --- per-day histograms ------------------------------------------------------------------


def update_histograms(
    con: duckdb.DuckDBPyConnection, shape: ModelShape, run_id: int
) -> list[dt.date]:
    """Count the days whose flat rows changed since their histograms were made."""
    model = shape.model
    days = [
        r[0]
        for r in con.execute(
            "select d.day from model_days as d left join histogram_days as h "
            "on h.model = d.model and h.day = d.day "
            "where d.model = ? and (h.day is null or d.built_run > h.built_run) order by d.day",
            [model.name],
        ).fetchall()
    ]
    con.execute(
        "delete from histograms_daily where model = ? and day not in "
        "(select day from model_days where model = ?)",
        [model.name, model.name],
    )
    con.execute(
        "delete from histogram_days where model = ? and day not in "
        "(select day from model_days where model = ?)",
        [model.name, model.name],
    )
    if not days:
        return []
    con.execute("create or replace temp table histogram_build_days (day date)")
    con.executemany("insert into histogram_build_days values (?)", [[d] for d in days])
    columns = [
        (c.name, c.kind, quote_ident(c.name)) for c in monitored_columns(shape) if c.reference
    ]
    con.execute(
        "delete from histograms_daily where model = ? "
        "and day in (select day from histogram_build_days)",
        [model.name],
    )
    con.execute(
        "delete from histogram_days where model = ? "
        "and day in (select day from histogram_build_days)",
        [model.name],
    )
    counting = _bin_counts_sql(
        relation=(
            f"select * from {quote_ident(model.name)}.flat "
            "where day in (select day from histogram_build_days)"
        ),
        keys=["model_version", "day"],
        columns=columns,
        bins=_profile_relation("profile_bins", model),
        categories=_profile_relation("profile_categories", model),
        profile_keys=[],
    )
    if counting:
        con.execute(
            "insert into histograms_daily "
            f"select {quote_literal(model.name)}, model_version, day, column_name, bin, n "
            f"from ({counting})"
        )
    con.executemany(
        "insert into histogram_days values (?, ?, ?)", [(model.name, d, run_id) for d in days]
    )
    return days


# --- evaluations -------------------------------------------------------------------------


@dataclass
class ColumnResult:
    """The drift of one column in one evaluation."""

    column: Monitored
    baseline: str
    reference_rows: int = 0
    current_rows: int = 0
    psi: float = math.nan
    ks_statistic: float = math.nan
    ks_pvalue: float = math.nan
    wasserstein: float = math.nan
    wasserstein_norm: float = math.nan
    js_distance: float = math.nan
    chi2_statistic: float = math.nan
    chi2_pvalue: float = math.nan
    tv_distance: float = math.nan
    unseen_share: float = math.nan
    null_share_reference: float = math.nan
    null_share_current: float = math.nan
    pvalue_adjusted: float = math.nan
    drifted: bool | None = None
    bins: list[tuple[int, str, float | None, float | None, str | None, int, int]] = field(
        default_factory=list
    )

    @property
    def pvalue(self) -> float:
        return self.ks_pvalue if self.column.kind == "numeric" else self.chi2_pvalue


@dataclass
class Evaluation:
    """One evaluation: a model, a window, a baseline, and the drift of each column."""

    model: str
    model_version: str | None
    window: Window
    baseline: str
    current_rows: int
    reference_rows: int | None
    columns: list[ColumnResult]
    status: str = ""
    drift_share: float | None = None
    drifting_columns: int | None = None
    evaluation_id: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "evaluation_id": self.evaluation_id,
            "model": self.model,
            "model_version": self.model_version,
            "window": self.window.kind,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "baseline": self.baseline,
            "current_rows": self.current_rows,
            "reference_rows": self.reference_rows,
            "status": self.status,
            "drift_share": self.drift_share,
            "drifting_columns": [c.column.name for c in self.columns if c.drifted],
        }


def evaluate_model(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    shape: ModelShape,
    *,
    window_kind: str,
    baseline: str,
    since: dt.date | None = None,
    until: dt.date | None = None,
    only_days: set[dt.date] | None = None,
    run_id: int,
) -> list[Evaluation]:
    """Evaluate every window of a kind (those touching `only_days` when given) and store them."""
    if baseline not in BASELINES:
        raise ApimonError(f"unknown baseline '{baseline}'; known: {', '.join(BASELINES)}")
    model = shape.model
    schema = quote_ident(model.name)
    days = [
        r[0]
        for r in con.execute(
            f"select distinct day from {schema}.evaluated "
            "where (? is null or day >= ?) and (? is null or day <= ?) order by day",
            [since, since, until, until],
        ).fetchall()
    ]
    settings = project.settings.drift
    columns = monitored_columns(shape)
    by_reference = [c for c in columns if baseline == "reference" and c.reference]
    by_previous = [c for c in columns if c not in by_reference]
    windows = windows_of(days, window_kind)
    if only_days is not None:
        # A window is stale when one of its days changed, or a day of the window before it
        # when some column is compared with that window.
        windows = [
            w for w in windows
            if any(w.start <= d <= w.end
                   or (by_previous and w.previous_start <= d <= w.previous_end)
                   for d in only_days)
        ]  # fmt: skip
    if not windows:
        return []

    _register_windows(con, windows)
    row_counts = dict(
        con.execute(
            f"select w.window_id, count(*) from {schema}.evaluated as f "
            "join eval_windows as w on f.day between w.start_day and w.end_day group by 1"
        ).fetchall()
    )
    previous_counts = dict(
        con.execute(
            f"select w.window_id, count(*) from {schema}.evaluated as f "
            "join eval_windows as w on f.day between w.previous_start and w.previous_end "
            "group by 1"
        ).fetchall()
    )
    reference_rows = con.execute(f"select count(*) from {schema}.reference").fetchone()

    results: dict[int, list[ColumnResult]] = defaultdict(list)
    if by_reference:
        for window_id, result in _against_reference(con, shape, by_reference):
            results[window_id].append(result)
    if by_previous:
        for window_id, result in _against_previous(con, shape, by_previous, settings):
            results[window_id].append(result)

    thresholds = stats.Thresholds(
        settings.confidence, settings.psi_threshold, settings.wasserstein_threshold,
        settings.js_threshold,
    )  # fmt: skip
    version = model.version if model.match_version else None
    evaluations = []
    for window in windows:
        current = int(row_counts.get(window.window_id, 0))
        evaluation = Evaluation(
            model=model.name,
            model_version=version,
            window=window,
            baseline=baseline,
            current_rows=current,
            reference_rows=(
                int(reference_rows[0])
                if baseline == "reference" and reference_rows
                else int(previous_counts.get(window.window_id, 0))
            ),
            columns=sorted(
                results.get(window.window_id, []), key=lambda r: columns.index(r.column)
            ),
        )
        judge(evaluation, thresholds, settings)
        evaluations.append(evaluation)
    store(con, project, evaluations, run_id)
    return evaluations


def _register_windows(con: duckdb.DuckDBPyConnection, windows: Sequence[Window]) -> None:
    con.execute(
        "create or replace temp table eval_windows (window_id integer, start_day date, "
        "end_day date, previous_start date, previous_end date)"
    )
    con.executemany(
        "insert into eval_windows values (?, ?, ?, ?, ?)",
        [(w.window_id, w.start, w.end, w.previous_start, w.previous_end) for w in windows],
    )


def _against_reference(
    con: duckdb.DuckDBPyConnection, shape: ModelShape, columns: Sequence[Monitored]
) -> list[tuple[int, ColumnResult]]:
    model = shape.model
    schema = quote_ident(model.name)
    version_filter = model.version if (model.match_version and model.version) else None
    current = con.execute(
        "select w.window_id, h.column_name, h.bin, sum(h.count) from histograms_daily as h "
        "join eval_windows as w on h.day between w.start_day and w.end_day "
        "where h.model = ? and (? is null or h.model_version = ?) group by all",
        [model.name, version_filter, version_filter],
    ).fetchall()
    current_counts: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)
    for window_id, column_name, bin_, n in current:
        current_counts[(window_id, column_name)][bin_] = int(n)
    bins = con.execute(
        "select column_name, bin, label, lower, upper, category, reference_count "
        "from profile_bins where model = ? order by column_name, bin",
        [model.name],
    ).fetchall()
    profile: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in bins:
        profile[row[0]].append(row[1:])
    stds = dict(
        con.execute(
            "select column_name, reference_std from profile_columns where model = ?",
            [model.name],
        ).fetchall()
    )

    numeric = [c for c in columns if c.kind == "numeric"]
    cdf = _compare_cdfs(
        con,
        current=_values_long(f"{schema}.evaluated", numeric, CURRENT_JOIN),
        baseline=_values_long(
            f"{schema}.reference", numeric, "cross join eval_windows as w", reference=True
        ),
    )

    window_ids = [r[0] for r in con.execute("select window_id from eval_windows").fetchall()]
    out = []
    for window_id in window_ids:
        for column in columns:
            result = ColumnResult(column, "reference")
            rows = profile.get(column.name, [])
            counts = current_counts.get((window_id, column.name), {})
            result.bins = [
                (b, label, lower, upper, category, int(ref), counts.get(b, 0))
                for b, label, lower, upper, category, ref in rows
            ]
            _finish(result, cdf.get((window_id, column.name)), stds.get(column.name))
            if column.kind == "numeric" and result.current_rows and math.isnan(result.ks_pvalue):
                result.ks_pvalue = _ks_pvalue(con, shape, window_id, column, result)
            out.append((window_id, result))
    return out


CURRENT_JOIN = "join eval_windows as w on f.day between w.start_day and w.end_day"


def _values_long(
    relation: str, columns: Sequence[Monitored], join: str, *, reference: bool = False
) -> str:
    """Rows of (window_id, column_name, v) for numeric columns: the input of the CDF pass."""
    return "\nunion all\n".join(
        f"select w.window_id, {quote_literal(c.name)} as column_name, "
        f"cast(f.{quote_ident((c.reference or c.name) if reference else c.name)} as double) "
        f"as v from {relation} as f {join}"
        for c in columns
    )


def _compare_cdfs(
    con: duckdb.DuckDBPyConnection, *, current: str, baseline: str
) -> dict[tuple[int, str], tuple[float, float, int, int]]:
    """KS statistic, Wasserstein distance and both sizes, per window and numeric column."""
    if not current:
        return {}
    sql = render_checked("drift/numeric_cdf.sql", current=current, baseline=baseline)
    return {
        (window_id, column_name): (ks, w, int(n_ref), int(n_cur))
        for window_id, column_name, ks, w, n_ref, n_cur in con.execute(sql).fetchall()
    }


def _finish(
    result: ColumnResult,
    cdf: tuple[float, float, int, int] | None,
    reference_std: float | None,
) -> None:
    """Statistics of one column from its bin counts and its CDF comparison."""
    reference = [b[5] for b in result.bins]
    current = [b[6] for b in result.bins]
    result.reference_rows = int(sum(reference))
    result.current_rows = int(sum(current))
    missing = [b[0] == MISSING_BIN for b in result.bins]
    if result.reference_rows:
        result.null_share_reference = (
            sum(r for r, m in zip(reference, missing, strict=True) if m) / result.reference_rows
        )
    if result.current_rows:
        result.null_share_current = (
            sum(c for c, m in zip(current, missing, strict=True) if m) / result.current_rows
        )
    if not result.reference_rows or not result.current_rows:
        return
    result.psi = stats.psi(reference, current)
    result.js_distance = stats.js_distance(reference, current)
    if result.column.kind == "categorical":
        result.tv_distance = stats.tv_distance(reference, current)
        result.chi2_statistic, result.chi2_pvalue = stats.chi2(reference, current)
        unseen = sum(b[6] for b in result.bins if b[0] == UNSEEN_BIN)
        result.unseen_share = unseen / result.current_rows
    elif cdf is not None and cdf[2] and cdf[3]:
        ks, wasserstein, n_ref, n_cur = cdf
        result.ks_statistic = float(ks)
        result.wasserstein = float(wasserstein)
        if reference_std:
            result.wasserstein_norm = float(wasserstein) / float(reference_std)
        if max(n_ref, n_cur) > stats.KS_EXACT_MAX_N:
            result.ks_pvalue = stats.ks_pvalue(float(ks), n_ref, n_cur)


def _ks_pvalue(
    con: duckdb.DuckDBPyConnection,
    shape: ModelShape,
    window_id: int,
    column: Monitored,
    result: ColumnResult,
    baseline_window: bool = False,
) -> float:
    """scipy's exact KS p-value, for samples small enough that scipy computes it exactly."""
    from scipy.stats import ks_2samp

    schema = quote_ident(shape.model.name)
    current = _finite_values(
        con,
        f"select cast(f.{quote_ident(column.name)} as double) from {schema}.evaluated as f "
        "join eval_windows as w on f.day between w.start_day and w.end_day "
        "where w.window_id = ?",
        [window_id],
    )
    if baseline_window:
        baseline = _finite_values(
            con,
            f"select cast(f.{quote_ident(column.name)} as double) from {schema}.evaluated as f "
            "join eval_windows as w on f.day between w.previous_start and w.previous_end "
            "where w.window_id = ?",
            [window_id],
        )
    else:
        baseline = _finite_values(
            con,
            f"select cast({quote_ident(column.reference or column.name)} as double) "
            f"from {schema}.reference",
            [],
        )
    if not len(current) or not len(baseline):
        return math.nan
    return float(ks_2samp(baseline, current).pvalue)


def _finite_values(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> np.ndarray:
    values = np.array([r[0] for r in con.execute(sql, params).fetchall()], dtype=float)
    finite: np.ndarray = values[np.isfinite(values)]
    return finite


def _against_previous(
    con: duckdb.DuckDBPyConnection,
    shape: ModelShape,
    columns: Sequence[Monitored],
    settings: DriftSettings,
) -> list[tuple[int, ColumnResult]]:
    """Columns judged against the window before: bins fitted on that window's values."""
    schema = quote_ident(shape.model.name)
    con.execute(
        "create or replace temp table window_bins (window_id integer, column_name varchar, "
        "bin integer, label varchar, lower double, upper double, category varchar, "
        "reference_count bigint)"
    )
    con.execute(
        "create or replace temp table window_categories (window_id integer, "
        "column_name varchar, category varchar, bin integer, reference_count bigint)"
    )
    previous_join = "join eval_windows as w on f.day between w.previous_start and w.previous_end"
    current_join = CURRENT_JOIN
    probabilities = [i / settings.bins for i in range(1, settings.bins)]
    stds: dict[tuple[int, str], float] = {}
    for column in columns:
        value = f"f.{quote_ident(column.name)}"
        if column.kind == "numeric":
            number = f"cast({value} as double)"
            fitted = con.execute(
                f"select w.window_id, stddev_pop({number}) filter (where isfinite({number})), "
                f"quantile_cont({number}, ?) filter (where isfinite({number})) "
                f"from {schema}.evaluated as f {previous_join} group by 1",
                [probabilities],
            ).fetchall()
            for window_id, std, quantiles in fitted:
                stds[(window_id, column.name)] = std
                rows = [
                    (window_id, column.name, b, label, lower, upper, None, 0)
                    for b, label, lower, upper in numeric_bins(
                        sorted({float(q) for q in quantiles or []})
                    )
                ]
                rows.append((window_id, column.name, MISSING_BIN, "(missing)", None, None, None, 0))
                con.executemany("insert into window_bins values (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        else:
            fitted = con.execute(
                f"select w.window_id, cast({value} as varchar) as category, count(*) as n "
                f"from {schema}.evaluated as f {previous_join} where {value} is not null "
                "group by all order by 1, n desc, category"
            ).fetchall()
            grouped: dict[int, list[tuple[str, int]]] = defaultdict(list)
            for window_id, category, n in fitted:
                grouped[window_id].append((category, int(n)))
            for window_id, categories in grouped.items():
                _insert_categories(con, "window", [window_id], column.name, categories, settings)

    spec = [(c.name, c.kind, quote_ident(c.name)) for c in columns]
    relation = f"select w.window_id, f.* from {schema}.evaluated as f {{join}}"
    counts = {}
    for side, join in (("baseline", previous_join), ("current", current_join)):
        for window_id, column_name, bin_, n in _count_bins(
            con, relation=relation.format(join=join), keys=["window_id"], columns=spec,
            bins="window_bins", categories="window_categories", profile_keys=["window_id"],
        ):  # fmt: skip
            counts[(side, window_id, column_name, bin_)] = int(n)

    numeric = [c for c in columns if c.kind == "numeric"]
    cdf = _compare_cdfs(
        con,
        current=_values_long(f"{schema}.evaluated", numeric, current_join),
        baseline=_values_long(f"{schema}.evaluated", numeric, previous_join),
    )

    bins = con.execute(
        "select window_id, column_name, bin, label, lower, upper, category from window_bins "
        "order by window_id, column_name, bin"
    ).fetchall()
    per_window: dict[tuple[int, str], list[tuple[Any, ...]]] = defaultdict(list)
    for window_id, column_name, *rest in bins:
        per_window[(window_id, column_name)].append(tuple(rest))
    out = []
    for (window_id, column_name), fitted_bins in per_window.items():
        column = next(c for c in columns if c.name == column_name)
        result = ColumnResult(column, "previous")
        result.bins = [
            (b, label, lower, upper, category,
             counts.get(("baseline", window_id, column_name, b), 0),
             counts.get(("current", window_id, column_name, b), 0))
            for b, label, lower, upper, category in fitted_bins
        ]  # fmt: skip
        _finish(result, cdf.get((window_id, column_name)), stds.get((window_id, column_name)))
        if column.kind == "numeric" and result.current_rows and math.isnan(result.ks_pvalue):
            result.ks_pvalue = _ks_pvalue(
                con, shape, window_id, column, result, baseline_window=True
            )
        out.append((window_id, result))
    return out


def judge(evaluation: Evaluation, thresholds: stats.Thresholds, settings: DriftSettings) -> None:
    """Adjust the evaluation's p-values together, then decide each column and the dataset."""
    if evaluation.current_rows < settings.min_rows:
        evaluation.status = "not enough data"
        return
    judged = [c for c in evaluation.columns if c.current_rows and c.reference_rows]
    adjusted = stats.benjamini_hochberg([c.pvalue for c in judged])
    for result, p in zip(judged, adjusted, strict=True):
        result.pvalue_adjusted = p
        result.drifted = stats.drifted(
            result.column.kind, result.psi, p, result.wasserstein_norm, result.js_distance,
            thresholds,
        )  # fmt: skip
    features = [c for c in judged if c.column.role == "feature"]
    drifting = [c for c in features if c.drifted]
    evaluation.drifting_columns = len([c for c in judged if c.drifted])
    evaluation.drift_share = len(drifting) / len(features) if features else None
    if evaluation.drift_share is not None and evaluation.drift_share >= settings.drift_share:
        evaluation.status = "drift"
    elif evaluation.drifting_columns:
        evaluation.status = "partial drift"
    else:
        evaluation.status = "no drift"


def store(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    evaluations: Sequence[Evaluation],
    run_id: int,
) -> None:
    """Write evaluations, replacing earlier ones of the same model, window and baseline."""
    row = con.execute("select coalesce(max(evaluation_id), 0) from evaluations").fetchone()
    next_id = int(row[0]) + 1 if row else 1
    for evaluation in evaluations:
        old = [
            r[0]
            for r in con.execute(
                "select evaluation_id from evaluations where model = ? and window_kind = ? "
                "and window_start = ? and window_end = ? and baseline = ?",
                [evaluation.model, evaluation.window.kind, evaluation.window.start,
                 evaluation.window.end, evaluation.baseline],
            ).fetchall()
        ]  # fmt: skip
        for table in (
            "histograms", "column_drift", "drift_models", "drift_model_importance",
            "performance", "evaluations",
        ):  # fmt: skip
            for old_id in old:
                con.execute(f"delete from {table} where evaluation_id = ?", [old_id])
        evaluation.evaluation_id = next_id
        next_id += 1
        features = len([c for c in evaluation.columns if c.column.role == "feature"])
        con.execute(
            "insert into evaluations values "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp, ?, ?, ?)",
            [
                evaluation.evaluation_id, evaluation.model, evaluation.model_version,
                evaluation.window.kind, evaluation.window.start, evaluation.window.end,
                evaluation.baseline, evaluation.current_rows, evaluation.reference_rows,
                features, evaluation.drifting_columns, evaluation.drift_share,
                evaluation.status, __version__, project.config_hash, run_id,
            ],
        )  # fmt: skip
        if not evaluation.columns:
            continue
        # Both tables reach DuckDB by replacement scan of these local names.
        drift_rows = pa.Table.from_pylist(  # noqa: F841
            [
                {
                    "evaluation_id": evaluation.evaluation_id,
                    "column_name": c.column.name,
                    "role": c.column.role,
                    "kind": c.column.kind,
                    "baseline": c.baseline,
                    "reference_rows": c.reference_rows,
                    "current_rows": c.current_rows,
                    **{name: _number(getattr(c, name)) for name in _STATISTICS},
                    "drifted": c.drifted,
                }
                for c in evaluation.columns
            ]
        )
        bin_rows = pa.Table.from_pylist(
            [
                {
                    "evaluation_id": evaluation.evaluation_id,
                    "column_name": c.column.name,
                    "bin": b[0],
                    "label": b[1],
                    "lower": b[2],
                    "upper": b[3],
                    "category": b[4],
                    "reference_count": b[5],
                    "current_count": b[6],
                }
                for c in evaluation.columns
                for b in c.bins
            ]
        )
        con.execute("insert into column_drift select * from drift_rows")
        if bin_rows.num_rows:
            con.execute("insert into histograms select * from bin_rows")


_STATISTICS = (
    "psi",
    "ks_statistic",
    "ks_pvalue",
    "wasserstein",
    "wasserstein_norm",
    "js_distance",
    "chi2_statistic",
    "chi2_pvalue",
    "tv_distance",
    "unseen_share",
    "null_share_reference",
    "null_share_current",
    "pvalue_adjusted",
)


def _number(value: float) -> float | None:
    """NaN is stored as NULL: a statistic that could not be computed."""
    return None if value is None or math.isnan(value) else value
