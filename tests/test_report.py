"""The HTML report: self-contained, every chart drawn in a real browser, readable when wide."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import rows
from test_checks import GOLDEN, judge

from apimon.cli import main
from apimon.config import Project, load_project
from apimon.refresh import refresh
from apimon.report import HEATMAP_COLUMNS, HISTOGRAM_COLUMNS, render_report, write_report
from apimon.warehouse import connect, writing

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def figures(html: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """The data and layout of each chart of a report, read back from its JSON."""
    decoder = json.JSONDecoder()
    found = {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', html):
        data, end = decoder.raw_decode(html, match.end())
        layout, _ = decoder.raw_decode(html, html.index("{", end))
        found[match.group(1)] = (data, layout)
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The demo project with 3,000 queries, its checks judged."""
    root = tmp_path_factory.mktemp("demo")
    shutil.copyfile(ROOT / "warehouse" / "apimon.toml", root / "apimon.toml")
    done = subprocess.run(
        [sys.executable, "-m", "apimon", "demo", "--project", str(root), "--rows", "3000", "-q"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    project = load_project(root)
    judge(project)
    return project


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The golden project whose model `binary` has a year of daily windows of 150 features."""
    root = tmp_path_factory.mktemp("wide") / "golden"
    shutil.copytree(GOLDEN, root)
    project = load_project(root)
    refresh(project)
    with writing(project.database_path, "test") as con:
        con.execute("delete from evaluations where model = 'binary'")
        con.execute(
            "insert into evaluations select 5000 + d, 'binary', null, 'day', "
            "date '2025-11-03' + d::int, date '2025-11-03' + d::int, 'reference', 800, 5000, "
            "150, null, least(d / 365, 1), case when d % 30 = 7 then 'not enough data' "
            "else 'no drift' end, now()::timestamp, '0', 'x', 1 from range(365) as t (d)"
        )
        # Feature c drifts from day 3c on, by c / 150: the late features drift less.
        con.execute(
            "insert into column_drift (evaluation_id, column_name, role, kind, baseline, psi, "
            "drifted) select 5000 + d, case when c = 150 then 'prediction' else "
            "'feature_with_a_rather_long_name_' || lpad(c::varchar, 3, '0') end, "
            "case when c = 150 then 'prediction' else 'feature' end, 'numeric', 'reference', "
            "p, p > 0.2 from (select d, c, case when d >= 3 * c then c / 150 + 0.01 else 0.02 "
            "end as p from range(365) as t (d), range(151) as u (c))"
        )
        con.execute(
            "insert into histograms select 5364, column_name, b, 'bin ' || b, b, b + 1, null, "
            "100, 100 + b * 10 from column_drift, range(10) as t (b) "
            "where evaluation_id = 5364"
        )
        con.execute(
            "insert into drift_models select evaluation_id, 1000, 300, 0.5 + drift_share / 3, "
            "0.48 + drift_share / 3, 0.52 + drift_share / 3, 0.01, 0.95, true, 1 "
            "from evaluations where model = 'binary'"
        )
    judge(project)
    return project


def test_report_is_written_beside_the_config_by_default(demo: Project) -> None:
    path = write_report(demo)

    assert path == demo.root / "report.html"
    assert path.stat().st_size > 1_000_000  # plotly.js is inside


def test_report_needs_no_network_and_embeds_plotly_once(demo: Project) -> None:
    html = write_report(demo, demo.root / "out" / "r.html").read_text()

    assert html.count("* plotly.js v") == 1
    page = re.sub(r"<script[^>]*>.*?</script>", "<script></script>", html, flags=re.S)
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "<script src" not in page
    charts = figures(html)
    assert len(charts) == html.count('<div class="chart">') >= 6
    kinds = {trace["type"] for data, _ in charts.values() for trace in data}
    assert {"bar", "scatter", "heatmap"} <= kinds


def test_report_of_a_year_of_150_features_shows_the_most_drifting(wide: Project) -> None:
    con = connect(wide.database_path, read_only=True)
    try:
        html = render_report(con, wide)
    finally:
        con.close()
    charts = figures(html)

    heatmaps = [(d, layout) for d, layout in charts.values() if d[0]["type"] == "heatmap"]
    assert len(heatmaps) == 1
    heatmap, layout = heatmaps[0]
    assert len(heatmap[0]["x"]) == 365
    assert len(heatmap[0]["y"]) == HEATMAP_COLUMNS
    # The most drifting feature is the last to start within the year: 121 (PSI 121/150 +
    # 0.01 from day 363), shown first, its name shortened on the axis and whole on hover.
    assert heatmap[0]["y"][0] == "feature_with_a_…er_long_name_121"
    assert len(set(heatmap[0]["y"])) == HEATMAP_COLUMNS
    assert heatmap[0]["customdata"][0][0] == "feature_with_a_rather_long_name_121"
    assert layout["height"] <= 140 + 18 * HEATMAP_COLUMNS
    assert f"The {HEATMAP_COLUMNS} columns with the highest PSI of 151." in html

    bars = [d for d, _ in charts.values() if any(t.get("legendgroup") == "current" for t in d)]
    assert len(bars) == 1
    assert len(bars[0]) == 2 * (HISTOGRAM_COLUMNS + 1)  # reference and current per column
    drifting = rows(
        wide, "select count(*) from column_drift where evaluation_id = 5364 and drifted"
    )[0][0]
    assert drifting == 121 - 29 + 1  # feature c drifts from PSI c/150 + 0.01 > 0.2 on
    assert f"the {HISTOGRAM_COLUMNS} most drifting of {drifting} drifting columns" in html
    assert len(html) < 8_000_000


def launch_chromium() -> Any:
    """Chromium through Playwright; a skip without a browser, a failure under CI."""
    reason = ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    if not reason and not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if reason:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must render the report in a browser: {reason}")
        pytest.skip(reason)
    return sync_playwright()


def render_in_chromium(path: Path, screenshot: Path) -> dict[str, Any]:
    """Open a report offline; return console errors, outside requests and each chart's state."""
    errors: list[str] = []
    outside: list[str] = []
    with launch_chromium() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def only_the_file(route: Any) -> None:
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_file)
            page.goto(path.as_uri(), wait_until="load")
            charts = page.evaluate(
                """() => Array.from(document.querySelectorAll('div.chart')).map(c => {
                    const div = c.querySelector('.plotly-graph-div');
                    return {
                        id: div && div.id,
                        plotted: !!div && div.classList.contains('js-plotly-plot'),
                        drawn: div ? div.querySelectorAll(
                            'svg.main-svg g.trace, svg.main-svg g.hm').length : 0,
                        traces: div && div.data ? div.data.length : 0,
                        width: div ? div.getBoundingClientRect().width : 0,
                    };
                })"""
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"errors": errors, "outside": outside, "charts": charts}


def test_demo_report_draws_every_chart_in_chromium(demo: Project) -> None:
    path = write_report(demo)

    seen = render_in_chromium(path, ARTIFACTS / "report.png")

    assert seen["errors"] == []
    assert seen["outside"] == []
    charts = seen["charts"]
    assert len(charts) >= 6
    for chart in charts:
        assert chart["plotted"] and chart["traces"] > 0, chart
        assert chart["drawn"] == chart["traces"], chart  # plotly drew every trace in SVG
        assert chart["width"] > 800, chart
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_wide_report_draws_every_chart_in_chromium(wide: Project) -> None:
    path = write_report(wide)

    seen = render_in_chromium(path, ARTIFACTS / "report-year.png")

    assert seen["errors"] == [] and seen["outside"] == []
    assert len(seen["charts"]) >= 6
    for chart in seen["charts"]:
        assert chart["plotted"] and chart["drawn"] == chart["traces"] > 0, chart


@pytest.mark.skipif("report" not in main.commands, reason="`apimon report` not wired yet")
def test_report_command_writes_the_file_it_names(demo: Project, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "health.html"

    done = CliRunner().invoke(main, ["report", "-p", str(demo.root), "-o", str(out), "--json"])

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"report": str(out)}
    assert out.read_text().startswith("<!DOCTYPE html>")
