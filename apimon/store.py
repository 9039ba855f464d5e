"""Day partitions of the log store: listing, pruning old days, reloading a day from its files."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from apimon.config import Project
from apimon.errors import ApimonError
from apimon.ingest import (
    LedgerEntry,
    LineBatch,
    PlannedFile,
    Progress,
    SourceReport,
    finish_run,
    load_ledger,
    refresh_partitions,
    start_run,
)
from apimon.logfiles import discover, fingerprint, whole_fingerprint
from apimon.warehouse import writing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Partition:
    """One day of the log store."""

    day: dt.date
    rows: int
    quarantined: int
    sources: list[str]
    files: int
    first_event: dt.datetime | None
    last_event: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "rows": self.rows,
            "quarantined": self.quarantined,
            "sources": self.sources,
            "files": self.files,
            "first_event": self.first_event.isoformat() if self.first_event else None,
            "last_event": self.last_event.isoformat() if self.last_event else None,
        }


def list_partitions(
    con: duckdb.DuckDBPyConnection,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[Partition]:
    """The days of the log store, oldest first, optionally within [since, until]."""
    rows = con.execute(
        'select day, "rows", quarantined, sources, files, first_event, last_event '
        "from partitions where (? is null or day >= ?) and (? is null or day <= ?) "
        "order by day",
        [since, since, until, until],
    ).fetchall()
    return [Partition(*row) for row in rows]


@dataclass(frozen=True)
class PruneReport:
    """What `prune` removed."""

    cutoff: dt.date
    days: int
    rows: int
    quarantined: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "days": self.days,
            "rows": self.rows,
            "quarantined": self.quarantined,
        }


def prune(
    project: Project,
    *,
    keep_days: int | None = None,
    before: dt.date | None = None,
    today: dt.date | None = None,
) -> PruneReport:
    """Drop every day older than the last `keep_days` days (or before `before`).

    Files stay in the ledger, so the pruned lines are not loaded again by the next ingest.
    """
    if (keep_days is None) == (before is None):
        raise ApimonError("give either --keep-days N or --before DAY")
    if keep_days is not None and keep_days < 1:
        raise ApimonError(f"--keep-days must be at least 1, got {keep_days}")
    if before is not None:
        cutoff = before
    else:
        assert keep_days is not None
        current = today or dt.datetime.now(dt.UTC).date()
        cutoff = current - dt.timedelta(days=keep_days - 1)

    with writing(project.database_path, "prune") as con:
        con.execute("begin transaction")
        try:
            run_id = start_run(con, project, "prune")
            row = con.execute(
                'select count(*), coalesce(sum("rows"), 0), coalesce(sum(quarantined), 0) '
                "from partitions where day < ?",
                [cutoff],
            ).fetchone()
            assert row is not None
            con.execute("delete from queries where day < ?", [cutoff])
            con.execute("delete from quarantine where day < ?", [cutoff])
            con.execute("delete from partitions where day < ?", [cutoff])
            finish_run(con, run_id)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    log.info("pruned %d days before %s", row[0], cutoff)
    return PruneReport(cutoff, int(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class ReloadReport:
    """What `reload` did: the days it rebuilt and the rows before and after."""

    days: list[dt.date]
    files: int
    rows_before: int
    rows_after: int
    quarantined_after: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "files": self.files,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "quarantined_after": self.quarantined_after,
        }


def reload_days(
    project: Project, days: Sequence[dt.date], *, progress: Progress | None = None
) -> ReloadReport:
    """Rebuild the given days from the files that fed them, as far as the ledger has read.

    Lines a file gained since the last ingest are left for the next ingest, so a reload
    never loads a line twice. A file that fed the day and is gone makes the reload fail
    and change nothing.
    """
    if not days:
        raise ApimonError("name at least one day to reload (YYYY-MM-DD)")
    with writing(project.database_path, "reload") as con:
        con.execute("begin transaction")
        try:
            report = _reload(project, con, sorted(set(days)), progress)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return report


def _reload(
    project: Project,
    con: duckdb.DuckDBPyConnection,
    days: list[dt.date],
    progress: Progress | None,
) -> ReloadReport:
    con.execute("create or replace temp table reload_days (day date)")
    con.executemany("insert into reload_days values (?)", [[d] for d in days])
    file_ids = [
        row[0]
        for row in con.execute(
            "select file_id from queries where day in (select day from reload_days) "
            "union select file_id from quarantine where day in (select day from reload_days) "
            "and file_id is not null order by 1"
        ).fetchall()
    ]
    if not file_ids:
        shown = ", ".join(d.isoformat() for d in days)
        raise ApimonError(f"nothing to reload: no rows and no known file for {shown}")
    before = con.execute(
        "select count(*) from queries where day in (select day from reload_days)"
    ).fetchone()

    ledger = {e.file_id: e for e in load_ledger(con).values()}
    plans = [_reload_plan(project, ledger[file_id]) for file_id in file_ids]

    run_id = start_run(con, project, "reload")
    con.execute("delete from queries where day in (select day from reload_days)")
    con.execute("delete from quarantine where day in (select day from reload_days)")
    reports = {p.entry.source: SourceReport(p.entry.source) for p, _ in plans}
    batch = LineBatch(
        con, run_id, project.settings.ingest.batch_megabytes << 20, reports, only_days=True
    )
    for plan, end in plans:
        batch.add_file(plan, progress, end=end)
    batch.flush()
    refresh_partitions(con, days, run_id)
    finish_run(con, run_id)
    return ReloadReport(
        days=days,
        files=len(plans),
        rows_before=int(before[0]) if before else 0,
        rows_after=sum(r.loaded for r in reports.values()),
        quarantined_after=sum(r.quarantined for r in reports.values()),
    )


def _reload_plan(project: Project, entry: LedgerEntry) -> tuple[PlannedFile, int]:
    sources = {s.label: s for s in project.settings.sources}
    source = sources.get(entry.source)
    if source is None:
        raise ApimonError(
            f"cannot reload: source '{entry.source}' of {entry.path} is no longer in apimon.toml"
        )
    files, _ = discover(project, source)
    found = next((f for f in files if str(f.path) == entry.path), None)
    if found is None:
        raise ApimonError(f"cannot reload: {entry.path}, which fed this day, is gone")
    print_ = fingerprint(found) or whole_fingerprint(found)
    if print_ != entry.fingerprint:
        raise ApimonError(
            f"cannot reload: {entry.path} no longer starts as the file that was loaded"
        )
    start = LedgerEntry(**{**entry.__dict__, "offset_bytes": 0, "lines": 0})
    return PlannedFile(found, start, hold_tail=False), entry.offset_bytes
