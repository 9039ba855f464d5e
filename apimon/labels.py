"""Ground truth: label files loaded like logs, joined to queries on a logged key.

A label file (CSV, Parquet or JSON lines) holds a key column and a label column. Each file
is loaded whole, once; a file that changes is loaded again in place of its earlier rows,
so loading is idempotent. Rows without a key or a label are kept aside in
`label_quarantine` with the reason. The latest label of a key wins.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from apimon.config import LabelSource, Project
from apimon.errors import ApimonError
from apimon.sqlutil import quote_ident, quote_literal
from apimon.views import ModelShape

log = logging.getLogger(__name__)

READERS = {
    "csv": "read_csv(?, header = true, all_varchar = true)",
    "parquet": "read_parquet(?)",
    "jsonl": "read_json(?, format = 'newline_delimited')",
}


@dataclass
class LabelReport:
    """What one load of label files did."""

    files_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    days: dict[str, set[dt.date]] = field(default_factory=lambda: defaultdict(set))

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_read": self.files_read,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "days": {m: sorted(d.isoformat() for d in days) for m, days in self.days.items()},
        }


def _format(source: LabelSource, path: Path) -> str:
    if source.format != "auto":
        return source.format
    name = path.name.lower().removesuffix(".gz")
    for suffix, kind in ((".csv", "csv"), (".parquet", "parquet"), (".jsonl", "jsonl"),
                         (".ndjson", "jsonl"), (".json", "jsonl")):  # fmt: skip
        if name.endswith(suffix):
            return kind
    raise ApimonError(
        f"labels '{source.label_name}': cannot tell the format of {path}; name it .csv, "
        ".parquet or .jsonl, or set `format` in [[labels]]"
    )


def _files(project: Project, source: LabelSource) -> list[Path]:
    base = project.path(source.path)
    if any(ch in source.path for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(str(project.root / source.path), recursive=True))
    if base.is_dir():
        return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
    if base.is_file():
        return [base]
    # Labels often start arriving after the logs: an absent folder is only noted.
    log.warning("labels '%s': %s does not exist (yet); no label loaded", source.label_name, base)
    return []


def load_labels(con: duckdb.DuckDBPyConnection, project: Project, run_id: int) -> LabelReport:
    """Load new and changed label files (inside the caller's transaction)."""
    report = LabelReport()
    models = {m.name: m for m in project.settings.models}
    for source in project.settings.labels:
        if source.model not in models:
            raise ApimonError(
                f"labels '{source.label_name}': no model named '{source.model}' "
                f"(known: {', '.join(models) or 'none'})"
            )
        for path in _files(project, source):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            known = con.execute(
                "select fingerprint from files where source = ? and path = ?",
                [source.label_name, str(path)],
            ).fetchone()
            if known is not None and known[0] == digest:
                continue
            _load_file(con, source, path, digest, run_id, report)
    return report


def _load_file(
    con: duckdb.DuckDBPyConnection,
    source: LabelSource,
    path: Path,
    digest: str,
    run_id: int,
    report: LabelReport,
) -> None:
    name = source.label_name
    con.execute("delete from labels where source = ? and source_file = ?", [name, str(path)])
    con.execute(
        "delete from label_quarantine where source = ? and source_file = ?", [name, str(path)]
    )
    reader = READERS[_format(source, path)]
    report.files_read += 1
    try:
        described = con.execute(f"select * from {reader} limit 0", [str(path)]).description
        columns = [d[0] for d in described or []]
    except duckdb.Error as exc:
        _quarantine_file(con, name, path, f"unreadable label file ({exc})", run_id, report)
        _remember(con, name, path, digest, run_id)
        return
    missing = [c for c in (source.key, source.label) if c not in columns]
    if missing:
        _quarantine_file(
            con, name, path,
            f"no column {', '.join(map(repr, missing))} (columns: {', '.join(columns)})",
            run_id, report,
        )  # fmt: skip
        _remember(con, name, path, digest, run_id)
        return

    key, label = quote_ident(source.key), quote_ident(source.label)
    rows = (
        f"select row_number() over () as line_no, cast({key} as varchar) as k, "
        f"cast({label} as varchar) as l from {reader}"
    )
    before = con.execute("select count(*) from labels").fetchone()
    con.execute(
        f"insert into labels select ?, k, l, try_cast(l as double), ?, ?, line_no, ? "
        f"from ({rows}) where k is not null and trim(k) <> '' and l is not null",
        [source.model, name, str(path), run_id, str(path)],
    )
    after = con.execute("select count(*) from labels").fetchone()
    loaded = int(after[0] - before[0]) if after and before else 0
    con.execute(
        "insert into label_quarantine select ?, ?, line_no, "
        "case when k is null or trim(k) = '' then 'missing key' else 'missing label' end, "
        f"concat_ws(',', k, l), ? from ({rows}) "
        "where k is null or trim(k) = '' or l is null",
        [name, str(path), run_id, str(path)],
    )
    quarantined = con.execute(
        "select count(*) from label_quarantine where source = ? and source_file = ?",
        [name, str(path)],
    ).fetchone()
    report.loaded += loaded
    report.quarantined += int(quarantined[0]) if quarantined else 0
    _remember(con, name, path, digest, run_id)
    log.info("labels %s: loaded %d rows from %s", name, loaded, path)


def _quarantine_file(
    con: duckdb.DuckDBPyConnection, name: str, path: Path, reason: str, run_id: int,
    report: LabelReport,
) -> None:  # fmt: skip
    con.execute(
        "insert into label_quarantine values (?, ?, null, ?, null, ?)",
        [name, str(path), reason, run_id],
    )
    report.quarantined += 1


def _remember(
    con: duckdb.DuckDBPyConnection, name: str, path: Path, digest: str, run_id: int
) -> None:
    stat = path.stat()
    con.execute("delete from files where source = ? and path = ?", [name, str(path)])
    next_id = con.execute("select coalesce(max(file_id), 0) + 1 from files").fetchone()
    con.execute(
        "insert into files values (?, ?, ?, ?, 'labels', false, ?, ?, ?, 0, ?, ?)",
        [next_id[0] if next_id else 1, name, digest, str(path), stat.st_size,
         stat.st_mtime_ns, stat.st_size, run_id, run_id],
    )  # fmt: skip


LATEST = (
    'select "key", label, label_value from (select *, row_number() over (partition by "key" '
    "order by run_id desc, source_file desc, line_no desc) as recency from main.labels "
    "where model = {model}) as ranked where recency = 1"
)


def create_label_views(con: duckdb.DuckDBPyConnection, shape: ModelShape) -> None:
    """`<model>.labelled` (evaluated rows with their label) and `<model>.label_coverage`."""
    if not shape.keys:
        return
    schema = quote_ident(shape.schema)
    key = quote_ident(shape.keys[0].column)
    latest = LATEST.format(model=quote_literal(shape.model.name))
    con.execute(
        f"create or replace view {schema}.labelled as select f.*, l.label, l.label_value "
        f'from {schema}.evaluated as f join ({latest}) as l on l."key" = f.{key}'
    )
    con.execute(
        f"comment on view {schema}.labelled is "
        f"{quote_literal(shape.model.name + ': evaluated queries joined with their latest label')}"
    )
    con.execute(
        f"create or replace view {schema}.label_coverage as select f.day, count(*) as queries, "
        f'count(l."key") as labelled, count(l."key") / count(*) as coverage '
        f'from {schema}.evaluated as f left join ({latest}) as l on l."key" = f.{key} '
        "group by f.day"
    )
    con.execute(
        f"comment on view {schema}.label_coverage is "
        f"{quote_literal(shape.model.name + ': share of evaluated queries with a label, per day')}"
    )


def labelled_days(con: duckdb.DuckDBPyConnection, shape: ModelShape, run_id: int) -> set[dt.date]:
    """Days of the model's queries that got a label in this run."""
    if not shape.keys:
        return set()
    schema = quote_ident(shape.schema)
    key = quote_ident(shape.keys[0].column)
    rows = con.execute(
        f"select distinct f.day from {schema}.flat as f join main.labels as l "
        f'on l."key" = f.{key} where l.model = ? and l.run_id = ?',
        [shape.model.name, run_id],
    ).fetchall()
    return {r[0] for r in rows}
