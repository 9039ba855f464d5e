"""The drift model: a classifier told to separate reference rows from current rows.

Its test accuracy says how separable the two samples have become (0.5: not at all), with
a Wilson interval and a one-sided binomial test against 0.5; its importances say which
columns tell them apart. Beside them stands the deployed model's own importance of each
column, from a surrogate fitted once on the reference's target.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from apimon.sqlutil import quote_ident

log = logging.getLogger(__name__)

TREES, DEPTH, TOP_CATEGORIES, TEST_SHARE = 100, 5, 20, 0.3


@dataclass
class DriftModelResult:
    """What the drift model of one evaluation found."""

    sample_rows: int
    test_rows: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    pvalue: float
    confidence: float
    drift_detected: bool
    seed: int
    importance: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Encoder:
    """Numeric columns mean-imputed and standardised; categorical ones one-hot on top values."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: tuple[tuple[str, ...], ...]

    @classmethod
    def fit(cls, data: dict[str, np.ndarray], numeric: Sequence[str],
            categorical: Sequence[str]) -> Encoder:  # fmt: skip
        means, stds = [], []
        for name in numeric:
            values = data[name][np.isfinite(data[name])]
            means.append(float(values.mean()) if len(values) else 0.0)
            stds.append(float(values.std()) if len(values) and values.std() > 0 else 1.0)
        vocabularies = []
        for name in categorical:
            labels, counts = np.unique(data[name].astype(str), return_counts=True)
            order = np.lexsort((labels, -counts))
            vocabularies.append(tuple(str(labels[i]) for i in order[:TOP_CATEGORIES]))
        return cls(tuple(numeric), tuple(categorical), tuple(means), tuple(stds),
                   tuple(vocabularies))  # fmt: skip

    def transform(self, data: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """The design matrix and, for each of its columns, the column it came from."""
        parts, owners = [], []
        for name, mean, std in zip(self.numeric, self.means, self.stds, strict=True):
            values = data[name].astype(float)
            values = np.where(np.isfinite(values), values, mean)
            parts.append(((values - mean) / std)[:, None])
            owners.append(name)
        for name, vocabulary in zip(self.categorical, self.vocabularies, strict=True):
            values = data[name].astype(str)
            for category in vocabulary:
                parts.append((values == category).astype(float)[:, None])
                owners.append(name)
        n = len(next(iter(data.values()))) if data else 0
        matrix = np.hstack(parts) if parts else np.zeros((n, 0))
        return matrix, owners


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any],
           columns: Sequence[str]) -> dict[str, np.ndarray]:  # fmt: skip
    rows = con.execute(sql, params).fetchall()
    data = {}
    for i, name in enumerate(columns):
        data[name] = np.array([r[i] for r in rows], dtype=object)
    return data


def _as_float(values: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def sample_window(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    columns: Sequence[tuple[str, str]],
    start: Any,
    end: Any,
    rows: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """A seeded sample of up to `rows` current rows of a window (same seed, same rows)."""
    select = _select(columns)
    sql = (
        f"select {select} from {quote_ident(schema)}.evaluated where day between ? and ? "
        "order by hash(source_file_id, source_line, ?), source_file_id, source_line limit ?"
    )
    data = _fetch(con, sql, [start, end, seed, rows], [name for name, _ in columns])
    return _typed(data, columns)


def sample_reference(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    columns: Sequence[tuple[str, str]],
    rows: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """A seeded sample of up to `rows` reference rows, with the flat table's column names."""
    select = _select(columns)
    sql = (
        f"select {select} from {quote_ident(schema)}.reference "
        "order by hash(rowid, ?), rowid limit ?"
    )
    data = _fetch(con, sql, [seed, rows], [name for name, _ in columns])
    return _typed(data, columns)


def _typed(
    data: dict[str, np.ndarray], columns: Sequence[tuple[str, str]]
) -> dict[str, np.ndarray]:
    for name, kind in columns:
        data[name] = (
            _as_float(data[name])
            if kind == "numeric"
            else np.array(["" if v is None else str(v) for v in data[name]], dtype=object)
        )
    return data


def _select(columns: Sequence[tuple[str, str]]) -> str:
    """Columns as the flat table holds them: numbers as doubles, categories as text."""
    return ", ".join(
        f"cast({quote_ident(name)} as {'double' if kind == 'numeric' else 'varchar'})"
        for name, kind in columns
    )


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion, as scipy's binomtest gives it."""
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def fit_drift_model(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    columns: Sequence[tuple[str, str]],
    *,
    confidence: float,
    seed: int,
) -> DriftModelResult | None:
    """Train the domain classifier on balanced samples; None when a side is too small."""
    from scipy.stats import binomtest
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    n = min(len(next(iter(reference.values()))), len(next(iter(current.values()))))
    if n < 10 or not columns:
        return None
    rng = np.random.default_rng(seed)
    pick_ref = rng.permutation(len(next(iter(reference.values()))))[:n]
    pick_cur = rng.permutation(len(next(iter(current.values()))))[:n]
    both = {name: np.concatenate([reference[name][pick_ref], current[name][pick_cur]])
            for name, _ in columns}  # fmt: skip
    target = np.concatenate([np.zeros(n), np.ones(n)])
    index_train, index_test = train_test_split(
        np.arange(2 * n), test_size=TEST_SHARE, random_state=seed, stratify=target
    )
    numeric = [name for name, kind in columns if kind == "numeric"]
    categorical = [name for name, kind in columns if kind == "categorical"]
    train = {k: v[index_train] for k, v in both.items()}
    test = {k: v[index_test] for k, v in both.items()}
    encoder = Encoder.fit(train, numeric, categorical)
    x_train, owners = encoder.transform(train)
    x_test, _ = encoder.transform(test)
    forest = RandomForestClassifier(
        n_estimators=TREES, max_depth=DEPTH, random_state=seed, n_jobs=1
    )
    forest.fit(x_train, target[index_train])
    correct = int((forest.predict(x_test) == target[index_test]).sum())
    trials = len(index_test)
    low, high = wilson_interval(correct, trials, confidence)
    pvalue = float(binomtest(correct, trials, 0.5, alternative="greater").pvalue)
    importance: dict[str, float] = {name: 0.0 for name, _ in columns}
    for owner, value in zip(owners, forest.feature_importances_, strict=True):
        importance[owner] += float(value)
    return DriftModelResult(
        sample_rows=2 * n,
        test_rows=trials,
        accuracy=correct / trials,
        accuracy_low=low,
        accuracy_high=high,
        pvalue=pvalue,
        confidence=confidence,
        drift_detected=pvalue <= 1 - confidence,
        seed=seed,
        importance=importance,
    )


def surrogate_importance(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    columns: Sequence[tuple[str, str]],
    target: str,
    rows: int,
    seed: int,
) -> dict[str, float]:
    """The deployed model's importance of each column, from a surrogate of its target."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    data = sample_reference(con, schema, [*columns, (target, "target")], rows, seed)
    labels = data.pop(target)
    if len(labels) < 10:
        return {}
    numeric = [name for name, kind in columns if kind == "numeric"]
    categorical = [name for name, kind in columns if kind == "categorical"]
    encoder = Encoder.fit(data, numeric, categorical)
    matrix, owners = encoder.transform(data)
    values = _as_float(np.array(labels, dtype=object)) if _numeric_target(labels) else None
    if values is not None and len(np.unique(values[np.isfinite(values)])) > 20:
        model: Any = RandomForestRegressor(
            n_estimators=TREES, max_depth=DEPTH, random_state=seed, n_jobs=1
        )
        keep = np.isfinite(values)
        model.fit(matrix[keep], values[keep])
    else:
        model = RandomForestClassifier(
            n_estimators=TREES, max_depth=DEPTH, random_state=seed, n_jobs=1
        )
        model.fit(matrix, np.array([str(v) for v in labels]))
    importance: dict[str, float] = {name: 0.0 for name, _ in columns}
    for owner, value in zip(owners, model.feature_importances_, strict=True):
        importance[owner] += float(value)
    return importance


def _numeric_target(labels: np.ndarray) -> bool:
    try:
        [float(v) for v in labels if v not in (None, "")]
    except (TypeError, ValueError):
        return False
    return True
