"""The demo generator writes the month its story describes, in the Event-server layout."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from apimon.demo_data import DemoStory, generate_demo_data
from apimon.errors import ApimonError

ROWS = 5000
END_DAY = date(2026, 3, 31)
EVENTS = Path("data/events/apinode-query/fraud-detection-on-api-prod")
FILE_PATH = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})/events-\d+\.log(\.gz)?$")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"
ONE = timedelta(days=1)


@dataclass
class Parsed:
    """What an independent reader finds in the event files."""

    events: list[tuple[str, datetime, dict[str, Any]]] = field(default_factory=list)
    malformed: list[tuple[str, str]] = field(default_factory=list)
    unterminated: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def read_events(project: Path) -> Parsed:
    """Parse every event file with json and gzip, sorting lines into events and malformed."""
    parsed = Parsed()
    root = project / EVENTS
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        parsed.files.append(relative)
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
        if not text.endswith("\n"):
            parsed.unterminated.append(relative)
        for line in text.split("\n"):
            if line:
                event = parse_envelope(line)
                if event is None:
                    parsed.malformed.append((relative, line))
                else:
                    parsed.events.append((relative, *event))
    return parsed


def parse_envelope(line: str) -> tuple[datetime, dict[str, Any]] | None:
    """Return (serverTimestamp, clientEvent) of a valid Event-server line, else None."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("clientEvent"), dict):
        return None
    try:
        stamp = datetime.strptime(record["serverTimestamp"], TIMESTAMP_FORMAT)
    except (KeyError, TypeError, ValueError):
        return None
    return stamp, record["clientEvent"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoStory, Parsed]:
    """One generated project, its story and what the files hold."""
    project = tmp_path_factory.mktemp("demo")
    story = generate_demo_data(project, ROWS, seed=7, end_day=END_DAY)
    return project, story, read_events(project)


def file_bytes(project: Path) -> dict[str, bytes]:
    """Map every file below project/data to its bytes."""
    data = project / "data"
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}


def test_same_seed_writes_same_bytes_and_replaces_old_data(
    demo: tuple[Path, DemoStory, Parsed], tmp_path: Path
) -> None:
    project, story, _ = demo
    stale = tmp_path / "data" / "events" / "stale.log"
    stale.parent.mkdir(parents=True)
    stale.write_text("left over\n")

    again = generate_demo_data(tmp_path, ROWS, seed=7, end_day=END_DAY)

    assert again == story
    assert not stale.exists()
    assert file_bytes(tmp_path) == file_bytes(project)


def test_another_seed_writes_other_events(
    demo: tuple[Path, DemoStory, Parsed], tmp_path: Path
) -> None:
    project, _, _ = demo
    generate_demo_data(tmp_path, ROWS, seed=8, end_day=END_DAY)
    ours, theirs = file_bytes(tmp_path), file_bytes(project)
    assert ours["reference.parquet"] != theirs["reference.parquet"]
    assert sum(ours.get(name) != content for name, content in theirs.items()) > len(theirs) // 2


def test_story_dates_follow_end_day_and_days(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, story, _ = demo
    assert story.last_day == END_DAY
    assert story.first_day == END_DAY - timedelta(days=29)
    assert story.version_change_day == story.first_day + timedelta(days=15)
    assert story.sudden_drift_day == story.first_day + timedelta(days=21)
    assert (story.old_version, story.new_version) == ("1700000000000", "1710000000000")
    assert story.gradual_drift == ("transaction_amount",)
    assert story.sudden_drift == ("payment_type",)


def test_end_day_defaults_to_yesterday_utc(tmp_path: Path) -> None:
    story = generate_demo_data(tmp_path, 100, days=3)
    assert story.last_day == datetime.now(UTC).date() - timedelta(days=1)
    assert story.first_day == story.last_day - timedelta(days=2)


def test_files_are_hour_partitioned_and_a_quarter_gzipped(
    demo: tuple[Path, DemoStory, Parsed],
) -> None:
    _, story, parsed = demo
    assert len(parsed.files) == story.files
    days = set()
    for name in parsed.files:
        match = FILE_PATH.match(name)
        assert match, name
        days.add(date(int(match[1]), int(match[2]), int(match[3])))
        assert 0 <= int(match[4]) <= 23
    assert min(days) == story.first_day
    assert max(days) == story.last_day
    gzipped = sum(name.endswith(".log.gz") for name in parsed.files)
    assert 0.15 < gzipped / story.files < 0.35


def test_rows_and_malformed_lines_match_the_files(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, story, parsed = demo
    assert len(parsed.events) == story.rows == ROWS
    assert len(parsed.malformed) == story.malformed_lines >= 5


def test_every_kind_of_malformed_line_is_there(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, _, parsed = demo
    kinds: Counter[str] = Counter()
    for _, line in parsed.malformed:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            kinds["cut" if line.startswith('{"clientEvent":{') else "not json"] += 1
            continue
        if isinstance(record["clientEvent"], str):
            kinds["string event"] += 1
        elif "serverTimestamp" not in record:
            kinds["no timestamp"] += 1
    assert set(kinds) == {"cut", "not json", "string event", "no timestamp"}
    assert kinds["cut"] == 1


def test_cut_line_ends_the_last_file_of_a_day_before_the_last(
    demo: tuple[Path, DemoStory, Parsed],
) -> None:
    _, story, parsed = demo
    assert len(parsed.unterminated) == 1
    name = parsed.unterminated[0]
    assert name.endswith(".log")
    day = name[:10]
    assert day != story.last_day.strftime("%Y/%m/%d")
    assert name == max(n for n in parsed.files if n.startswith(day))
    assert any(malformed_file == name for malformed_file, _ in parsed.malformed)


def test_each_event_sits_in_its_hour_folder_in_time_order(
    demo: tuple[Path, DemoStory, Parsed],
) -> None:
    _, _, parsed = demo
    last_in_file: dict[str, datetime] = {}
    for name, stamp, _ in parsed.events:
        assert stamp.utcoffset() == timedelta(0)
        assert name.startswith(stamp.strftime("%Y/%m/%d/%H/"))
        assert stamp >= last_in_file.get(name, stamp)
        last_in_file[name] = stamp


def test_messages_follow_the_api_node_format(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, _, parsed = demo
    answered = [m for _, _, m in parsed.events if isinstance(m["result"], dict)]
    message = next(m for m in answered if not m["result"]["ignored"])
    assert message["msgType"] == "prediction-query"
    assert message["apinodeQueryType"] == "prediction"
    assert (message["serviceId"], message["endpointId"]) == ("fraud_detection", "predict_fraud")
    assert set(message["features"]) == {
        "amount",
        "customer_age",
        "distance_from_home",
        "payment_type",
        "merchant_category",
        "card_present",
    }
    assert set(message["timing"]) == {
        "preProcessing",
        "wait",
        "enrich",
        "preparation",
        "prediction",
        "postProcessing",
    }
    for _, _, m in parsed.events:
        saved = m["savedModel"]
        assert saved["projectKey"] == "FRAUD"
        assert saved["savedModelId"] == "aBcD1234"
        assert saved["fullModelId"] == f"S-FRAUD-aBcD1234-{saved['modelVersion']}"
        assert 0 <= m["batchIdx"] < m["batchSize"] <= 5
        assert all(isinstance(v, int) and v >= 0 for v in m["timing"].values())
        result = m["result"]
        if isinstance(result, dict) and not result["ignored"]:
            probas = result["probas"]
            assert probas["FRAUDULENT"] + probas["NOT_FRAUDULENT"] == pytest.approx(1.0)
            assert 1 <= result["probaPercentile"] <= 100
            assert result["prediction"] in {"FRAUDULENT", "NOT_FRAUDULENT"}


def test_callers_ids_and_batches_look_like_real_traffic(
    demo: tuple[Path, DemoStory, Parsed],
) -> None:
    _, _, parsed = demo
    messages = [m for _, _, m in parsed.events]
    request_ids = [m["userContext"]["request_id"] for m in messages]
    assert len(set(request_ids)) == len(request_ids)
    clients = Counter(m["clientIP"] for m in messages)
    assert 3 <= len(clients) <= 8
    assert max(clients.values()) > 2 * min(clients.values())
    batched = sum(m["batchSize"] > 1 for m in messages)
    assert 0.05 * ROWS < batched < 0.5 * ROWS
    median_prediction_time = sorted(m["timing"]["prediction"] for m in messages)[ROWS // 2]
    assert 700 < median_prediction_time < 1100


def test_ignored_failed_and_spoiled_records_are_there(
    demo: tuple[Path, DemoStory, Parsed],
) -> None:
    _, _, parsed = demo
    messages = [m for _, _, m in parsed.events]
    failed = [m for m in messages if m["result"] == "failure"]
    ignored = [m for m in messages if isinstance(m["result"], dict) and m["result"]["ignored"]]
    assert 0.001 * ROWS < len(failed) < 0.012 * ROWS
    assert all(m["errorType"] and m["errorMsg"] for m in failed)
    assert 0.004 * ROWS < len(ignored) < 0.02 * ROWS
    assert all(m["result"]["ignoreReason"] == "IGNORED_BY_MODEL" for m in ignored)
    assert all("prediction" not in m["result"] for m in ignored)
    ages = [m["features"]["customer_age"] for m in messages]
    assert 1 <= ages.count("unknown") <= 10
    assert any(m["features"]["distance_from_home"] is None for m in messages)


def test_version_changes_on_the_stated_day_with_a_short_overlap(
    demo: tuple[Path, DemoStory, Parsed],
) -> None:
    _, story, parsed = demo
    versions: defaultdict[date, Counter[str]] = defaultdict(Counter)
    for _, stamp, m in parsed.events:
        version = m["savedModel"]["modelVersion"]
        assert m["serviceGenerationId"] == ("v1" if version == story.old_version else "v2")
        versions[stamp.date()][version] += 1
    change = story.version_change_day
    assert all(set(c) == {story.old_version} for d, c in versions.items() if d < change)
    assert all(set(c) == {story.new_version} for d, c in versions.items() if d >= change + 2 * ONE)
    overlap = versions[change] + versions[change + ONE]
    assert 0 < overlap[story.old_version] < 0.15 * overlap[story.new_version]


def test_crypto_appears_from_the_sudden_drift_day(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, story, parsed = demo
    payments: defaultdict[date, Counter[str]] = defaultdict(Counter)
    for _, stamp, m in parsed.events:
        payments[stamp.date()][m["features"]["payment_type"]] += 1
    before = sum((c for d, c in payments.items() if d < story.sudden_drift_day), Counter())
    after = sum((c for d, c in payments.items() if d >= story.sudden_drift_day), Counter())
    assert before["CRYPTO"] == 0
    assert payments[story.sudden_drift_day]["CRYPTO"] > 0
    assert 0.02 < after["CRYPTO"] / after.total() < 0.1
    assert after["TRANSFER"] / after.total() > 2 * before["TRANSFER"] / before.total()


def test_amounts_grow_while_distances_stay(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, story, parsed = demo
    first_week = story.first_day + 7 * ONE
    last_week = story.last_day - 6 * ONE
    early = [m["features"] for _, s, m in parsed.events if s.date() < first_week]
    late = [m["features"] for _, s, m in parsed.events if s.date() >= last_week]

    def mean(rows: list[dict[str, Any]], name: str) -> float:
        values = [r[name] for r in rows if r[name] is not None]
        return sum(values) / len(values)

    assert mean(late, "amount") > 1.25 * mean(early, "amount")
    assert mean(late, "distance_from_home") == pytest.approx(
        mean(early, "distance_from_home"), rel=0.2
    )


def test_traffic_is_busier_by_day_and_on_weekdays(demo: tuple[Path, DemoStory, Parsed]) -> None:
    _, _, parsed = demo
    hours = Counter(stamp.hour for _, stamp, _ in parsed.events)
    assert hours[14] > 2 * hours[3]
    weekdays = Counter(stamp.weekday() >= 5 for _, stamp, _ in parsed.events)
    assert weekdays[True] / 2 < weekdays[False] / 5


def test_reference_has_the_training_columns(demo: tuple[Path, DemoStory, Parsed]) -> None:
    project, _, _ = demo
    table = pq.read_table(project / "data" / "reference.parquet")
    assert table.column_names == [
        "transaction_amount",
        "customer_age",
        "distance_from_home",
        "payment_type",
        "merchant_category",
        "card_present",
        "is_fraud",
        "prediction",
        "proba_FRAUDULENT",
        "proba_NOT_FRAUDULENT",
    ]
    assert table.num_rows == 5000
    data = table.to_pydict()
    assert min(data["customer_age"]) >= 18
    assert max(data["customer_age"]) <= 90
    assert set(data["payment_type"]) == {"CB", "PAYPAL", "TRANSFER", "CHEQUE"}
    assert 8 <= len(set(data["merchant_category"])) <= 12
    assert set(data["card_present"]) == {True, False}
    assert 0.03 < sum(data["is_fraud"]) / 5000 < 0.07
    mean_proba = sum(data["proba_FRAUDULENT"]) / 5000
    assert mean_proba == pytest.approx(sum(data["is_fraud"]) / 5000, abs=0.015)
    assert set(data["prediction"]) == {"FRAUDULENT", "NOT_FRAUDULENT"}


@pytest.mark.parametrize(("rows", "days"), [(99, 30), (1000, 2)])
def test_too_little_data_is_refused_with_a_fix(tmp_path: Path, rows: int, days: int) -> None:
    with pytest.raises(ApimonError, match="ask for more"):
        generate_demo_data(tmp_path, rows, days=days)
