"""The DuckDB file: opening it, and bringing its schema up to date with numbered migrations.

Migrations live in `sql/migrations/NNN_name.sql`; each says what it changes and runs once,
in order, inside the transaction of the command that first opens the file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import duckdb

from apimon.errors import ApimonError
from apimon.sqlutil import check_sql, sql_dir

log = logging.getLogger(__name__)

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, Path]]:
    """The migrations shipped with apimon: (number, name, file), in order."""
    found = []
    for path in sorted((sql_dir() / "migrations").iterdir()):
        match = _MIGRATION.match(path.name)
        if match:
            found.append((int(match.group(1)), path.stem, path))
    return found


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file (creating it unless read-only) with apimon's settings."""
    if read_only and not path.exists():
        raise ApimonError(f"no warehouse at {path}: run `apimon ingest` (or `apimon demo`) first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        raise ApimonError(
            f"cannot open the warehouse {path}: {exc}. If another apimon command is writing "
            "it, wait for that command to finish"
        ) from exc
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    if not read_only:
        migrate(con)
    return con


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply the migrations this file has not seen yet; return their names."""
    con.execute(
        "create table if not exists schema_migrations "
        "(number integer not null, name varchar not null, applied_at timestamp not null)"
    )
    applied = {row[0] for row in con.execute("select number from schema_migrations").fetchall()}
    done = []
    for number, name, path in migrations():
        if number in applied:
            continue
        sql = path.read_text(encoding="utf-8")
        check_sql(sql)
        con.execute("begin transaction")
        try:
            con.execute(sql)
            con.execute(
                "insert into schema_migrations values (?, ?, now()::timestamp)", [number, name]
            )
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
        log.info("applied migration %s", name)
        done.append(name)
    newest = max(applied, default=0)
    if migrations() and newest > migrations()[-1][0]:
        raise ApimonError(
            f"this warehouse was written by a newer apimon (schema {newest}); upgrade apimon"
        )
    return done
