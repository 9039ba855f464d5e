"""`apimon metrics`: statuses and key figures in the Prometheus text exposition format.

Meant for node-exporter's textfile collector: a scheduler writes the output to a
`*.prom` file after each refresh. Statuses are gauges: -1 no data, 0 healthy,
1 warning, 2 error.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from apimon.checks import STATUS_LEVELS, latest_checks, status_report
from apimon.config import Project
from apimon.sqlutil import render_checked

STATUS_HELP = "(-1 no data, 0 healthy, 1 warning, 2 error)"


@dataclass
class Family:
    """One metric family: its name, type, help text and samples."""

    name: str
    help: str
    kind: str = "gauge"
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: Mapping[str, Any], value: float | None) -> None:
        """Add a sample; a missing value is left out, as Prometheus expects."""
        if value is not None:
            self.samples.append(
                ({k: "" if v is None else str(v) for k, v in labels.items()}, float(value))
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.kind, "help": self.help,
            "samples": [{"labels": labels, "value": value} for labels, value in self.samples],
        }  # fmt: skip

    def lines(self) -> list[str]:
        if not self.samples:
            return []
        out = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            out.append(f"{self.name}{format_labels(labels)} {format_value(value)}")
        return out


def escape_label(value: str) -> str:
    """Escape a label value: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """Escape a HELP text: backslash and line feed."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_labels(labels: Mapping[str, str]) -> str:
    """`{a="1",b="x"}`, or nothing for no labels."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (`NaN`, `+Inf`, shortest exact repr)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def metric_families(con: duckdb.DuckDBPyConnection, project: Project) -> list[Family]:
    """Every status and key figure of the warehouse, as metric families."""
    families = [*_status_families(con), *_model_families(con, project)]
    families += [*_endpoint_families(con), *_store_families(con)]
    return [f for f in families if f.samples]


def prometheus_text(families: Sequence[Family]) -> str:
    """Metric families in the text exposition format, ending with a line feed."""
    lines = [line for family in families for line in family.lines()]
    return "\n".join(lines) + "\n" if lines else ""


def _status_families(con: duckdb.DuckDBPyConnection) -> list[Family]:
    report = status_report(con)
    overall = Family("apimon_status", f"Worst status of the warehouse {STATUS_HELP}.")
    overall.add({}, STATUS_LEVELS[report.status])
    endpoints = Family("apimon_endpoint_status", f"Status of an endpoint {STATUS_HELP}.")
    for e in report.endpoints:
        endpoints.add({"service": e.service, "endpoint": e.endpoint}, e.level)
    models = Family("apimon_model_status", f"Status of a model {STATUS_HELP}.")
    for m in report.models:
        models.add({"model": m.name, "service": m.service, "endpoint": m.endpoint}, m.level)
    store = Family("apimon_log_store_status", f"Status of the log store {STATUS_HELP}.")
    store.add({}, report.warehouse.level)

    check_status = Family("apimon_check_status", f"Current result of a check {STATUS_HELP}.")
    check_value = Family("apimon_check_value", "Value behind the current result of a check.")
    for c in latest_checks(con):
        labels = {
            "check": c.check_name, "metric": c.metric, "scope": c.scope, "model": c.model,
            "column": c.column_name, "service": c.service, "endpoint": c.endpoint,
            "routing_key": c.routing_key,
        }  # fmt: skip
        check_status.add(labels, STATUS_LEVELS[c.status])
        check_value.add(labels, c.value)
    return [overall, endpoints, models, store, check_status, check_value]


_MODEL_FIGURES = {
    "drift_share": ("apimon_drift_share", "Share of drifting features in the newest window."),
    "drift_model_accuracy": (
        "apimon_drift_model_accuracy",
        "Accuracy of the drift model (reference against current rows) in the newest window.",
    ),
    "label_coverage": (
        "apimon_label_coverage",
        "Share of the queries of the newest window with performance figures that have a label.",
    ),
}


def _model_families(con: duckdb.DuckDBPyConnection, project: Project) -> list[Family]:
    values = render_checked("checks/model_values.sql")
    rows = con.execute(
        f"with v as ({values}) "
        'select metric, model, window_kind, window_end, "value" from v '
        'where scope = \'model\' and "value" is not null and not isnan("value") '
        "qualify row_number() over (partition by metric, model order by "
        "case window_kind when 'day' then 0 when 'week' then 1 when 'month' then 2 else 3 end, "
        "window_end desc) = 1 order by metric, model",
        {"labelled": sorted({s.model for s in project.settings.labels})},
    ).fetchall()
    families = {m: Family(*spec) for m, spec in _MODEL_FIGURES.items()}
    for metric, model, kind, _end, value in rows:
        if metric in families:
            families[metric].add({"model": model, "window": kind}, value)
    return list(families.values())


def _endpoint_families(con: duckdb.DuckDBPyConnection) -> list[Family]:
    rows = con.execute(
        "select service_id, endpoint_id, routing_key, requests, failure_rate, p95_ms "
        "from main.health_daily where day = (select max(day) from main.partitions "
        'where "rows" > 0) order by all'
    ).fetchall()
    requests = Family("apimon_requests", "Queries of the newest day of the log store so far.")
    failures = Family("apimon_failure_rate", "Share of failed queries on the newest day.")
    p95 = Family("apimon_p95_latency_ms", "95th percentile response time on the newest day (ms).")
    for service, endpoint, routing_key, n, rate, latency in rows:
        labels = {"service": service, "endpoint": endpoint, "routing_key": routing_key}
        requests.add(labels, n)
        failures.add(labels, rate)
        p95.add(labels, latency)
    return [requests, failures, p95]


def _store_families(con: duckdb.DuckDBPyConnection) -> list[Family]:
    row = con.execute(
        "select (select count(*) from main.quarantine), "
        "(select max(last_event) from main.partitions), "
        "(select max(finished_at) from main.runs where command = 'refresh')"
    ).fetchone()
    quarantined, newest, refreshed = row if row else (None, None, None)
    lines = Family("apimon_quarantined_lines", "Lines kept aside in the log store.")
    lines.add({}, quarantined)
    event = Family("apimon_newest_event_timestamp_seconds", "Time of the newest logged query.")
    event.add({}, _epoch(newest))
    refresh = Family(
        "apimon_last_refresh_timestamp_seconds", "Time the last `apimon refresh` finished."
    )
    refresh.add({}, _epoch(refreshed))
    return [lines, event, refresh]


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC).timestamp()
