"""Project configuration: what is accepted, and how mistakes are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from apimon.config import find_project, load_project, parse_project
from apimon.errors import ConfigError

FULL = """
database = "w.duckdb"

[ingest]
partial_line_grace_seconds = 10

[[sources]]
name = "events"
path = "data/events"
format = "event-server"

[[models]]
name = "fraud"
service = "fraud_detection"
endpoint = "predict_fraud"
reference = "data/reference.parquet"
target = "is_fraud"
version = "1710000000000"
match_version = false

[models.columns]
card_present = "categorical"

[models.rename]
amount = "transaction_amount"
"""


def test_a_full_config_is_read_with_paths_relative_to_the_project(tmp_path: Path) -> None:
    project = parse_project(tmp_path, FULL)

    model = project.model("fraud")
    assert project.database_path == tmp_path / "w.duckdb"
    assert project.settings.sources[0].label == "events"
    assert project.path(model.reference) == tmp_path / "data" / "reference.parquet"
    assert (model.match_version, model.columns, model.rename) == (
        False,
        {"card_present": "categorical"},
        {"amount": "transaction_amount"},
    )


def test_defaults_apply_to_an_empty_config(tmp_path: Path) -> None:
    project = parse_project(tmp_path, "")

    assert project.database_path == tmp_path / "apimon.duckdb"
    assert project.settings.ingest.partial_line_grace_seconds == 300


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "databse = 'x'",
            "databse: unknown key (allowed: database, ingest, drift, collector, sources, "
            "models, labels, checks)",
        ),
        ("[[sources]]\nformat = 'auto'", "sources[0].path: required key is missing"),
        (
            "[[sources]]\npath = 'x'\nformat = 'csv'",
            "sources[0].format: expected 'auto', 'event-server', 'log4j' or 'sagemaker', got 'csv'",
        ),
        (
            "[[models]]\nname='m'\nservice='s'\nendpoint='e'\nreference='r.parquet'\n"
            "[models.columns]\nx = 'float'",
            "models[0].columns.x: expected 'numeric', 'categorical' or 'ignore', got 'float'",
        ),
        (
            "[[models]]\nname='m'\nservice='s'\nendpoint='e'\nreference='r.xlsx'",
            "models[0].reference: the reference must be a Parquet (.parquet) or CSV (.csv) file",
        ),
        (
            "[[models]]\nname='a b'\nservice='s'\nendpoint='e'\nreference='r.csv'",
            "models[0].name: 'a b' is not a valid name",
        ),
        ("[ingest]\npartial_line_grace_seconds = -1", "ingest.partial_line_grace_seconds"),
        ("[[sources]]\npath='a'\n[[sources]]\npath='a'", "source name 'a' is used twice"),
        ("database = [", "not valid TOML"),
    ],
)
def test_mistakes_name_their_place_and_what_is_allowed(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_project(tmp_path, text)

    assert message in str(caught.value)
    assert str(tmp_path / "apimon.toml") in str(caught.value)


def test_the_project_comes_from_the_argument_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "apimon.toml").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "apimon.toml").write_text("")
    monkeypatch.setenv("APIMON_PROJECT", str(tmp_path / "b"))

    assert find_project(tmp_path / "a") == tmp_path / "a"
    assert find_project() == tmp_path / "b"
    monkeypatch.delenv("APIMON_PROJECT")
    monkeypatch.chdir(tmp_path / "a")
    assert find_project() == tmp_path / "a"


def test_a_folder_without_config_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass --project DIR"):
        load_project(tmp_path)


def test_an_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    project = parse_project(tmp_path, FULL)

    with pytest.raises(ConfigError, match=r"no model named 'x' .*known: fraud"):
        project.model("x")
