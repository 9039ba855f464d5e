"""`apimon serve`: an Event collector that appends posted events in the Event-server layout.

An event is acknowledged (2xx) only once its line is written and fsynced; requests that
arrive together share one fsync (group commit). Each server process appends only to files
it created itself, so a line torn by a crash stays at the end of a file that is never
appended to again, where `apimon ingest` quarantines it instead of merging it with the
next line. aiohttp is imported only when the server starts, so that the client (which
shares the file layout with this module) and `apimon --help` stay light.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apimon.errors import ApimonError

if TYPE_CHECKING:
    from aiohttp import web

    from apimon.config import CollectorSettings, Project

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "apinode-query"
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
NAME_RULE = "1 to 128 of the characters A-Z a-z 0-9 . _ -, not starting with a dot"
# The Event server's topics (the query topic and those of apimon.logfiles.OTHER_TOPICS): a
# routing key with one of these names would make ingest skip or misread its folder.
TOPIC_NAMES = frozenset(
    {DEFAULT_TOPIC, "generic", "generic-failure", "authfail", "compute-resource-usage", "apicalls"}
)
_JSON_SPACE = " \t\r\n"
_SHUTDOWN_TIMEOUT_SECONDS = 10.0
_sync_data: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class Rejected(Exception):
    """A request answered with an error status; nothing of it was written."""

    def __init__(self, status: int, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "reason": self.reason}
        if self.field is not None:
            body["field"] = self.field
        return body


def check_name(field: str, value: object, where: str = "") -> str:
    """A valid topic or routing key, or a 400 Rejected naming the field and the rule."""
    if field == "routingKey" and value in TOPIC_NAMES:
        raise Rejected(
            400,
            f"invalid {field}",
            f"{where}{field} {value!r} is the name of an Event-server topic, whose folders "
            "apimon ingest skips or misreads: choose another routing key",
            field=field,
        )
    if isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None:
        return value
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise Rejected(
        400,
        f"invalid {field}",
        f"{where}{field} {shown} is not allowed: use {NAME_RULE}",
        field=field,
    )


def server_timestamp(at: dt.datetime) -> str:
    """The Event server's time stamp of a UTC time: `YYYY-MM-DDTHH:MM:SS.mmm+0000`."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


def hour_folder(topic: str, routing_key: str, at: dt.datetime) -> str:
    """The folder of an event, relative to the root: `<topic>/<routing-key>/YYYY/MM/DD/HH`."""
    return f"{topic}/{routing_key}/{at:%Y/%m/%d/%H}"


def envelope_line(event_json: str, address: str, stamp: str) -> bytes:
    """One file line: the event's JSON text as posted, the sender's address and the time."""
    return _ENVELOPE_HEAD + event_json.encode() + _envelope_tail(address, stamp)


_ENVELOPE_HEAD = b'{"clientEvent": '


def _envelope_tail(address: str, stamp: str) -> bytes:
    return f', "origAddress": {json.dumps(address)}, "serverTimestamp": "{stamp}"}}\n'.encode()


# Parsing request bodies -------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(text: str) -> Any:
    return _DECODER.decode(text)


def _why(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def parse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of a body (one object, or one per line), each with its JSON text on one line."""
    # The JSON text of each event is kept as posted, so numbers keep every digit. Newlines and
    # carriage returns can only stand outside strings in valid JSON: they become spaces.
    body = text.strip(_JSON_SPACE)
    if not body:
        raise Rejected(
            400, "empty body", "the body holds no event: send one JSON object, or one per line"
        )
    pieces: list[tuple[int, str, Any]] = []
    try:
        pieces.append((1, body, _loads(body)))
    except (ValueError, RecursionError):
        for number, line in enumerate(text.split("\n"), start=1):
            piece = line.strip(_JSON_SPACE)
            if not piece:
                continue
            try:
                pieces.append((number, piece, _loads(piece)))
            except (ValueError, RecursionError) as exc:
                raise Rejected(
                    400,
                    "not JSON",
                    f"line {number} of the body is not valid JSON ({_why(exc)}): "
                    "send one JSON object, or one per line",
                ) from None

    events: list[tuple[str, dict[str, Any]]] = []
    for number, piece, value in pieces:
        if isinstance(value, list) and len(pieces) == 1:
            raise Rejected(
                400,
                "not an object",
                "the body is a JSON array: send one event per line (newline-delimited JSON)",
            )
        if not isinstance(value, dict):
            raise Rejected(
                400,
                "not an object",
                f"line {number} of the body is a JSON {type(value).__name__}, not an object: "
                "every event must be a JSON object",
            )
        if "\n" in piece or "\r" in piece:
            piece = piece.replace("\r", " ").replace("\n", " ")
        events.append((piece, value))
    return events


def gunzip(data: bytes, limit: int) -> bytes:
    """A gzip body inflated, or Rejected: 413 past `limit` bytes, 400 when it is not gzip."""
    parts: list[bytes] = []
    size = 0
    rest = data
    if not rest:
        raise Rejected(400, "bad gzip", "the body is empty but says Content-Encoding: gzip")
    while rest:
        inflater = zlib.decompressobj(wbits=31)
        try:
            piece = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise Rejected(
                400,
                "bad gzip",
                f"the body is not valid gzip ({exc}): compress it with gzip, "
                "or send it plain without Content-Encoding",
            ) from None
        size += len(piece)
        if size > limit:
            raise Rejected(
                413,
                "body too large",
                f"the gzip body inflates to more than max_body_bytes = {limit}: "
                "send smaller batches (or raise [collector] max_body_bytes)",
            )
        if not inflater.eof:
            raise Rejected(
                400, "bad gzip", "the gzip body is cut short: send the whole compressed stream"
            )
        parts.append(piece)
        rest = inflater.unused_data
    return b"".join(parts)


# Files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """What one append did: bytes written, fsync calls (files and folders), files created."""

    bytes: int
    fsyncs: int
    files_created: int


@dataclass
class _OpenFile:
    fd: int
    path: Path
    last_used: float


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# A file is named after its writer's start time, process id and a serial number, and opened
# with O_EXCL, so no two writers (nor two runs of one) ever append to the same file. After a
# write error a file is given up and later lines go to a new one. The first line of each new
# file is made unlike the first line of any other file the writer created (by trailing
# spaces), since `apimon ingest` knows a file by its first line.
class EventFiles:
    """The files one writer appends to under a root, each created new by it and only by it."""

    def __init__(self, root: Path, *, max_open: int = 64, idle_seconds: float = 3600.0) -> None:
        self.root = root
        self._max_open = max_open
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._files: OrderedDict[str, _OpenFile] = OrderedDict()
        self._first_lines: dict[bytes, int] = {}
        self._first_line_times: deque[tuple[float, bytes]] = deque()
        self._begin()

    def _begin(self) -> None:
        self._pid = os.getpid()
        started = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self._prefix = f"{started}-{self._pid}"
        self._serial = 0

    def prepare(self) -> None:
        """Create the root folder (durably), so that a root that cannot be written fails early."""
        with self._lock:
            self._make_dirs(self.root)

    def append(self, lines: Sequence[tuple[str, bytes]]) -> Written:
        """Append lines to the files of their folders (relative to the root), then fsync them."""
        with self._lock:
            if os.getpid() != self._pid:
                self._forget_parent_files()
            by_folder: dict[str, list[bytes]] = {}
            for folder, line in lines:
                by_folder.setdefault(folder, []).append(line)

            total = fsyncs = created = 0
            touched: list[tuple[str, _OpenFile]] = []
            for folder, chunk in by_folder.items():
                handle = self._files.get(folder)
                if handle is None:
                    handle, syncs = self._create(folder)
                    fsyncs += syncs
                    created += 1
                    chunk[0] = self._unique_first_line(chunk[0])
                data = b"".join(chunk)
                self._write(folder, handle, data)
                total += len(data)
                touched.append((folder, handle))

            for folder, handle in touched:
                try:
                    _sync_data(handle.fd)
                except OSError:
                    self._give_up(folder)
                    raise
                fsyncs += 1
            self._close_unused()
            return Written(total, fsyncs, created)

    def close(self) -> None:
        """Close every open file (their lines are fsynced already)."""
        with self._lock:
            for handle in self._files.values():
                os.close(handle.fd)
            self._files.clear()

    def _forget_parent_files(self) -> None:
        """After a fork, leave the parent's files to it and start files of this process."""
        for open_file in self._files.values():
            with suppress(OSError):
                os.close(open_file.fd)
        self._files.clear()
        self._begin()

    def _create(self, folder: str) -> tuple[_OpenFile, int]:
        directory = self.root / folder
        syncs = self._make_dirs(directory)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        while True:
            path = directory / f"{self._prefix}-{self._serial}.log"
            self._serial += 1
            try:
                fd = os.open(path, flags, 0o644)
            except FileExistsError:
                continue
            break
        try:
            _sync_dir(directory)
        except OSError:
            os.close(fd)
            raise
        handle = _OpenFile(fd, path, time.monotonic())
        self._files[folder] = handle
        log.debug("created %s", path)
        return handle, syncs + 1

    def _make_dirs(self, directory: Path) -> int:
        missing: list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            with suppress(FileExistsError):  # another writer made it at the same time
                os.mkdir(path)
            _sync_dir(path.parent)
        return len(missing)

    def _write(self, folder: str, handle: _OpenFile, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(handle.fd, view) :]
        except OSError:
            self._give_up(folder)
            raise
        handle.last_used = time.monotonic()
        self._files.move_to_end(folder)

    def _give_up(self, folder: str) -> None:
        handle = self._files.pop(folder)
        with suppress(OSError):
            os.close(handle.fd)
        log.warning(
            "stopped appending to %s after a write error: later events go to a new file",
            handle.path,
        )

    def _close_unused(self) -> None:
        now = time.monotonic()
        while self._files:
            folder, handle = next(iter(self._files.items()))
            if len(self._files) <= self._max_open and now - handle.last_used < self._idle_seconds:
                break
            del self._files[folder]
            os.close(handle.fd)

    def _unique_first_line(self, line: bytes) -> bytes:
        now = time.monotonic()
        # Lines carry the time they were received, so only recent ones can be alike.
        while self._first_line_times and now - self._first_line_times[0][0] > 3600:
            _, old = self._first_line_times.popleft()
            self._first_lines.pop(old, None)
        digest = hashlib.sha256(line).digest()
        seen = self._first_lines.get(digest, 0)
        self._first_lines[digest] = seen + 1
        self._first_line_times.append((now, digest))
        if seen:
            line = line[:-1] + b" " * seen + b"\n"
        return line


# Group commit ------------------------------------------------------------------------------


class WriteFailed(Exception):
    """The lines of a commit could not be written or fsynced."""


@dataclass
class Stats:
    """Counters of one server process, served by `GET /stats`."""

    started_at: float = field(default_factory=time.time)
    requests_accepted: int = 0
    events_accepted: int = 0
    bytes_written: int = 0
    commits: int = 0
    fsyncs: int = 0
    files_created: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "requests_accepted": self.requests_accepted,
            "events_accepted": self.events_accepted,
            "bytes_written": self.bytes_written,
            "commits": self.commits,
            "fsyncs": self.fsyncs,
            "files_created": self.files_created,
            "requests_rejected": sum(self.rejected.values()),
            "rejected": dict(self.rejected),
        }


@dataclass
class _Ticket:
    lines: list[tuple[str, bytes]]
    future: asyncio.Future[None]


# A commit starts as soon as the writer is free and no other request is still being read,
# or once `flush_bytes` wait, or after `flush_interval` seconds at the latest; requests that
# arrive while a commit runs form the next one.
class GroupCommit:
    """Writes the lines of concurrent requests together and fsyncs them once."""

    def __init__(
        self, files: EventFiles, stats: Stats, flush_bytes: int, flush_interval: float
    ) -> None:
        self._files = files
        self._stats = stats
        self._flush_bytes = flush_bytes
        self._flush_interval = flush_interval
        self._pending: list[_Ticket] = []
        self._pending_bytes = 0
        self._arriving = 0
        self._closing = False
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apimon-writer")
        self._task = asyncio.get_running_loop().create_task(self._run())

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Count a request whose body is being read, so that a commit may wait for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wake.set()

    def submit(self, lines: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        """Queue lines for the next commit; the future is done once they are durable."""
        if self._closing:
            raise Rejected(
                503, "shutting down", "the collector is shutting down: send again after it restarts"
            )
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Ticket(lines, future))
        self._pending_bytes += sum(len(line) for _, line in lines)
        self._wake.set()
        return future

    async def close(self) -> None:
        """Commit what is pending, then close the files."""
        self._closing = True
        self._wake.set()
        await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._files.close)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather(loop)
            group, self._pending, self._pending_bytes = self._pending, [], 0
            lines = [line for ticket in group for line in ticket.lines]
            try:
                written = await loop.run_in_executor(self._executor, self._files.append, lines)
            except Exception as exc:
                log.error("could not write %d events: %s", len(lines), exc)
                for ticket in group:
                    if not ticket.future.done():
                        ticket.future.set_exception(WriteFailed(str(exc)))
                continue
            self._stats.commits += 1
            self._stats.fsyncs += written.fsyncs
            self._stats.bytes_written += written.bytes
            self._stats.files_created += written.files_created
            for ticket in group:
                if not ticket.future.done():
                    ticket.future.set_result(None)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait, up to the flush interval, for requests still being read to join the commit."""
        deadline = loop.time() + self._flush_interval
        while self._arriving and self._pending_bytes < self._flush_bytes and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return


# HTTP --------------------------------------------------------------------------------------


class Collector:
    """The HTTP side: checks each request, parses its events and hands them to the commit."""

    def __init__(self, settings: CollectorSettings, files: EventFiles) -> None:
        self.settings = settings
        self.files = files
        self.stats = Stats()
        self._keys = [key.encode() for key in settings.auth_keys]
        self._commit: GroupCommit | None = None

    def app(self) -> web.Application:
        """The aiohttp application: `POST /events`, `GET /health`, `GET /stats`."""
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/events", self.post_events)
        app.router.add_get("/health", self.health)
        app.router.add_get("/stats", self.get_stats)
        return app

    def start(self) -> None:
        """Start the group commit on the running event loop."""
        self._commit = GroupCommit(
            self.files,
            self.stats,
            self.settings.flush_bytes,
            self.settings.flush_interval_ms / 1000,
        )

    async def close(self) -> None:
        """Commit what is pending and close the files."""
        if self._commit is not None:
            await self._commit.close()

    async def post_events(self, request: web.Request) -> web.StreamResponse:
        """Append the events of one request; answer 200 once they are durable."""
        from aiohttp import web

        commit = self._commit
        assert commit is not None, "start() the collector before serving"
        received = dt.datetime.now(dt.UTC)
        try:
            with commit.arriving():
                self._authorize(request)
                topic, routing_key = self._request_routing(request)
                body = await self._read_body(request)
                lines = self._lines(body, topic, routing_key, request.remote or "", received)
                done = commit.submit(lines)
            await done
        except Rejected as exc:
            return self._reject(exc)
        except WriteFailed as exc:
            return self._reject(
                Rejected(
                    503,
                    "write failed",
                    f"the events could not be written to disk ({exc}): nothing was "
                    "acknowledged; send them again, and check the disk of the collector",
                )
            )
        self.stats.requests_accepted += 1
        self.stats.events_accepted += len(lines)
        return web.json_response({"accepted": len(lines)})

    async def health(self, request: web.Request) -> web.StreamResponse:
        """Answer 200 while the server runs (no key needed, for load balancers)."""
        from aiohttp import web

        return web.json_response({"status": "ok"})

    async def get_stats(self, request: web.Request) -> web.StreamResponse:
        """The counters of this process (a key is needed when keys are configured)."""
        from aiohttp import web

        try:
            self._authorize(request)
        except Rejected as exc:
            return self._reject(exc)
        return web.json_response(self.stats.as_dict())

    def _reject(self, exc: Rejected) -> web.StreamResponse:
        from aiohttp import web

        self.stats.rejected[exc.reason] += 1
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return web.json_response(exc.as_dict(), status=exc.status, headers=headers)

    def _authorize(self, request: web.Request) -> None:
        if not self._keys:
            return
        given = request.headers.get("X-API-Key")
        if given is None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given:
            candidate = given.encode()
            matched = False
            for key in self._keys:  # every key is compared, in constant time
                matched |= hmac.compare_digest(candidate, key)
            if matched:
                return
        raise Rejected(
            401,
            "unauthorized",
            "missing or unknown key: send one of [collector] auth_keys in the header "
            "X-API-Key or as Authorization: Bearer KEY",
        )

    def _request_routing(self, request: web.Request) -> tuple[str | None, str | None]:
        routing: list[str | None] = []
        for name, header in (("topic", "X-Topic"), ("routingKey", "X-Routing-Key")):
            if name in request.query:
                value = check_name(name, request.query[name], "query parameter ")
            elif header in request.headers:
                value = check_name(name, request.headers[header], f"header {header}: ")
            else:
                value = None
            routing.append(value)
        return routing[0], routing[1]

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise Rejected(
                415,
                "unsupported encoding",
                f"Content-Encoding {encoding!r} is not supported: send the body plain or gzip",
            )
        too_large = Rejected(
            413,
            "body too large",
            f"the body is larger than max_body_bytes = {limit}: send smaller batches "
            "(or raise [collector] max_body_bytes)",
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        parts: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
        data = b"".join(parts)
        return gunzip(data, limit) if encoding in ("gzip", "x-gzip") else data

    def _lines(
        self,
        body: bytes,
        topic: str | None,
        routing_key: str | None,
        address: str,
        received: dt.datetime,
    ) -> list[tuple[str, bytes]]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected(
                400,
                "not UTF-8",
                f"the body is not UTF-8 (byte {exc.start + 1}): send JSON encoded in UTF-8",
            ) from None
        tail = _envelope_tail(address, server_timestamp(received))
        folders: dict[tuple[str, str], str] = {}
        lines: list[tuple[str, bytes]] = []
        for number, (raw, event) in enumerate(parse_events(text), start=1):
            where = f"event {number}: "
            event_topic = check_name("topic", event["topic"], where) if "topic" in event else topic
            event_key = (
                check_name("routingKey", event["routingKey"], where)
                if "routingKey" in event
                else routing_key
            )
            if event_key is None:
                raise Rejected(
                    400,
                    "missing routingKey",
                    f"{where}no routing key: pass the query parameter ?routingKey=DEPLOYMENT, "
                    "the header X-Routing-Key, or a routingKey field in the event",
                    field="routingKey",
                )
            route = (event_topic or DEFAULT_TOPIC, event_key)
            folder = folders.get(route)
            if folder is None:
                folder = folders[route] = hour_folder(*route, received)
            lines.append((folder, _ENVELOPE_HEAD + raw.encode() + tail))
        return lines


# Running -----------------------------------------------------------------------------------


def serve(
    project: Project,
    host: str | None = None,
    port: int | None = None,
    *,
    ready: Callable[[str, int], None] | None = None,
) -> Stats:
    """Run the project's Event collector until SIGTERM or SIGINT, then drain and flush."""
    settings = project.settings.collector
    if any(not key.strip() for key in settings.auth_keys):
        raise ApimonError(
            f"[collector] auth_keys in {project.root / 'apimon.toml'} has an empty key: "
            "remove it, or give every key some characters"
        )
    if any(len(key) < 16 for key in settings.auth_keys):
        log.warning("some [collector] auth_keys are shorter than 16 characters: easy to guess")
    root = project.path(settings.root)
    chosen_host = host or settings.host
    chosen_port = settings.port if port is None else port
    return asyncio.run(_serve(settings, root, chosen_host, chosen_port, ready))


async def _serve(
    settings: CollectorSettings,
    root: Path,
    host: str,
    port: int,
    ready: Callable[[str, int], None] | None,
) -> Stats:
    from aiohttp import web

    files = EventFiles(root)
    try:
        files.prepare()
    except OSError as exc:
        raise ApimonError(
            f"cannot create the event folder {root} ({exc}): fix [collector] root in apimon.toml"
        ) from exc
    collector = Collector(settings, files)
    collector.start()
    runner = web.AppRunner(
        collector.app(),
        handle_signals=False,
        access_log=None,
        auto_decompress=False,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ApimonError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another "
                "--port (or [collector] port), or stop what uses it"
            ) from exc
        bound = int(runner.addresses[0][1])
        if not settings.auth_keys and host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "listening on %s without [collector] auth_keys: anyone who reaches it can "
                "write events",
                host,
            )
        log.info("listening on http://%s:%d/events, writing to %s", host, bound, root)
        if ready is not None:
            ready(host, bound)
        await stop.wait()
        log.info("stopping: answering the requests in flight, then flushing")
    finally:
        await runner.cleanup()
        await collector.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    stats = collector.stats
    log.info(
        "stopped: %d events accepted in %d requests, %d fsyncs, %d requests rejected",
        stats.events_accepted,
        stats.requests_accepted,
        stats.fsyncs,
        sum(stats.rejected.values()),
    )
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m apimon.collector`: serve a project, printing the bound port on stdout first."""
    parser = argparse.ArgumentParser(
        prog="python -m apimon.collector",
        description="Run the Event collector of a project (the same as `apimon serve`).",
    )
    parser.add_argument("--project", help="project folder with apimon.toml")
    parser.add_argument("--host", help="address to bind (default: [collector] host)")
    parser.add_argument("--port", type=int, help="port to bind; 0 picks a free one")
    parser.add_argument("--quiet", action="store_true", help="log only errors")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from apimon.config import load_project

    try:
        serve(load_project(args.project), args.host, args.port, ready=_print_port)
    except ApimonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_port(host: str, port: int) -> None:
    print(port, flush=True)


if __name__ == "__main__":
    sys.exit(main())
