"""The cost of publishing the warehouse to its readers, at 5M logged rows.

    python benchmarks/publish.py [--rows 5000000]

A write command ends by copying its write-side file beside the published one and renaming
it over (apimon.warehouse.publish). This builds a synthetic warehouse of N logged queries
with its views and drift evaluations (benchmarks/synthetic.py), then times three
publishes and prints the file size, the seconds, the MB/s, and the disk the published
file, the write side and one old snapshot still held open by a reader take together.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import fill, make_project

from apimon.drift.run import run_evaluations
from apimon.views import build_views
from apimon.warehouse import WarehouseFiles, connect, publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory(prefix="apimon-publish-") as tmp:
        project = make_project(Path(tmp))
        fill(project, rows)
        con = connect(project.database_path)
        con.execute("begin transaction")
        views = build_views(con, project, 2)
        run_evaluations(con, project, [m.shape for m in views.models if m.shape], 2)
        con.execute("commit")
        con.execute("checkpoint")
        con.close()

        files = WarehouseFiles(project.database_path)
        files.folder.mkdir()
        project.database_path.rename(files.write_side)
        size = files.write_side.stat().st_size / 2**20
        timings = [publish(files) for _ in range(3)]
        start = time.perf_counter()
        reader = connect(project.database_path, read_only=True)
        reader.execute("select count(*) from queries").fetchone()
        opened = time.perf_counter() - start
        reader.close()
    best = min(timings)
    print(f"rows {rows:,}: file {size:,.0f} MiB")
    print(f"publish: {', '.join(f'{t:.2f}' for t in timings)} s (best {size / best:,.0f} MiB/s)")
    print(f"a new reader opens and counts in {opened:.2f} s")
    print(
        f"disk: published + write side = {2 * size:,.0f} MiB; with one old snapshot held "
        f"open by a reader, {3 * size:,.0f} MiB until it closes"
    )


if __name__ == "__main__":
    main()
