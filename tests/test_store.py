"""Day partitions: pruning, reloading, and a day-range query that reads only that range."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from conftest import DEFAULT_TIME, event_line, one, rows, write_lines

from apimon.errors import ApimonError
from apimon.ingest import ingest
from apimon.store import list_partitions, prune, reload_days
from apimon.warehouse import connect, migrate


def _days(tmp_path: Path, count: int, per_day: int, start: dt.datetime = DEFAULT_TIME) -> None:
    for d in range(count):
        at = start + dt.timedelta(days=d)
        folder = tmp_path / "logs/apinode-query/k" / at.strftime("%Y/%m/%d/%H")
        write_lines(
            folder / "e.log",
            [event_line(d * per_day + i, at=at + dt.timedelta(seconds=i)) for i in range(per_day)],
        )


def test_prune_keeps_the_last_days_and_never_reloads_them(tmp_path: Path, make_project) -> None:
    _days(tmp_path, 5, 3)
    project = make_project()
    ingest(project)

    report = prune(project, keep_days=2, today=dt.date(2026, 11, 6))
    again = ingest(project)

    assert (report.cutoff, report.days, report.rows) == (dt.date(2026, 11, 5), 3, 9)
    assert again.loaded == 0
    assert rows(project, "select day, count(*) from queries group by day order by day") == [
        (dt.date(2026, 11, 5), 3),
        (dt.date(2026, 11, 6), 3),
    ]
    assert [p.day for p in list_partitions(connect(project.database_path))] == [
        dt.date(2026, 11, 5),
        dt.date(2026, 11, 6),
    ]


def test_prune_needs_exactly_one_bound(make_project) -> None:
    project = make_project()
    with pytest.raises(ApimonError, match="either --keep-days"):
        prune(project)
    with pytest.raises(ApimonError, match="at least 1"):
        prune(project, keep_days=0)


def test_reload_rebuilds_a_day_exactly(tmp_path: Path, make_project) -> None:
    _days(tmp_path, 3, 4)
    project = make_project()
    ingest(project)
    before = rows(project, "select * exclude (run_id) from queries order by day, line_no")

    report = reload_days(project, [dt.date(2026, 11, 3)])

    after = rows(project, "select * exclude (run_id) from queries order by day, line_no")
    assert (report.rows_before, report.rows_after, report.files) == (4, 4, 1)
    assert after == before
    assert one(project, "select count(distinct run_id) from queries where day = '2026-11-03'") == 1
    assert ingest(project).loaded == 0


def test_reload_ignores_lines_that_arrived_since_the_last_ingest(
    tmp_path: Path, make_project
) -> None:
    log = write_lines(tmp_path / "logs" / "q.log", [event_line(i) for i in range(3)])
    project = make_project()
    ingest(project)
    with log.open("a") as handle:
        handle.write(event_line(3) + "\n")

    report = reload_days(project, [DEFAULT_TIME.date()])
    later = ingest(project)

    assert (report.rows_after, later.loaded) == (3, 1)
    assert one(project, "select count(*) from queries") == 4


def test_reload_of_a_day_whose_file_is_gone_changes_nothing(tmp_path: Path, make_project) -> None:
    _days(tmp_path, 2, 2)
    project = make_project()
    ingest(project)
    gone = next((tmp_path / "logs").rglob("e.log"))
    gone.unlink()

    with pytest.raises(ApimonError, match="is gone"):
        reload_days(project, [dt.date(2026, 11, 2), dt.date(2026, 11, 3)])

    assert one(project, "select count(*) from queries") == 4


def test_reload_of_an_unknown_day_says_so(make_project, tmp_path: Path) -> None:
    _days(tmp_path, 1, 1)
    project = make_project()
    ingest(project)

    with pytest.raises(ApimonError, match="nothing to reload"):
        reload_days(project, [dt.date(2020, 1, 1)])


def test_a_day_range_query_reads_only_that_range(tmp_path: Path, make_project) -> None:
    # Small row groups stand in for the 122,880-row groups of a real warehouse.
    _days(tmp_path, 10, 2000)
    project = make_project()
    writer = duckdb.connect()
    writer.execute(f"attach '{project.database_path}' as w (row_group_size 2048)")
    writer.execute("use w")
    migrate(writer)
    ingest(project, con=writer)
    writer.close()

    con = duckdb.connect(str(project.database_path), read_only=True)
    profile = tmp_path / "profile.json"
    con.execute("pragma enable_profiling = 'json'")
    con.execute(f"pragma profiling_output = '{profile}'")
    count = con.execute(
        "select count(*) from queries where day between '2026-11-04' and '2026-11-05'"
    ).fetchone()
    con.execute("pragma disable_profiling")
    con.close()

    stats = json.loads(profile.read_text())["query"]
    assert count == (4000,)
    assert stats["total_row_groups_to_scan"] >= 10
    assert stats["total_rows_scanned"] <= 4000 + 2 * 2048
