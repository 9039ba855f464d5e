"""Drift evaluations end to end (logs -> views -> SQL -> store), checked against scipy/numpy."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from click.testing import CliRunner
from conftest import DEFAULT_TIME, event_line, one, rows, write_lines
from scipy import stats as sps
from sqlglot.errors import ErrorLevel

from apimon.cli import main
from apimon.config import load_project
from apimon.drift.evaluate import windows_of
from apimon.refresh import refresh
from apimon.sqlutil import render_checked

# Tolerances: KS and Wasserstein are computed in SQL from exact counts, so they agree with
# scipy to floating-point rounding; p-values are scipy's own functions on the same inputs.
EXACT = 1e-12


def _project(
    tmp_path: Path,
    reference: dict[str, list[Any]],
    days: list[list[dict[str, Any]]],
    extra: str = "",
) -> Any:
    pq.write_table(pa.table(reference), tmp_path / "reference.parquet")
    (tmp_path / "apimon.toml").write_text(
        "[ingest]\npartial_line_grace_seconds = 0\n[drift]\nmin_rows = 1\n"
        'windows = ["day", "all"]\n[[sources]]\npath = "logs"\n'
        '[[models]]\nname = "m"\nservice = "s"\nendpoint = "e"\n'
        'reference = "reference.parquet"\ntarget = "label"\nkeys = []\n' + extra
    )
    for d, features in enumerate(days):
        at = DEFAULT_TIME + dt.timedelta(days=d)
        lines = [
            event_line(
                i,
                at=at + dt.timedelta(seconds=i),
                serviceId="s",
                endpointId="e",
                features=f,
                result={"prediction": 1.5},
            )
            for i, f in enumerate(features)
        ]
        write_lines(tmp_path / "logs/apinode-query/k" / at.strftime("%Y/%m/%d/%H") / "e.log", lines)
    project = load_project(tmp_path)
    refresh(project)
    return project


def _drift(
    project: Any, column: str, window: str = "day", start: str = "2026-11-02"
) -> dict[str, Any]:
    cursor_rows = rows(
        project,
        "select c.* from column_drift c join evaluations e using (evaluation_id) "
        "where e.window_kind = ? and e.window_start = ? and c.column_name = ?",
        [window, start, column],
    )
    names = [
        r[0]
        for r in rows(
            project,
            "select column_name from duckdb_columns() "
            "where table_name = 'column_drift' order by column_index",
        )
    ]
    assert len(cursor_rows) == 1
    return dict(zip(names, cursor_rows[0], strict=True))


def _hist(project: Any, column: str) -> tuple[list[int], list[int]]:
    got = rows(
        project,
        "select h.reference_count, h.current_count from histograms h "
        "join evaluations e using (evaluation_id) where e.window_kind = 'day' "
        "and h.column_name = ? order by h.bin",
        [column],
    )
    return [r[0] for r in got], [r[1] for r in got]


def test_numeric_statistics_equal_scipy_on_the_same_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    ref = np.round(rng.normal(50, 10, 3000), 2)
    cur = np.round(rng.normal(53, 12, 400), 2)
    project = _project(
        tmp_path, {"x": ref.tolist(), "label": [0] * len(ref)}, [[{"x": v} for v in cur]]
    )

    got = _drift(project, "x")

    expected = sps.ks_2samp(ref, cur)
    assert got["ks_statistic"] == pytest.approx(float(expected.statistic), abs=EXACT)
    assert got["ks_pvalue"] == pytest.approx(float(expected.pvalue), rel=1e-9)
    assert got["wasserstein"] == pytest.approx(sps.wasserstein_distance(ref, cur), rel=1e-10)
    assert got["wasserstein_norm"] == pytest.approx(
        sps.wasserstein_distance(ref, cur) / ref.std(), rel=1e-10
    )
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1)
    p, q = np.maximum(ref_counts / len(ref), 0.001), np.maximum(cur_counts / len(cur), 0.001)
    assert got["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-10)
    assert _hist(project, "x") == ([0, *ref_counts.tolist()], [0, *cur_counts.tolist()])
    assert (got["null_share_reference"], got["null_share_current"]) == (0.0, 0.0)


def test_large_windows_use_the_asymptotic_pvalue_as_scipy_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=12_000)
    cur = rng.normal(0.01, size=11_000)
    project = _project(
        tmp_path, {"x": ref.tolist(), "label": [0] * len(ref)}, [[{"x": v} for v in cur]]
    )

    got = _drift(project, "x")

    expected = sps.ks_2samp(ref, cur)
    assert got["ks_statistic"] == pytest.approx(float(expected.statistic), abs=EXACT)
    assert got["ks_pvalue"] == pytest.approx(float(expected.pvalue), rel=1e-9)


def test_identical_distributions_have_zero_drift(tmp_path: Path) -> None:
    values = [1.0, 2.0, 2.0, 3.5, 7.0, 7.0, 7.0, 10.0] * 5
    project = _project(
        tmp_path, {"x": values, "label": [0] * len(values)}, [[{"x": v} for v in values]]
    )

    got = _drift(project, "x")

    assert (got["psi"], got["ks_statistic"], got["wasserstein"], got["js_distance"]) == (
        pytest.approx(0.0, abs=1e-12),
        0.0,
        pytest.approx(0.0, abs=1e-12),
        pytest.approx(0.0, abs=1e-6),
    )
    assert got["drifted"] is False


def test_infinite_and_missing_values_are_binned_and_left_out_of_the_cdfs(tmp_path: Path) -> None:
    ref = [1.0, 2.0, 3.0, 4.0, math.inf, -math.inf, math.nan, None, 5.0, 6.0]
    current = [{"x": 1.5}, {"x": 2.5}, {"x": 1e400}, {"x": None}, {}, {"x": 9.0}]
    project = _project(tmp_path, {"x": ref, "label": [0] * len(ref)}, [current])

    got = _drift(project, "x")

    ref_finite = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    cur_finite = np.array([1.5, 2.5, 9.0])
    assert got["ks_statistic"] == pytest.approx(
        float(sps.ks_2samp(ref_finite, cur_finite).statistic), abs=EXACT
    )
    assert got["wasserstein"] == pytest.approx(
        sps.wasserstein_distance(ref_finite, cur_finite), rel=1e-10
    )
    assert got["null_share_reference"] == pytest.approx(2 / 10)
    assert got["null_share_current"] == pytest.approx(2 / 6)
    reference_counts, current_counts = _hist(project, "x")
    assert (sum(reference_counts), sum(current_counts)) == (10, 6)
    assert current_counts[-1] == 2  # 9.0 and 1e400 (read as +inf): the open top bin


def test_an_all_null_column_drifts_on_its_missing_share(tmp_path: Path) -> None:
    ref = [float(i) for i in range(50)]
    project = _project(tmp_path, {"x": ref, "label": [0] * 50}, [[{"x": None} for _ in range(20)]])

    got = _drift(project, "x")

    assert got["null_share_current"] == 1.0
    assert (got["ks_statistic"], got["wasserstein"]) == (None, None)
    p = np.maximum(np.array([0, *[5] * 10]) / 50, 0.001)
    q = np.maximum(np.array([20, *[0] * 10]) / 20, 0.001)
    assert got["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-10)
    assert got["drifted"] is True


def test_categorical_statistics_with_unseen_categories(tmp_path: Path) -> None:
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 20 + ["b"] * 20 + ["d"] * 10 + [None] * 5
    project = _project(
        tmp_path,
        {"c": ref, "label": [0] * 100},
        [[{"c": v} if v is not None else {} for v in cur]],
    )

    got = _drift(project, "c")

    # bins in order: other (-3), unseen (-2), missing (-1), a, b, c
    reference_counts, current_counts = _hist(project, "c")
    assert (reference_counts, current_counts) == ([0, 0, 0, 50, 30, 20], [0, 10, 5, 20, 20, 0])
    table = np.array([[0, 0, 50, 30, 20], [10, 5, 20, 20, 0]])
    chi2 = sps.chi2_contingency(table, correction=False)
    assert got["chi2_statistic"] == pytest.approx(float(chi2.statistic), rel=1e-10)
    assert got["chi2_pvalue"] == pytest.approx(float(chi2.pvalue), rel=1e-10)
    assert got["unseen_share"] == pytest.approx(10 / 55)
    assert got["tv_distance"] == pytest.approx(
        0.5 * float(np.abs(table[0] / 100 - table[1] / 55).sum())
    )
    assert got["drifted"] is True


def test_a_single_category_gives_no_evidence_of_drift(tmp_path: Path) -> None:
    project = _project(tmp_path, {"c": ["only"] * 30, "label": [0] * 30}, [[{"c": "only"}] * 12])

    got = _drift(project, "c")

    assert (got["chi2_pvalue"], got["psi"], got["drifted"]) == (1.0, pytest.approx(0.0), False)


def test_tiny_samples_get_scipy_exact_pvalues(tmp_path: Path) -> None:
    project = _project(
        tmp_path, {"x": [1.0, 2.0, 3.0, 4.0], "label": [0] * 4}, [[{"x": 2.5}, {"x": 9.0}]]
    )

    got = _drift(project, "x")

    expected = sps.ks_2samp([1.0, 2.0, 3.0, 4.0], [2.5, 9.0])
    assert got["ks_statistic"] == pytest.approx(float(expected.statistic), abs=EXACT)
    assert got["ks_pvalue"] == pytest.approx(float(expected.pvalue), rel=1e-12)


def test_windows_sum_their_days_and_small_windows_are_not_judged(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=500)
    day1, day2 = rng.normal(size=300), rng.normal(size=200)
    project = _project(
        tmp_path,
        {"x": ref.tolist(), "label": [0] * 500},
        [[{"x": v} for v in day1], [{"x": v} for v in day2]],
        extra="",
    )
    config = tmp_path / "apimon.toml"
    config.write_text(config.read_text().replace("min_rows = 1", "min_rows = 250"))
    refresh(load_project(tmp_path))

    whole = _drift(project, "x", "all")
    statuses = rows(
        project,
        "select window_kind, window_start, status from evaluations "
        "order by window_kind, window_start",
    )

    both = np.concatenate([day1, day2])
    assert whole["ks_statistic"] == pytest.approx(
        float(sps.ks_2samp(ref, both).statistic), abs=EXACT
    )
    daily = rows(
        project,
        "select sum(h.current_count) from histograms h join evaluations e "
        "using (evaluation_id) where e.window_kind = 'day' and h.column_name = 'x' "
        "group by e.window_start "
        "order by e.window_start",
    )
    assert daily == [(300,), (200,)]
    assert statuses == [
        ("all", dt.date(2026, 11, 2), "no drift"),
        ("day", dt.date(2026, 11, 2), "no drift"),
        ("day", dt.date(2026, 11, 3), "not enough data"),
    ]


def test_previous_window_baseline_compares_consecutive_days(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    day1, day2 = np.round(rng.normal(size=300), 3), np.round(rng.normal(1.0, 1, size=300), 3)
    project = _project(
        tmp_path,
        {"x": [0.0, 1.0], "label": [0, 0]},
        [[{"x": v} for v in day1], [{"x": v} for v in day2]],
    )

    result = CliRunner().invoke(
        main,
        ["evaluate", "-p", str(tmp_path), "--baseline", "previous", "--window", "day", "--json"],
    )

    assert result.exit_code == 0, result.output
    got = rows(
        project,
        "select c.ks_statistic, c.wasserstein, c.drifted from column_drift c join evaluations e "
        "using (evaluation_id) where e.baseline = 'previous' and e.window_start = '2026-11-03' "
        "and c.column_name = 'x'",
    )
    assert got[0][0] == pytest.approx(float(sps.ks_2samp(day1, day2).statistic), abs=EXACT)
    assert got[0][1] == pytest.approx(sps.wasserstein_distance(day1, day2), rel=1e-10)
    assert got[0][2] is True


def test_refresh_evaluates_only_windows_whose_days_changed(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    project = _project(
        tmp_path,
        {"x": rng.normal(size=200).tolist(), "label": [0] * 200},
        [[{"x": v} for v in rng.normal(size=50)], [{"x": v} for v in rng.normal(size=50)]],
    )
    before = rows(
        project, "select window_kind, window_start, evaluation_id from evaluations order by 1, 2"
    )

    nothing = refresh(project)
    at = DEFAULT_TIME + dt.timedelta(days=1, hours=5)
    write_lines(
        tmp_path / "logs/apinode-query/k" / at.strftime("%Y/%m/%d/%H") / "late.log",
        [
            event_line(
                99,
                at=at,
                serviceId="s",
                endpointId="e",
                features={"x": 0.5},
                result={"prediction": 1.0},
            )
        ],
    )
    late = refresh(project)
    after = rows(
        project, "select window_kind, window_start, evaluation_id from evaluations order by 1, 2"
    )

    assert nothing.drift.evaluations == []
    assert sorted((e.window.kind, e.window.start) for e in late.drift.evaluations) == [
        ("all", dt.date(2026, 11, 2)),
        ("day", dt.date(2026, 11, 3)),
    ]
    assert before[1] == after[1]  # the first day's evaluation is untouched
    assert (
        one(
            project,
            "select current_rows from evaluations where window_start = '2026-11-03' "
            "and window_kind = 'day'",
        )
        == 51
    )


def test_status_exits_1_on_drift_with_fail_on_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _project(
        tmp_path,
        {"x": rng.normal(size=500).tolist(), "label": [0] * 500},
        [[{"x": v} for v in rng.normal(3.0, size=300)]],
    )

    shown = CliRunner().invoke(main, ["status", "-p", str(tmp_path), "--json"])
    failed = CliRunner().invoke(main, ["status", "-p", str(tmp_path), "--fail-on-drift"])

    latest = json.loads(shown.stdout)["drift"]
    assert {r["window"]: r["status"] for r in latest} == {"all": "drift", "day": "drift"}
    assert failed.exit_code == 1
    assert "x" in failed.stdout


def test_week_and_month_windows_cover_calendar_periods() -> None:
    days = [dt.date(2026, 11, 29), dt.date(2026, 11, 30), dt.date(2026, 12, 1)]

    weeks = [(w.start, w.end) for w in windows_of(days, "week")]
    months = [(w.start, w.end, w.previous_start) for w in windows_of(days, "month")]

    assert weeks == [
        (dt.date(2026, 11, 23), dt.date(2026, 11, 29)),
        (dt.date(2026, 11, 30), dt.date(2026, 12, 6)),
    ]
    assert months[1] == (dt.date(2026, 12, 1), dt.date(2026, 12, 31), dt.date(2026, 11, 1))


@pytest.mark.parametrize("template", ["drift/bin_counts.sql", "drift/numeric_cdf.sql"])
def test_drift_sql_transpiles_to_spark(template: str) -> None:
    context = {
        "relation": "select 1 as k, 2.0 as x, 'a' as y",
        "keys": ["k"],
        "columns": [
            {"name": "x", "kind": "numeric", "expr": "x", "unseen_bin": -2},
            {"name": "y", "kind": "categorical", "expr": "y", "unseen_bin": -2},
        ],
        "bins": "profile_bins",
        "categories": "profile_categories",
        "profile_keys": ["k"],
        "current": "select 1 as window_id, 'x' as column_name, 1.0 as v",
        "baseline": "select 1 as window_id, 'x' as column_name, 2.0 as v",
    }

    sql = render_checked(template, **context)

    assert sqlglot.transpile(sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)


def test_an_empty_window_gets_no_evaluation_and_empty_counts_no_statistics(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    _project(tmp_path, {"x": rng.normal(size=100).tolist(), "label": [0] * 100},
             [[{"x": v} for v in rng.normal(size=50)]])  # fmt: skip

    result = CliRunner().invoke(
        main, ["evaluate", "-p", str(tmp_path), "--since", "2027-01-01", "--json"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"evaluations": []}
    from apimon.drift import stats

    assert math.isnan(stats.js_distance([1, 2], [0, 0]))
    assert stats.chi2([1, 2], [0, 0]) == (0.0, 1.0)
