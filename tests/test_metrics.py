"""`apimon metrics`: statuses and key figures that Prometheus' own parser reads back."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from test_checks import WINDOWS, fake_windows, golden, judge, with_config

from apimon.cli import main
from apimon.config import Project
from apimon.metrics import escape_label, format_labels, format_value, metric_families
from apimon.metrics import prometheus_text as text_of
from apimon.warehouse import connect

__all__ = ["golden"]  # the fixture, shared with the checks' tests

ODD_COLUMN = 'we"ird\\name\nwith a line feed'


def exported(project: Project) -> str:
    con = connect(project.database_path, read_only=True)
    try:
        return text_of(metric_families(con, project))
    finally:
        con.close()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Each family's samples, as Prometheus' client library parses them."""
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def value(found: list[tuple[dict[str, str], float]], **labels: str) -> float:
    matching = [v for got, v in found if all(got.get(k) == w for k, w in labels.items())]
    assert len(matching) == 1, (labels, found)
    return matching[0]


@pytest.fixture
def judged(golden: Project) -> Project:
    """The golden project with `binary` given known windows (and an oddly named column)."""
    project = with_config(golden, '[[labels]]\npath = "labels.csv"\nmodel = "binary"\n')
    windows: list[dict[str, Any]] = [dict(w) for w in WINDOWS]
    windows[1]["psi"] = {**windows[1]["psi"], ODD_COLUMN: 0.25}
    fake_windows(project, "binary", windows)
    judge(project)
    return project


def test_metrics_parse_with_the_prometheus_client(judged: Project) -> None:
    text = exported(judged)

    found = samples(text)

    assert text.endswith("\n")
    assert value(found["apimon_status"]) == 2
    assert value(found["apimon_model_status"], model="binary") == 2
    assert value(found["apimon_model_status"], model="multi") == -1
    assert value(found["apimon_endpoint_status"], service="fraud", endpoint="predict") == 2
    assert value(found["apimon_endpoint_status"], service="iris", endpoint="classify") == 0
    assert value(found["apimon_log_store_status"]) == 0
    # The newest window of binary has too few rows: the figures are those of 2 November.
    assert value(found["apimon_drift_share"], model="binary", window="day") == 0.6
    assert value(found["apimon_drift_model_accuracy"], model="binary") == 0.75
    assert value(found["apimon_label_coverage"], model="binary") == 0.05
    assert value(found["apimon_failure_rate"], service="fraud") == pytest.approx(1 / 7)
    assert value(found["apimon_requests"], service="fraud") == 7
    assert value(found["apimon_quarantined_lines"]) == 0
    newest = value(found["apimon_newest_event_timestamp_seconds"])
    assert dt.datetime.fromtimestamp(newest, dt.UTC).date() == dt.date(2026, 11, 2)


def test_a_label_value_with_quotes_backslashes_and_line_feeds_survives(judged: Project) -> None:
    found = samples(exported(judged))

    odd = value(found["apimon_check_status"], check="column_psi", column=ODD_COLUMN)
    assert odd == 1  # PSI 0.25: a warning
    assert value(found["apimon_check_value"], column=ODD_COLUMN) == 0.25


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ('\\"\n', '\\\\\\"\\n'),
    ],
)
def test_label_values_are_escaped_as_the_format_says(raw: str, escaped: str) -> None:
    assert escape_label(raw) == escaped
    parsed = next(iter(text_string_to_metric_families(f"m{format_labels({'l': raw})} 1\n")))
    assert parsed.samples[0].labels == {"l": raw}


@pytest.mark.parametrize(
    ("number", "text"),
    [(2.0, "2"), (-1.0, "-1"), (0.1, "0.1"), (math.nan, "NaN"), (math.inf, "+Inf"),
     (1e300, "1e+300")],
)  # fmt: skip
def test_values_are_written_as_prometheus_reads_them(number: float, text: str) -> None:
    assert format_value(number) == text


def test_a_family_without_samples_is_left_out(golden: Project) -> None:
    con = connect(golden.database_path, read_only=True)
    try:
        families = metric_families(con, golden)
    finally:
        con.close()

    assert all(f.samples for f in families)
    # No evaluation of the golden project had enough rows: no drift share to export.
    assert "apimon_drift_share" not in {f.name for f in families}
    assert samples(text_of(families))  # still a valid exposition


@pytest.mark.skipif("metrics" not in main.commands, reason="`apimon metrics` not wired yet")
def test_metrics_command_prints_the_exposition_on_stdout(judged: Project) -> None:
    done = CliRunner().invoke(main, ["metrics", "-p", str(judged.root), "-q"])

    assert done.exit_code == 0, done.output
    assert value(samples(done.stdout)["apimon_model_status"], model="binary") == 2
