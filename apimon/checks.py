"""Checks: thresholds on the warehouse's metrics, judged after each refresh, and statuses.

A check names a metric, optionally the model (and for `column_psi` the column) it applies
to, and a warning and an error threshold. `evaluate_checks` judges every evaluation (model
and column checks) and every day (endpoint and log-store checks) and keeps the results in
the `checks` table; the latest results roll up into a status per model and per endpoint:
healthy < warning < error, and "no data" for a subject whose checks never had a value.
The SQL lives in `sql/checks/`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from apimon.config import CONFIG_FILE, CheckSettings, Project
from apimon.errors import ConfigError
from apimon.sqlutil import render_checked

log = logging.getLogger(__name__)

STATUS_LEVELS = {"no data": -1, "healthy": 0, "warning": 1, "error": 2}
MODEL_METRICS = (
    "drift_model_accuracy", "drift_share", "label_coverage", "estimated_accuracy_drop",
    "realised_accuracy_drop",
)  # fmt: skip
COLUMN_METRICS = ("column_psi",)
ENDPOINT_METRICS = ("p95_latency_ms", "failure_rate", "volume_drop")
WAREHOUSE_METRICS = ("quarantined_lines",)
RESULTS_TABLE = "check_results"
RULES_TABLE = "check_rules"


def default_checks(project: Project) -> list[CheckSettings]:
    """The checks a project gets when its apimon.toml has no `[[checks]]`."""
    drift = project.settings.drift
    return [
        CheckSettings(metric="drift_model_accuracy", warning=0.6, error=0.7),
        CheckSettings(metric="drift_share", warning=drift.drift_share / 2, error=drift.drift_share),
        CheckSettings(
            metric="column_psi", warning=drift.psi_threshold, error=2.5 * drift.psi_threshold
        ),
        CheckSettings(metric="p95_latency_ms", warning=500.0, error=1000.0),
        CheckSettings(metric="failure_rate", warning=0.01, error=0.05),
        CheckSettings(metric="volume_drop", warning=0.5, error=0.8),
        CheckSettings(metric="label_coverage", warning=0.1, below=True),
        CheckSettings(metric="estimated_accuracy_drop", warning=0.05, error=0.1),
        CheckSettings(metric="realised_accuracy_drop", warning=0.05, error=0.1),
        CheckSettings(metric="quarantined_lines", warning=1.0, error=100.0),
    ]


@dataclass(frozen=True)
class CheckRule:
    """A validated check: its name, what it applies to, and its thresholds."""

    name: str
    metric: str
    model: str | None
    column: str | None
    service: str | None
    endpoint: str | None
    warning: float | None
    error: float | None
    below: bool

    @property
    def specificity(self) -> int:
        """How narrowly the check applies: a model and a column, a column, a model, none."""
        return 2 * (self.column is not None) + (self.model is not None)


def check_rules(project: Project) -> list[CheckRule]:
    """The project's checks (or the defaults), validated against its models."""
    settings = project.settings.checks
    checks = default_checks(project) if settings is None else settings
    where = project.root / CONFIG_FILE
    rules: list[CheckRule] = []
    for i, check in enumerate(checks, start=1):
        name = check.name or ":".join(p for p in (check.metric, check.model, check.column) if p)
        place = f"{where}: [[checks]] {i} ({name})"
        service = endpoint = None
        if check.model is not None:
            if check.metric in WAREHOUSE_METRICS:
                raise ConfigError(
                    f"{place}: {check.metric} belongs to the log store, not to a model; "
                    "remove `model`"
                )
            model = _configured_model(project, check.model, place)
            service, endpoint = model.service, model.endpoint
        if check.column is not None and check.metric not in COLUMN_METRICS:
            raise ConfigError(
                f"{place}: `column` applies only to {', '.join(COLUMN_METRICS)}; remove it"
            )
        if check.warning is None and check.error is None:
            raise ConfigError(f"{place}: give it a `warning` or an `error` threshold (or both)")
        if check.warning is not None and check.error is not None:
            inverted = check.warning < check.error if check.below else check.warning > check.error
            if inverted:
                side = "above" if check.below else "below"
                raise ConfigError(
                    f"{place}: the warning threshold ({check.warning}) must be {side} or at "
                    f"the error threshold ({check.error}); "
                    + ("for a metric where high is bad, drop `below`" if check.below
                       else "for a metric where low is bad, set `below = true`")
                )  # fmt: skip
        rules.append(
            CheckRule(name, check.metric, check.model, check.column, service, endpoint,
                      check.warning, check.error, check.below)
        )  # fmt: skip
    _require_distinct(rules, where)
    return rules


def _configured_model(project: Project, name: str, place: str) -> Any:
    for model in project.settings.models:
        if model.name == name:
            return model
    known = ", ".join(m.name for m in project.settings.models) or "none configured"
    raise ConfigError(f"{place}: no model named '{name}' (known: {known})")


def _require_distinct(rules: Sequence[CheckRule], where: object) -> None:
    names: set[str] = set()
    scopes: dict[tuple[str, str | None, str | None], str] = {}
    for rule in rules:
        if rule.name in names:
            raise ConfigError(
                f"{where}: two [[checks]] are named '{rule.name}'; give one of them another `name`"
            )
        names.add(rule.name)
        scope = (rule.metric, rule.model, rule.column)
        if scope in scopes:
            raise ConfigError(
                f"{where}: [[checks]] '{scopes[scope]}' and '{rule.name}' both judge "
                f"{rule.metric} of the same model and column; keep one of them"
            )
        scopes[scope] = rule.name


def rules_hash(rules: Sequence[CheckRule]) -> str:
    """A fingerprint of the checks: when it changes, every result is judged again."""
    text = json.dumps([asdict(r) for r in rules], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CheckRunReport:
    """What one evaluation of the checks judged and changed."""

    judged: int = 0
    changed: int = 0
    removed: int = 0
    days: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_checks(
    con: duckdb.DuckDBPyConnection, project: Project, run_id: int
) -> CheckRunReport:
    """Judge the checks and record their results, inside the caller's transaction."""
    # Model and column checks are judged again for every evaluation (they are few); endpoint
    # checks only for the days whose logs changed since the last judgement (and the days
    # compared with them), unless the checks themselves changed.
    rules = check_rules(project)
    fingerprint = rules_hash(rules)
    days = _days_to_judge(con, fingerprint)
    _write_rules(con, rules)

    parts = ["model", "endpoint", "warehouse"] if days else ["model", "warehouse"]
    sql = render_checked("checks/results.sql", parts=parts, rules=RULES_TABLE)
    params: dict[str, Any] = {"labelled": sorted({s.model for s in project.settings.labels})}
    if days:
        params |= {"days": days, "first": days[0], "last": days[-1]}
    con.execute(f"create or replace temp table {RESULTS_TABLE} as {sql}", params)

    report = CheckRunReport(days=len(days))
    row = con.execute(f"select count(*) from {RESULTS_TABLE}").fetchone()
    report.judged = int(row[0]) if row else 0
    before = _count(con)
    con.execute(render_checked("checks/merge.sql", step="delete", results=RESULTS_TABLE),
                {"days": days})  # fmt: skip
    report.removed = before - _count(con)
    con.execute(render_checked("checks/merge.sql", step="insert", results=RESULTS_TABLE),
                {"run_id": run_id})  # fmt: skip
    report.changed = _count(con) - before + report.removed
    report.statuses = dict(
        con.execute(f"select status, count(*) from {RESULTS_TABLE} group by status").fetchall()
    )

    newest = con.execute("select max(day) from main.partitions").fetchone()
    con.execute(
        "insert into check_runs values (?, ?, ?, now()::timestamp)",
        [run_id, fingerprint, newest[0] if newest else None],
    )
    con.execute(f"drop table {RESULTS_TABLE}")
    con.execute(f"drop table {RULES_TABLE}")
    log.info(
        "checks: %d results judged (%d days of endpoint checks), %d new or changed, %d removed",
        report.judged, report.days, report.changed, report.removed,
    )  # fmt: skip
    return report


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("select count(*) from main.checks").fetchone()
    return int(row[0]) if row else 0


def _days_to_judge(con: duckdb.DuckDBPyConnection, fingerprint: str) -> list[dt.date]:
    """Days whose endpoint checks must be judged (again): all of them after a change of checks."""
    store_days = {r[0] for r in con.execute("select day from main.partitions").fetchall()}
    last = con.execute(
        "select run_id, rules_hash, last_day from main.check_runs order by run_id desc limit 1"
    ).fetchone()
    if last is None or last[1] != fingerprint:
        return sorted(store_days)
    changed = {
        r[0]
        for r in con.execute(
            "select day from main.partitions where changed_run > ?", [last[0]]
        ).fetchall()
    }
    # A day's volume is compared with the same weekday a week before; the newest day is
    # compared up to its last query, so the one before it is judged again when a new one comes.
    wanted = changed | {d + dt.timedelta(days=7) for d in changed}
    wanted |= {last[2], max(store_days, default=None)}
    return sorted(d for d in wanted if d in store_days)


def _write_rules(con: duckdb.DuckDBPyConnection, rules: Sequence[CheckRule]) -> None:
    con.execute(
        f"create or replace temp table {RULES_TABLE} (check_name varchar, metric varchar, "
        "model varchar, column_name varchar, service varchar, endpoint varchar, "
        "warning double, error double, below boolean, specificity integer)"
    )
    if rules:
        con.executemany(
            f"insert into {RULES_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[r.name, r.metric, r.model, r.column, r.service, r.endpoint, r.warning, r.error,
              r.below, r.specificity] for r in rules],
        )  # fmt: skip


@dataclass(frozen=True)
class CheckResult:
    """The result of one check on one subject, for one evaluation or day."""

    check_name: str
    metric: str
    scope: str
    model: str | None
    column_name: str | None
    service: str | None
    endpoint: str | None
    routing_key: str | None
    evaluation_id: int | None
    window_kind: str | None
    window_start: dt.date | None
    window_end: dt.date | None
    day: dt.date | None
    value: float | None
    warning: float | None
    error: float | None
    below: bool
    status: str
    evaluated_at: dt.datetime
    run_id: int

    @property
    def subject(self) -> str:
        """What the check looked at, beside its model or endpoint: a column or a routing key."""
        return self.column_name or self.routing_key or ""

    @property
    def when(self) -> str:
        """The window or day the result is about."""
        if self.day is not None:
            return self.day.isoformat()
        if self.window_start == self.window_end and self.window_start is not None:
            return f"{self.window_kind} {self.window_start}"
        return f"{self.window_kind} {self.window_start} to {self.window_end}"

    @property
    def threshold(self) -> float | None:
        """The threshold the value reached (error, else warning), or the nearest one."""
        if self.status == "error" or self.warning is None:
            return self.error
        return self.warning

    def describe(self) -> str:
        """One line: `drift_share 0.5 ≥ 0.5 (error), day 2026-11-24`."""
        sign = "≤" if self.below else "≥"
        subject = f" {self.subject}" if self.subject else ""
        if self.value is None:
            return f"{self.check_name}{subject}: no data, {self.when}"
        return (
            f"{self.check_name}{subject} {self.value:.4g} {sign} {self.threshold:.4g} "
            f"({self.status}), {self.when}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest_checks(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[CheckResult]:
    """The current result of every check and subject (see `sql/checks/latest.sql`)."""
    if not _has_checks_table(con):
        return []
    rows = con.execute(render_checked("checks/latest.sql"), {"model": model}).fetchall()
    return [CheckResult(*row) for row in rows]


def _has_checks_table(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "select count(*) from duckdb_tables() where schema_name = 'main' and table_name = 'checks'"
    ).fetchone()
    if row and row[0]:
        return True
    log.warning("this warehouse has no checks yet: run `apimon refresh` to judge them")
    return False


def worst(statuses: Iterable[str]) -> str:
    """The worst of some statuses (healthy < warning < error); "no data" when none has data."""
    return max(statuses, key=STATUS_LEVELS.__getitem__, default="no data")


@dataclass
class SubjectStatus:
    """The status of a model, an endpoint or the log store, and the checks behind it."""

    kind: str
    name: str
    status: str
    checks: list[CheckResult]
    service: str | None = None
    endpoint: str | None = None
    models: list[str] = field(default_factory=list)

    @property
    def level(self) -> int:
        return STATUS_LEVELS[self.status]

    @property
    def failing(self) -> list[CheckResult]:
        """Its checks in warning or error, the worst and the largest excess first."""
        bad = [c for c in self.checks if c.status in ("warning", "error")]
        return sorted(bad, key=lambda c: (-STATUS_LEVELS[c.status], -_excess(c), c.check_name))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "status": self.status,
            "level": self.level, "service": self.service, "endpoint": self.endpoint,
            "models": self.models, "failing": [c.as_dict() for c in self.failing],
            "checks": [c.as_dict() for c in self.checks],
        }  # fmt: skip


def _excess(check: CheckResult) -> float:
    threshold = check.threshold
    if check.value is None or threshold is None:
        return 0.0
    gap = threshold - check.value if check.below else check.value - threshold
    return gap / abs(threshold) if threshold else gap


@dataclass
class StatusReport:
    """Every endpoint and model with its status, and the log store's."""

    endpoints: list[SubjectStatus]
    models: list[SubjectStatus]
    warehouse: SubjectStatus

    @property
    def status(self) -> str:
        return worst(s.status for s in [*self.endpoints, *self.models, self.warehouse])

    def subjects(self) -> list[SubjectStatus]:
        """Each endpoint followed by its models, then the log store."""
        ordered: list[SubjectStatus] = []
        for endpoint in self.endpoints:
            ordered.append(endpoint)
            ordered += [m for m in self.models if m.name in endpoint.models]
        return [*ordered, self.warehouse]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "level": STATUS_LEVELS[self.status],
            "endpoints": [e.as_dict() for e in self.endpoints],
            "models": [m.as_dict() for m in self.models],
            "warehouse": self.warehouse.as_dict(),
        }


def status_report(con: duckdb.DuckDBPyConnection, model: str | None = None) -> StatusReport:
    """The status of each model, endpoint and the log store, from the current check results."""
    # A model's status is the worst of its checks' current results; an endpoint's, the worst
    # of its models' and of its own checks (over its routing keys). A check whose current
    # result is "no data" does not count; a subject with no check that had data is "no data".
    checks = latest_checks(con, model)
    configured = con.execute(
        "select name, service, endpoint from main.models where ? is null or name = ? "
        "order by service, endpoint, name",
        [model, model],
    ).fetchall()

    models = []
    for name, service, endpoint in configured:
        own = [c for c in checks if c.scope in ("model", "column") and c.model == name]
        models.append(
            SubjectStatus("model", name, _rolled_up(own), own, service=service, endpoint=endpoint)
        )

    keys = {(s, e) for _, s, e in configured}
    keys |= {(c.service, c.endpoint) for c in checks if c.scope == "endpoint"}
    endpoints = []
    for service, endpoint in sorted(keys, key=lambda k: (k[0] or "", k[1] or "")):
        own = [
            c for c in checks
            if c.scope == "endpoint" and (c.service, c.endpoint) == (service, endpoint)
        ]  # fmt: skip
        served = [m for m in models if (m.service, m.endpoint) == (service, endpoint)]
        status = worst(
            [*(m.status for m in served if m.status != "no data"),
             *(c.status for c in own if c.status != "no data")]
        )  # fmt: skip
        endpoints.append(
            SubjectStatus("endpoint", f"{service}/{endpoint}", status, own, service=service,
                          endpoint=endpoint, models=[m.name for m in served])
        )  # fmt: skip

    store = [c for c in checks if c.scope == "warehouse"]
    warehouse = SubjectStatus("log store", "log store", _rolled_up(store), store)
    return StatusReport(endpoints, models, warehouse)


def _rolled_up(checks: Sequence[CheckResult]) -> str:
    return worst(c.status for c in checks if c.status != "no data")


STATUS_HEADERS = [
    "endpoint / model", "status", "failing check", "result", "on", "value", "threshold",
    "window or day",
]  # fmt: skip


def status_rows(report: StatusReport, limit: int = 10) -> list[list[Any]]:
    """Rows of the status table: each subject, then its failing checks (the worst first)."""
    rows: list[list[Any]] = []
    for subject in report.subjects():
        name = f"  {subject.name}" if subject.kind == "model" else subject.name
        failing = subject.failing
        checks: list[list[Any]] = [
            [c.check_name, c.status, c.subject, c.value,
             f"{'≤' if c.below else '≥'} {c.threshold:g}", c.when]
            for c in failing[:limit]
        ]  # fmt: skip
        if len(failing) > limit:
            checks.append([f"{len(failing) - limit} more (see --json)", "", "", None, "", ""])
        first, *rest = checks or [["", "", "", None, "", ""]]
        rows.append([name, subject.status, *first])
        rows += [["", "", *more] for more in rest]
    return rows
