"""`apimon export-queries`: logged queries for relabelling and retraining."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from apimon.config import Project
from apimon.errors import ApimonError
from apimon.sqlutil import quote_ident, quote_literal
from apimon.warehouse import connect

log = logging.getLogger(__name__)


def export_queries(
    project: Project,
    model_name: str,
    output: Path,
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
    file_format: str = "parquet",
    unlabelled_only: bool = False,
) -> int:
    """Write the features, prediction and keys of a model's queries, one row per key."""
    if file_format not in ("parquet", "csv"):
        raise ApimonError(f"unknown format '{file_format}'; known: parquet, csv")
    model = project.model(model_name)
    schema = quote_ident(model.name)
    with connect(project.database_path, read_only=True) as con:
        columns = [
            r[0]
            for r in con.execute(
                "select column_name from duckdb_columns() where schema_name = ? "
                "and table_name = 'flat' order by column_index",
                [model.name],
            ).fetchall()
        ]
        if not columns:
            raise ApimonError(
                f"model '{model.name}' has no flat table yet: run `apimon refresh` first"
            )
        keep = [c for c in columns if c not in ("source_file_id", "source_line", "version_matches")]
        select = ", ".join(quote_ident(c) for c in keep)
        key = model.keys[0] if model.keys else None
        dedupe = (
            f"qualify row_number() over (partition by {quote_ident(key)} "
            "order by event_time desc) = 1"
            if key
            else ""
        )
        if unlabelled_only and not key:
            raise ApimonError(f"model '{model.name}' has no `keys`: cannot tell labelled queries")
        unlabelled = (
            f'and {quote_ident(key)} not in (select "key" from main.labels where model = '
            f"{quote_literal(model.name)})"
            if unlabelled_only and key
            else ""
        )
        query = (
            f"select {select} from {schema}.evaluated "
            "where (cast(? as date) is null or day >= ?) "
            "and (cast(? as date) is null or day <= ?) "
            f"{unlabelled} {dedupe}"
        )
        rows = con.execute(
            f"select count(*) from ({query})", [since, since, until, until]
        ).fetchone()
        output.parent.mkdir(parents=True, exist_ok=True)
        options = "format parquet" if file_format == "parquet" else "format csv, header true"
        con.execute(
            f"copy ({query}) to {quote_literal(str(output))} ({options})",
            [since, since, until, until],
        )
    count = int(rows[0]) if rows else 0
    log.info("exported %d queries of %s to %s", count, model.name, output)
    return count
