"""Logging the queries of a Python model service to an Event collector, or straight to files.

`QueryLogger.log_query` builds the message of one query in the API node's
`prediction-query` shape (so that `apimon ingest` loads it like any other row) and queues
it; a background thread sends the queue in batches (by size or time) and retries a failed
batch with backoff, a bounded number of times. The queue is bounded: when it is full,
`log_query` waits at most `block_timeout` seconds (0 by default: not at all), then drops
the query and counts it in `stats().dropped`, so that a slow or absent collector never
slows the model service down. Only the standard library is used (urllib for HTTP).

    logger = QueryLogger(
        HttpSink("http://127.0.0.1:11200", routing_key="fraud-on-prod"),
        service_id="fraud_detection", endpoint_id="predict_fraud", model_version="v7",
    )
    logger.log_query({"amount": 12.5}, {"prediction": "OK"}, context={"request_id": rid})
    logger.close()
"""

from __future__ import annotations

import atexit
import datetime as dt
import gzip
import http.client
import json
import logging
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from apimon.collector import (
    DEFAULT_TOPIC,
    EventFiles,
    Rejected,
    check_name,
    envelope_line,
    hour_folder,
    server_timestamp,
)

log = logging.getLogger(__name__)

__all__ = [
    "ClientStats",
    "FileSink",
    "HttpSink",
    "QueryLogger",
    "SendError",
    "Sink",
    "query_message",
    "to_json_text",
]


def query_message(
    *,
    service_id: str,
    endpoint_id: str,
    features: Any = None,
    result: Any = None,
    context: Any = None,
    timing: Mapping[str, float] | None = None,
    model_version: str | None = None,
    project_key: str | None = None,
    saved_model_id: str | None = None,
    generation_id: str | None = None,
    client_ip: str | None = None,
    error: BaseException | None = None,
    batch_size: int = 1,
    batch_idx: int = 0,
) -> dict[str, Any]:
    """The message of one prediction query, with the field names of an API node's audit log."""
    # `result` is the answer, a mapping such as {"prediction": ..., "probas": {...}}; any other
    # value is logged as {"prediction": value}. `error` logs a failed query instead. `timing`
    # holds the API node's keys (preProcessing, wait, enrich, preparation, prediction,
    # postProcessing), best in microseconds like the API node.
    message: dict[str, Any] = {
        "msgType": "prediction-query",
        "apinodeQueryType": "prediction",
        "serviceId": service_id,
        "endpointId": endpoint_id,
    }
    if generation_id is not None:
        message["serviceGenerationId"] = generation_id
    message["batchSize"] = batch_size
    message["batchIdx"] = batch_idx
    saved = {
        key: str(value)
        for key, value in (
            ("projectKey", project_key),
            ("savedModelId", saved_model_id),
            ("modelVersion", model_version),
        )
        if value is not None
    }
    if len(saved) == 3:
        saved["fullModelId"] = f"S-{project_key}-{saved_model_id}-{model_version}"
    if saved:
        message["savedModel"] = saved
    if features is not None:
        message["features"] = features
    if error is not None:
        message["result"] = "failure"
        message["errorType"] = type(error).__name__
        message["errorMsg"] = str(error)
    elif result is not None:
        message["result"] = result if isinstance(result, Mapping) else {"prediction": result}
    if timing:
        message["timing"] = dict(timing)
    if context is not None:
        message["userContext"] = context
    if client_ip is not None:
        message["clientIP"] = client_ip
    return message


def to_json_text(value: Any) -> str:
    """JSON text on one line; NaN and infinities become null, numpy values plain numbers."""
    try:
        return json.dumps(value, allow_nan=False, default=_plain, separators=(",", ":"))
    except ValueError:
        return json.dumps(_plain_tree(value), allow_nan=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return value.tolist()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _plain_tree(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_tree(v) for v in value]
    return _plain_tree(_plain(value))


# Sinks --------------------------------------------------------------------------------------


class SendError(Exception):
    """A batch that could not be delivered; `retryable` tells whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Sink(Protocol):
    """Where batches of messages (JSON text, one per query) go."""

    def send(self, events: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def _name(field: str, value: str) -> str:
    try:
        return check_name(field, value)
    except Rejected as exc:
        raise ValueError(exc.message) from None


class HttpSink:
    """Posts batches as newline-delimited JSON to an Event collector's `/events`."""

    def __init__(
        self,
        url: str,
        *,
        routing_key: str,
        topic: str = DEFAULT_TOPIC,
        api_key: str | None = None,
        timeout: float = 10.0,
        compress: bool = False,
    ) -> None:
        base = url.rstrip("/")
        if not base.endswith("/events"):
            base += "/events"
        query = urllib.parse.urlencode(
            {"topic": _name("topic", topic), "routingKey": _name("routingKey", routing_key)}
        )
        self.url = f"{base}?{query}"
        self._api_key = api_key
        self._timeout = timeout
        self._compress = compress

    def send(self, events: Sequence[str]) -> None:
        """Post one batch; SendError when it was not acknowledged."""
        body = ("\n".join(events) + "\n").encode()
        headers = {"Content-Type": "application/x-ndjson"}
        if self._compress:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        if self._api_key:
            headers["X-API-Key"] = self._api_key
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            retryable = exc.code >= 500 or exc.code in (408, 429)
            raise SendError(
                f"the collector at {self.url} answered {exc.code}: {_error_text(exc)}", retryable
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise SendError(f"cannot reach the collector at {self.url}: {reason}", True) from None

    def close(self) -> None:
        """Nothing to release: each batch opens its own connection."""


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode("utf-8", errors="replace")
        return str(json.loads(text).get("error", text))
    except (OSError, ValueError, AttributeError):
        return str(exc.reason)


# Files go to <root>/<topic>/<routing_key>/YYYY/MM/DD/HH/, files of its own per process, with
# the Event server's envelope; origAddress is `address` (the host name by default).
class FileSink:
    """Writes batches straight to files in the Event-server layout, fsynced, for `apimon ingest`."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        routing_key: str,
        topic: str = DEFAULT_TOPIC,
        address: str | None = None,
    ) -> None:
        self.topic = _name("topic", topic)
        self.routing_key = _name("routingKey", routing_key)
        self.address = address or socket.gethostname()
        self._files = EventFiles(Path(root))

    def send(self, events: Sequence[str]) -> None:
        """Append one batch and fsync it; OSError when the disk refuses."""
        now = dt.datetime.now(dt.UTC)
        folder = hour_folder(self.topic, self.routing_key, now)
        stamp = server_timestamp(now)
        self._files.append([(folder, envelope_line(e, self.address, stamp)) for e in events])

    def close(self) -> None:
        """Close the open files."""
        self._files.close()


# The logger ---------------------------------------------------------------------------------


# dropped: not queued, the queue was full; failed: given up after every retry; rejected:
# refused by the collector (a 4xx other than 408 and 429), not retried; waiting: queued or
# being sent.
@dataclass(frozen=True)
class ClientStats:
    """What a QueryLogger did so far."""

    queued: int
    sent: int
    dropped: int
    failed: int
    rejected: int
    retries: int
    batches: int
    waiting: int


class QueryLogger:
    """Queues prediction queries and sends them in batches from a background thread."""

    def __init__(
        self,
        sink: Sink,
        *,
        service_id: str,
        endpoint_id: str,
        model_version: str | None = None,
        project_key: str | None = None,
        saved_model_id: str | None = None,
        generation_id: str | None = None,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        queue_size: int = 10_000,
        block_timeout: float = 0.0,
        max_retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be at least 1")
        self.sink = sink
        self._service_id = service_id
        self._endpoint_id = endpoint_id
        self._model_version = model_version
        self._project_key = project_key
        self._saved_model_id = saved_model_id
        self._generation_id = generation_id
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue_size = queue_size
        self._block_timeout = block_timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff

        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._unsent = 0
        self._flushers = 0
        self._closing = False
        self._abandon = threading.Event()
        self._counts = dict.fromkeys(
            ("queued", "sent", "dropped", "failed", "rejected", "retries", "batches"), 0
        )
        self._last_drop_warning = 0.0
        self._thread = threading.Thread(target=self._work, name="apimon-query-logger", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def __enter__(self) -> QueryLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_query(
        self,
        features: Any,
        result: Any,
        *,
        context: Any = None,
        timing: Mapping[str, float] | None = None,
        model_version: str | None = None,
        client_ip: str | None = None,
        error: BaseException | None = None,
        batch_size: int = 1,
        batch_idx: int = 0,
    ) -> bool:
        """Queue one query; False when the queue stayed full for `block_timeout` (dropped)."""
        text = to_json_text(
            query_message(
                service_id=self._service_id,
                endpoint_id=self._endpoint_id,
                model_version=self._model_version if model_version is None else model_version,
                project_key=self._project_key,
                saved_model_id=self._saved_model_id,
                generation_id=self._generation_id,
                features=features,
                result=result,
                context=context,
                timing=timing,
                client_ip=client_ip,
                error=error,
                batch_size=batch_size,
                batch_idx=batch_idx,
            )
        )
        return self.log_message(text)

    def log_message(self, text: str) -> bool:
        """Queue a message already serialized as JSON text; False when dropped."""
        with self._cond:
            if self._closing:
                raise RuntimeError("this QueryLogger is closed: create a new one to log more")
            if len(self._queue) >= self._queue_size and self._block_timeout > 0:
                deadline = time.monotonic() + self._block_timeout
                while len(self._queue) >= self._queue_size and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            if len(self._queue) >= self._queue_size or self._closing:
                self._counts["dropped"] += 1
                self._warn_dropped()
                return False
            self._queue.append(text)
            self._unsent += 1
            self._counts["queued"] += 1
            if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
                self._cond.notify_all()
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now; True once every queued query was sent or given up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._unsent:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushers -= 1

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (for at most `timeout` seconds), then stop the thread."""
        atexit.unregister(self.close)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()
            self._thread.join(1.0)
        if not self._thread.is_alive():
            self.sink.close()

    def stats(self) -> ClientStats:
        """The counters so far (`waiting`: queued or being sent)."""
        with self._cond:
            return ClientStats(**self._counts, waiting=self._unsent)

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_warning >= 10:
            self._last_drop_warning = now
            log.warning(
                "the query queue is full (%d queries): dropped %d queries so far; the "
                "collector is slow or unreachable, or raise queue_size",
                self._queue_size,
                self._counts["dropped"],
            )

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            outcome = self._deliver(batch)
            with self._cond:
                self._counts[outcome] += len(batch)
                if outcome == "sent":
                    self._counts["batches"] += 1
                self._unsent -= len(batch)
                self._cond.notify_all()

    def _next_batch(self) -> list[str] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            if self._abandon.is_set():
                self._counts["failed"] += len(self._queue)
                self._unsent -= len(self._queue)
                self._queue.clear()
                self._cond.notify_all()
                return None
            deadline = time.monotonic() + self._flush_interval
            while len(self._queue) < self._batch_size and not (self._closing or self._flushers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(len(self._queue), self._batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._cond.notify_all()  # room for callers waiting on a full queue
            return batch

    def _deliver(self, batch: list[str]) -> str:
        attempt = 0
        while True:
            try:
                self.sink.send(batch)
                return "sent"
            except SendError as exc:
                if not exc.retryable:
                    log.error("%d queries refused and not retried: %s", len(batch), exc)
                    return "rejected"
                problem = str(exc)
            except OSError as exc:
                problem = f"cannot write: {exc}"
            except Exception:
                log.exception("%d queries lost to an unexpected error of the sink", len(batch))
                return "failed"
            if attempt >= self._max_retries or self._abandon.is_set():
                log.error(
                    "%d queries given up after %d attempts: %s", len(batch), attempt + 1, problem
                )
                return "failed"
            delay = min(self._max_backoff, self._backoff * 2**attempt)
            delay *= 0.5 + random.random() / 2
            attempt += 1
            with self._cond:
                self._counts["retries"] += 1
            log.info("%s; trying again in %.2f s", problem, delay)
            self._abandon.wait(delay)
