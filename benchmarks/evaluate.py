"""Drift evaluation speed and memory: every daily window plus the whole range.

    python benchmarks/evaluate.py [--rows 1000000 --rows 5000000]

For each size, in a fresh child process: a synthetic warehouse of N logged queries with
20 features over 30 days (benchmarks/synthetic.py) and its flat table are prepared, then
it times
- evaluate: fit the reference profile, count the per-day histograms, and evaluate every
  daily window and the whole range against the reference (what a first refresh does);
- scan: a plain DuckDB scan of the same flat rows (`select max(columns(*))`), for scale;
- refresh after one new day: a day of queries is added, then views, histograms and the
  windows that changed are brought up to date (what the next scheduled refresh does).
It prints seconds, the ratio to the scan, and the child's peak memory.
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
    from apimon.drift.run import run_evaluations
    from apimon.views import build_views
    from apimon.warehouse import connect

    root, rows = Path(sys.argv[1]), int(sys.argv[2])
    project = make_project(root, drift_model=DRIFT_MODEL)
    fill(project, rows)
    con = connect(project.database_path)

    def in_transaction(run_id, step):
        con.execute("begin transaction")
        result = step(run_id)
        con.execute("commit")
        return result

    views = in_transaction(2, lambda r: build_views(con, project, r))
    con.execute("checkpoint")
    shapes = [m.shape for m in views.models]
    start = time.perf_counter()
    report = in_transaction(3, lambda r: run_evaluations(con, project, shapes, r))
    evaluate = time.perf_counter() - start
    start = time.perf_counter()
    con.execute("select max(columns(*)) from m.flat").fetchall()
    scan = time.perf_counter() - start
    con.close()

    fill(project, rows // 30, first_day="2026-12-01", days=1, run_id=4)
    con = connect(project.database_path)
    start = time.perf_counter()
    def refresh_step(r):
        views = build_views(con, project, r)
        return run_evaluations(con, project, [m.shape for m in views.models], r, changed_only=True)
    again = in_transaction(5, refresh_step)
    refresh = time.perf_counter() - start
    print(json.dumps({"evaluations": len(report.evaluations), "evaluate": evaluate,
                      "scan": scan, "refresh": refresh,
                      "refreshed": len(again.evaluations)}))
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument(
        "--no-drift-model", action="store_true", help="Measure the statistics alone."
    )
    args = parser.parse_args()
    sizes = args.rows or [1_000_000, 5_000_000]
    code = CHILD.replace("DRIFT_MODEL", "False" if args.no_drift_model else "True")
    print(
        f"{'rows':>10}{'evaluations':>13}{'evaluate s':>12}{'scan s':>9}{'eval/scan':>11}"
        f"{'new day s':>11}{'re-evaluated':>14}{'peak MiB':>10}"
    )
    for rows in sizes:
        r = run_child(code, rows)
        print(
            f"{rows:>10,}{r['evaluations']:>13.0f}{r['evaluate']:>12.1f}{r['scan']:>9.2f}"
            f"{r['evaluate'] / r['scan']:>11.1f}{r['refresh']:>11.1f}{r['refreshed']:>14.0f}"
            f"{r['peak_mib']:>10,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
