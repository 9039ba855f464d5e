"""Checks: rules from the config, results per evaluation and day, and the status roll-up."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ProjectFactory, event_line, message, rows, write_lines

import apimon.refresh
from apimon.checks import (
    STATUS_HEADERS,
    CheckRunReport,
    check_rules,
    default_checks,
    evaluate_checks,
    latest_checks,
    status_report,
    status_rows,
    worst,
)
from apimon.cli import main
from apimon.config import CHECK_METRICS, Project, load_project, parse_project
from apimon.errors import ConfigError
from apimon.ingest import finish_run, ingest, start_run
from apimon.refresh import refresh
from apimon.warehouse import connect, writing

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "views"
UTC = dt.UTC


def judge(project: Project) -> CheckRunReport:
    """Evaluate the checks in a run of their own, as a refresh does at its end."""
    with writing(project.database_path, "test") as con:
        con.execute("begin transaction")
        run_id = start_run(con, project, "checks")
        report = evaluate_checks(con, project, run_id)
        finish_run(con, run_id)
        con.execute("commit")
    return report


def statuses(project: Project, model: str | None = None) -> dict[str, str]:
    """The status of every endpoint, model and the log store, by name."""
    con = connect(project.database_path, read_only=True)
    try:
        report = status_report(con, model)
    finally:
        con.close()
    return {s.name: s.status for s in report.subjects()}


def current(project: Project) -> dict[tuple[str, str], tuple[Any, str, Any]]:
    """The current result of each check: (check, subject) -> (value, status, window or day).

    The subject is the column, the model, `service/endpoint:routing key`, or "".
    """
    con = connect(project.database_path, read_only=True)
    try:
        checks = latest_checks(con)
    finally:
        con.close()
    return {(c.check_name, _subject(c)): (c.value, c.status, c.window_start or c.day)
            for c in checks}  # fmt: skip


def _subject(check: Any) -> str:
    if check.scope == "endpoint":
        return f"{check.service}/{check.endpoint}:{check.routing_key}"
    return str(check.column_name or check.model or "")


def with_config(project: Project, extra: str) -> Project:
    """The same project with text appended to its apimon.toml."""
    path = project.root / "apimon.toml"
    path.write_text(path.read_text() + "\n" + extra)
    return load_project(project.root)


@pytest.fixture
def golden(tmp_path: Path) -> Project:
    """The golden project of the views, refreshed: three models, one day, too few rows."""
    shutil.copytree(GOLDEN, tmp_path / "golden")
    project = load_project(tmp_path / "golden")
    refresh(project)
    return project


def changed_run(project: Project) -> int:
    """The run that last judged the checks."""
    return int(rows(project, "select max(run_id) from check_runs")[0][0])


def fake_windows(project: Project, model: str, windows: list[dict[str, Any]]) -> None:
    """Replace a model's evaluations by day windows with the given figures."""
    with writing(project.database_path, "test") as con:
        ids = [r[0] for r in con.execute(
            "select evaluation_id from evaluations where model = ?", [model]
        ).fetchall()]  # fmt: skip
        for table in ("evaluations", "column_drift", "drift_models", "performance", "histograms"):
            con.execute(f"delete from {table} where evaluation_id in (select unnest(?))", [ids])
        for i, w in enumerate(windows):
            eid = 1000 + i
            con.execute(
                "insert into evaluations values (?, ?, null, 'day', ?, ?, 'reference', ?, 100, "
                "2, null, ?, ?, now()::timestamp, '0', 'x', 1)",
                [eid, model, w["day"], w["day"], w.get("rows", 500), w.get("share"),
                 w.get("status", "no drift")],
            )  # fmt: skip
            for column, psi in w.get("psi", {}).items():
                con.execute(
                    "insert into column_drift (evaluation_id, column_name, role, kind, baseline, "
                    "psi, drifted) values (?, ?, 'feature', 'numeric', 'reference', ?, ?)",
                    [eid, column, psi, psi > 0.2],
                )
            if "drift_model" in w:
                con.execute(
                    "insert into drift_models values (?, 400, 120, ?, ?, ?, 0.01, 0.95, true, 1)",
                    [eid, w["drift_model"], w["drift_model"] - 0.05, w["drift_model"] + 0.05],
                )
            for source, accuracy in w.get("accuracy", {}).items():
                con.execute(
                    "insert into performance values (?, ?, 'accuracy', ?, null, null, 50, ?)",
                    [eid, source, accuracy, w.get("coverage")],
                )


LABELS = '[[labels]]\npath = "labels.csv"\nmodel = "binary"\n'
WINDOWS = [
    {"day": dt.date(2026, 11, 1), "share": 0.1, "psi": {"transaction_amount": 0.05,
     "payment_type": 0.01}, "drift_model": 0.52, "accuracy": {"realised": 0.90,
     "estimated": 0.88}, "coverage": 0.8},
    {"day": dt.date(2026, 11, 2), "share": 0.6, "status": "drift", "psi": {
     "transaction_amount": 0.3, "payment_type": 0.6}, "drift_model": 0.75,
     "accuracy": {"realised": 0.84, "estimated": 0.85}, "coverage": 0.05},
    {"day": dt.date(2026, 11, 3), "status": "not enough data", "rows": 12,
     "psi": {"transaction_amount": 3.0, "payment_type": 2.0}},
]  # fmt: skip


def test_default_checks_judge_every_metric_with_the_drift_settings(
    make_project: ProjectFactory,
) -> None:
    project = make_project("[drift]\npsi_threshold = 0.3\ndrift_share = 0.4\n")

    defaults = {c.metric: c for c in default_checks(project)}
    rules = check_rules(project)

    assert sorted(defaults) == sorted(CHECK_METRICS)
    assert (defaults["column_psi"].warning, defaults["column_psi"].error) == (0.3, 0.75)
    assert (defaults["drift_share"].warning, defaults["drift_share"].error) == (0.2, 0.4)
    assert defaults["label_coverage"].below
    assert sorted(r.name for r in rules) == sorted(CHECK_METRICS)


def test_an_empty_checks_list_judges_nothing(tmp_path: Path) -> None:
    assert check_rules(parse_project(tmp_path, "checks = []\n")) == []


MODEL = '[[models]]\nname = "m"\nservice = "s"\nendpoint = "e"\nreference = "r.csv"\n\n'


@pytest.mark.parametrize(
    ("check", "fix"),
    [
        ('metric = "drift_share"\nmodel = "nope"\nerror = 0.5', "no model named 'nope'"),
        ('metric = "drift_share"\ncolumn = "x"\nerror = 0.5', "remove it"),
        ('metric = "quarantined_lines"\nmodel = "m"\nerror = 5', "remove `model`"),
        ('metric = "failure_rate"', "give it a `warning` or an `error`"),
        ('metric = "failure_rate"\nwarning = 0.5\nerror = 0.1', "set `below = true`"),
        ('metric = "label_coverage"\nwarning = 0.1\nerror = 0.5\nbelow = true', "drop `below`"),
        (
            'metric = "failure_rate"\nname = "f"\nerror = 0.1\n\n'
            '[[checks]]\nmetric = "p95_latency_ms"\nname = "f"\nerror = 900',
            "give one of them another `name`",
        ),
        (
            'metric = "column_psi"\nerror = 0.5\n\n[[checks]]\nmetric = "column_psi"\n'
            'name = "psi-2"\nerror = 0.9',
            "keep one of them",
        ),
    ],
)
def test_an_invalid_check_is_refused_with_its_fix(
    make_project: ProjectFactory, check: str, fix: str
) -> None:
    project = make_project(MODEL + "[[checks]]\n" + check + "\n")

    with pytest.raises(ConfigError) as caught:
        check_rules(project)

    assert fix in str(caught.value)
    assert "[[checks]]" in str(caught.value)


def test_worst_ranks_statuses_and_ignores_nothing() -> None:
    assert worst(["healthy", "error", "warning"]) == "error"
    assert worst(["healthy", "warning"]) == "warning"
    assert worst([]) == "no data"


def test_windows_with_too_few_rows_leave_models_without_data(golden: Project) -> None:
    report = judge(golden)

    assert report.judged == rows(golden, "select count(*) from checks")[0][0] > 0
    status = statuses(golden)
    # Every window of the golden project has too few rows: no model check has a value.
    assert status["binary"] == status["multi"] == status["regression"] == "no data"
    # One of the seven queries of fraud/predict failed: 1/7 is above the 5 % error threshold.
    failed, requests = rows(
        golden,
        "select count(*) filter (where failed), count(*) from queries "
        "where service_id = 'fraud' and endpoint_id = 'predict'",
    )[0]
    value, result, day = current(golden)[("failure_rate", "fraud/predict:fraud-prod")]
    assert value == pytest.approx(failed / requests) == pytest.approx(1 / 7)
    assert (result, day) == ("error", dt.date(2026, 11, 2))
    assert status["fraud/predict"] == "error"
    # An endpoint whose model has no data is judged on its own checks.
    assert status["iris/classify"] == "healthy"
    stored = rows(
        golden,
        "select count(*), count(\"value\") from checks where scope in ('model', 'column')",
    )[0]
    assert stored[0] > 0 and stored[1] == 0


def test_model_checks_judge_the_newest_window_that_had_data(golden: Project) -> None:
    project = with_config(golden, LABELS)
    fake_windows(project, "binary", WINDOWS)

    judge(project)
    now = current(project)

    # 2026-11-03 had too few rows: its results are "no data" and the 2nd's are current.
    assert now[("drift_share", "binary")] == (0.6, "error", dt.date(2026, 11, 2))
    assert now[("column_psi", "transaction_amount")][:2] == (0.3, "warning")
    assert now[("column_psi", "payment_type")][:2] == (0.6, "error")
    assert now[("drift_model_accuracy", "binary")][:2] == (0.75, "error")
    drop = now[("realised_accuracy_drop", "binary")]
    assert drop[0] == pytest.approx(0.90 - 0.84) and drop[1] == "warning"
    drop = now[("estimated_accuracy_drop", "binary")]
    assert drop[0] == pytest.approx(0.88 - 0.85) and drop[1] == "healthy"
    assert now[("label_coverage", "binary")][:2] == (0.05, "warning")
    assert rows(
        project,
        "select distinct status from checks where window_start = '2026-11-03' "
        "and scope in ('model', 'column')",
    ) == [("no data",)]
    status = statuses(project)
    assert status["binary"] == "error"
    assert status["fraud/predict"] == "error"


def test_label_coverage_is_no_data_for_a_model_without_labels(golden: Project) -> None:
    fake_windows(golden, "binary", WINDOWS)

    judge(golden)

    assert current(golden)[("label_coverage", "binary")][1] == "no data"


def test_a_check_on_a_column_overrides_the_general_one(golden: Project) -> None:
    project = with_config(
        golden,
        '[[checks]]\nmetric = "column_psi"\nwarning = 0.2\nerror = 0.5\n\n'
        '[[checks]]\nmetric = "column_psi"\ncolumn = "payment_type"\nwarning = 1.0\nerror = 2.0\n',
    )
    fake_windows(project, "binary", WINDOWS)

    judge(project)
    now = current(project)

    assert now[("column_psi", "transaction_amount")][:2] == (0.3, "warning")
    assert now[("column_psi:payment_type", "payment_type")][:2] == (0.6, "healthy")
    assert ("column_psi", "payment_type") not in now
    # Only the configured checks are judged: no default drift_share check.
    assert ("drift_share", "binary") not in now
    assert statuses(project)["binary"] == "warning"


def test_judging_again_keeps_unchanged_results_and_replaces_changed_ones(
    golden: Project,
) -> None:
    fake_windows(golden, "binary", WINDOWS)
    first = judge(golden)
    before = rows(golden, "select run_id, count(*) from checks group by run_id")

    again = judge(golden)

    assert again.changed == 0 and again.removed == 0 and again.days == 1
    assert rows(golden, "select run_id, count(*) from checks group by run_id") == before

    stricter = with_config(golden, '[[checks]]\nmetric = "drift_share"\nerror = 0.05\n')
    changed = judge(stricter)
    assert changed.removed == first.judged
    assert rows(stricter, "select distinct metric, run_id from checks") == [
        ("drift_share", changed_run(stricter))
    ]
    assert current(stricter)[("drift_share", "binary")][:2] == (0.6, "error")

    fake_windows(stricter, "binary", WINDOWS[:1])
    judge(stricter)
    assert rows(stricter, "select window_start, status from checks where model = 'binary'") == [
        (dt.date(2026, 11, 1), "error")
    ]


def test_status_of_one_model_shows_its_endpoint_only(golden: Project) -> None:
    judge(golden)

    assert set(statuses(golden, "multi")) == {"iris/classify", "multi", "log store"}


def test_status_rows_list_each_subject_then_its_failing_checks(golden: Project) -> None:
    project = with_config(golden, LABELS)
    fake_windows(project, "binary", WINDOWS)
    judge(project)
    con = connect(project.database_path, read_only=True)
    try:
        report = status_report(con)
    finally:
        con.close()

    table = status_rows(report, limit=3)

    assert all(len(row) == len(STATUS_HEADERS) for row in table)
    assert table[0][:4] == ["fraud/predict", "error", "failure_rate", "error"]
    model_rows = [i for i, row in enumerate(table) if row[0] == "  binary"]
    assert len(model_rows) == 1
    start = model_rows[0]
    assert table[start][1:5] == ["error", "column_psi", "error", "payment_type"]
    assert [row[3] for row in table[start : start + 3]] == ["error"] * 3
    assert table[start + 3][2].endswith("more (see --json)")


# Endpoint checks, on logs written for the purpose ------------------------------------


def query_line(i: int, at: dt.datetime, *, failed: bool = False, micros: float = 1000.0) -> str:
    """A query of fraud_detection/predict_fraud at a time, with a response time in µs."""
    msg = message(i, timing={"prediction": micros})
    if failed:
        msg.update(result="failure", errorType="ScoringError", errorMsg="boom")
    return event_line(i, at=at, msg=msg)


ENDPOINT = "fraud_detection/predict_fraud:fraud-prod"


def day_at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def write_day(root: Path, day: int, lines: list[str]) -> None:
    """A log file of the Event server's layout, routing key fraud-prod."""
    folder = root / "logs" / "apinode-query" / "fraud-prod" / "2026" / "11" / f"{day:02d}"
    write_lines(folder / "queries.log", lines)


def test_endpoint_checks_per_day_with_known_values(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    project = make_project()
    # Monday 2 November: ten queries, one failed, five in the morning and five at 15:00,
    # and two lines quarantined for a field of the wrong type.
    monday = [query_line(i, day_at(2, 8, i), failed=i == 0) for i in range(5)]
    monday += [query_line(5 + i, day_at(2, 15, i)) for i in range(5)]
    monday += [event_line(90 + i, at=day_at(2, 9), batchSize="x") for i in range(2)]
    write_day(tmp_path, 2, monday)
    # The next Monday, the newest day so far: three queries before 10:00, slow ones.
    micros = [1_000_000.0, 2_000_000.0, 3_000_000.0]
    write_day(tmp_path, 9, [query_line(20 + i, day_at(9, 9, i), micros=m)
                                 for i, m in enumerate(micros)])  # fmt: skip
    refresh(project)

    judge(project)
    now = current(project)

    assert rows(project, "select count(*), min(day) from quarantine") == [(2, dt.date(2026, 11, 2))]
    results = dict(
        ((metric, day), (value, status))
        for metric, day, value, status in rows(
            project, "select metric, day, \"value\", status from checks"
        )
    )  # fmt: skip
    assert results[("failure_rate", dt.date(2026, 11, 2))] == (0.1, "error")
    assert results[("quarantined_lines", dt.date(2026, 11, 2))] == (2.0, "warning")
    # The newest day is compared with the week before up to its last query (09:02): 3 of 5.
    assert results[("volume_drop", dt.date(2026, 11, 9))][0] == pytest.approx(1 - 3 / 5)
    assert results[("volume_drop", dt.date(2026, 11, 9))][1] == "healthy"
    p95 = np.percentile([m / 1000 for m in micros], 95)
    assert now[("p95_latency_ms", ENDPOINT)] == (pytest.approx(p95), "error", dt.date(2026, 11, 9))
    assert statuses(project)["log store"] == "healthy"  # its newest day has no bad line

    # A later day comes: 9 November is a whole day now, 3 queries against 10.
    write_day(tmp_path, 10, [query_line(40, day_at(10, 12))])
    ingest(project)
    report = judge(project)

    assert report.days == 2  # the new day, and the one that was the newest
    value, status = rows(
        project, "select \"value\", status from checks where metric = 'volume_drop' "
        "and day = '2026-11-09'",
    )[0]  # fmt: skip
    assert value == pytest.approx(1 - 3 / 10) and status == "warning"
    # 10 November has no week before to compare with: 9 November's drop is the current one;
    # its fast query makes the p95 check healthy again.
    assert current(project)[("volume_drop", ENDPOINT)][1:] == ("warning", dt.date(2026, 11, 9))
    assert current(project)[("p95_latency_ms", ENDPOINT)][1] == "healthy"
    assert statuses(project)["fraud_detection/predict_fraud"] == "warning"


@pytest.mark.skipif(
    "evaluate_checks" not in inspect.getsource(apimon.refresh),
    reason="apimon.refresh does not call evaluate_checks yet",
)
def test_refresh_judges_the_checks(golden: Project) -> None:
    assert rows(golden, "select count(*) from checks")[0][0] > 0
    assert statuses(golden)["fraud/predict"] == "error"


def _wired(command: str, option: str | None = None) -> bool:
    found = main.commands.get(command)
    return found is not None and (option is None or option in [p.name for p in found.params])


@pytest.mark.skipif(not _wired("status", "fail_on"), reason="`apimon status --fail-on` not wired")
def test_status_command_exits_1_only_at_the_level_asked(golden: Project) -> None:
    judge(golden)
    runner = CliRunner()

    plain = runner.invoke(main, ["status", "-p", str(golden.root)])
    on_error = runner.invoke(main, ["status", "-p", str(golden.root), "--fail-on", "error"])
    shown = runner.invoke(main, ["status", "-p", str(golden.root), "--json"])
    calm = runner.invoke(
        main, ["status", "-p", str(golden.root), "--model", "multi", "--fail-on", "warning"]
    )

    assert plain.exit_code == 0, plain.output
    assert "failure_rate" in plain.stdout and "latest drift verdicts" in plain.stdout
    assert on_error.exit_code == 1
    data = json.loads(shown.stdout)
    assert data["status"] == "error" and data["level"] == 2
    assert {r["model"] for r in data["drift"]} == {"binary", "multi", "regression"}
    assert calm.exit_code == 0, calm.output  # iris/classify and the log store are healthy
