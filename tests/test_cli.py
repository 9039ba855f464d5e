"""The command line: commands through CliRunner, exit codes through real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import event_line, write_lines

from apimon.cli import main

ES = "logs/apinode-query/k/2026/11/02/10"
ROOT = Path(__file__).resolve().parent.parent


def _project(tmp_path: Path) -> Path:
    (tmp_path / "apimon.toml").write_text(
        '[ingest]\npartial_line_grace_seconds = 0\n[[sources]]\npath = "logs"\n'
    )
    write_lines(tmp_path / ES / "a.log", [event_line(0), "broken", event_line(1)])
    return tmp_path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "apimon", *args], capture_output=True, text=True, timeout=120
    )


def test_ingest_prints_counts_per_source_and_json(tmp_path: Path) -> None:
    project = _project(tmp_path)
    runner = CliRunner()

    result = runner.invoke(main, ["ingest", "--project", str(project), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["lines_read"], report["loaded"], report["quarantined"]) == (3, 2, 1)
    assert report["sources"][0]["reasons"] == {"not valid JSON": 1}


def test_ingest_table_then_partitions_and_quarantine(tmp_path: Path) -> None:
    project = str(_project(tmp_path))
    runner = CliRunner()

    ingested = runner.invoke(main, ["ingest", "-p", project])
    listed = runner.invoke(main, ["partitions", "-p", project, "--json"])
    kept = runner.invoke(main, ["quarantine", "-p", project, "--json"])

    assert "source  files read" in ingested.stdout
    assert "1 quarantined: not valid JSON" in ingested.stdout
    assert [(d["day"], d["rows"]) for d in json.loads(listed.stdout)] == [("2026-11-02", 2)]
    lines = json.loads(kept.stdout)["lines"]
    assert [(x["line"], x["reason"], x["raw"]) for x in lines] == [(2, "not valid JSON", "broken")]


def test_prune_and_reload_commands(tmp_path: Path) -> None:
    project = str(_project(tmp_path))
    runner = CliRunner()
    runner.invoke(main, ["ingest", "-p", project])

    reloaded = runner.invoke(main, ["reload", "-p", project, "2026-11-02", "--json"])
    pruned = runner.invoke(main, ["prune", "-p", project, "--before", "2026-11-03", "--json"])

    assert json.loads(reloaded.stdout)["rows_after"] == 2
    assert json.loads(pruned.stdout)["rows"] == 2


def test_a_config_error_exits_2_with_one_line_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "apimon.toml").write_text("[[sources]]\nformat = 'auto'\n")

    result = _run("ingest", "--project", str(tmp_path))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'apimon.toml'}: sources[0].path: required key is missing"
    ]


def test_a_bad_day_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("reload", "--project", str(_project(tmp_path)), "02/11/2026")

    assert result.returncode == 2
    assert "write it as YYYY-MM-DD" in result.stderr


def test_apimon_project_environment_variable_is_used(tmp_path: Path) -> None:
    project = _project(tmp_path)
    runner = CliRunner(env={"APIMON_PROJECT": str(project)})

    result = runner.invoke(main, ["ingest", "--json"])

    assert json.loads(result.stdout)["loaded"] == 2


def test_demo_fills_a_copy_of_the_default_project(tmp_path: Path) -> None:
    shutil.copyfile(ROOT / "warehouse" / "apimon.toml", tmp_path / "apimon.toml")

    result = _run("demo", "--project", str(tmp_path), "--rows", "3000", "--json")

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    ingest = summary["steps"]["ingest"]
    assert ingest["loaded"] == summary["facts"]["rows"] == 3000
    assert ingest["quarantined"] == summary["facts"]["malformed_lines"]
    assert len(ingest["days_changed"]) == 30


def test_demo_refuses_a_project_that_is_not_the_demo(tmp_path: Path) -> None:
    project = _project(tmp_path)

    result = _run("demo", "--project", str(project))

    assert result.returncode == 2
    assert "is not the demo project" in result.stderr
    assert not (project / "data").exists()


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])

    assert result.exit_code == 0
    assert "--project" in result.stdout


def test_the_readme_documents_every_command() -> None:
    readme = (ROOT / "README.md").read_text()

    for command in main.commands:
        assert f"`apimon {command}" in readme, f"README does not document `apimon {command}`"


def test_help_is_fast_because_heavy_modules_load_in_commands() -> None:
    code = (
        "import sys, apimon.cli\n"
        "heavy = [m for m in ('duckdb', 'pyarrow', 'scipy', 'sqlglot', 'aiohttp', 'numpy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
