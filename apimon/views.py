"""The SQL views: per model a flat table in the training schema, and health and client views.

Each model gets a schema named after it, holding:
- `reference`: the training data, loaded from the configured file (again when it changes);
- `flat_definition` (view): the readable definition of the flat rows over the log store;
- `flat` (table): that view materialised day by day; a day is rebuilt only when its logs
  or the model's shape (features, kinds, classes, version) change;
- `evaluated` (view): the rows evaluations use (those of the configured version);
- `versions`, `data_quality`, `logged_keys`, `schema_check`: what analysts check first.
The main schema gets `health_hourly`, `health_daily` and `clients_daily`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlglot
from sqlglot.errors import ErrorLevel

from apimon.config import Model, Project
from apimon.errors import ApimonError, ConfigError
from apimon.sqlutil import check_sql, quote_ident, quote_literal, render_checked

log = logging.getLogger(__name__)

NUMERIC_TYPES = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL",
)  # fmt: skip
CATEGORICAL_TYPES = ("VARCHAR", "BOOLEAN")

# Columns of the flat table that are not features: a feature may not take their names.
META_COLUMNS = (
    "day", "event_time", "generation_id", "routing_key", "model_version", "version_matches",
    "project_key", "saved_model_id", "prediction", "prediction_value", "response_time_ms",
    "source_file_id", "source_line",
)  # fmt: skip

DIALECTS = ("duckdb", "spark", "trino", "bigquery", "snowflake", "postgres")


def json_path(key: str) -> str:
    """A JSON path naming one object key, whatever characters the key holds."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class FeatureSpec:
    """A feature of the flat table: its training name, logged name, kind and position."""

    name: str
    logged: str
    kind: str
    position: int

    @property
    def path(self) -> str:
        return json_path(self.logged)


@dataclass(frozen=True)
class ClassSpec:
    """A class whose probability becomes a `proba_<class>` column."""

    name: str
    index: int | None

    @property
    def column(self) -> str:
        return f"proba_{self.name}"

    @property
    def path(self) -> str:
        return "$.probas." + json_path(self.name).removeprefix("$.")


@dataclass(frozen=True)
class KeySpec:
    """A field of the logged userContext that identifies a query (to join labels on)."""

    name: str

    @property
    def column(self) -> str:
        return self.name

    @property
    def path(self) -> str:
        return json_path(self.name)


@dataclass(frozen=True)
class ReferenceColumn:
    """A column of the reference, as the schema check sees it."""

    name: str
    logged: str
    kind: str


@dataclass
class ModelShape:
    """Everything the model's SQL is rendered from."""

    model: Model
    features: list[FeatureSpec]
    classes: list[ClassSpec]
    keys: list[KeySpec]
    reference_columns: list[ReferenceColumn]

    @property
    def schema(self) -> str:
        return self.model.name

    def context(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "schema": self.schema,
            "features": self.features,
            "classes": self.classes,
            "keys": self.keys,
            "reference_columns": self.reference_columns,
        }


@dataclass
class ModelBuild:
    """What one refresh did for one model."""

    model: str
    days_built: int = 0
    days_dropped: int = 0
    rebuilt_all: bool = False
    flat_rows: int = 0
    evaluated_rows: int = 0
    versions: list[tuple[str | None, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shape: ModelShape | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "shape"}
        data["versions"] = [{"version": v, "queries": n} for v, n in self.versions]
        return data


def reference_kind(model: Model, column: str, duckdb_type: str) -> str:
    """numeric, categorical or ignore: the config's word, else the reference's type."""
    if column in model.columns:
        return model.columns[column]
    base = duckdb_type.split("(")[0].upper()
    if base in NUMERIC_TYPES or base.startswith("DECIMAL"):
        return "numeric"
    if base in CATEGORICAL_TYPES or base.startswith("ENUM"):
        return "categorical"
    return "ignore"


def load_reference(
    con: duckdb.DuckDBPyConnection, project: Project, model: Model, run_id: int
) -> bool:
    """Load the model's reference file into `<model>.reference` when it changed."""
    path = project.path(model.reference)
    if not path.is_file():
        raise ApimonError(
            f"model '{model.name}': reference {path} does not exist; fix `reference` in "
            "apimon.toml (paths are relative to the project folder)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = con.execute("select sha256 from reference_files where model = ?", [model.name]).fetchone()
    schema = quote_ident(model.name)
    exists = con.execute(
        "select count(*) from duckdb_tables() where schema_name = ? and table_name = 'reference'",
        [model.name],
    ).fetchone()
    if row is not None and row[0] == digest and exists and exists[0]:
        return False
    reader = (
        "read_parquet(?)" if path.suffix.lower() == ".parquet" else "read_csv(?, header = true)"
    )
    con.execute(f"create schema if not exists {schema}")
    try:
        con.execute(
            f"create or replace table {schema}.reference as select * from {reader}", [str(path)]
        )
    except duckdb.Error as exc:
        raise ApimonError(f"model '{model.name}': cannot read reference {path}: {exc}") from exc
    count = con.execute(f"select count(*) from {schema}.reference").fetchone()
    con.execute("delete from reference_files where model = ?", [model.name])
    con.execute(
        "insert into reference_files values (?, ?, ?, ?, ?)",
        [model.name, str(path), digest, count[0] if count else 0, run_id],
    )
    log.info("model %s: loaded reference %s (%s rows)", model.name, path, count[0] if count else 0)
    return True


def model_shape(
    con: duckdb.DuckDBPyConnection, model: Model, discovered_classes: Sequence[str] = ()
) -> ModelShape:
    """The features, classes and keys of a model, from its reference and its config."""
    columns = con.execute(
        "select column_name, data_type from duckdb_columns() "
        "where schema_name = ? and table_name = 'reference' order by column_index",
        [model.name],
    ).fetchall()
    names = [c[0] for c in columns]
    unknown = [c for c in [*model.columns, *model.rename.values()] if c not in names]
    if unknown:
        raise ConfigError(
            f"model '{model.name}': {', '.join(map(repr, unknown))} named in [models.columns] "
            f"or [models.rename] is not a column of the reference ({', '.join(names)})"
        )
    outputs = {model.target, model.prediction, *model.probabilities.values()} - {None}
    missing = [c for c in outputs if c not in names]
    if missing:
        raise ConfigError(
            f"model '{model.name}': {', '.join(map(repr, missing))} (target, prediction or "
            f"probabilities) is not a column of the reference ({', '.join(names)})"
        )

    logged_as = {training: logged for logged, training in model.rename.items()}
    reference_columns: list[ReferenceColumn] = []
    features: list[FeatureSpec] = []
    position = 0
    for name, duckdb_type in columns:
        if name in outputs:
            continue
        kind = reference_kind(model, name, duckdb_type)
        reference_columns.append(ReferenceColumn(name, logged_as.get(name, name), kind))
        if kind != "ignore":
            features.append(FeatureSpec(name, logged_as.get(name, name), kind, position))
        position += 1

    class_names = list(model.classes or model.probabilities or discovered_classes)
    classes = [ClassSpec(c, int(c) if c.isdigit() else None) for c in class_names]
    keys = [KeySpec(k) for k in model.keys]
    taken = set(META_COLUMNS) | {c.column for c in classes}
    # When a feature and a result share a name, the result wins: the feature is left out.
    shadowed = [f for f in features if f.name in taken]
    if shadowed:
        log.warning(
            "model %s: feature(s) %s share a name with a result column and are left out",
            model.name, ", ".join(f.name for f in shadowed),
        )  # fmt: skip
        features = [f for f in features if f.name not in taken]
    clash = [k.column for k in keys if k.column in taken or k.column in {f.name for f in features}]
    if clash:
        raise ConfigError(
            f"model '{model.name}': key {', '.join(clash)} has the name of a column of the "
            "flat table; rename the feature with [models.rename] or choose other keys"
        )
    return ModelShape(model, features, classes, keys, reference_columns)


def _discover_classes(con: duckdb.DuckDBPyConnection, model: Model) -> list[str]:
    """Remember the classes the logs name for a model (from the days in `build_days`)."""
    con.execute(
        "insert into model_classes "
        "select distinct ?, c from (select unnest(json_keys(result, '$.probas')) as c "
        "from main.queries where msg_type = 'prediction-query' and service_id = ? "
        "and endpoint_id = ? and day in (select day from build_days) "
        "and json_type(result, '$.probas') = 'OBJECT' "
        "union select cast(unnest(range(cast(json_array_length(result, '$.probabilities') "
        "as bigint))) as varchar) from main.queries where msg_type = 'prediction-query' "
        "and service_id = ? and endpoint_id = ? and day in (select day from build_days) "
        "and json_type(result, '$.probabilities') = 'ARRAY') "
        "where c not in (select class from model_classes where model = ?)",
        [model.name, model.service, model.endpoint, model.service, model.endpoint, model.name],
    )
    rows = con.execute(
        "select class from model_classes where model = ? order by class", [model.name]
    ).fetchall()
    return [r[0] for r in rows]


def render_view(name: str, shape: ModelShape | None = None, **extra: Any) -> str:
    """The SELECT of one view, rendered and parsed."""
    context = dict(shape.context()) if shape else {}
    context.update(extra)
    return render_checked(f"views/{name}.sql", **context).strip().rstrip(";")


MAIN_VIEWS: dict[str, tuple[str, dict[str, Any], str]] = {
    "health_hourly": ("health", {"grain": "hour"}, "Volume, failures and latency per hour"),
    "health_daily": ("health", {"grain": "day"}, "Volume, failures and latency per day"),
    "clients_daily": ("clients", {}, "Requests per client address and API node, per day"),
}

MODEL_VIEWS: dict[str, str] = {
    "flat_definition": "model_flat",
    "evaluated": "model_evaluated",
    "versions": "model_versions",
    "schema_check": "model_schema_check",
}

COLUMN_COMMENTS: dict[str, str] = {
    "day": "UTC day of the query",
    "hour": "UTC hour of the queries",
    "event_time": "when the query was answered (UTC)",
    "generation_id": "the API service generation that answered",
    "routing_key": "the deployment's routing key",
    "model_version": "the model version that scored the query",
    "version_matches": "whether that is the version under evaluation",
    "project_key": "project of the saved model",
    "saved_model_id": "saved model id",
    "prediction": "the predicted class or value, as text",
    "prediction_value": "the prediction as a number (regression), else NULL",
    "response_time_ms": "sum of the logged timings, in milliseconds",
    "source_file_id": "file of the log store row (files.file_id)",
    "source_line": "line of the log store row in that file",
    "service_id": "API service",
    "endpoint_id": "API endpoint",
    "requests": "queries received",
    "ignored": "queries the model ignored",
    "failed": "queries that failed",
    "failure_rate": "failed / requests",
    "p50_ms": "median response time of answered queries (ms)",
    "p95_ms": "95th percentile response time of answered queries (ms)",
    "p99_ms": "99th percentile response time of answered queries (ms)",
    "clients": "distinct client addresses",
    "client_ip": "the caller's address",
    "sender": "the API node that sent the event",
    "first_seen": "first query of the day",
    "last_seen": "last query of the day",
    "queries": "queries",
    "column_name": "the training column",
    "logged_as": "the name the column is logged under",
    "kind": "numeric or categorical",
    "missing": "queries without a value",
    "wrong_type": "queries whose value could not be read as the column's kind",
    "queries_logged": "queries that logged this feature",
    "first_day": "first day it was logged",
    "last_day": "last day it was logged",
    "status": "ok, never logged, or not in reference",
    "logged_name": "a feature name found in the logs",
}


@dataclass
class BuildReport:
    """What one build of the views did."""

    models: list[ModelBuild]

    @property
    def warnings(self) -> list[str]:
        return [w for m in self.models for w in m.warnings]

    def as_dict(self) -> dict[str, Any]:
        return {"models": [m.as_dict() for m in self.models]}


def build_views(con: duckdb.DuckDBPyConnection, project: Project, run_id: int) -> BuildReport:
    """Create the views and bring every model's flat table up to date (caller's transaction)."""
    for name, (template, extra, description) in MAIN_VIEWS.items():
        _create_view(con, f"main.{quote_ident(name)}", render_view(template, **extra), description)
    builds = [_build_model(con, project, model, run_id) for model in project.settings.models]
    return BuildReport(builds)


def _create_view(
    con: duckdb.DuckDBPyConnection, target: str, select: str, description: str
) -> None:
    statement = f"create or replace view {target} as\n{select}"
    check_sql(statement)
    con.execute(statement)
    con.execute(f"comment on view {target} is {quote_literal(description)}")
    columns = con.execute(f"select * from {target} limit 0").description or []
    for column in columns:
        comment = COLUMN_COMMENTS.get(column[0])
        if comment:
            con.execute(
                f"comment on column {target}.{quote_ident(column[0])} is {quote_literal(comment)}"
            )


def _build_model(
    con: duckdb.DuckDBPyConnection, project: Project, model: Model, run_id: int
) -> ModelBuild:
    build = ModelBuild(model.name)
    schema = quote_ident(model.name)
    con.execute(f"create schema if not exists {schema}")
    reloaded = load_reference(con, project, model, run_id)

    changed = _changed_days(con, model.name)
    _set_build_days(con, changed)
    shape = model_shape(con, model, _discover_classes(con, model))
    flat_sql = render_view("model_flat", shape)
    quality_sql = render_view("model_data_quality", shape)
    keys_sql = render_view("model_logged_keys", shape)
    shape_hash = hashlib.sha256((flat_sql + quality_sql + keys_sql).encode()).hexdigest()
    stored = con.execute(
        "select shape_hash from model_builds where model = ?", [model.name]
    ).fetchone()

    _create_view(
        con, f"{schema}.flat_definition", flat_sql,
        f"{model.name}: one row per answered prediction query, in the training schema "
        "(the definition of the table flat)",
    )  # fmt: skip
    if stored is None or stored[0] != shape_hash or reloaded:
        build.rebuilt_all = stored is not None
        changed = [r[0] for r in con.execute("select day from partitions order by day").fetchall()]
        _set_build_days(con, changed)
        con.execute(f"create or replace table {schema}.flat as {flat_sql} limit 0")
        con.execute(f"create or replace table {schema}.data_quality as {quality_sql} limit 0")
        con.execute(f"create or replace table {schema}.logged_keys as {keys_sql} limit 0")
        con.execute("delete from model_days where model = ?", [model.name])
        con.execute("delete from model_builds where model = ?", [model.name])
        con.execute("insert into model_builds values (?, ?, ?)", [model.name, shape_hash, run_id])

    dropped = con.execute(
        "select count(*) from model_days where model = ? "
        "and day not in (select day from partitions)",
        [model.name],
    ).fetchone()
    build.days_dropped = int(dropped[0]) if dropped else 0
    for table in ("flat", "data_quality", "logged_keys"):
        con.execute(
            f"delete from {schema}.{table} where day in (select day from build_days) "
            "or day not in (select day from partitions)"
        )
    con.execute(
        # In time order, so that a query on a range of days reads only their row groups.
        f"insert into {schema}.flat select * from {schema}.flat_definition "
        "where day in (select day from build_days) order by day, event_time"
    )
    con.execute(f"insert into {schema}.data_quality {quality_sql}")
    con.execute(f"insert into {schema}.logged_keys {keys_sql}")
    con.execute(
        "delete from model_days where model = ? and (day in (select day from build_days) "
        "or day not in (select day from partitions))",
        [model.name],
    )
    con.execute("insert into model_days select ?, day, ? from build_days", [model.name, run_id])
    build.days_built = len(changed)

    for view, template in MODEL_VIEWS.items():
        if view == "flat_definition":
            continue
        _create_view(
            con, f"{schema}.{quote_ident(view)}", render_view(template, shape),
            f"{model.name}: {view.replace('_', ' ')}",
        )  # fmt: skip
    con.execute(
        f"comment on table {schema}.flat is "
        f"{quote_literal(model.name + ': flat_definition, materialised day by day')}"
    )
    _describe_build(con, shape, build)
    build.shape = shape
    return build


def _changed_days(con: duckdb.DuckDBPyConnection, model: str) -> list[Any]:
    rows = con.execute(
        "select p.day from partitions as p "
        "left join model_days as d on d.model = ? and d.day = p.day "
        "where d.day is null or p.changed_run > d.built_run order by p.day",
        [model],
    ).fetchall()
    return [r[0] for r in rows]


def _set_build_days(con: duckdb.DuckDBPyConnection, days: Sequence[Any]) -> None:
    con.execute("create or replace temp table build_days (day date)")
    if days:
        con.executemany("insert into build_days values (?)", [[d] for d in days])


def _describe_build(con: duckdb.DuckDBPyConnection, shape: ModelShape, build: ModelBuild) -> None:
    schema = quote_ident(shape.schema)
    model = shape.model
    counts = con.execute(
        f"select count(*), count(*) filter (where version_matches) from {schema}.flat"
    ).fetchone()
    assert counts is not None
    build.flat_rows = int(counts[0])
    build.evaluated_rows = int(counts[0] if not model.match_version else counts[1])
    build.versions = [
        (r[0], int(r[1]))
        for r in con.execute(
            f"select model_version, count(*) from {schema}.flat group by 1 order by 2 desc"
        ).fetchall()
    ]
    if build.flat_rows and not build.evaluated_rows and model.version:
        seen = ", ".join(f"{v} ({n:,} queries)" for v, n in build.versions)
        build.warnings.append(
            f"model '{model.name}': no query was scored by version {model.version}, so its "
            f"evaluations are empty; versions in the logs: {seen}. Set `version` to one of "
            "them, or `match_version = false`, in apimon.toml"
        )
    elif not build.flat_rows:
        build.warnings.append(
            f"model '{model.name}': no answered prediction query of service "
            f"'{model.service}', endpoint '{model.endpoint}' in the log store"
        )
    for warning in build.warnings:
        log.warning("%s", warning)


def view_names(con: duckdb.DuckDBPyConnection, project: Project) -> list[str]:
    """Every view `apimon sql` can print, as `name` or `model.name`."""
    names = list(MAIN_VIEWS)
    for model in project.settings.models:
        names += [f"{model.name}.{v}" for v in MODEL_VIEWS]
    return names


def view_sql(
    con: duckdb.DuckDBPyConnection, project: Project, name: str, dialect: str = "duckdb"
) -> str:
    """The SQL of one view, transpiled to a dialect and pretty-printed."""
    if dialect not in DIALECTS:
        raise ApimonError(f"unknown dialect '{dialect}'; known: {', '.join(DIALECTS)}")
    if name in MAIN_VIEWS:
        template, extra, _ = MAIN_VIEWS[name]
        select = render_view(template, **extra)
    else:
        model_name, _, view = name.partition(".")
        if view not in MODEL_VIEWS or model_name not in {m.name for m in project.settings.models}:
            known = ", ".join(view_names(con, project))
            raise ApimonError(f"no view named '{name}'; known: {known}")
        model = project.model(model_name)
        classes = [
            r[0]
            for r in con.execute(
                "select class from model_classes where model = ? order by class", [model.name]
            ).fetchall()
        ]
        select = render_view(MODEL_VIEWS[view], model_shape(con, model, classes))
    return transpile(select, dialect)


def transpile(select: str, dialect: str) -> str:
    """Translate a DuckDB query to another dialect; refuse what the target cannot express."""
    try:
        return sqlglot.transpile(
            select, read="duckdb", write=dialect, pretty=True, unsupported_level=ErrorLevel.RAISE
        )[0]
    except sqlglot.errors.SqlglotError as exc:
        raise ApimonError(f"this view cannot be written in {dialect}: {exc}") from exc
