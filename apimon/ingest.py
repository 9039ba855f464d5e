"""`apimon ingest`: read new log lines into the day-partitioned `queries` table.

One run is one DuckDB transaction: it holds every line the run read, loaded or kept aside
in `quarantine` with its reason, together with the file ledger that says how far each
file was read. Killed at any instant, the warehouse keeps all of the run or none of it,
and the next run starts from the ledger as it was.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from apimon import __version__
from apimon.config import Project, Source
from apimon.errors import ApimonError
from apimon.logfiles import (
    Chunk,
    LogFile,
    Tail,
    detect_format,
    discover,
    fingerprint,
    is_fresh,
    read_lines,
    whole_fingerprint,
)
from apimon.sqlutil import render_checked
from apimon.warehouse import writing

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
_ROWS_PER_ARROW_BATCH = 16_384


@dataclass(frozen=True)
class MessageField:
    """A field of the logged message and the typed column it becomes."""

    column: str
    path: str
    kind: str
    index: int = 0

    @property
    def label(self) -> str:
        return self.path.removeprefix("$.")

    @property
    def top_level(self) -> bool:
        return self.path.count(".") == 1


_FIELD_SPECS: tuple[tuple[str, str, str], ...] = (
    ("msg_type", "$.msgType", "text"),
    ("query_type", "$.apinodeQueryType", "text"),
    ("service_id", "$.serviceId", "text"),
    ("endpoint_id", "$.endpointId", "text"),
    ("generation_id", "$.serviceGenerationId", "text"),
    ("batch_size", "$.batchSize", "integer"),
    ("batch_idx", "$.batchIdx", "integer"),
    ("saved_model", "$.savedModel", "check_object"),
    ("project_key", "$.savedModel.projectKey", "text"),
    ("saved_model_id", "$.savedModel.savedModelId", "text"),
    ("model_version", "$.savedModel.modelVersion", "text"),
    ("full_model_id", "$.savedModel.fullModelId", "text"),
    ("result_ignored", "$.result.ignored", "boolean"),
    ("ignore_reason", "$.result.ignoreReason", "text"),
    ("msg_error_type", "$.errorType", "text"),
    ("msg_error_msg", "$.errorMsg", "text"),
    ("result_error_type", "$.result.errorType", "text"),
    ("result_error_msg", "$.result.errorMsg", "text"),
    ("client_ip", "$.clientIP", "text"),
    ("x_forwarded_for", "$.xForwardedFor", "text_or_list"),
    ("auth_user", "$.authUser", "text"),
    ("timing", "$.timing", "check_object"),
    ("timing_pre_processing", "$.timing.preProcessing", "number"),
    ("timing_wait", "$.timing.wait", "number"),
    ("timing_enrich", "$.timing.enrich", "number"),
    ("timing_preparation", "$.timing.preparation", "number"),
    ("timing_prediction", "$.timing.prediction", "number"),
    ("timing_post_processing", "$.timing.postProcessing", "number"),
    ("features", "$.features", "collection"),
    ("result", "$.result", "any"),
    ("user_context", "$.userContext", "any"),
    ("api_context", "$.apiContext", "any"),
)

FIELDS = tuple(
    MessageField(column, path, kind, index)
    for index, (column, path, kind) in enumerate(_FIELD_SPECS, start=1)
)

# Message keys whose whole content lands in typed columns; whatever else a message holds
# is kept in `other_fields`, so that no logged value is lost.
_TOP_LEVEL_KEYS = (
    "msgType",
    "apinodeQueryType",
    "serviceId",
    "endpointId",
    "serviceGenerationId",
    "batchSize",
    "batchIdx",
    "clientIP",
    "xForwardedFor",
    "authUser",
    "errorType",
    "errorMsg",
    "features",
    "result",
    "userContext",
    "apiContext",
)
_NESTED_KEYS = {
    "savedModel": ("projectKey", "savedModelId", "modelVersion", "fullModelId"),
    "timing": ("preProcessing", "wait", "enrich", "preparation", "prediction", "postProcessing"),
}


@dataclass(frozen=True)
class _NestedKeys:
    path: str
    known: tuple[str, ...]
    field_indices: tuple[int, ...]
    drop_patch: str
    keep_patch: str


def _patches() -> tuple[str, list[_NestedKeys]]:
    top = json.dumps(dict.fromkeys(_TOP_LEVEL_KEYS))
    nested = [
        _NestedKeys(
            path=f"$.{key}",
            known=known,
            field_indices=tuple(f.index for f in FIELDS if f.path.startswith(f"$.{key}.")),
            drop_patch=json.dumps({key: None}),
            keep_patch=json.dumps({key: dict.fromkeys(known)}),
        )
        for key, known in _NESTED_KEYS.items()
    ]
    return top, nested


QUERY_COLUMNS = (
    "day",
    "event_time",
    "received_time",
    "sender",
    "envelope",
    "msg_type",
    "query_type",
    "service_id",
    "endpoint_id",
    "generation_id",
    "routing_key",
    "batch_size",
    "batch_idx",
    "project_key",
    "saved_model_id",
    "model_version",
    "full_model_id",
    "ignored",
    "ignore_reason",
    "failed",
    "error_type",
    "error_msg",
    "client_ip",
    "x_forwarded_for",
    "auth_user",
    "timing_pre_processing",
    "timing_wait",
    "timing_enrich",
    "timing_preparation",
    "timing_prediction",
    "timing_post_processing",
    "features",
    "result",
    "user_context",
    "api_context",
    "other_fields",
    "source",
    "source_file",
    "file_id",
    "line_no",
)


_ENVELOPE_PATHS = (
    "$.clientEvent",
    "$.serverTimestamp",
    "$.origAddress",
    "$.message",
    "$.timestamp",
    "$.captureData",
    "$.eventMetadata",
)


# First characters of a JSON value allowed for each kind of field ('_' stands for missing).
_ALLOWED_FIRST_CHARS = {
    "text": r'[_n"tf0-9\-]',
    "text_or_list": r'[_n"tf0-9\-\[]',
    "integer": r"[_n0-9\-]",
    "number": r"[_n0-9\-]",
    "boolean": r"[_ntf]",
    "object": r"[_n{]",
    "check_object": r"[_n{]",
    "collection": r"[_n{\[]",
    "any": r".",
}


def _kinds_pattern() -> str:
    return "".join(_ALLOWED_FIRST_CHARS[f.kind] for f in FIELDS)


def parse_sql() -> str:
    """The statement that turns a batch of raw lines into query rows or quarantine reasons."""
    top, nested = _patches()
    paths = (
        list(_ENVELOPE_PATHS)
        + [f.path.replace("$", "$.clientEvent", 1) for f in FIELDS]
        + [f.path.replace("$", "$.message", 1) for f in FIELDS]
    )
    return render_checked(
        "ingest/parse_lines.sql",
        fields=FIELDS,
        envelope_paths=paths,
        event_server_first=len(_ENVELOPE_PATHS) + 1,
        log4j_first=len(_ENVELOPE_PATHS) + len(FIELDS) + 1,
        kinds_pattern=_kinds_pattern(),
        known_keys_patch=top,
        nested_keys=nested,
    )


@dataclass
class SourceReport:
    """What one run did with one source."""

    source: str
    files_seen: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    files_other_topics: int = 0
    files_duplicate: int = 0
    files_waiting: int = 0
    lines_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["reasons"] = dict(self.reasons)
        return data


@dataclass
class IngestReport:
    """What one ingest run did, per source."""

    run_id: int
    sources: list[SourceReport]
    days_changed: list[dt.date]

    @property
    def lines_read(self) -> int:
        return sum(s.lines_read for s in self.sources)

    @property
    def loaded(self) -> int:
        return sum(s.loaded for s in self.sources)

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.sources)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "lines_read": self.lines_read,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "days_changed": [d.isoformat() for d in self.days_changed],
            "sources": [s.as_dict() for s in self.sources],
        }


@dataclass
class LedgerEntry:
    file_id: int
    source: str
    fingerprint: str
    path: str
    format: str | None
    compressed: bool
    size_bytes: int
    mtime_ns: int
    offset_bytes: int
    lines: int
    first_run: int
    last_run: int


@dataclass
class PlannedFile:
    file: LogFile
    entry: LedgerEntry
    hold_tail: bool


def ingest(
    project: Project,
    *,
    sources: Sequence[str] | None = None,
    progress: Progress | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    wait_seconds: float = 0.0,
) -> IngestReport:
    """Load every new line of the project's sources; return what was read, loaded and kept aside."""
    chosen = _choose_sources(project, sources)
    if con is not None:
        return _run(project, chosen, con, progress)
    with writing(project.database_path, "ingest", wait_seconds=wait_seconds) as own:
        return _run(project, chosen, own, progress)


def _choose_sources(project: Project, names: Sequence[str] | None) -> list[Source]:
    configured = project.settings.sources
    if not configured:
        raise ApimonError(
            f"no [[sources]] in {project.root / 'apimon.toml'}: add one with the `path` of "
            "your API node's or Event server's log folder"
        )
    if not names:
        return list(configured)
    by_label = {s.label: s for s in configured}
    unknown = [n for n in names if n not in by_label]
    if unknown:
        raise ApimonError(f"unknown source {', '.join(unknown)}; configured: {', '.join(by_label)}")
    return [by_label[n] for n in names]


def _run(
    project: Project,
    sources: list[Source],
    con: duckdb.DuckDBPyConnection,
    progress: Progress | None,
) -> IngestReport:
    ledger = load_ledger(con)
    reports = {s.label: SourceReport(s.label) for s in sources}
    grace = project.settings.ingest.partial_line_grace_seconds
    plans = [plan for source in sources for plan in _plan(project, source, ledger, reports, grace)]

    con.execute("begin transaction")
    try:
        run_id = start_run(con, project, "ingest")
        batch = LineBatch(con, run_id, project.settings.ingest.batch_megabytes << 20, reports)
        for plan in plans:
            batch.add_file(plan, progress)
        batch.flush()
        _save_ledger(con, [p.entry for p in plans], run_id)
        days = sorted(batch.days)
        refresh_partitions(con, days, run_id)
        _store_models(con, project)
        for report in reports.values():
            con.execute(
                "insert into ingest_sources values (?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    report.source,
                    report.files_seen,
                    report.files_read,
                    report.lines_read,
                    report.loaded,
                    report.quarantined,
                ],
            )
        finish_run(con, run_id)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return IngestReport(run_id, list(reports.values()), days)


def start_run(con: duckdb.DuckDBPyConnection, project: Project, command: str) -> int:
    """Record the start of a run inside the caller's transaction; return its id."""
    row = con.execute("select coalesce(max(run_id), 0) + 1 from runs").fetchone()
    run_id = int(row[0]) if row else 1
    con.execute(
        "insert into runs values (?, ?, now()::timestamp, null, ?, ?)",
        [run_id, command, __version__, project.config_hash],
    )
    return run_id


def finish_run(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Stamp a run as finished (still inside its transaction)."""
    con.execute("update runs set finished_at = now()::timestamp where run_id = ?", [run_id])


def load_ledger(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], LedgerEntry]:
    rows = con.execute(
        "select file_id, source, fingerprint, path, format, compressed, size_bytes, "
        "mtime_ns, offset_bytes, lines, first_run, last_run from files"
    ).fetchall()
    return {(r[1], r[2]): LedgerEntry(*r) for r in rows}


def _plan(
    project: Project,
    source: Source,
    ledger: dict[tuple[str, str], LedgerEntry],
    reports: dict[str, SourceReport],
    grace: float,
) -> Iterable[PlannedFile]:
    report = reports[source.label]
    files, other_topics = discover(project, source)
    report.files_seen = len(files)
    report.files_other_topics = other_topics
    by_path = {(e.source, e.path): e for e in ledger.values()}
    next_id = max((e.file_id for e in ledger.values()), default=0) + 1
    planned: dict[str, PlannedFile] = {}

    for file in files:
        known = by_path.get((source.label, str(file.path)))
        if known and known.size_bytes == file.size and known.mtime_ns == file.mtime_ns:
            report.files_unchanged += 1
            continue
        if file.size == 0:
            report.files_waiting += 1
            continue
        fresh = is_fresh(file, grace)
        print_ = fingerprint(file)
        if print_ is None:
            if fresh:
                report.files_waiting += 1
                continue
            print_ = whole_fingerprint(file)
        if print_ in planned:
            report.files_duplicate += 1
            log.warning(
                "%s starts like %s, which this run reads already: skipped as a copy",
                file.path,
                planned[print_].file.path,
            )
            continue
        entry = ledger.get((source.label, print_))
        if entry is None:
            entry = LedgerEntry(
                file_id=next_id,
                source=source.label,
                fingerprint=print_,
                path=str(file.path),
                format=file.declared_format or detect_format(file),
                compressed=file.compressed,
                size_bytes=file.size,
                mtime_ns=file.mtime_ns,
                offset_bytes=0,
                lines=0,
                first_run=0,
                last_run=0,
            )
            next_id += 1
            ledger[(source.label, print_)] = entry
        elif entry.path != str(file.path):
            log.info(
                "%s was read before as %s: reading on from line %d",
                file.path,
                entry.path,
                entry.lines + 1,
            )
        entry.path = str(file.path)
        entry.size_bytes = file.size
        entry.mtime_ns = file.mtime_ns
        entry.compressed = file.compressed
        if file.declared_format:
            entry.format = file.declared_format
        planned[print_] = PlannedFile(file, entry, hold_tail=fresh)
    return list(planned.values())


class LineBatch:
    """Lines gathered from files until a size is reached, then parsed and stored at once."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: int,
        limit_bytes: int,
        reports: dict[str, SourceReport],
        only_days: bool = False,
    ) -> None:
        self.con = con
        self.run_id = run_id
        self.limit = limit_bytes
        self.reports = reports
        self.sql = parse_sql()
        # A reload keeps only the rows of the days it reloads (listed in `reload_days`).
        self.keep = "day in (select day from reload_days)" if only_days else "true"
        self.insert_sql = (
            f"insert into queries select {', '.join(QUERY_COLUMNS)}, ? from parsed_batch "
            f"where reason is null and {self.keep}"
        )
        self.arrays: list[pa.Array] = []
        self.file_ids: list[np.ndarray[Any, Any]] = []
        self.line_nos: list[np.ndarray[Any, Any]] = []
        self.pre_reasons: list[pa.Array] = []
        self.files: dict[int, PlannedFile] = {}
        self.size = 0
        self.days: set[dt.date] = set()

    def add_file(
        self, plan: PlannedFile, progress: Progress | None, end: int | None = None
    ) -> None:
        """Read a file on from its ledger entry (up to `end`), advancing the entry."""
        entry = plan.entry
        self.files[entry.file_id] = plan
        self.reports[entry.source].files_read += 1
        reader = read_lines(
            plan.file, entry.offset_bytes, entry.lines + 1, self.limit, plan.hold_tail, end
        )
        for piece in reader:
            if isinstance(piece, Chunk):
                self._add_chunk(entry.file_id, piece)
                consumed = len(piece.data)
                entry.lines += piece.lines
            else:
                self._add_tail(entry.file_id, entry.lines + 1, piece)
                consumed = len(piece.raw)
                entry.lines += 1
            entry.offset_bytes += consumed
            self.size += consumed
            if progress:
                progress(consumed)
            if self.size >= self.limit:
                self.flush()
                self.files[entry.file_id] = plan

    def _add_chunk(self, file_id: int, chunk: Chunk) -> None:
        raw, reasons = _split_lines(chunk.data)
        n = len(raw)
        self.arrays.append(raw)
        self.file_ids.append(np.full(n, file_id, dtype=np.int64))
        self.line_nos.append(np.arange(chunk.first_line_no, chunk.first_line_no + n))
        self.pre_reasons.append(reasons)

    def _add_tail(self, file_id: int, line_no: int, tail: Tail) -> None:
        text = tail.raw.decode("utf-8", errors="backslashreplace")
        self.arrays.append(pa.array([text], pa.large_string()))
        self.file_ids.append(np.array([file_id], dtype=np.int64))
        self.line_nos.append(np.array([line_no], dtype=np.int64))
        self.pre_reasons.append(pa.array([tail.reason], pa.large_string()))

    def flush(self) -> None:
        if not self.arrays:
            return
        # Several record batches, so that DuckDB parses them on every core.
        lines = pa.Table.from_batches(
            pa.table(
                {
                    "file_id": pa.array(np.concatenate(self.file_ids)),
                    "line_no": pa.array(np.concatenate(self.line_nos)),
                    "raw": pa.concat_arrays(self.arrays),
                    "pre_reason": pa.concat_arrays(self.pre_reasons),
                }
            ).to_batches(max_chunksize=_ROWS_PER_ARROW_BATCH)
        )
        files = pa.table(
            {
                "file_id": [p.entry.file_id for p in self.files.values()],
                "source": [p.entry.source for p in self.files.values()],
                "path": [p.entry.path for p in self.files.values()],
                "format": [p.entry.format for p in self.files.values()],
                "routing_key": [p.file.routing_key for p in self.files.values()],
                "sagemaker_endpoint": [p.file.sagemaker_endpoint for p in self.files.values()],
                "sagemaker_variant": [p.file.sagemaker_variant for p in self.files.values()],
            },
            schema=pa.schema(
                [("file_id", pa.int64())]
                + [
                    (n, pa.string())
                    for n in (
                        "source",
                        "path",
                        "format",
                        "routing_key",
                        "sagemaker_endpoint",
                        "sagemaker_variant",
                    )
                ]
            ),
        )
        con = self.con
        # The batch reaches DuckDB through replacement scans of these local names, not
        # through register(): a view registered inside the run's transaction would keep its
        # Arrow data alive until the commit, and memory would grow with the run.
        ingest_lines, ingest_files = lines, files  # noqa: F841
        parsed_batch = con.sql(self.sql).to_arrow_table()
        con.execute(self.insert_sql, [self.run_id])
        con.execute(
            "insert into quarantine select source, source_file, file_id, line_no, day, reason, "
            "rtrim(raw, e'\\r\\n'), ? from parsed_batch "
            f"where reason is not null and {self.keep}",
            [self.run_id],
        )
        self._count(parsed_batch)
        self.arrays, self.file_ids, self.line_nos, self.pre_reasons = [], [], [], []
        self.files = {}
        self.size = 0

    def _count(self, parsed_batch: pa.Table) -> None:
        rows = self.con.execute(
            f"select source, reason, count(*) from parsed_batch where {self.keep} group by all"
        ).fetchall()
        for source, reason, count in rows:
            report = self.reports[source]
            report.lines_read += count
            if reason is None:
                report.loaded += count
            else:
                report.quarantined += count
                report.reasons[reason.split(":")[0]] += count
        days = self.con.execute(
            f"select distinct day from parsed_batch where day is not null and {self.keep}"
        ).fetchall()
        self.days.update(d[0] for d in days)


def _split_lines(data: bytes) -> tuple[pa.Array, pa.Array]:
    """Complete lines (each keeping its newline) as one Arrow text array, without copying.

    Also returns the reason of each line that cannot enter the parse step (invalid UTF-8),
    NULL for the others.
    """
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    binary = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    try:
        return binary.cast(pa.large_string()), pa.nulls(len(ends), pa.large_string())
    except pa.ArrowInvalid:
        pass
    texts: list[str] = []
    reasons: list[str | None] = []
    for start, end in itertools.pairwise(offsets.tolist()):
        line = data[start:end]
        try:
            texts.append(line.decode("utf-8"))
            reasons.append(None)
        except UnicodeDecodeError as exc:
            texts.append(line.decode("utf-8", errors="backslashreplace"))
            reasons.append(f"invalid UTF-8: byte {exc.start + 1} of the line")
    return pa.array(texts, pa.large_string()), pa.array(reasons, pa.large_string())


def _save_ledger(con: duckdb.DuckDBPyConnection, entries: list[LedgerEntry], run_id: int) -> None:
    if not entries:
        return
    for entry in entries:
        entry.first_run = entry.first_run or run_id
        entry.last_run = run_id
    table = pa.Table.from_pylist([e.__dict__ for e in entries])
    con.register("ledger_update", table)
    try:
        con.execute("delete from files where file_id in (select file_id from ledger_update)")
        con.execute(
            "insert into files select file_id, source, fingerprint, path, format, compressed, "
            "size_bytes, mtime_ns, offset_bytes, lines, first_run, last_run from ledger_update"
        )
    finally:
        con.unregister("ledger_update")


def refresh_partitions(
    con: duckdb.DuckDBPyConnection, days: Sequence[dt.date], run_id: int
) -> None:
    """Recount the `partitions` rows of the given days from `queries` and `quarantine`."""
    if not days:
        return
    con.execute("create or replace temp table changed_days (day date)")
    con.executemany("insert into changed_days values (?)", [[d] for d in days])
    con.execute("delete from partitions where day in (select day from changed_days)")
    con.execute(render_checked("ingest/partitions.sql"), [run_id])
    con.execute("drop table changed_days")


def _store_models(con: duckdb.DuckDBPyConnection, project: Project) -> None:
    con.execute("delete from models")
    for model in project.settings.models:
        con.execute(
            "insert into models values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                model.name,
                model.service,
                model.endpoint,
                str(project.path(model.reference)),
                model.target,
                model.version,
                model.match_version,
                json.dumps(model.columns),
                json.dumps(model.rename),
                project.config_hash,
            ],
        )
