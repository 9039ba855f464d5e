"""The project: a folder with `apimon.toml`, validated into typed settings.

Every key is documented in the README ("Project configuration"); a wrong or missing key
is reported with its path in the file and what is allowed there.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apimon.errors import ConfigError

CONFIG_FILE = "apimon.toml"
SOURCE_FORMATS = ("auto", "event-server", "log4j", "sagemaker")
COLUMN_KINDS = ("numeric", "categorical", "ignore")

WindowKind = Literal["day", "week", "month", "all"]
DEFAULT_WINDOWS: tuple[WindowKind, ...] = ("day", "all")

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$", max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestSettings(_Strict):
    """How `apimon ingest` treats files that may still be being written."""

    partial_line_grace_seconds: float = Field(default=300.0, ge=0)
    batch_megabytes: int = Field(default=64, ge=1, le=4096)


class DriftSettings(_Strict):
    """How drift is measured and judged; the defaults come from a seeded simulation."""

    bins: int = Field(default=10, ge=2, le=100)
    top_categories: int = Field(default=20, ge=1, le=1000)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    psi_threshold: float = Field(default=0.2, gt=0)
    wasserstein_threshold: float = Field(default=0.1, gt=0)
    js_threshold: float = Field(default=0.1, gt=0, le=1)
    min_rows: int = Field(default=100, ge=1)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    windows: list[WindowKind] = Field(default_factory=lambda: list(DEFAULT_WINDOWS))
    drift_model: bool = True
    drift_model_rows: int = Field(default=5000, ge=50)
    seed: int = 0


CheckMetric = Literal[
    "drift_model_accuracy", "drift_share", "column_psi", "p95_latency_ms", "failure_rate",
    "volume_drop", "label_coverage", "estimated_accuracy_drop", "realised_accuracy_drop",
    "quarantined_lines",
]  # fmt: skip
CHECK_METRICS: tuple[str, ...] = get_args(CheckMetric)


class CheckSettings(_Strict):
    """A check: a metric, where it applies, and the thresholds that make it warn or fail."""

    metric: CheckMetric
    name: Name | None = None
    model: str | None = None
    column: str | None = None
    warning: float | None = None
    error: float | None = None
    below: bool = False


class LabelSource(_Strict):
    """Files of ground truth: a key that identifies a query, and its label."""

    path: str
    model: str
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    key: str = "request_id"
    label: str = "label"
    name: Name | None = None

    @property
    def label_name(self) -> str:
        return self.name or f"labels:{self.path}"


class CollectorSettings(_Strict):
    """`apimon serve`: where the Event collector listens and how it makes events durable."""

    root: str = "events"
    host: str = "127.0.0.1"
    port: int = Field(default=11200, ge=0, le=65535)
    auth_keys: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 << 20, ge=1024)
    flush_bytes: int = Field(default=1 << 20, ge=1)
    flush_interval_ms: float = Field(default=50.0, ge=0)


class Source(_Strict):
    """A folder, file or glob of log files, in one envelope format or detected per file."""

    path: str
    format: Literal["auto", "event-server", "log4j", "sagemaker"] = "auto"
    name: Name | None = None
    routing_key: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.path


class Model(_Strict):
    """A deployed model: which endpoint serves it and what it was trained on."""

    name: Name
    service: str = Field(min_length=1)
    endpoint: str = Field(min_length=1)
    reference: str = Field(min_length=1)
    target: str | None = None
    version: str | None = None
    match_version: bool = True
    columns: dict[str, Literal["numeric", "categorical", "ignore"]] = Field(default_factory=dict)
    rename: dict[str, str] = Field(default_factory=dict)
    keys: list[str] = Field(default_factory=lambda: ["request_id"])
    prediction: str | None = None
    probabilities: dict[str, str] = Field(default_factory=dict)
    classes: list[str] | None = None
    positive_class: str | None = None

    @field_validator("reference")
    @classmethod
    def _reference_format(cls, value: str) -> str:
        if not value.lower().endswith((".parquet", ".csv", ".csv.gz")):
            raise ValueError("the reference must be a Parquet (.parquet) or CSV (.csv) file")
        return value

    @field_validator("rename")
    @classmethod
    def _rename_targets_unique(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for logged, training in value.items():
            if training in seen:
                raise ValueError(
                    f"'{logged}' and '{seen[training]}' are both renamed to '{training}'"
                )
            seen[training] = logged
        return value


class ProjectSettings(_Strict):
    """The whole of `apimon.toml`."""

    database: str = "apimon.duckdb"
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    sources: list[Source] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    labels: list[LabelSource] = Field(default_factory=list)
    checks: list[CheckSettings] | None = None

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[Source]) -> list[Source]:
        _require_unique([s.label for s in value], "source name")
        return value

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[Model]) -> list[Model]:
        _require_unique([m.name for m in value], "model name")
        return value


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} '{name}' is used twice; names must be unique")
        seen.add(name)


class Project:
    """A loaded project: its folder, settings and the paths they name."""

    def __init__(self, root: Path, settings: ProjectSettings, config_text: str) -> None:
        self.root = root
        self.settings = settings
        self.config_hash = hashlib.sha256(config_text.encode()).hexdigest()[:16]

    @property
    def database_path(self) -> Path:
        return self.path(self.settings.database)

    def path(self, relative: str) -> Path:
        """A path of the config, resolved against the project folder."""
        return (self.root / os.path.expanduser(relative)).resolve()

    def model(self, name: str) -> Model:
        for model in self.settings.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.settings.models) or "none configured"
        raise ConfigError(f"no model named '{name}' in {self.root / CONFIG_FILE} (known: {known})")


def find_project(project: str | os.PathLike[str] | None = None) -> Path:
    """The project folder: the argument, else $APIMON_PROJECT, else the current directory."""
    chosen = project if project is not None else os.environ.get("APIMON_PROJECT") or "."
    root = Path(chosen).expanduser().resolve()
    if root.is_file() and root.name == CONFIG_FILE:
        root = root.parent
    if not (root / CONFIG_FILE).is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {root}: pass --project DIR (or set APIMON_PROJECT) to a "
            f"folder that has one, or run `apimon demo` to fill the embedded default project"
        )
    return root


def load_project(project: str | os.PathLike[str] | None = None) -> Project:
    """Find, read and validate a project's `apimon.toml`."""
    root = find_project(project)
    path = root / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_project(root, text)


def parse_project(root: Path, text: str) -> Project:
    """Validate the text of an `apimon.toml` that lives in `root`."""
    path = root / CONFIG_FILE
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        settings = ProjectSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from exc
    return Project(root, settings, text)


_ALLOWED_KEYS: dict[str, tuple[str, ...]] = {
    "": tuple(ProjectSettings.model_fields),
    "ingest": tuple(IngestSettings.model_fields),
    "drift": tuple(DriftSettings.model_fields),
    "collector": tuple(CollectorSettings.model_fields),
    "labels": tuple(LabelSource.model_fields),
    "checks": tuple(CheckSettings.model_fields),
    "sources": tuple(Source.model_fields),
    "models": tuple(Model.model_fields),
}


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    where = _location(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        section = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
        allowed = _ALLOWED_KEYS.get(section, ())
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "literal_error":
        return f"{where}: expected {error['ctx']['expected']}, got {error['input']!r}"
    if kind == "string_pattern_mismatch":
        return (
            f"{where}: {error['input']!r} is not a valid name "
            "(letters, digits, '_' and '-', at most 64 characters)"
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"
