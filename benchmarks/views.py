"""Model views: building the flat table and scanning it, beside a scan of the raw log table.

    python benchmarks/views.py [--rows 1000000 --rows 5000000]

For each size, in a fresh child process: fill `queries` with N logged prediction queries
(20 features, half numeric, half categorical, binary probabilities, 30 days) straight in
SQL, then time
- build: `apimon.views.build_views` (parse the JSON of every day into `<model>.flat`),
- raw scan: every column of `queries` (`select max(columns(*))`),
- flat scan: every column of the materialised `<model>.flat`,
- definition scan: every column of the view `<model>.flat_definition` (JSON parsed at
  query time, what a scan would cost without materialising),
and print rows/s, the child's peak memory, and the ratios to the raw scan.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import duckdb
    from apimon.config import parse_project
    from apimon.views import build_views
    from apimon.warehouse import connect

    root, rows = Path(sys.argv[1]), int(sys.argv[2])
    numeric = [f"num_{i}" for i in range(10)]
    categorical = [f"cat_{i}" for i in range(10)]
    ref = duckdb.connect()
    ref.execute(
        "copy (select " + ", ".join(f"random() * 100 as {c}" for c in numeric) + ", "
        + ", ".join(f"'v' || (i % 7)::varchar as {c}" for c in categorical)
        + ", (i % 2) as label from range(10000) t(i)) to '" + str(root / "ref.parquet") + "'"
    )
    (root / "apimon.toml").write_text(
        '[[models]]\\nname = "m"\\nservice = "s"\\nendpoint = "e"\\n'
        'reference = "ref.parquet"\\ntarget = "label"\\nversion = "2"\\nkeys = ["request_id"]\\n'
    )
    project = parse_project(root, (root / "apimon.toml").read_text())
    con = connect(project.database_path)
    features = "json_object(" + ", ".join(
        f"'{c}', round(random() * 100, 3)" for c in numeric
    ) + ", " + ", ".join(f"'{c}', 'v' || (i % 7)::varchar" for c in categorical) + ")"
    con.execute(f'''
        insert into queries (day, event_time, envelope, msg_type, service_id, endpoint_id,
            model_version, ignored, failed, timing_prediction, features, result, user_context,
            source, source_file, file_id, line_no, run_id)
        select
            cast(ts as date), ts, 'event-server', 'prediction-query', 's', 'e',
            case when i % 2 = 0 then '2' else '1' end, false, false, 900 + i % 100,
            {features},
            json_object('prediction', case when i % 3 = 0 then 'yes' else 'no' end,
                        'probas', json_object('yes', (i % 100) / 100, 'no', 1 - (i % 100) / 100)),
            json_object('request_id', 'r' || i::varchar),
            'bench', 'bench.log', 1, i, 1
        from (select i, timestamp '2026-11-01' + to_seconds(i * (30 * 86400 // {rows})) as ts
              from range({rows}) t(i))
        order by ts
    ''')
    con.execute('''insert into partitions select day, count(*), 0, ['bench'], 1, min(event_time),
                   max(event_time), 1 from queries group by day''')
    con.execute("insert into runs values (1, 'bench', now()::timestamp, null, 'bench', 'x')")
    con.execute("checkpoint")

    def timed(sql):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        return time.perf_counter() - start

    start = time.perf_counter()
    con.execute("begin transaction")
    build_views(con, project, 2)
    con.execute("commit")
    build = time.perf_counter() - start
    con.execute("checkpoint")
    raw = timed("select max(columns(*)) from queries")
    flat = timed("select max(columns(*)) from m.flat")
    definition = timed("select max(columns(*)) from m.flat_definition")
    count = con.execute("select count(*) from m.flat").fetchone()[0]
    print(json.dumps({"rows": count, "build": build, "raw": raw, "flat": flat,
                      "definition": definition}))
    """
)


def run(rows: int) -> dict[str, float]:
    """Measure one size in a fresh process; returns the timings and the peak memory."""
    import json

    with tempfile.TemporaryDirectory(prefix="apimon-views-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, tmp, str(rows)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise RuntimeError(f"benchmark child failed with status {status}")
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        result["peak_mib"] = usage.ru_maxrss / 1024
        result["db_mib"] = (Path(tmp) / "apimon.duckdb").stat().st_size / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    sizes = parser.parse_args().rows or [1_000_000, 5_000_000]
    print(
        f"{'rows':>10}{'build s':>9}{'build rows/s':>14}{'raw scan s':>12}{'flat scan s':>13}"
        f"{'flat/raw':>10}{'definition s':>14}{'def/raw':>9}{'peak MiB':>10}{'file MiB':>10}"
    )
    for rows in sizes:
        r = run(rows)
        print(
            f"{r['rows']:>10,.0f}{r['build']:>9.1f}{r['rows'] / r['build']:>14,.0f}"
            f"{r['raw']:>12.2f}{r['flat']:>13.2f}{r['flat'] / r['raw']:>10.2f}"
            f"{r['definition']:>14.2f}{r['definition'] / r['raw']:>9.2f}"
            f"{r['peak_mib']:>10,.0f}{r['db_mib']:>10,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
