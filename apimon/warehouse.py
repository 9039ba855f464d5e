"""The DuckDB files: the published warehouse readers open, and the one apimon writes.

Readers (the duckdb CLI, BI tools, `apimon status`) open the published file, the
`database` of apimon.toml, read-only. Commands that write (ingest, refresh, evaluate,
prune, reload) hold the project's write lock, work on a private write-side file in a
folder beside it, and end by publishing: a checkpointed copy of the write-side file
replaces the published one with an atomic rename. A reader that has the old file open
keeps reading it whole (the old file lives until its last reader closes it); a new
connection sees the new one. So readers never block a refresh, never wait on it, and
never see half of one.

Migrations live in `sql/migrations/NNN_name.sql`; each says what it changes and runs once,
in order, the first time a command opens the write-side file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb

from apimon.errors import ApimonError, WarehouseBusy
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


@dataclass(frozen=True)
class WarehouseFiles:
    """Where a project's warehouse lives: the published file and the write side beside it."""

    published: Path

    @property
    def folder(self) -> Path:
        return self.published.with_name(f".{self.published.name}.d")

    @property
    def write_side(self) -> Path:
        return self.folder / "write.duckdb"

    @property
    def lock(self) -> Path:
        return self.folder / "write.lock"


@contextmanager
def write_lock(
    files: WarehouseFiles, command: str, wait_seconds: float = 0.0
) -> Iterator[dict[str, Any]]:
    """Hold the project's write lock, waiting at most `wait_seconds` for another holder.

    The lock is an flock on a file that also says who holds it (pid, command, start time):
    the operating system releases it when its holder dies, so a killed command never
    leaves a lock behind; the next one notes whose lock it takes over.
    """
    files.folder.mkdir(parents=True, exist_ok=True)
    handle = files.lock.open("a+")
    try:
        deadline = time.monotonic() + max(wait_seconds, 0.0)
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(_busy_message(handle, files)) from None
                time.sleep(0.2)
        previous = _holder(handle)
        if previous and previous.get("pid") != os.getpid():
            log.info(
                "took over the write lock last held by pid %s (%s, started %s), which ended",
                previous.get("pid"), previous.get("command"), previous.get("started"),
            )  # fmt: skip
        me = {
            "pid": os.getpid(),
            "command": command,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(me))
        handle.flush()
        yield me
    finally:
        handle.close()


def _holder(handle: IO[str]) -> dict[str, Any] | None:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _busy_message(handle: IO[str], files: WarehouseFiles) -> str:
    holder = _holder(handle) or {}
    return (
        f"the warehouse {files.published} is being written by another apimon command "
        f"(pid {holder.get('pid', '?')}, `apimon {holder.get('command', '?')}` started "
        f"{holder.get('started', '?')}); wait for it to finish, or pass --wait SECONDS"
    )


@contextmanager
def writing(
    published: Path, command: str, *, wait_seconds: float = 0.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the write-side file, under the write lock; published on success."""
    files = WarehouseFiles(published)
    with write_lock(files, command, wait_seconds):
        if not files.write_side.exists() and published.exists():
            # A warehouse published before (or whose write side was removed) is the start.
            shutil.copyfile(published, files.write_side)
        con = connect(files.write_side)
        try:
            yield con
            con.execute("checkpoint")
        finally:
            con.close()
        publish(files)


def publish(files: WarehouseFiles) -> float:
    """Replace the published file by a copy of the write side; return the seconds it took.

    The copy is written beside the published file, flushed to disk, then renamed over it:
    a reader opens either the old file or the new one, never a partial one.
    """
    start = time.perf_counter()
    staging = files.folder / f"publish-{os.getpid()}.duckdb"
    shutil.copyfile(files.write_side, staging)
    with staging.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, files.published)
    directory = os.open(files.published.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    seconds = time.perf_counter() - start
    log.info("published %s in %.2f s", files.published, seconds)
    return seconds
