"""The query logger against a real collector subprocess, and its FileSink on real files."""

from __future__ import annotations

import datetime as dt
import json
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import one, rows
from test_collector import CollectorProcess, files_under, lines_under

from apimon.client import FileSink, HttpSink, QueryLogger, query_message, to_json_text
from apimon.config import load_project
from apimon.ingest import ingest

IDS = {
    "service_id": "fraud_detection",
    "endpoint_id": "predict_fraud",
    "model_version": "1700000000000",
    "project_key": "FRAUD",
    "saved_model_id": "aBcD1234",
}
TIMING = {"preProcessing": 12, "wait": 3, "prediction": 900, "postProcessing": 20}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(tmp_path).start()
    yield process
    process.stop()


@pytest.fixture
def idle_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused, nobody else takes it."""
    holder = socket.socket()  # SO_REUSEADDR lets the collector bind it while it is held
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    yield int(holder.getsockname()[1])
    holder.close()


def log_some(logger: QueryLogger, count: int, prefix: str = "r") -> list[bool]:
    return [
        logger.log_query(
            {"transaction_amount": 10.0 + i, "payment_type": "CB"},
            {"prediction": "FRAUDULENT", "probas": {"FRAUDULENT": 0.9, "NOT_FRAUDULENT": 0.1}},
            context={"request_id": f"{prefix}{i}"},
            timing=TIMING,
        )
        for i in range(count)
    ]


def test_query_message_follows_the_api_node_shape() -> None:
    got = query_message(
        features={"amount": 1.5},
        result="FRAUDULENT",
        context={"request_id": "abc"},
        timing={"prediction": 900},
        generation_id="v3",
        client_ip="10.0.0.5",
        **IDS,
    )

    assert got == {
        "msgType": "prediction-query",
        "apinodeQueryType": "prediction",
        "serviceId": "fraud_detection",
        "endpointId": "predict_fraud",
        "serviceGenerationId": "v3",
        "batchSize": 1,
        "batchIdx": 0,
        "savedModel": {
            "projectKey": "FRAUD",
            "savedModelId": "aBcD1234",
            "modelVersion": "1700000000000",
            "fullModelId": "S-FRAUD-aBcD1234-1700000000000",
        },
        "features": {"amount": 1.5},
        "result": {"prediction": "FRAUDULENT"},
        "timing": {"prediction": 900},
        "userContext": {"request_id": "abc"},
        "clientIP": "10.0.0.5",
    }


def test_json_text_turns_nan_into_null_and_numpy_into_plain_numbers() -> None:
    value = {
        "nan": math.nan,
        "inf": [1.0, -math.inf],
        "f32": np.float32(0.5),
        "i64": np.int64(3),
        "array": np.array([1, 2]),
        "np_nan": np.float64("nan"),
        "day": dt.date(2026, 11, 2),
    }

    text = to_json_text(value)

    assert "\n" not in text
    assert json.loads(text) == {
        "nan": None,
        "inf": [1.0, None],
        "f32": 0.5,
        "i64": 3,
        "array": [1, 2],
        "np_nan": None,
        "day": "2026-11-02",
    }


def test_queries_are_batched_into_a_real_collector_and_ingest_loads_them(
    server: CollectorProcess,
) -> None:
    sink = HttpSink(f"http://127.0.0.1:{server.port}", routing_key="fraud-on-prod")
    logger = QueryLogger(sink, batch_size=50, flush_interval=5.0, **IDS)

    assert all(log_some(logger, 200))
    logger.log_query({"transaction_amount": math.nan}, None, error=ValueError("bad input"))
    logger.close()

    stats = logger.stats()
    assert (stats.sent, stats.batches, stats.dropped, stats.failed) == (201, 5, 0, 0)
    assert server.stats()["requests_accepted"] == 5  # 4 full batches, then the rest on close
    project = load_project(server.folder)
    assert ingest(project).loaded == 201
    assert rows(
        project,
        "select msg_type, query_type, service_id, endpoint_id, routing_key, model_version, "
        "full_model_id, timing_prediction, result->>'$.prediction', failed, "
        "other_fields is null, count(*) from queries where not failed group by all",
    ) == [
        (
            "prediction-query",
            "prediction",
            "fraud_detection",
            "predict_fraud",
            "fraud-on-prod",
            "1700000000000",
            "S-FRAUD-aBcD1234-1700000000000",
            900.0,
            "FRAUDULENT",
            False,
            True,
            200,
        )
    ]
    assert one(project, "select count(distinct user_context->>'$.request_id') from queries") == 200
    assert rows(
        project, "select error_type, error_msg, features::varchar from queries where failed"
    ) == [("ValueError", "bad input", '{"transaction_amount":null}')]


def test_a_batch_is_retried_until_the_collector_comes_up(tmp_path: Path, idle_port: int) -> None:
    port = idle_port
    sink = HttpSink(f"http://127.0.0.1:{port}/events", routing_key="late", compress=True)
    logger = QueryLogger(
        sink,
        batch_size=10,
        flush_interval=0.05,
        backoff=0.1,
        max_backoff=0.5,
        max_retries=40,
        **IDS,
    )

    log_some(logger, 30)
    time.sleep(0.5)
    server = CollectorProcess(tmp_path).start(port)
    try:
        assert logger.flush(timeout=30)
        stats = logger.stats()
        assert (stats.sent, stats.failed, stats.dropped) == (30, 0, 0)
        assert stats.retries >= 1
        ids = sorted(
            e["clientEvent"]["userContext"]["request_id"] for e in lines_under(server.root)
        )
        assert ids == sorted(f"r{i}" for i in range(30))
    finally:
        logger.close()
        server.stop()


def test_a_full_queue_drops_queries_at_once_and_counts_them(idle_port: int) -> None:
    sink = HttpSink(f"http://127.0.0.1:{idle_port}", routing_key="nowhere", timeout=1)
    logger = QueryLogger(
        sink, batch_size=10, queue_size=10, flush_interval=0.01, backoff=30, max_retries=1, **IDS
    )

    started = time.monotonic()
    outcomes = log_some(logger, 100)
    elapsed = time.monotonic() - started
    logger.close(timeout=0.5)

    stats = logger.stats()
    assert elapsed < 1.0  # never blocked
    assert outcomes.count(False) == stats.dropped >= 80
    assert outcomes.count(True) == stats.queued <= 20
    assert stats.sent == 0
    assert stats.queued == stats.failed + stats.waiting


def test_block_timeout_waits_for_room_before_dropping(idle_port: int) -> None:
    sink = HttpSink(f"http://127.0.0.1:{idle_port}", routing_key="nowhere", timeout=1)
    logger = QueryLogger(
        sink, batch_size=50, queue_size=3, flush_interval=60, block_timeout=0.3, **IDS
    )
    assert log_some(logger, 3) == [True, True, True]

    started = time.monotonic()
    queued = log_some(logger, 1)
    waited = time.monotonic() - started
    logger.close(timeout=0.5)

    assert queued == [False]
    assert 0.3 <= waited < 2.0
    assert logger.stats().dropped == 1


def test_a_refused_batch_is_not_retried(tmp_path: Path) -> None:
    keys = 'auth_keys = ["right-key-0123456789abcdef"]'
    server = CollectorProcess(tmp_path, keys).start()
    try:
        wrong = HttpSink(f"http://127.0.0.1:{server.port}", routing_key="k", api_key="wrong")
        logger = QueryLogger(wrong, batch_size=5, flush_interval=0.01, backoff=0.01, **IDS)
        log_some(logger, 5)
        logger.close()
        right = HttpSink(
            f"http://127.0.0.1:{server.port}", routing_key="k", api_key="right-key-0123456789abcdef"
        )
        with QueryLogger(right, batch_size=5, flush_interval=0.01, **IDS) as accepted:
            log_some(accepted, 5)
    finally:
        server.stop()

    assert (logger.stats().rejected, logger.stats().retries, logger.stats().sent) == (5, 0, 0)
    assert accepted.stats().sent == 5
    assert len(lines_under(server.root)) == 5


def test_file_sink_writes_event_server_files_that_ingest_loads(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "events", routing_key="local-dev", address="10.1.2.3")
    with QueryLogger(sink, batch_size=7, flush_interval=0.01, **IDS) as logger:
        log_some(logger, 20)

    assert logger.stats().sent == 20
    names = list(files_under(tmp_path / "events"))
    assert names and all(
        n.startswith("apinode-query/local-dev/") and len(n.split("/")) == 7 for n in names
    )
    (tmp_path / "apimon.toml").write_text(
        '[ingest]\npartial_line_grace_seconds = 0\n\n[[sources]]\npath = "events"\n'
    )
    project = load_project(tmp_path)
    report = ingest(project)
    assert (report.loaded, report.quarantined) == (20, 0)
    assert rows(
        project,
        "select routing_key, sender, envelope, model_version, count(*) from queries group by all",
    ) == [("local-dev", "10.1.2.3", "event-server", "1700000000000", 20)]


def test_names_that_could_leave_the_root_are_refused_by_the_sinks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="routingKey"):
        FileSink(tmp_path, routing_key="../up")
    with pytest.raises(ValueError, match="topic"):
        HttpSink("http://127.0.0.1:1", routing_key="ok", topic="a/b")
