"""Shared builders: projects on disk, and log lines in each envelope."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from apimon.config import Project, load_project

UTC = dt.UTC
DEFAULT_TIME = dt.datetime(2026, 11, 2, 10, 11, 12, 345000, tzinfo=UTC)


def message(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A prediction-query message as the reference describes it."""
    msg: dict[str, Any] = {
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
        "features": {"transaction_amount": 100.0 + i, "payment_type": "CB"},
        "result": {
            "prediction": "FRAUDULENT",
            "probaPercentile": 94,
            "probas": {"FRAUDULENT": 0.878, "NOT_FRAUDULENT": 0.122},
            "ignored": False,
        },
        "timing": {
            "preProcessing": 12,
            "wait": 3,
            "enrich": 0,
            "preparation": 150,
            "prediction": 900,
            "postProcessing": 20,
        },
        "userContext": {"request_id": f"req-{i}"},
        "clientIP": "10.0.0.5",
    }
    msg.update(overrides)
    return msg


def event_line(
    i: int = 0, at: dt.datetime = DEFAULT_TIME, msg: Any = None, **overrides: Any
) -> str:
    """An Event-server file line."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    record = {
        "clientEvent": message(i, **overrides) if msg is None else msg,
        "origAddress": "10.0.0.7",
        "serverTimestamp": stamp,
    }
    return json.dumps(record)


def log4j_line(i: int = 0, at: dt.datetime = DEFAULT_TIME, **overrides: Any) -> str:
    """An API node's queries.log line (also the cloud audit-log shape)."""
    stamp = at.strftime("%Y/%m/%d-%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    record = {
        "timestamp": stamp,
        "logger": "dku.apinode.audit.queries",
        "severity": "INFO",
        "message": message(i, **overrides),
    }
    return json.dumps(record)


def sagemaker_line(
    i: int = 0,
    at: dt.datetime = DEFAULT_TIME,
    encoding: str = "JSON",
    features: dict[str, Any] | None = None,
) -> str:
    """A SageMaker data-capture line whose input is JSON, BASE64 or CSV."""
    feats = features or {"transaction_amount": 100.0 + i, "payment_type": "CB"}
    if encoding == "CSV":
        data = ",".join(str(v) for v in feats.values())
        content_type = "text/csv"
    else:
        data = json.dumps({"features": feats})
        content_type = "application/json"
        if encoding == "BASE64":
            data = base64.b64encode(data.encode()).decode()
    record = {
        "captureData": {
            "endpointInput": {
                "observedContentType": content_type,
                "mode": "INPUT",
                "data": data,
                "encoding": encoding,
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": json.dumps({"prediction": 1, "probabilities": [0.2, 0.8]}),
                "encoding": "JSON",
            },
        },
        "eventMetadata": {
            "eventId": f"event-{i}",
            "inferenceId": f"inference-{i}",
            "inferenceTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "eventVersion": "0",
    }
    return json.dumps(record)


def write_lines(path: Path, lines: list[str], *, newline_at_end: bool = True) -> Path:
    """Write lines to a file, creating folders; gzip when the name ends with .gz."""
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def age(path: Path, seconds: float = 3600) -> None:
    """Make a file look as if last written `seconds` ago."""
    past = path.stat().st_mtime - seconds
    os.utime(path, (past, past))


ProjectFactory = Callable[..., Project]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Write an apimon.toml into tmp_path and load it."""

    def make(text: str = "", *, sources: str = 'path = "logs"', grace: float = 0) -> Project:
        config = (
            f"[ingest]\npartial_line_grace_seconds = {grace}\n\n[[sources]]\n{sources}\n\n" + text
        )
        (tmp_path / "apimon.toml").write_text(config, encoding="utf-8")
        return load_project(tmp_path)

    return make


def rows(project: Project, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run a query on the project's warehouse, read-only, in a fresh connection."""
    con = duckdb.connect(str(project.database_path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def one(project: Project, sql: str, params: list[Any] | None = None) -> Any:
    """The single value of a query on the project's warehouse."""
    return rows(project, sql, params)[0][0]
