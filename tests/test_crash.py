"""An ingest killed at any instant leaves the warehouse as the last complete run left it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import DEFAULT_TIME, event_line, one

from apimon.config import load_project
from apimon.ingest import ingest


def _write_hours(tmp_path: Path, first_hour: int, hours: int, per_hour: int) -> int:
    for h in range(first_hour, first_hour + hours):
        at = DEFAULT_TIME.replace(hour=0) + dt.timedelta(hours=h)
        path = tmp_path / "logs/apinode-query/k" / at.strftime("%Y/%m/%d/%H") / "e.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        line = event_line(h, at=at)
        path.write_text((line + "\n") * per_hour)
    return hours * per_hour


def test_an_ingest_killed_midway_is_undone_and_the_next_run_completes_it(
    tmp_path: Path,
) -> None:
    first = _write_hours(tmp_path, 0, 4, 5_000)
    (tmp_path / "apimon.toml").write_text(
        "[ingest]\npartial_line_grace_seconds = 0\nbatch_megabytes = 2\n\n"
        '[[sources]]\npath = "logs"\n'
    )
    project = load_project(tmp_path)
    assert ingest(project).loaded == first
    second = _write_hours(tmp_path, 4, 20, 10_000)

    proc = subprocess.Popen(
        [sys.executable, "-m", "apimon", "ingest", "--project", str(tmp_path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(2.0)
    assert proc.poll() is None, "the ingest finished before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert one(project, "select count(*) from queries") == first
    assert one(project, "select max(run_id) from runs where finished_at is not null") == 1
    assert one(project, "select count(*) from runs") == 1

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (second, 0)
    assert one(project, "select count(*) from queries") == first + second
    assert one(project, "select count(distinct (file_id, line_no)) from queries") == first + second
    assert ingest(project).loaded == 0
