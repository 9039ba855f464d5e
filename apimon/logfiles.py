"""Log files on disk: finding them, telling them apart, and reading their complete lines.

A file is known by the fingerprint of its first line, not by its name, so that a rotated
`queries.log` that became `queries.log.1` is recognised and read on from where it was left.
Offsets count bytes of the decompressed text, for plain and gzip files alike.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from apimon.config import Project, Source
from apimon.errors import ApimonError

log = logging.getLogger(__name__)

# Topics an Event server writes beside `apinode-query`; their files are not queries.
OTHER_TOPICS = frozenset(
    {"generic", "generic-failure", "authfail", "compute-resource-usage", "apicalls"}
)
QUERY_TOPIC = "apinode-query"
FINGERPRINT_BYTES = 1 << 20
_YEAR = re.compile(r"^(19|20|21)\d\d$")
_MONTH = re.compile(r"^(0[1-9]|1[0-2])$")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class LogFile:
    """A file found under a source, with what its path says about its records."""

    path: Path
    source: str
    declared_format: str | None
    routing_key: str | None
    sagemaker_endpoint: str | None
    sagemaker_variant: str | None
    compressed: bool
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Tail:
    """What is left after the last complete line: a partial line, or an unreadable stream."""

    raw: bytes
    reason: str


@dataclass
class Chunk:
    """Complete lines read from one file: `data` ends with a newline (or is empty)."""

    data: bytes
    first_line_no: int
    lines: int


def discover(project: Project, source: Source) -> tuple[list[LogFile], int]:
    """The log files of a source, sorted by path, and how many files of other topics it skipped."""
    pattern = source.path
    base = project.path(pattern)
    if any(ch in pattern for ch in "*?["):
        root = _glob_root(project, pattern)
        candidates = [Path(p) for p in glob.glob(str(project.root / pattern), recursive=True)]
    elif base.is_dir():
        root = base
        candidates = [p for p in base.rglob("*")]
    elif base.is_file():
        root = base.parent
        candidates = [base]
    else:
        raise ApimonError(
            f"source '{source.label}': {base} does not exist; fix `path` in apimon.toml "
            "(paths are relative to the project folder)"
        )

    files: list[LogFile] = []
    skipped = 0
    for path in sorted(candidates):
        if not path.is_file() or path.name.startswith("."):
            continue
        parts = _relative_parts(root, path)
        if any(part in OTHER_TOPICS for part in parts[:-1]):
            skipped += 1
            continue
        files.append(_describe(source, path, parts))
    return files, skipped


def _glob_root(project: Project, pattern: str) -> Path:
    head: list[str] = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in "*?["):
            break
        head.append(part)
    return project.path(os.path.join(*head)) if head else project.root


def _relative_parts(root: Path, path: Path) -> list[str]:
    try:
        return list(path.resolve().relative_to(root.resolve()).parts)
    except ValueError:
        return [path.name]


def _describe(source: Source, path: Path, parts: list[str]) -> LogFile:
    folders = parts[:-1]
    year_at = next(
        (
            i
            for i, part in enumerate(folders)
            if _YEAR.match(part) and i + 1 < len(folders) and _MONTH.match(folders[i + 1])
        ),
        None,
    )
    routing_key = source.routing_key
    endpoint = variant = None
    if year_at is not None and year_at >= 1:
        before = folders[year_at - 1]
        if routing_key is None and before != QUERY_TOPIC:
            routing_key = before
        variant = before
        endpoint = folders[year_at - 2] if year_at >= 2 else None
    stat = path.stat()
    with path.open("rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    declared = None if source.format == "auto" else source.format
    return LogFile(
        path=path,
        source=source.label,
        declared_format=declared,
        routing_key=routing_key,
        sagemaker_endpoint=endpoint,
        sagemaker_variant=variant,
        compressed=compressed,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
    )


def first_line(file: LogFile) -> bytes | None:
    """The file's first complete line (at most 1 MiB of it); None when it has none yet."""
    head = b""
    try:
        for block in _blocks(file, 0, 1 << 16):
            head += block
            if b"\n" in head or len(head) >= FINGERPRINT_BYTES:
                break
    except StreamFault:
        pass
    end = head.find(b"\n")
    if end >= 0:
        return head[: end + 1]
    if len(head) >= FINGERPRINT_BYTES:
        return head[:FINGERPRINT_BYTES]
    return None


def fingerprint(file: LogFile) -> str | None:
    """Identity of a file's content: a hash of its first complete line."""
    head = first_line(file)
    if head is None:
        return None
    return hashlib.sha256(head).hexdigest()


def whole_fingerprint(file: LogFile) -> str:
    """Identity of a file without a complete line: a hash of all it holds."""
    digest = hashlib.sha256(b"no-newline:")
    with file.path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def detect_format(file: LogFile) -> str | None:
    """The envelope of a file's first record, or None when it cannot be told."""
    head = first_line(file)
    if head is None:
        return None
    try:
        record = json.loads(head)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    if "clientEvent" in record:
        return "event-server"
    if "captureData" in record:
        return "sagemaker"
    if "message" in record and "timestamp" in record:
        return "log4j"
    return None


def is_fresh(file: LogFile, grace_seconds: float) -> bool:
    """Whether the file was written so recently that a partial last line may yet be finished."""
    return (time.time_ns() - file.mtime_ns) / 1e9 < grace_seconds


def read_lines(
    file: LogFile,
    offset: int,
    first_line_no: int,
    chunk_bytes: int,
    hold_tail: bool,
    end: int | None = None,
) -> Iterator[Chunk | Tail]:
    """Yield the complete lines after `offset` (up to `end`), in chunks, then any tail.

    With `hold_tail`, a partial last line is left unread (the writer may finish it);
    otherwise it is yielded as a Tail to be quarantined. A gzip stream that ends early or
    is corrupt yields every line that could be read, then a Tail naming the fault.
    """
    line_no = first_line_no
    pending = b""
    fault: str | None = None
    position = offset
    try:
        for block in _blocks(file, offset, min(chunk_bytes, 1 << 24)):
            if end is not None and position + len(block) > end:
                block = block[: end - position]
            position += len(block)
            pending += block
            if len(pending) >= chunk_bytes or (end is not None and position >= end):
                cut = pending.rfind(b"\n") + 1
                if cut:
                    lines = pending.count(b"\n", 0, cut)
                    yield Chunk(pending[:cut], line_no, lines)
                    line_no += lines
                    pending = pending[cut:]
            if end is not None and position >= end:
                break
    except StreamFault as exc:
        fault = str(exc)
    except OSError as exc:
        fault = f"read error ({exc})"

    cut = pending.rfind(b"\n") + 1
    if cut:
        lines = pending.count(b"\n", 0, cut)
        yield Chunk(pending[:cut], line_no, lines)
        pending = pending[cut:]
    if fault is not None:
        if not hold_tail:
            yield Tail(pending, fault)
    elif pending and not hold_tail:
        yield Tail(pending, "partial last line (no newline at end of file)")


class StreamFault(Exception):
    """A gzip stream that ends early or cannot be decompressed."""


_READ_BLOCK = 1 << 20


def _blocks(file: LogFile, offset: int, block_size: int) -> Iterator[bytes]:
    """The file's text after `offset` (decompressed), in blocks of at most `block_size`.

    For gzip, every byte that decompresses is yielded before a StreamFault names the
    fault, so that a truncated file gives up all its complete lines.
    """
    if not file.compressed:
        with file.path.open("rb") as handle:
            handle.seek(offset)
            while block := handle.read(block_size):
                yield block
        return

    skip = offset
    with file.path.open("rb") as handle:
        decompressor = zlib.decompressobj(wbits=31)
        fed = False
        data = b""
        while True:
            if not data:
                data = handle.read(_READ_BLOCK)
                if not data:
                    if fed and not decompressor.eof:
                        raise StreamFault("truncated gzip stream")
                    return
            if decompressor.eof:
                decompressor = zlib.decompressobj(wbits=31)  # another gzip member follows
            try:
                out = decompressor.decompress(data, block_size)
            except zlib.error as exc:
                raise StreamFault(f"corrupt gzip stream ({exc})") from exc
            fed = True
            data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            if skip >= len(out):
                skip -= len(out)
            else:
                yield out[skip:]
                skip = 0
