"""Ingestion with real files on disk and a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from conftest import (
    DEFAULT_TIME,
    age,
    event_line,
    log4j_line,
    message,
    one,
    rows,
    sagemaker_line,
    write_lines,
)

from apimon.errors import ApimonError
from apimon.ingest import ingest

ES = "logs/apinode-query/fraud-on-prod/2026/11/02/10"


def test_event_server_line_becomes_one_typed_row(tmp_path: Path, make_project) -> None:
    write_lines(tmp_path / ES / "a.log", [event_line(7)])
    project = make_project()

    report = ingest(project)

    assert (report.lines_read, report.loaded, report.quarantined) == (1, 1, 0)
    got = rows(
        project,
        "select day, event_time, received_time, sender, envelope, msg_type, query_type, "
        "service_id, endpoint_id, generation_id, routing_key, batch_size, batch_idx, "
        "project_key, saved_model_id, model_version, full_model_id, ignored, failed, "
        "client_ip, timing_prediction, features->>'$.transaction_amount', "
        "result->>'$.prediction', user_context->>'$.request_id', line_no, other_fields "
        "from queries",
    )
    assert got == [
        (
            dt.date(2026, 11, 2),
            dt.datetime(2026, 11, 2, 10, 11, 12, 345000),
            dt.datetime(2026, 11, 2, 10, 11, 12, 345000),
            "10.0.0.7",
            "event-server",
            "prediction-query",
            "prediction",
            "fraud_detection",
            "predict_fraud",
            "v3",
            "fraud-on-prod",
            1,
            0,
            "FRAUD",
            "aBcD1234",
            "1700000000000",
            "S-FRAUD-aBcD1234-1700000000000",
            False,
            False,
            "10.0.0.5",
            900.0,
            "107.0",
            "FRAUDULENT",
            "req-7",
            1,
            None,
        )
    ]


def test_event_time_with_an_offset_is_stored_in_utc(tmp_path: Path, make_project) -> None:
    line = json.dumps({"clientEvent": message(), "serverTimestamp": "2026-11-03T00:30:00.000+0100"})
    write_lines(tmp_path / ES / "a.log", [line])
    project = make_project()

    ingest(project)

    assert rows(project, "select day, event_time from queries") == [
        (dt.date(2026, 11, 2), dt.datetime(2026, 11, 2, 23, 30))
    ]


def test_log4j_queries_log_is_read(tmp_path: Path, make_project) -> None:
    write_lines(tmp_path / "logs" / "queries.log", [log4j_line(i) for i in range(3)])
    project = make_project(sources='path = "logs"\nrouting_key = "fraud-on-dev"')

    report = ingest(project)

    assert report.loaded == 3
    assert rows(project, "select distinct envelope, routing_key, event_time from queries") == [
        ("log4j", "fraud-on-dev", dt.datetime(2026, 11, 2, 10, 11, 12, 345000))
    ]


def test_log4j_message_logged_as_json_text_is_read(tmp_path: Path, make_project) -> None:
    line = json.dumps({"timestamp": "2026/11/02-10:11:12.345Z", "message": json.dumps(message())})
    write_lines(tmp_path / "logs" / "queries.log", [line])
    project = make_project()

    assert ingest(project).loaded == 1
    assert one(project, "select model_version from queries") == "1700000000000"


@pytest.mark.parametrize("encoding", ["JSON", "BASE64", "CSV"])
def test_sagemaker_capture_is_decoded(tmp_path: Path, make_project, encoding: str) -> None:
    folder = tmp_path / "capture" / "fraud-endpoint" / "AllTraffic" / "2026" / "11" / "02" / "10"
    write_lines(folder / "capture.jsonl", [sagemaker_line(i, encoding=encoding) for i in range(2)])
    project = make_project(sources='path = "capture"\nformat = "sagemaker"')

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (2, 0)
    got = rows(
        project,
        "select service_id, endpoint_id, features, result->>'$.prediction', "
        "user_context->>'$.inferenceId', event_time from queries order by line_no",
    )
    expected_features = (
        '[100.0,"CB"]' if encoding == "CSV" else '{"transaction_amount":100.0,"payment_type":"CB"}'
    )
    assert got[0] == (
        "fraud-endpoint",
        "AllTraffic",
        expected_features,
        "1",
        "inference-0",
        dt.datetime(2026, 11, 2, 10, 11, 12),
    )


def test_gzip_files_are_read_like_plain_ones(tmp_path: Path, make_project) -> None:
    write_lines(tmp_path / ES / "a.log.gz", [event_line(i) for i in range(5)])
    write_lines(tmp_path / ES / "b.log", [event_line(i) for i in range(5, 8)])
    project = make_project()

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (8, 0)
    assert one(project, "select count(distinct user_context) from queries") == 8


@pytest.mark.parametrize(
    "folder",
    [
        "apinode-query/key-a/2026/11",  # month partitioning
        "apinode-query/key-a/2026/11/02",  # day partitioning
        "apinode-query/key-a/2026/11/02/10",  # hour partitioning
    ],
)
def test_event_server_layouts_give_the_routing_key(
    tmp_path: Path, make_project, folder: str
) -> None:
    write_lines(tmp_path / "logs" / folder / "events.log", [event_line(1), event_line(2)])
    project = make_project()

    assert ingest(project).loaded == 2
    assert rows(project, "select distinct routing_key from queries") == [("key-a",)]


def test_other_topics_of_the_event_server_are_skipped(tmp_path: Path, make_project) -> None:
    write_lines(tmp_path / "logs/apinode-query/k/2026/11/02/10/e.log", [event_line(1)])
    write_lines(tmp_path / "logs/authfail/k/2026/11/02/10/e.log", ['{"x": 1}'])
    project = make_project()

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (1, 0)
    assert report.sources[0].files_other_topics == 1


def test_a_second_ingest_loads_nothing(tmp_path: Path, make_project) -> None:
    write_lines(tmp_path / ES / "a.log", [event_line(i) for i in range(10)])
    project = make_project()
    ingest(project)

    again = ingest(project)

    assert (again.lines_read, again.loaded, again.sources[0].files_unchanged) == (0, 0, 1)
    assert one(project, "select count(*) from queries") == 10


def test_a_growing_log_loads_only_its_new_lines(tmp_path: Path, make_project) -> None:
    log = write_lines(tmp_path / "logs" / "queries.log", [log4j_line(i) for i in range(3)])
    project = make_project()
    ingest(project)

    with log.open("a") as handle:
        handle.write("\n".join(log4j_line(i) for i in range(3, 7)) + "\n")
    report = ingest(project)

    assert (report.lines_read, report.loaded) == (4, 4)
    assert rows(project, "select min(line_no), max(line_no), count(*) from queries") == [(1, 7, 7)]


def test_rotation_is_not_loaded_twice_and_loses_nothing(tmp_path: Path, make_project) -> None:
    logs = tmp_path / "logs"
    log = write_lines(logs / "queries.log", [log4j_line(i) for i in range(3)])
    project = make_project()
    ingest(project)

    # Two more lines reach the log, then it is rotated and a new one starts.
    with log.open("a") as handle:
        handle.write(log4j_line(3) + "\n" + log4j_line(4) + "\n")
    log.rename(logs / "queries.log.1")
    write_lines(logs / "queries.log", [log4j_line(i) for i in range(5, 7)])
    report = ingest(project)

    assert (report.loaded, report.quarantined) == (4, 0)
    requests = [r[0] for r in rows(project, "select user_context->>'$.request_id' from queries")]
    assert sorted(requests) == [f"req-{i}" for i in range(7)]


def test_a_rotated_log_compressed_later_is_recognised(tmp_path: Path, make_project) -> None:
    logs = tmp_path / "logs"
    write_lines(logs / "queries.log.1", [log4j_line(i) for i in range(4)])
    project = make_project()
    ingest(project)

    (logs / "queries.log.1").unlink()
    write_lines(logs / "queries.log.1.gz", [log4j_line(i) for i in range(4)])
    report = ingest(project)

    assert report.loaded == 0
    assert one(project, "select count(*) from queries") == 4


def test_partial_last_line_waits_while_the_file_is_fresh(tmp_path: Path, make_project) -> None:
    log = tmp_path / "logs" / "queries.log"
    write_lines(log, [log4j_line(0)])
    with log.open("a") as handle:
        handle.write(log4j_line(1)[:40])
    project = make_project(grace=300)

    first = ingest(project)
    with log.open("a") as handle:
        handle.write(log4j_line(1)[40:] + "\n")
    second = ingest(project)

    assert (first.loaded, first.quarantined, second.loaded, second.quarantined) == (1, 0, 1, 0)


def test_partial_last_line_of_an_old_file_is_quarantined(tmp_path: Path, make_project) -> None:
    log = write_lines(
        tmp_path / "logs" / "queries.log",
        [log4j_line(0), log4j_line(1)[:50]],
        newline_at_end=False,
    )
    age(log)
    project = make_project(grace=300)

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (1, 1)
    assert rows(project, "select line_no, reason, raw from quarantine") == [
        (2, "partial last line (no newline at end of file)", log4j_line(1)[:50])
    ]


def test_truncated_gzip_keeps_its_complete_lines(tmp_path: Path, make_project) -> None:
    data = gzip.compress(("\n".join(event_line(i) for i in range(200)) + "\n").encode())
    path = tmp_path / ES / "cut.log.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: len(data) * 2 // 3])
    project = make_project()

    report = ingest(project)

    assert report.loaded > 0
    assert report.loaded + report.quarantined == report.lines_read
    assert rows(project, "select reason from quarantine") == [("truncated gzip stream",)]
    assert one(project, "select max(line_no) from queries") == report.loaded


def test_corrupt_gzip_is_quarantined(tmp_path: Path, make_project) -> None:
    path = tmp_path / ES / "bad.log.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x1f\x8b" + b"not a deflate stream at all" * 10)
    project = make_project()

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (0, 1)
    assert one(project, "select reason from quarantine").startswith("corrupt gzip stream")


QUARANTINE_CASES = [
    ("not json at all", "not valid JSON"),
    ('{"clientEvent": {"msgType": "prediction-', "not valid JSON"),
    ("", "blank line"),
    ('["a list"]', "record is not a JSON object"),
    ('{"something": "else"}', "unknown record shape: no clientEvent, message or captureData"),
    ('{"clientEvent": {"msgType": "prediction-query"}}', "record has no time"),
    (
        '{"clientEvent": {"msgType": "prediction-query"}, "serverTimestamp": "yesterday"}',
        "unparseable time: yesterday",
    ),
    (
        '{"clientEvent": {"msgType": "x"}, "serverTimestamp": "2300-01-01T00:00:00Z"}',
        "time out of range: 2300-01-01T00:00:00Z",
    ),
    (
        '{"clientEvent": "a text", "serverTimestamp": "2026-11-02T10:00:00Z"}',
        "message is not a JSON object",
    ),
    (
        '{"clientEvent": {"serviceId": "s"}, "serverTimestamp": "2026-11-02T10:00:00Z"}',
        "message has no msgType",
    ),
    (event_line(batchSize="one"), "field batchSize is not an integer"),
    (event_line(batchSize=1.5), "field batchSize is not an integer"),
    (event_line(batchSize=10**30), "field batchSize is not an integer in range"),
    (event_line(timing={"prediction": "slow"}), "field timing.prediction is not a number"),
    (event_line(timing={"prediction": 1e400}), "field timing.prediction is out of range"),
    (event_line(savedModel="S-FRAUD-x-1"), "field savedModel is not an object"),
    (event_line(features="a=1"), "field features is not an object or a list"),
    (event_line(serviceId={"a": 1}), "field serviceId is not a scalar value"),
    (event_line(result={"ignored": "no"}), "field result.ignored is not true or false"),
    (log4j_line(), "a log4j record in a file read as event-server"),
]


@pytest.mark.parametrize(("line", "reason"), QUARANTINE_CASES)
def test_every_bad_line_is_quarantined_with_its_reason(
    tmp_path: Path, make_project, line: str, reason: str
) -> None:
    # A good first line makes the file an Event-server file; the bad one follows.
    write_lines(tmp_path / ES / "a.log", [event_line(0), line])
    project = make_project()

    report = ingest(project)

    assert (report.lines_read, report.loaded, report.quarantined) == (2, 1, 1)
    assert rows(project, "select file_id, line_no, reason, raw from quarantine") == [
        (1, 2, reason, line)
    ]


def test_invalid_utf8_is_quarantined_and_kept_escaped(tmp_path: Path, make_project) -> None:
    path = tmp_path / ES / "a.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(event_line(0).encode() + b"\n" + b'{"bad": "\xff\xfe"}\n')
    project = make_project()

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (1, 1)
    assert rows(project, "select reason, raw from quarantine") == [
        ("invalid UTF-8: byte 10 of the line", '{"bad": "\\xff\\xfe"}')
    ]


def test_every_line_read_is_loaded_or_quarantined(tmp_path: Path, make_project) -> None:
    lines = [event_line(i) if i % 3 else "garbage" for i in range(30)]
    write_lines(tmp_path / ES / "a.log", lines)
    project = make_project()

    report = ingest(project)

    loaded = one(project, "select count(*) from queries")
    quarantined = one(project, "select count(*) from quarantine")
    assert (report.lines_read, loaded, quarantined) == (30, 20, 10)
    assert rows(
        project,
        "select count(*) = 30, count(distinct line_no) = 30 from "
        "(select line_no from queries union all select line_no from quarantine)",
    ) == [(True, True)]


def test_ignored_and_failed_queries_are_flagged(tmp_path: Path, make_project) -> None:
    ignored = event_line(1, result={"ignored": True, "ignoreReason": "IGNORED_BY_MODEL"})
    failed = event_line(2, result="failure", errorType="ScoringException", errorMsg="boom")
    write_lines(tmp_path / ES / "a.log", [event_line(0), ignored, failed])
    project = make_project()

    ingest(project)

    assert rows(
        project,
        "select ignored, ignore_reason, failed, error_type, error_msg from queries "
        "order by line_no",
    ) == [
        (False, None, False, None, None),
        (True, "IGNORED_BY_MODEL", False, None, None),
        (False, None, True, "ScoringException", "boom"),
    ]


def test_unknown_message_keys_are_kept(tmp_path: Path, make_project) -> None:
    msg = message(0, tenant="acme")
    msg["savedModel"]["stage"] = "prod"
    write_lines(tmp_path / ES / "a.log", [event_line(msg=msg)])
    project = make_project()

    ingest(project)

    kept = json.loads(one(project, "select other_fields from queries"))
    assert kept == {"tenant": "acme", "savedModel": {"stage": "prod"}}


def test_hostile_values_survive_whole(tmp_path: Path, make_project) -> None:
    hostile = 'a"; drop table queries; --'
    nested: object = "bottom"
    for _ in range(200):
        nested = {"n": nested}
    features = {
        hostile: 1,
        "Prénom (€)": "Zoë 🚀",
        "huge": 123456789012345678901234567890,
        "tiny": 1e-300,
        "nested": nested,
        "big_text": "x" * 2_000_000,
    }
    write_lines(tmp_path / ES / "a.log", [event_line(0, features=features)])
    project = make_project()

    report = ingest(project)

    assert (report.loaded, report.quarantined) == (1, 0)
    stored = one(project, "select features from queries")
    assert json.loads(stored) == features
    assert "123456789012345678901234567890" in stored
    assert one(project, "select count(*) from queries") == 1


def test_a_missing_source_path_is_a_clear_error(make_project) -> None:
    project = make_project(sources='path = "nowhere"')

    with pytest.raises(ApimonError, match="nowhere does not exist"):
        ingest(project)


def test_partitions_count_rows_quarantine_and_sources(tmp_path: Path, make_project) -> None:
    day2 = DEFAULT_TIME + dt.timedelta(days=1)
    write_lines(tmp_path / ES / "a.log", [event_line(0), event_line(1), "oops"])
    write_lines(
        tmp_path / "logs/apinode-query/fraud-on-prod/2026/11/03/10/b.log", [event_line(2, at=day2)]
    )
    project = make_project()

    ingest(project)

    assert rows(
        project, 'select day, "rows", quarantined, sources, files from partitions order by day'
    ) == [
        (dt.date(2026, 11, 2), 2, 0, ["logs"], 1),
        (dt.date(2026, 11, 3), 1, 0, ["logs"], 1),
    ]
