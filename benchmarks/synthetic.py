"""A synthetic warehouse for the benchmarks: N logged prediction queries written in SQL.

20 features (10 numeric, 10 categorical), binary probabilities, two model versions,
spread over 30 days, so that the views and drift benchmarks measure apimon's work and not
the writing of log files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from apimon.config import Project, parse_project
from apimon.warehouse import connect

NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = [f"cat_{i}" for i in range(10)]


def make_project(root: Path, *, drift_model: bool = True) -> Project:
    """A project with one model whose reference has the 20 features and a label."""
    ref = duckdb.connect()
    ref.execute(
        "copy (select "
        + ", ".join(f"random() * 100 as {c}" for c in NUMERIC)
        + ", "
        + ", ".join(f"'v' || (i % 7)::varchar as {c}" for c in CATEGORICAL)
        + f", (i % 2) as label from range(20000) t(i)) to '{root / 'ref.parquet'}'"
    )
    (root / "apimon.toml").write_text(
        f"[drift]\ndrift_model = {'true' if drift_model else 'false'}\n"
        '[[models]]\nname = "m"\nservice = "s"\nendpoint = "e"\n'
        'reference = "ref.parquet"\ntarget = "label"\nversion = "2"\nmatch_version = false\n'
        'keys = ["request_id"]\n'
    )
    return parse_project(root, (root / "apimon.toml").read_text())


def fill(project: Project, rows: int, *, first_day: str = "2026-11-01", days: int = 30,
         run_id: int = 1) -> None:  # fmt: skip
    """Append `rows` logged queries over `days` days from `first_day`, as one ingest run."""
    con = connect(project.database_path)
    features = (
        "json_object("
        + ", ".join(f"'{c}', round(random() * 100 + (i % 3), 3)" for c in NUMERIC)
        + ", "
        + ", ".join(f"'{c}', 'v' || (i % 7)::varchar" for c in CATEGORICAL)
        + ")"
    )
    con.execute(
        f"""
        insert into queries (day, event_time, envelope, msg_type, service_id, endpoint_id,
            model_version, ignored, failed, timing_prediction, features, result,
            user_context, source, source_file, file_id, line_no, run_id)
        select
            cast(ts as date), ts, 'event-server', 'prediction-query', 's', 'e',
            case when i % 2 = 0 then '2' else '1' end, false, false, 900 + i % 100,
            {features},
            json_object('prediction', case when i % 3 = 0 then 'yes' else 'no' end,
                        'probas', json_object('yes', (i % 100) / 100, 'no', 1 - (i % 100) / 100)),
            json_object('request_id', 'r' || i::varchar),
            'bench', 'bench.log', 1, i, {run_id}
        from (select i, timestamp '{first_day}'
                        + to_microseconds(cast(i * ({days} * 86400000000 / {rows}) as bigint))
                        as ts
              from range({rows}) t(i))
        order by ts
        """
    )
    con.execute(
        "delete from partitions where day in (select distinct day from queries "
        f"where run_id = {run_id})"
    )
    con.execute(
        "insert into partitions select day, count(*), 0, ['bench'], 1, min(event_time), "
        f"max(event_time), {run_id} from queries where day in "
        f"(select distinct day from queries where run_id = {run_id}) group by day"
    )
    con.execute(
        f"insert into runs values ({run_id}, 'bench', now()::timestamp, now()::timestamp, "
        "'bench', 'x')"
    )
    con.execute("checkpoint")
    con.close()


def run_child(code: str, rows: int) -> dict[str, Any]:
    """Run a measurement in a fresh process in a temporary folder; add its peak memory.

    The child gets the folder, the row count and this folder (to import this module) as
    arguments, and prints one JSON object as its last line.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="apimon-bench-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, tmp, str(rows), here], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise RuntimeError(f"benchmark child failed with status {status}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result["peak_mib"] = usage.ru_maxrss / 1024
        database = Path(tmp) / "apimon.duckdb"
        result["db_mib"] = database.stat().st_size / 2**20 if database.exists() else 0.0
    return result
