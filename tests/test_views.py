"""The SQL views, on a golden project with one model per envelope, and on hostile names."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlglot
from click.testing import CliRunner
from conftest import event_line, one, rows, write_lines
from sqlglot.errors import ErrorLevel

from apimon.cli import main
from apimon.config import load_project
from apimon.refresh import refresh
from apimon.sqlutil import quote_ident
from apimon.views import view_names, view_sql
from apimon.warehouse import connect

GOLDEN = Path(__file__).parent / "golden" / "views"
MODELS = ("binary", "multi", "regression")


@pytest.fixture
def golden(tmp_path: Path):
    root = tmp_path / "golden"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("expected", "*.duckdb*"))
    project = load_project(root)
    report = refresh(project)
    return project, report


def _flat_csv(project, model: str, out: Path) -> str:
    con = connect(project.database_path, read_only=True)
    try:
        con.execute(
            f"copy (select * exclude (source_file_id) from {quote_ident(model)}.flat "
            f"order by event_time) to '{out}' (header)"
        )
    finally:
        con.close()
    return out.read_text()


@pytest.mark.parametrize("model", MODELS)
def test_flat_rows_equal_the_golden_file(golden, tmp_path: Path, model: str) -> None:
    project, _ = golden

    got = _flat_csv(project, model, tmp_path / f"{model}.csv")

    assert got == (GOLDEN / "expected" / f"{model}_flat.csv").read_text()


def test_version_matching_and_the_evaluated_set(golden) -> None:
    project, report = golden

    binary = next(m for m in report.views.models if m.model == "binary")
    assert (binary.flat_rows, binary.evaluated_rows) == (5, 4)
    assert sorted(binary.versions) == [("0.9", 1), ("1.0-rc-2", 4)]
    assert one(project, 'select count(*) from "binary".evaluated') == 4
    assert rows(
        project, 'select model_version, sum(queries) from "binary".versions group by 1 order by 1'
    ) == [("0.9", 1), ("1.0-rc-2", 4)]


def test_wrong_types_and_missing_values_are_counted_per_day(golden) -> None:
    project, _ = golden

    got = rows(
        project,
        "select column_name, logged_as, kind, queries, missing, wrong_type "
        'from "binary".data_quality '
        "order by column_name",
    )

    assert got == [
        ("payment_type", "payment_type", "categorical", 5, 1, 1),
        ("transaction_amount", "amount", "numeric", 5, 0, 1),
    ]


def test_schema_check_names_unknown_and_unlogged_columns(golden) -> None:
    project, _ = golden

    got = rows(
        project,
        'select column_name, logged_as, queries_logged, status from "binary".schema_check '
        "order by column_name",
    )

    assert got == [
        ("new_field", "new_field", 1, "not in reference"),
        ("payment_type", "payment_type", 4, "ok"),
        ("prediction", "prediction", 1, "ok"),
        ("transaction_amount", "amount", 5, "ok"),
    ]


def test_health_views_count_and_match_numpy_percentiles(golden) -> None:
    project, _ = golden

    got = rows(
        project,
        "select requests, ignored, failed, p50_ms, p95_ms, clients from health_daily "
        "where service_id = 'fraud' and endpoint_id = 'predict'",
    )
    times = [1.0, 0.5]  # the answered queries that logged timings (ms)

    assert got == [
        (
            7,
            1,
            1,
            pytest.approx(float(np.percentile(times, 50))),
            pytest.approx(float(np.percentile(times, 95))),
            0,
        )
    ]
    assert one(project, "select sum(requests) from health_hourly") == 13


def test_clients_view_counts_requests_per_sender(golden) -> None:
    project, _ = golden

    got = rows(
        project,
        "select sender, requests, first_seen, last_seen from clients_daily "
        "where service_id = 'fraud' order by sender",
    )

    assert got == [
        ("10.0.0.7", 6, dt.datetime(2026, 11, 2, 10, 0, 1), dt.datetime(2026, 11, 2, 10, 0, 7)),
        ("10.0.0.8", 1, dt.datetime(2026, 11, 2, 10, 0, 3), dt.datetime(2026, 11, 2, 10, 0, 3)),
    ]


def test_every_view_works_read_only_from_another_process(golden) -> None:
    project, _ = golden
    script = (
        "import duckdb, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        'names = con.execute("select schema_name, view_name from duckdb_views() '
        'where not internal").fetchall()\n'
        "for schema, view in names:\n"
        "    quote = lambda name: '\"' + name.replace('\"', '\"\"') + '\"'\n"
        "    q = quote(schema) + '.' + quote(view)\n"
        "    print(schema + '.' + view, con.execute('select count(*) from ' + q).fetchone()[0])\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script, str(project.database_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    counted = dict(line.split() for line in result.stdout.splitlines())
    assert len(counted) == 3 + (4 + 2) * len(MODELS)  # with labelled and label_coverage
    assert (counted["binary.evaluated"], counted["main.health_daily"]) == ("4", "4")


def test_views_and_columns_carry_comments(golden) -> None:
    project, _ = golden

    views = rows(project, "select view_name, comment from duckdb_views() where not internal")
    columns = rows(
        project,
        "select comment from duckdb_columns() where table_name = 'health_daily' "
        "and column_name = 'p95_ms'",
    )

    assert all(comment for _, comment in views)
    assert columns == [("95th percentile response time of answered queries (ms)",)]


@pytest.mark.parametrize("dialect", ["spark", "trino"])
def test_every_view_transpiles(golden, dialect: str) -> None:
    project, _ = golden
    con = connect(project.database_path, read_only=True)
    try:
        names = view_names(con, project)
        texts = {name: view_sql(con, project, name, dialect) for name in names}
    finally:
        con.close()

    assert len(texts) == 3 + 4 * len(MODELS)
    for name, text in texts.items():
        assert sqlglot.parse_one(text, read=dialect), name


def test_sql_command_prints_and_lists_views(golden) -> None:
    project, _ = golden
    runner = CliRunner()

    listed = runner.invoke(main, ["sql", "-p", str(project.root)])
    printed = runner.invoke(
        main, ["sql", "multi.flat_definition", "-p", str(project.root), "--dialect", "trino"]
    )
    unknown = runner.invoke(main, ["sql", "nope", "-p", str(project.root)])

    assert "binary.flat_definition" in listed.stdout.splitlines()
    assert "JSON_EXTRACT" in printed.stdout and "proba_C" in printed.stdout
    assert unknown.exit_code == 2
    assert "no view named 'nope'; known: health_hourly" in unknown.stderr


def test_a_version_that_never_answered_is_reported_with_the_versions_seen(
    tmp_path: Path,
) -> None:
    root = tmp_path / "g"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("expected", "*.duckdb*"))
    config = root / "apimon.toml"
    config.write_text(config.read_text().replace('version = "1.0-rc-2"', 'version = "2.0"'))

    result = CliRunner().invoke(main, ["refresh", "-p", str(root)])

    assert result.exit_code == 1
    assert (
        "model 'binary': no query was scored by version 2.0, so its evaluations are empty; "
        "versions in the logs: 1.0-rc-2 (4 queries), 0.9 (1 queries)"
    ) in result.stdout


def test_refresh_rebuilds_only_the_days_whose_logs_changed(tmp_path: Path) -> None:
    root = tmp_path / "g"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("expected", "*.duckdb*"))
    project = load_project(root)
    refresh(project)

    unchanged = refresh(project)
    events = root / "logs/events/apinode-query/fraud-prod/2026/11/03/09/events.log"
    msg = json.loads(event_line(1))["clientEvent"]
    msg.update(
        serviceId="fraud",
        endpointId="predict",
        result={"prediction": "OK", "probas": {"FRAUD": 0.1, "OK": 0.9}},
    )
    write_lines(events, [event_line(msg=msg, at=dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC))])
    new_day = refresh(project)

    assert [m.days_built for m in unchanged.views.models] == [0, 0, 0]
    assert [m.days_built for m in new_day.views.models] == [1, 1, 1]
    assert one(project, 'select count(*) from "binary".flat') == 6
    assert rows(project, "select count(*) from model_days group by model") == [(2,)] * 3


def test_a_config_change_rebuilds_every_day(tmp_path: Path) -> None:
    root = tmp_path / "g"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("expected", "*.duckdb*"))
    refresh(load_project(root))
    config = root / "apimon.toml"
    config.write_text(config.read_text().replace('keys = ["request_id"]\n', "keys = []\n", 1))

    report = refresh(load_project(root))

    binary = next(m for m in report.views.models if m.model == "binary")
    assert (binary.rebuilt_all, binary.days_built) == (True, 1)
    assert "request_id" not in [
        c[0]
        for c in rows(
            load_project(root),
            "select column_name from duckdb_columns() where schema_name = 'binary' "
            "and table_name = 'flat'",
        )
    ]


HOSTILE = 'a"; drop table queries; --'
ACCENTED = "Prénom (€)"


def test_hostile_feature_names_are_ordinary_columns_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "reference.csv").write_text(
        f'"{HOSTILE.replace(chr(34), chr(34) * 2)}",{ACCENTED},label\n1.5,Zoë,0\n2.5,Zoé,1\n'
    )
    (tmp_path / "apimon.toml").write_text(
        '[ingest]\npartial_line_grace_seconds = 0\n[[sources]]\npath = "logs"\n'
        '[[models]]\nname = "m"\nservice = "s"\nendpoint = "e"\n'
        'reference = "reference.csv"\ntarget = "label"\n'
    )
    line = event_line(0, serviceId="s", endpointId="e", features={HOSTILE: 3.5, ACCENTED: "Zoë 🚀"})
    write_lines(tmp_path / "logs/apinode-query/k/2026/11/02/10/e.log", [line])
    project = load_project(tmp_path)

    report = refresh(project)

    assert report.views.models[0].flat_rows == 1
    assert rows(project, f"select {quote_ident(HOSTILE)}, {quote_ident(ACCENTED)} from m.flat") == [
        (3.5, "Zoë 🚀")
    ]
    assert one(project, "select count(*) from queries") == 1
    con = connect(project.database_path, read_only=True)
    try:
        for dialect in ("spark", "trino"):
            text = view_sql(con, project, "m.flat_definition", dialect)
            sqlglot.transpile(text, read=dialect, write=dialect, unsupported_level=ErrorLevel.RAISE)
    finally:
        con.close()
