"""`apimon report`: one self-contained HTML file of every endpoint's and model's health.

The file embeds plotly.js once and needs no network to be viewed. Per endpoint: its status
and traffic (volume, failures, p95 latency); per model: its status and failing checks,
drift over time (drift share, drift-model accuracy, a window × column PSI heatmap),
reference-versus-current histograms of the newest window, performance, and data quality;
then the log store's quarantined lines. Charts stay readable for a year of days and
hundreds of features: the heatmap and the histograms show the most drifting columns.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from apimon.checks import (
    CheckRule,
    StatusReport,
    SubjectStatus,
    check_rules,
    status_report,
)
from apimon.config import Project
from apimon.sqlutil import render_checked

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
HEATMAP_COLUMNS = 40
HISTOGRAM_COLUMNS = 6
HISTOGRAM_BINS = 30
HISTOGRAM_ROW, HISTOGRAM_GAP = 220, 110
FAILING_SHOWN = 15
COLORS = {"healthy": "#1a7f37", "warning": "#b36b00", "error": "#cf222e", "no data": "#6e7781"}
VERDICT_COLORS = {
    "no drift": COLORS["healthy"], "partial drift": COLORS["warning"], "drift": COLORS["error"],
    "not enough data": COLORS["no data"],
}  # fmt: skip
REFERENCE_COLOR, CURRENT_COLOR = "#9aa5b1", "#2f6fb3"
BAR_MS = 0.8 * 86_400_000  # a bar on a day axis: 80 % of a day, in milliseconds


def write_report(project: Project, output: Path | None = None) -> Path:
    """Write the report of the published warehouse to `output` (default: <project>/report.html)."""
    from apimon.warehouse import connect

    path = (output or project.root / REPORT_FILE).resolve()
    con = connect(project.database_path, read_only=True)
    try:
        text = render_report(con, project)
    finally:
        con.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
    log.info("wrote the report to %s (%d kB)", path, len(text) // 1024)
    return path


@dataclass
class Table:
    """A small HTML table: headers and rows of already formatted cells."""

    headers: list[str]
    rows: list[list[str]]


@dataclass
class Panel:
    """One block of a section: a title, a note, and a chart or a table."""

    title: str
    note: str = ""
    chart: str | None = None
    table: Table | None = None


@dataclass
class Section:
    """An endpoint, a model or the log store: its status, failing checks and panels."""

    anchor: str
    title: str
    status: str
    level: int
    failing: Table | None = None
    summary: str = ""
    panels: list[Panel] = field(default_factory=list)


@dataclass(frozen=True)
class Span:
    """The days of the log store, which every chart over days shows, for alignment."""

    first: dt.date | None
    last: dt.date | None

    def range(self, days: Sequence[dt.date]) -> list[dt.datetime] | None:
        """An axis range over the store's days and the given ones, at least a week long."""
        known = [d for d in (self.first, self.last, *days) if d is not None]
        if not known:
            return None
        start, end = min(known), max(known)
        start = min(start, end - dt.timedelta(days=6))
        midnight = dt.time()
        return [
            dt.datetime.combine(start, midnight) - dt.timedelta(hours=12),
            dt.datetime.combine(end, midnight) + dt.timedelta(hours=12),
        ]


class Charts:
    """Turns plotly figures into div fragments with ids unique in the file."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.count = 0

    def html(self, figure: Any, height: int, days: Sequence[dt.date] | None = None) -> str:
        """A chart's HTML; with `days`, its x axis runs over the store's days."""
        self.count += 1
        if days is not None:
            figure.update_xaxes(range=self.span.range(days), tickformat="%b %-d", type="date")
        top = 80 if len(figure.data) > 1 else 40  # room for the legend above the plots
        figure.update_layout(
            height=height, template="plotly_white", margin={"l": 60, "r": 30, "t": top, "b": 40},
            legend={"orientation": "h", "yref": "container", "yanchor": "top", "y": 0.995, "x": 0},
            font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        )  # fmt: skip
        fragment: str = figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"chart-{self.count}",
            config={"displaylogo": False, "responsive": True},
        )  # fmt: skip
        return fragment


def render_report(con: duckdb.DuckDBPyConnection, project: Project) -> str:
    """The report's HTML, from a connection to the warehouse."""
    import jinja2
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    report = status_report(con)
    rules = check_rules(project)
    row = con.execute("select min(day), max(day) from main.partitions").fetchone()
    span = Span(*row) if row else Span(None, None)
    charts = Charts(span)
    sections = []
    for endpoint in report.endpoints:
        sections.append(_endpoint_section(con, endpoint, rules, charts))
        for model in report.models:
            if model.name in endpoint.models:
                sections.append(_model_section(con, project, model, rules, charts))
    sections.append(_store_section(con, report.warehouse, charts))

    environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_TEMPLATE)
    return template.render(
        project=project.root.name,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        first_day=span.first,
        last_day=span.last,
        overall=report.status,
        summary=_summary(report),
        sections=sections,
        colors=COLORS,
        plotly_js=Markup(get_plotlyjs()),
        markup=Markup,
    )


def _rows(
    con: duckdb.DuckDBPyConnection, template: str, params: dict[str, Any] | None = None,
    **context: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """The rows of a `sql/report/` query, as dictionaries keyed by column name."""
    cursor = con.execute(render_checked(f"report/{template}", **context), params or {})
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _summary(report: StatusReport) -> Table:
    rows = []
    for subject in report.subjects():
        rows.append([
            subject.kind, f"#{_anchor(subject)}", subject.name, subject.status,
            str(len(subject.failing)), "; ".join(c.describe() for c in subject.failing[:2]),
        ])  # fmt: skip
    return Table(["kind", "link", "name", "status", "failing checks", "worst"], rows)


def _anchor(subject: SubjectStatus) -> str:
    clean = "".join(ch if ch.isalnum() else "-" for ch in subject.name)
    return f"{subject.kind.replace(' ', '-')}-{clean}"


def _failing_table(subject: SubjectStatus) -> Table | None:
    failing = subject.failing
    if not failing:
        return None
    rows = [
        [c.status, c.check_name, c.subject, _number(c.value),
         f"{'≤' if c.below else '≥'} {_number(c.threshold)}", c.when]
        for c in failing[:FAILING_SHOWN]
    ]  # fmt: skip
    if len(failing) > FAILING_SHOWN:
        rows.append(["", f"{len(failing) - FAILING_SHOWN} more", "", "", "", ""])
    return Table(["status", "check", "on", "value", "threshold", "window or day"], rows)


def _check_summary(subject: SubjectStatus) -> str:
    counts: dict[str, int] = defaultdict(int)
    for check in subject.checks:
        counts[check.status] += 1
    if not counts:
        return "No check has been judged yet: run `apimon refresh`."
    parts = [f"{counts[s]} {s}" for s in ("error", "warning", "healthy", "no data") if counts[s]]
    return "Current check results: " + ", ".join(parts) + "."


def _rule(rules: Sequence[CheckRule], metric: str, model: str | None = None) -> CheckRule | None:
    """The check that applies to a metric of a model (or endpoint-wide), most specific first."""
    found = [
        r for r in rules
        if r.metric == metric and r.column is None and (r.model is None or r.model == model)
    ]  # fmt: skip
    return max(found, key=lambda r: r.specificity, default=None)


def _threshold_lines(
    figure: Any, rule: CheckRule | None, row: int = 1, highest: float | None = None
) -> None:
    """Dashed lines at a check's thresholds; with `highest`, only those near the data."""
    if rule is None:
        return
    for level, value in (("warning", rule.warning), ("error", rule.error)):
        if value is not None and (highest is None or value <= 2 * highest):
            figure.add_hline(
                y=value, line_dash="dash", line_width=1, line_color=COLORS[level], row=row, col=1,
                annotation_text=f"{level} {value:g}", annotation_position="top left",
                annotation_font_color=COLORS[level], annotation_font_size=10,
            )  # fmt: skip


# Endpoints ----------------------------------------------------------------------------


def _endpoint_section(
    con: duckdb.DuckDBPyConnection, endpoint: SubjectStatus, rules: Sequence[CheckRule],
    charts: Charts,
) -> Section:  # fmt: skip
    section = Section(
        _anchor(endpoint), f"Endpoint {endpoint.name}", endpoint.status, endpoint.level,
        _failing_table(endpoint), _endpoint_summary(endpoint),
    )  # fmt: skip
    rows = _rows(con, "traffic.sql", {"service": endpoint.service, "endpoint": endpoint.endpoint})
    if not rows:
        section.panels.append(Panel("Traffic", "No query of this endpoint in the log store."))
        return section
    model = endpoint.models[0] if len(endpoint.models) == 1 else None
    figure = _traffic_figure(rows, _rule(rules, "p95_latency_ms", model))
    section.panels.append(
        Panel(
            "Traffic",
            "Requests per day (failed queries in red) and the 95th percentile response time "
            "of answered queries, per routing key.",
            charts.html(figure, 520, [r["day"] for r in rows]),
        )
    )
    return section


def _endpoint_summary(endpoint: SubjectStatus) -> str:
    served = ", ".join(endpoint.models) or "no configured model"
    return f"Serves {served}. " + _check_summary(endpoint)


def _traffic_figure(rows: Sequence[dict[str, Any]], rule: CheckRule | None) -> Any:
    import plotly.graph_objects as go  # type: ignore[import-untyped]
    from plotly.subplots import make_subplots  # type: ignore[import-untyped]

    requests: dict[dt.date, int] = defaultdict(int)
    failed: dict[dt.date, int] = defaultdict(int)
    latency: dict[str, tuple[list[dt.date], list[float | None]]] = {}
    for r in rows:
        requests[r["day"]] += r["requests"]
        failed[r["day"]] += r["failed"]
        days, values = latency.setdefault(r["routing_key"] or "(none)", ([], []))
        days.append(r["day"])
        values.append(r["p95_ms"])
    days = sorted(requests)
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12, row_heights=[0.55, 0.45],
        subplot_titles=("Requests per day", "p95 response time (ms)"),
    )  # fmt: skip
    figure.add_trace(go.Bar(
        x=days, y=[requests[d] - failed[d] for d in days], name="not failed",
        marker_color=CURRENT_COLOR, width=BAR_MS,
    ), row=1, col=1)  # fmt: skip
    figure.add_trace(go.Bar(
        x=days, y=[failed[d] for d in days], name="failed", marker_color=COLORS["error"],
        width=BAR_MS,
    ), row=1, col=1)  # fmt: skip
    mode = "lines+markers" if len(days) <= 90 else "lines"
    for routing_key, (x, y) in sorted(latency.items()):
        figure.add_trace(go.Scatter(x=x, y=y, mode=mode, name=f"p95 {routing_key}"), row=2, col=1)
    latencies = [v for _, values in latency.values() for v in values if v is not None]
    _threshold_lines(figure, rule, row=2, highest=max(latencies, default=0.0))
    figure.update_layout(barmode="stack", bargap=0.15)
    return figure


# Models -------------------------------------------------------------------------------


def _model_section(
    con: duckdb.DuckDBPyConnection, project: Project, model: SubjectStatus,
    rules: Sequence[CheckRule], charts: Charts,
) -> Section:  # fmt: skip
    section = Section(
        _anchor(model), f"Model {model.name}", model.status, model.level, _failing_table(model),
        _check_summary(model),
    )  # fmt: skip
    section.panels += _drift_panels(con, project, model.name, rules, charts)
    section.panels += _performance_panels(con, model.name, charts)
    section.panels += _quality_panels(con, model.name, charts)
    return section


def _drift_panels(
    con: duckdb.DuckDBPyConnection, project: Project, model: str, rules: Sequence[CheckRule],
    charts: Charts,
) -> list[Panel]:  # fmt: skip
    windows = _rows(con, "drift.sql", {"model": model})
    if not windows:
        return [Panel("Drift", "No evaluation of this model yet: run `apimon refresh`.")]
    kind = windows[0]["window_kind"]
    has_model = any(w["accuracy"] is not None for w in windows)
    figure = _drift_figure(windows, rules, model, has_model)
    note = (
        f"Per {kind} window against the reference: the share of drifting features (marker "
        "colour: the verdict; grey: too few rows to judge)"
        + (", and the accuracy of a classifier told to separate reference from current rows "
           "with its confidence interval (0.5: no drift)." if has_model else ".")
    )  # fmt: skip
    starts = [w["window_start"] for w in windows]
    chart = charts.html(figure, 520 if has_model else 320, starts)
    panels = [Panel("Drift over time", note, chart)]

    psi = _rows(con, "psi.sql", {"model": model, "limit": HEATMAP_COLUMNS})
    if any(r["psi"] is not None for r in psi):
        shown, total = max(r["place"] for r in psi), psi[0]["columns"]
        note = f"PSI of each monitored column per {kind} window (empty: too few rows)."
        if total > shown:
            note += f" The {shown} columns with the highest PSI of {total}."
        figure = _heatmap_figure(psi, project.settings.drift.psi_threshold)
        chart = charts.html(figure, 140 + 18 * shown, starts)
        panels.append(Panel("PSI per column", note, chart))

    histograms = _rows(con, "histograms.sql", {"model": model, "limit": HISTOGRAM_COLUMNS})
    if histograms:
        figure, count = _histogram_figure(histograms)
        first = histograms[0]
        start, end = first["window_start"], first["window_end"]
        window = f"{start}" if start == end else f"{start} to {end}"
        drifting = first["drifting_columns"]
        shown = len({r["column_name"] for r in histograms if r["role"] != "prediction"})
        note = (
            f"Share of rows per bin in the newest {first['window_kind']} window with enough rows "
            f"({window}), reference in grey: the prediction and "
        )
        if not drifting:
            note += "no drifting column."
        elif shown < drifting:
            note += f"the {shown} most drifting of {drifting} drifting columns."
        else:
            note += f"the {drifting} drifting column{'s' if drifting > 1 else ''}."
        height = histogram_height(math.ceil(count / 2))
        panels.append(Panel("Reference and current", note, charts.html(figure, height)))
    return panels


def _drift_figure(
    windows: Sequence[dict[str, Any]], rules: Sequence[CheckRule], model: str, has_model: bool
) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = 2 if has_model else 1
    titles = ["Share of drifting features"] + (["Drift-model accuracy"] if has_model else [])
    figure = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.14, subplot_titles=titles
    )
    size = 8 if len(windows) <= 90 else 5
    figure.add_trace(go.Scatter(
        x=[w["window_start"] for w in windows], y=[w["drift_share"] for w in windows],
        mode="lines+markers",
        name="drift share", line={"color": "#57606a", "width": 1},
        marker={"color": [VERDICT_COLORS.get(w["status"], COLORS["no data"]) for w in windows],
                "size": size},
        customdata=[[w["status"], w["current_rows"]] for w in windows],
        hovertemplate="%{x}<br>%{customdata[0]}, %{customdata[1]} rows<br>share %{y:.2f}"
                      "<extra></extra>",
    ), row=1, col=1)  # fmt: skip
    few = [w for w in windows if w["drift_share"] is None]
    if few:
        figure.add_trace(go.Scatter(
            x=[w["window_start"] for w in few], y=[0] * len(few), mode="markers",
            name="too few rows",
            marker={"color": COLORS["no data"], "symbol": "x", "size": size},
            customdata=[w["current_rows"] for w in few],
            hovertemplate="%{x}<br>too few rows to judge (%{customdata})<extra></extra>",
        ), row=1, col=1)  # fmt: skip
    _threshold_lines(figure, _rule(rules, "drift_share", model), row=1)
    figure.update_yaxes(range=[-0.04, 1.04], row=1, col=1)
    if has_model:
        judged = [w for w in windows if w["accuracy"] is not None]
        x = [w["window_start"] for w in judged]
        low, high = [w["accuracy_low"] for w in judged], [w["accuracy_high"] for w in judged]
        figure.add_trace(go.Scatter(
            x=x + x[::-1], y=high + low[::-1],
            mode="lines", fill="toself", fillcolor="rgba(47,111,179,0.15)", line={"width": 0},
            hoverinfo="skip", name="interval",
        ), row=2, col=1)  # fmt: skip
        figure.add_trace(go.Scatter(
            x=x, y=[w["accuracy"] for w in judged], mode="lines+markers",
            name="drift-model accuracy",
            line={"color": CURRENT_COLOR},
        ), row=2, col=1)  # fmt: skip
        figure.add_hline(y=0.5, line_width=1, line_color="#57606a", row=2, col=1)
        _threshold_lines(figure, _rule(rules, "drift_model_accuracy", model), row=2)
    return figure


def _heatmap_figure(rows: Sequence[dict[str, Any]], psi_threshold: float) -> Any:
    import plotly.graph_objects as go

    days = sorted({r["window_start"] for r in rows})
    columns: list[str] = []
    cells: dict[tuple[str, dt.date], float | None] = {}
    for r in rows:
        if r["column_name"] not in columns:
            columns.append(r["column_name"])
        cells[(r["column_name"], r["window_start"])] = r["psi"]
    z = [[cells.get((c, d)) for d in days] for c in columns]
    top = 2.5 * psi_threshold
    figure = go.Figure(go.Heatmap(
        x=days, y=_labels(columns, 32), z=z, zmin=0, zmax=top,
        customdata=[[c] * len(days) for c in columns],
        colorscale=[[0, "#f6f8fa"], [psi_threshold / top / 2, "#c6dbef"],
                    [psi_threshold / top, "#fdae61"], [1, "#a50026"]],
        colorbar={"title": {"text": "PSI"}, "thickness": 12},
        hoverongaps=False, xgap=1 if len(days) <= 60 else 0, ygap=1,
        hovertemplate="%{customdata}<br>%{x}<br>PSI %{z:.3f}<extra></extra>",
    ))  # fmt: skip
    figure.update_yaxes(autorange="reversed", automargin=True)
    return figure


def _short(text: str, width: int) -> str:
    """Text cut to `width` characters in its middle, so both ends stay: `feature_w…name_121`."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _labels(texts: Sequence[str], width: int) -> list[str]:
    """Shortened labels that stay distinct: plotly merges categories with equal labels."""
    labels: list[str] = []
    for text in texts:
        label, n = _short(text, width), 1
        while label in labels:
            n += 1
            label = f"{_short(text, width)} ({n})"
        labels.append(label)
    return labels


def histogram_height(rows: int) -> int:
    """Pixels for a grid of histograms: a plot and a gap for the labels and title per row."""
    return 90 + HISTOGRAM_ROW * rows + HISTOGRAM_GAP * (rows - 1)


def _histogram_figure(rows: Sequence[dict[str, Any]]) -> tuple[Any, int]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    by_column: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_column.setdefault(row["column_name"], []).append(row)
    count = len(by_column)
    columns = 2 if count > 1 else 1
    titles = []
    for name, bins in by_column.items():
        role, psi, drifted = bins[0]["role"], bins[0]["psi"], bins[0]["drifted"]
        label = _short(name, 40) + (f" ({role})" if role not in ("feature", name) else "")
        psi_text = f"PSI {psi:.2f}" if psi is not None else "PSI n/a"
        titles.append(f"{label}: {psi_text}" + (", drifting" if drifted else ""))
    rows_needed = math.ceil(count / columns)
    figure = make_subplots(
        rows=rows_needed, cols=columns, subplot_titles=titles, horizontal_spacing=0.08,
        vertical_spacing=HISTOGRAM_GAP / histogram_height(rows_needed),
    )  # fmt: skip
    for i, bins in enumerate(by_column.values()):
        labels, reference, current = _shares(bins)
        at = {"row": i // columns + 1, "col": i % columns + 1}
        for side, values, color in (("reference", reference, REFERENCE_COLOR),
                                    ("current", current, CURRENT_COLOR)):  # fmt: skip
            figure.add_trace(go.Bar(
                x=labels, y=values, name=side, marker_color=color, showlegend=i == 0,
                legendgroup=side, hovertemplate="%{x}<br>" + side + " %{y:.1%}<extra></extra>",
            ), **at)  # fmt: skip
        figure.update_xaxes(type="category", tickangle=-30, **at)
        figure.update_yaxes(tickformat=".0%", **at)
    figure.update_layout(barmode="group", bargap=0.2)
    return figure, count


def _shares(bins: Sequence[dict[str, Any]]) -> tuple[list[str], list[float], list[float]]:
    """Bin labels and shares; a categorical column keeps its largest bins, the rest summed."""
    reference_total = sum(b["reference_count"] for b in bins) or 1
    current_total = sum(b["current_count"] for b in bins) or 1
    shares = [
        (_bin_label(b), b["reference_count"] / reference_total, b["current_count"] / current_total)
        for b in bins
    ]
    if bins[0]["kind"] == "categorical" and len(shares) > HISTOGRAM_BINS:
        ranked = sorted(shares, key=lambda s: -max(s[1], s[2]))
        kept, rest = ranked[: HISTOGRAM_BINS - 1], ranked[HISTOGRAM_BINS - 1 :]
        order = {s[0]: i for i, s in enumerate(shares)}
        shares = sorted(kept, key=lambda s: order[s[0]])
        shares.append((f"({len(rest)} more)", sum(s[1] for s in rest), sum(s[2] for s in rest)))
    return _labels([s[0] for s in shares], 24), [s[1] for s in shares], [s[2] for s in shares]


def _bin_label(row: dict[str, Any]) -> str:
    """A numeric bin's edges to three significant digits: `≤ 12.8`, `12.8–20.1`, `> 165`."""
    lower, upper = row["lower"], row["upper"]
    if row["bin"] < 0 or (lower is None and upper is None):
        return str(row["label"])
    if lower is None:
        return f"≤ {upper:.3g}"
    if upper is None:
        return f"> {lower:.3g}"
    return f"{lower:.3g}–{upper:.3g}"


def _performance_panels(con: duckdb.DuckDBPyConnection, model: str, charts: Charts) -> list[Panel]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = _rows(con, "performance.sql", {"model": model})
    if not rows:
        return [Panel("Performance", "No realised or estimated performance yet (no labels, "
                                     "no probabilities to estimate from).")]  # fmt: skip
    metrics = {r["metric"] for r in rows}
    metric = next(
        (m for m in ("accuracy", "roc_auc", "f1", "rmse", "mae", "r2") if m in metrics),
        sorted(metrics)[0],
    )
    chosen = [r for r in rows if r["metric"] == metric]
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14, row_heights=[0.65, 0.35],
        subplot_titles=(metric.replace("_", " "), "Share of queries with a label"),
    )  # fmt: skip
    for source, color in (("estimated", "#8250df"), ("realised", CURRENT_COLOR)):
        series = [r for r in chosen if r["source"] == source]
        if not series:
            continue
        x = [r["window_start"] for r in series]
        banded = [r for r in series if r["band_low"] is not None and r["band_high"] is not None]
        if banded:
            bx = [r["window_start"] for r in banded]
            low, high = [r["band_low"] for r in banded], [r["band_high"] for r in banded]
            figure.add_trace(go.Scatter(
                x=bx + bx[::-1], y=high + low[::-1],
                mode="lines", fill="toself", fillcolor="rgba(130,80,223,0.12)", line={"width": 0},
                hoverinfo="skip", name=f"{source} band",
            ), row=1, col=1)  # fmt: skip
        figure.add_trace(go.Scatter(
            x=x, y=[r["value"] for r in series], mode="lines+markers", name=source,
            line={"color": color},
        ), row=1, col=1)  # fmt: skip
    coverage: dict[dt.date, float] = {}
    for r in rows:
        if r["coverage"] is not None:
            day = r["window_start"]
            coverage[day] = max(coverage.get(day, 0.0), r["coverage"])
    days = sorted(coverage)
    figure.add_trace(go.Bar(
        x=days, y=[coverage[d] for d in days], name="label coverage", marker_color="#8c959f",
        width=BAR_MS,
    ), row=2, col=1)  # fmt: skip
    figure.update_yaxes(tickformat=".0%", range=[0, 1], row=2, col=1)
    sources = " and ".join(sorted({r["source"] for r in chosen}))
    note = (
        f"{metric.replace('_', ' ').capitalize()} per window, {sources} (estimated from the "
        "calibrated probabilities, with its band; realised on the labelled queries)."
    )
    return [Panel("Performance", note, charts.html(figure, 480, [r["window_start"] for r in rows]))]


def _quality_panels(con: duckdb.DuckDBPyConnection, model: str, charts: Charts) -> list[Panel]:
    import plotly.graph_objects as go

    try:
        days = _rows(con, "data_quality_days.sql", model=model)
        columns = _rows(con, "data_quality_columns.sql", {"limit": 15}, model=model)
        schema = _rows(con, "schema_check.sql", model=model)
    except duckdb.CatalogException:
        return [Panel("Data quality", "The model's views are not built yet: run `apimon refresh`.")]
    panels = []
    if any(d["missing"] or d["wrong_type"] for d in days):
        x = [d["day"] for d in days]
        figure = go.Figure([
            go.Bar(x=x, y=[d["missing"] for d in days], name="missing", marker_color="#8c959f",
                   width=BAR_MS),
            go.Bar(x=x, y=[d["wrong_type"] for d in days], name="wrong type",
                   marker_color=COLORS["error"], width=BAR_MS),
        ])  # fmt: skip
        figure.update_layout(barmode="stack", yaxis_title="feature values")
        panels.append(Panel(
            "Data quality", "Feature values missing or of the wrong type (NULL in the flat "
            "table) per day; below, the features with the most of them.",
            charts.html(figure, 300, x),
            Table(
                ["feature", "missing", "wrong type", "values"],
                [[c["column_name"], f"{c['missing']:,}", f"{c['wrong_type']:,}",
                  f"{c['values']:,}"] for c in columns],
            ),
        ))  # fmt: skip
    else:
        panels.append(Panel("Data quality", "No missing or wrong-typed feature value."))
    odd = [c for c in schema if c["status"] != "ok"]
    note = f"{len(schema) - len(odd)} of {len(schema)} features logged as in the reference"
    panels.append(Panel(
        "Schema check", note + ("; the others:" if odd else "."),
        table=Table(
            ["feature", "logged as", "kind", "status", "queries", "first day", "last day"],
            [[_text(c[k]) for k in ("column_name", "logged_as", "kind", "status",
                                    "queries_logged", "first_day", "last_day")] for c in odd],
        ) if odd else None,
    ))  # fmt: skip
    return panels


# The log store ------------------------------------------------------------------------


def _store_section(con: duckdb.DuckDBPyConnection, store: SubjectStatus, charts: Charts) -> Section:
    import plotly.graph_objects as go

    section = Section(
        _anchor(store), "Log store", store.status, store.level, _failing_table(store),
        _check_summary(store),
    )  # fmt: skip
    rows = _rows(con, "quarantine.sql")
    if not rows:
        section.panels.append(Panel("Quarantined lines", "No line kept aside."))
        return section
    reasons: dict[str, dict[dt.date, int]] = defaultdict(dict)
    for r in rows:
        reasons[r["reason"]][r["day"]] = r["lines"]
    totals = sorted(((sum(v.values()), r) for r, v in reasons.items()), reverse=True)
    figure = go.Figure([
        go.Bar(x=list(reasons[r]), y=list(reasons[r].values()), name=_short(r, 40), width=BAR_MS)
        for _, r in totals
    ])  # fmt: skip
    figure.update_layout(barmode="stack", yaxis_title="lines")
    section.panels.append(Panel(
        "Quarantined lines",
        "Lines kept aside per day and reason (a line whose time could not be read counts on "
        "the day it was read); see them with `apimon quarantine`.",
        charts.html(figure, 320, [r["day"] for r in rows]),
        Table(["reason", "lines"], [[r, f"{n:,}"] for n, r in totals]),
    ))  # fmt: skip
    return section


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.4g}"


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
{% macro badge(status) -%}
<span class="badge" style="background: {{ colors[status] }}">{{ status }}</span>
{%- endmacro %}
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>apimon report: {{ project }}</title>
<style>
  :root { color-scheme: light; }
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
         color: #1f2328; background: #f6f8fa; }
  header { background: #fff; border-bottom: 1px solid #d0d7de; padding: 16px 32px; }
  header h1 { margin: 0 0 4px; font-size: 22px; }
  header p { margin: 0; color: #57606a; }
  main { max-width: 1200px; margin: 0 auto; padding: 16px 32px 48px; }
  section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px;
            margin: 20px 0; padding: 16px 20px; }
  section.model { margin-left: 28px; }
  h2 { font-size: 18px; margin: 0 0 6px; display: flex; align-items: center; gap: 10px; }
  h3 { font-size: 15px; margin: 18px 0 4px; }
  p.note { color: #57606a; margin: 2px 0 6px; font-size: 13px; }
  .badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
           font-size: 12px; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }
  table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
  th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #eaeef2;
           vertical-align: top; }
  th { color: #57606a; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  td.indent { padding-left: 28px; }
  .chart { width: 100%; }
</style>
<script type="text/javascript">{{ plotly_js }}</script>
</head>
<body>
<header>
  <h1>apimon report: {{ project }}
    {{ badge(overall) }}</h1>
  <p>Generated {{ generated }}{% if first_day %}; log store from {{ first_day }} to
     {{ last_day }}{% endif %}.</p>
</header>
<main>
<section id="summary">
  <h2>Status</h2>
  <p class="note">Each endpoint is the worst of its models and its own checks; a model the worst
    of its current checks (no data: no check had a value).</p>
  <table>
    <tr><th>endpoint / model</th><th>status</th><th>failing checks</th><th>worst</th></tr>
{% for kind, link, name, status, failing, worst in summary.rows %}
    <tr>
      <td{% if kind == 'model' %} class="indent"{% endif %}><a href="{{ link }}">{{ name }}</a></td>
      <td>{{ badge(status) }}</td>
      <td class="num">{{ failing }}</td><td>{{ worst }}</td></tr>
{% endfor %}
  </table>
</section>
{% for s in sections %}
<section id="{{ s.anchor }}"{% if s.title.startswith('Model') %} class="model"{% endif %}>
  <h2>{{ s.title }} {{ badge(s.status) }}</h2>
  <p class="note">{{ s.summary }}</p>
{% if s.failing %}
  <table>
    <tr>{% for h in s.failing.headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in s.failing.rows %}
    <tr>
{% for cell in row %}
      <td>{% if loop.first and cell %}{{ badge(cell) }}{% else %}{{ cell }}{% endif %}</td>
{% endfor %}
    </tr>
{% endfor %}
  </table>
{% endif %}
{% for p in s.panels %}
  <h3>{{ p.title }}</h3>
{% if p.note %}  <p class="note">{{ p.note }}</p>
{% endif %}
{% if p.chart %}  <div class="chart">{{ markup(p.chart) }}</div>
{% endif %}
{% if p.table %}
  <table>
    <tr>{% for h in p.table.headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in p.table.rows %}
    <tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
  </table>
{% endif %}
{% endfor %}
</section>
{% endfor %}
</main>
</body>
</html>
"""
