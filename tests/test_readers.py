"""Readers beside the refresh: real processes reading the published file while apimon writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import DEFAULT_TIME, event_line

from apimon.warehouse import WarehouseFiles

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "views"


def _apimon(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "apimon", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("expected", "*.duckdb*"))
    config = root / "apimon.toml"
    config.write_text(config.read_text().replace("[ingest]\n", "[ingest]\nbatch_megabytes = 1\n"))
    assert subprocess.run(
        [sys.executable, "-m", "apimon", "refresh", "-p", str(root), "-q"],
        capture_output=True, text=True, timeout=120,
    ).returncode in (0, 1)  # fmt: skip
    return root


def _add_events(root: Path, count: int, day: int = 3, hour: int = 9) -> None:
    at = DEFAULT_TIME.replace(day=day, hour=hour)
    msg = json.loads(event_line(0))["clientEvent"]
    msg.update(serviceId="fraud", endpointId="predict",
               result={"prediction": "OK", "probas": {"FRAUD": 0.1, "OK": 0.9}})  # fmt: skip
    folder = root / "logs/events/apinode-query/fraud-prod" / at.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        msg["userContext"] = {"request_id": f"new-{day}-{hour}-{i}"}
        lines.append(event_line(msg=msg, at=at + dt.timedelta(milliseconds=i)))
    (folder / "more.log").write_text("\n".join(lines) + "\n")


def _count(database: Path) -> int:
    con = duckdb.connect(str(database), read_only=True)
    try:
        row = con.execute("select count(*) from queries").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("set enable_progress_bar = false")
print(con.execute("select count(*) from queries").fetchone()[0], flush=True)
# A long query over the warehouse (the hash sum makes it visit every pair), running while
# the refresh publishes.
rows, work = con.execute(
    "select count(*), sum(hash(q.line_no, r.range) % 2) from queries as q, range(?) as r",
    [int(sys.argv[2])],
).fetchone()
print(rows, flush=True)
print(con.execute("select count(*) from queries").fetchone()[0], flush=True)
"""


def test_a_reader_holding_the_warehouse_does_not_block_a_refresh(tmp_path: Path) -> None:
    root = _project(tmp_path)
    database = root / "apimon.duckdb"
    before = _count(database)
    _add_events(root, 50)

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(database), "120000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert reader.stdout is not None
    assert int(reader.stdout.readline()) == before
    refresh = _apimon("refresh", "-p", str(root), "--json")
    out, err = refresh.communicate(timeout=120)
    refreshed_while_reading = reader.poll() is None
    long_result, last = reader.communicate(timeout=120)[0].split()

    assert refresh.returncode in (0, 1), err
    assert json.loads(out)["ingest"]["loaded"] == 50
    assert refreshed_while_reading, "the reader's query ended before the refresh: make it longer"
    assert reader.returncode == 0
    assert (int(long_result), int(last)) == (before * 120_000_000, before)
    assert _count(database) == before + 50


def test_a_second_refresh_exits_1_naming_the_running_one(tmp_path: Path) -> None:
    root = _project(tmp_path)
    files = WarehouseFiles(root / "apimon.duckdb")
    for hour in range(8):
        _add_events(root, 20_000, hour=hour)

    first = _apimon("refresh", "-p", str(root), "-q")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = files.lock.read_text() if files.lock.exists() else ""
        if f'"pid": {first.pid}' in text:
            break
        time.sleep(0.05)
    second = subprocess.run(
        [sys.executable, "-m", "apimon", "refresh", "-p", str(root), "--wait", "0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    first_still_running = first.poll() is None
    first.communicate(timeout=300)

    assert first_still_running, "the first refresh ended too soon: give it more lines"
    assert second.returncode == 1
    assert f"pid {first.pid}" in second.stderr and "`apimon refresh` started" in second.stderr
    assert first.returncode in (0, 1)
    assert _count(root / "apimon.duckdb") >= 160_000


def test_a_refresh_killed_midway_is_taken_over_by_the_next(tmp_path: Path) -> None:
    root = _project(tmp_path)
    before = _count(root / "apimon.duckdb")
    for hour in range(8):
        _add_events(root, 20_000, hour=hour)

    killed = _apimon("refresh", "-p", str(root), "-q")
    time.sleep(2.0)
    assert killed.poll() is None, "the refresh ended before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    between = _count(root / "apimon.duckdb")
    normal = subprocess.run(
        [sys.executable, "-m", "apimon", "refresh", "-p", str(root), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert between == before
    assert normal.returncode in (0, 1), normal.stderr
    assert _count(root / "apimon.duckdb") == before + 160_000


INVARIANTS = """
with q as (select count(*) as n from queries),
     p as (select coalesce(sum("rows"), 0) as n from partitions),
     answered as (
        select count(*) as n from queries
        where service_id = 'fraud' and endpoint_id = 'predict'
          and msg_type = 'prediction-query' and not ignored and not failed),
     flat as (select count(*) as n from "binary".flat),
     orphans as (
        select count(*) as n from evaluations e
        where not exists (select 1 from column_drift c where c.evaluation_id = e.evaluation_id))
select q.n = p.n, answered.n = flat.n, orphans.n = 0, q.n
from q, p, answered, flat, orphans
"""


def test_a_polling_reader_never_sees_half_a_refresh(tmp_path: Path) -> None:
    root = _project(tmp_path)
    database = root / "apimon.duckdb"
    for hour in range(4):
        _add_events(root, 10_000, hour=hour)

    refresh = _apimon("refresh", "-p", str(root), "-q")
    polls, counts, broken = 0, set(), []
    while refresh.poll() is None:
        con = duckdb.connect(str(database), read_only=True)
        try:
            row = con.execute(INVARIANTS).fetchone()
        finally:
            con.close()
        assert row is not None
        polls += 1
        counts.add(row[3])
        if not all(row[:3]):
            broken.append(row)
    for _ in range(3):
        con = duckdb.connect(str(database), read_only=True)
        row = con.execute(INVARIANTS).fetchone()
        con.close()
        assert row is not None
        counts.add(row[3])
        if not all(row[:3]):
            broken.append(row)

    assert refresh.returncode in (0, 1)
    assert polls > 5
    assert broken == []
    assert len(counts) == 2  # the warehouse before the refresh, then after it


@pytest.mark.parametrize("command", ["partitions", "status", "quarantine"])
def test_read_commands_work_while_a_refresh_holds_the_lock(tmp_path: Path, command: str) -> None:
    root = _project(tmp_path)
    files = WarehouseFiles(root / "apimon.duckdb")
    import fcntl

    with files.lock.open("a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = subprocess.run(
            [sys.executable, "-m", "apimon", command, "-p", str(root), "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is not None
