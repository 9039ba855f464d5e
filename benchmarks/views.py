"""Model views: building the flat table and scanning it, beside a scan of the raw log table.

    python benchmarks/views.py [--rows 1000000 --rows 5000000]

For each size, in a fresh child process: fill `queries` with N logged prediction queries
(benchmarks/synthetic.py: 20 features, binary probabilities, 30 days) straight in SQL,
then time
- build: `apimon.views.build_views` (parse the JSON of every day into `<model>.flat`),
- raw scan: every column of `queries` (`select max(columns(*))`),
- flat scan: every column of the materialised `<model>.flat`,
- definition scan: every column of the view `<model>.flat_definition` (JSON parsed at
  query time, what a scan would cost without materialising),
and print rows/s, the child's peak memory, and the ratios to the raw scan.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import run_child

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from synthetic import fill, make_project
    from apimon.views import build_views
    from apimon.warehouse import connect

    root, rows = Path(sys.argv[1]), int(sys.argv[2])
    project = make_project(root)
    fill(project, rows)
    con = connect(project.database_path)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    sizes = parser.parse_args().rows or [1_000_000, 5_000_000]
    print(
        f"{'rows':>10}{'build s':>9}{'build rows/s':>14}{'raw scan s':>12}{'flat scan s':>13}"
        f"{'flat/raw':>10}{'definition s':>14}{'def/raw':>9}{'peak MiB':>10}{'file MiB':>10}"
    )
    for rows in sizes:
        r = run_child(CHILD, rows)
        print(
            f"{r['rows']:>10,.0f}{r['build']:>9.1f}{r['rows'] / r['build']:>14,.0f}"
            f"{r['raw']:>12.2f}{r['flat']:>13.2f}{r['flat'] / r['raw']:>10.2f}"
            f"{r['definition']:>14.2f}{r['definition'] / r['raw']:>9.2f}"
            f"{r['peak_mib']:>10,.0f}{r['db_mib']:>10,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
