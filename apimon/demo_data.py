"""A seeded month of fraud-detection API traffic in the Event-server layout, with its reference.

The story, so that commands and tests know what to find: a first model version serves the
first half of the month, a new one the second half (the old one keeps a few percent of the
traffic for two more days); transaction amounts grow steadily; from about day 22 the payment
mix shifts toward TRANSFER and a CRYPTO payment type that training never saw appears. About
1 % of queries are ignored, 0.5 % fail, a few values are null or of the wrong type, and a few
lines are malformed in the ways an ingester must quarantine.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from apimon.errors import ApimonError

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

EVENTS_TOPIC = "apinode-query"
ROUTING_KEY = "fraud-detection-on-api-prod"
PROJECT_KEY = "FRAUD"
SAVED_MODEL_ID = "aBcD1234"
OLD_VERSION = "1700000000000"
NEW_VERSION = "1710000000000"
POSITIVE_CLASS = "FRAUDULENT"
NEGATIVE_CLASS = "NOT_FRAUDULENT"
# The API node logs the amount as `amount`; the model's config renames it for training.
AMOUNT_LOG_NAME = "amount"
AMOUNT_COLUMN = "transaction_amount"
REFERENCE_COLUMNS = (
    AMOUNT_COLUMN,
    "customer_age",
    "distance_from_home",
    "payment_type",
    "merchant_category",
    "card_present",
    "is_fraud",
    "prediction",
    f"proba_{POSITIVE_CLASS}",
    f"proba_{NEGATIVE_CLASS}",
)

PAYMENT_TYPES = ("CB", "PAYPAL", "TRANSFER", "CHEQUE", "CRYPTO")
_PAYMENT_SHARES = np.array([0.55, 0.20, 0.15, 0.10, 0.0])
_PAYMENT_SHARES_AFTER_SHIFT = np.array([0.33, 0.12, 0.42, 0.08, 0.05])
MERCHANT_CATEGORIES = (
    "grocery",
    "electronics",
    "restaurants",
    "travel",
    "fuel",
    "clothing",
    "entertainment",
    "health",
    "online_services",
    "home_garden",
)
_MERCHANT_SHARES = np.array([18, 14, 12, 11, 10, 9, 8, 7, 6, 5]) / 100

# One logistic model is both the true fraud process and, with a little noise on its logit,
# the deployed model. CRYPTO was never seen in training, so the model gives it no effect;
# the last merchant effect (0) belongs to a missing category, which is stored as index -1.
_INTERCEPT = -4.75
_LOG_AMOUNT_CENTRE = 3.8
_COEF_LOG_AMOUNT = 0.9
_COEF_LOG_DISTANCE = 0.5
_COEF_YOUNG = 0.9
_COEF_OLD = 0.6
_COEF_CARD_PRESENT = -1.6
_PAYMENT_EFFECTS = np.array([0.0, 0.5, 1.2, -0.4, 0.0])
_MERCHANT_EFFECTS = np.array([-0.8, 0.9, -0.3, 0.7, -0.6, 0.1, 0.3, -0.4, 1.0, 0.5, 0.0])
_MODEL_NOISE = 0.3
_DECISION_THRESHOLD = 0.25

_AMOUNT_GROWTH = 0.6  # amounts are 60 % higher at the end of the month than at its start
_CANARY_DAYS = 2
_CANARY_SHARE = 0.04
_IGNORED_SHARE = 0.01
_FAILED_SHARE = 0.005
_BATCHED_SHARE = 0.08
_SPLIT_HOUR_SHARE = 0.1
_GZIP_SHARE = 0.25
_ROWS_PER_MALFORMED_LINE = 20_000
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 24 * _MS_PER_HOUR

_API_NODES = ("10.0.0.7", "10.0.0.8")
_CLIENT_IPS = ("203.0.113.10", "203.0.113.11", "198.51.100.23", "198.51.100.40", "192.0.2.5")
_CLIENT_SHARES = np.array([0.45, 0.25, 0.15, 0.10, 0.05])
_FAILURES = (
    ("java.util.concurrent.TimeoutException", "Scoring did not finish within 30000 ms"),
    ("java.lang.IllegalStateException", "Model S-FRAUD-aBcD1234 is being reloaded, retry later"),
)
_NOT_JSON_LINES = (
    "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "clientEvent=[payload of 2113 bytes dropped: connection reset by peer]",
)
_TIMING_KEYS = ("preProcessing", "wait", "enrich", "preparation", "prediction", "postProcessing")
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


@dataclass(frozen=True)
class DemoStory:
    """What the generated month contains, so that commands and tests can check what they find."""

    first_day: date  # UTC, like every date here
    last_day: date
    rows: int  # prediction queries written, ignored and failed ones included
    malformed_lines: int  # lines an ingester must quarantine, not counted in rows
    version_change_day: date  # first day served by the new model version
    old_version: str
    new_version: str
    gradual_drift: tuple[str, ...]  # training column names
    sudden_drift: tuple[str, ...]
    sudden_drift_day: date
    files: int  # event files written (the reference parquet not included)


def generate_demo_data(
    project_dir: Path,
    rows: int = 100_000,
    *,
    seed: int = 42,
    end_day: date | None = None,
    days: int = 30,
) -> DemoStory:
    """Replace project_dir/data with `days` days of logged queries ending on end_day."""
    if rows < 100:
        raise ApimonError(f"the demo needs at least 100 rows, not {rows}: ask for more rows")
    if days < 3:
        raise ApimonError(f"the demo needs at least 3 days, not {days}: ask for more days")
    last_day = end_day or datetime.now(UTC).date() - timedelta(days=1)
    first_day = last_day - timedelta(days=days - 1)
    version_change_day = first_day + timedelta(days=days // 2)
    sudden_drift_day = first_day + timedelta(days=days * 7 // 10)
    reference_rng, query_rng, layout_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3)
    )

    data_dir = project_dir / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    model = _write_reference(reference_rng, max(5000, rows // 5), data_dir / "reference.parquet")

    queries = _Queries.draw(
        query_rng, model, rows, first_day, days, version_change_day, sudden_drift_day
    )
    lines = queries.encode(query_rng)
    root = data_dir / "events" / EVENTS_TOPIC / ROUTING_KEY
    files, malformed = _write_events(layout_rng, root, queries.times_ms, lines, first_day, days)
    return DemoStory(
        first_day=first_day,
        last_day=last_day,
        rows=rows,
        malformed_lines=malformed,
        version_change_day=version_change_day,
        old_version=OLD_VERSION,
        new_version=NEW_VERSION,
        gradual_drift=(AMOUNT_COLUMN,),
        sudden_drift=("payment_type",),
        sudden_drift_day=sudden_drift_day,
        files=files,
    )


@dataclass(frozen=True)
class _Features:
    """Feature columns; NaN marks a missing number and -1 a missing merchant category."""

    amount: Floats
    age: Floats
    distance: Floats
    payment: Ints
    merchant: Ints
    card_present: Bools


@dataclass(frozen=True)
class _Model:
    """The deployed model: its imputation values and the reference probabilities."""

    mean_age: float
    mean_distance: float
    sorted_reference_probas: Floats

    def proba(self, rng: np.random.Generator, features: _Features) -> Floats:
        """Return the model's fraud probability of each record, missing numbers imputed."""
        age = np.where(np.isnan(features.age), self.mean_age, features.age)
        distance = np.where(np.isnan(features.distance), self.mean_distance, features.distance)
        logit = _true_logit(features, age, distance) + rng.normal(0.0, _MODEL_NOISE, age.size)
        return np.round(1.0 / (1.0 + np.exp(-logit)), 6)

    def percentile(self, proba: Floats) -> Ints:
        """Return the 1..100 percentile of each probability among the reference ones."""
        ranks = np.searchsorted(self.sorted_reference_probas, proba, side="right")
        percent = np.ceil(ranks * 100 / self.sorted_reference_probas.size)
        return np.clip(percent, 1, 100).astype(np.int64)


def _true_logit(features: _Features, age: Floats, distance: Floats) -> Floats:
    """Return the log-odds of fraud of each record, given ages and distances without NaN."""
    logit: Floats = (
        _INTERCEPT
        + _COEF_LOG_AMOUNT * (np.log(features.amount) - _LOG_AMOUNT_CENTRE)
        + _COEF_LOG_DISTANCE * np.log1p(distance)
        + _COEF_YOUNG * (age < 25)
        + _COEF_OLD * (age > 75)
        + _COEF_CARD_PRESENT * features.card_present
        + _PAYMENT_EFFECTS[features.payment]
        + _MERCHANT_EFFECTS[features.merchant]
    )
    return logit


def _draw_categories(rng: np.random.Generator, shares: Floats) -> Ints:
    """Draw one category index per row from that row's shares (rows by categories)."""
    cumulative = np.cumsum(shares, axis=1)
    draws = rng.random((shares.shape[0], 1)) * cumulative[:, -1:]
    picks: Ints = np.minimum((draws >= cumulative).sum(axis=1), shares.shape[1] - 1)
    return picks.astype(np.int64)


def _draw_features(rng: np.random.Generator, amount_growth: Floats, shifted: Bools) -> _Features:
    """Draw features; amounts are scaled by amount_growth, shifted rows get the new payment mix."""
    n = amount_growth.size
    amount = np.round(rng.lognormal(_LOG_AMOUNT_CENTRE, 1.0, n) * amount_growth, 2)
    age = np.clip(np.round(rng.normal(44.0, 15.0, n)), 18, 90)
    distance = np.round(rng.lognormal(1.6, 1.2, n), 3)
    payment_shares = np.where(shifted[:, None], _PAYMENT_SHARES_AFTER_SHIFT, _PAYMENT_SHARES)
    payment = _draw_categories(rng, payment_shares)
    merchant = _draw_categories(rng, np.broadcast_to(_MERCHANT_SHARES, (n, 10)))
    card_present = (payment == 0) & (rng.random(n) < 0.65)
    return _Features(np.maximum(amount, 0.01), age, distance, payment, merchant, card_present)


def _write_reference(rng: np.random.Generator, n: int, path: Path) -> _Model:
    """Write the training set, scored by the model trained on it, and return that model."""
    features = _draw_features(rng, np.ones(n), np.zeros(n, dtype=np.bool_))
    logit = _true_logit(features, features.age, features.distance)
    is_fraud = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    # The reference probabilities are only known once the model has scored the reference.
    model = _Model(float(features.age.mean()), float(features.distance.mean()), np.zeros(1))
    proba = model.proba(rng, features)

    table = pa.table(
        {
            AMOUNT_COLUMN: features.amount,
            "customer_age": features.age.astype(np.int64),
            "distance_from_home": features.distance,
            "payment_type": np.array(PAYMENT_TYPES)[features.payment],
            "merchant_category": np.array(MERCHANT_CATEGORIES)[features.merchant],
            "card_present": features.card_present,
            "is_fraud": is_fraud,
            "prediction": np.where(proba >= _DECISION_THRESHOLD, POSITIVE_CLASS, NEGATIVE_CLASS),
            f"proba_{POSITIVE_CLASS}": proba,
            f"proba_{NEGATIVE_CLASS}": np.round(1.0 - proba, 6),
        }
    )
    pq.write_table(table, path)
    return dataclasses.replace(model, sorted_reference_probas=np.sort(proba))


@dataclass(frozen=True)
class _Queries:
    """Every logged query in time order, one array entry per record."""

    times_ms: Ints  # since the first midnight
    first_day_ms: int
    new_version: Bools
    batch_size: Ints
    batch_idx: Ints
    api_node: Ints
    client: Ints
    features: _Features
    proba: Floats
    percentile: Ints
    status: Ints  # 0 answered, 1 ignored, 2 failed
    bad_ages: Ints
    timings: Ints

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        model: _Model,
        rows: int,
        first_day: date,
        days: int,
        version_change_day: date,
        sudden_drift_day: date,
    ) -> _Queries:
        """Draw the calls (times, versions, callers), then their records and answers."""
        sizes = _batch_sizes(rng, rows)
        calls = sizes.size
        call_ms = np.sort(_call_offsets_ms(rng, calls, first_day, days))
        call_day = call_ms // _MS_PER_DAY
        change = (version_change_day - first_day).days
        in_canary = (call_day >= change) & (call_day < change + _CANARY_DAYS)
        old_lingers = in_canary & (rng.random(calls) < _CANARY_SHARE)
        call_new_version = (call_day >= change) & ~old_lingers
        api_node = rng.integers(0, len(_API_NODES), calls)
        client = _draw_categories(rng, np.broadcast_to(_CLIENT_SHARES, (calls, 5)))

        call_of_row = np.repeat(np.arange(calls), sizes)
        starts = np.cumsum(sizes) - sizes
        times_ms = call_ms[call_of_row]
        shifted = times_ms // _MS_PER_DAY >= (sudden_drift_day - first_day).days
        growth = 1.0 + _AMOUNT_GROWTH * times_ms / (days * _MS_PER_DAY)
        features = _draw_features(rng, growth, shifted)
        bad_ages = _spoil_features(rng, features, rows)
        proba = model.proba(rng, features)

        draws = rng.random(rows)
        status = (draws < _IGNORED_SHARE + _FAILED_SHARE).astype(np.int64)
        status += draws < _FAILED_SHARE
        midnight = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
        return cls(
            times_ms=times_ms,
            first_day_ms=int(midnight.timestamp()) * 1000,
            new_version=call_new_version[call_of_row],
            batch_size=sizes[call_of_row],
            batch_idx=np.arange(rows) - starts[call_of_row],
            api_node=api_node[call_of_row],
            client=client[call_of_row],
            features=features,
            proba=proba,
            percentile=model.percentile(proba),
            status=status,
            bad_ages=bad_ages,
            timings=_draw_timings(rng, rows),
        )

    def _feature_columns(self) -> Iterator[tuple[Any, ...]]:
        """Yield each record's logged features (amount, age, distance, payment, merchant, card)."""
        f = self.features
        ages = np.nan_to_num(f.age).astype(np.int64).astype(object)
        ages[self.bad_ages] = "unknown"
        distances = f.distance.astype(object)
        distances[np.isnan(f.distance)] = None
        merchants = np.array([*MERCHANT_CATEGORIES, None], dtype=object)[f.merchant]
        payments = np.array(PAYMENT_TYPES, dtype=object)[f.payment]
        return zip(
            f.amount.tolist(),
            ages.tolist(),
            distances.tolist(),
            payments.tolist(),
            merchants.tolist(),
            f.card_present.tolist(),
            strict=True,
        )

    def encode(self, rng: np.random.Generator) -> list[str]:
        """Return the Event-server line of every record, in time order."""
        stamps = np.datetime_as_string(
            (self.times_ms + self.first_day_ms).astype("datetime64[ms]"), unit="ms"
        )
        predictions = np.where(self.proba >= _DECISION_THRESHOLD, POSITIVE_CLASS, NEGATIVE_CLASS)
        request_hex = rng.bytes(16 * self.times_ms.size).hex()
        saved_models = (_saved_model(OLD_VERSION), _saved_model(NEW_VERSION))
        ignored = {"ignored": True, "ignoreReason": "IGNORED_BY_MODEL"}
        records = zip(
            stamps.tolist(),
            self.new_version.tolist(),
            self.batch_size.tolist(),
            self.batch_idx.tolist(),
            self._feature_columns(),
            self.status.tolist(),
            predictions.tolist(),
            self.proba.tolist(),
            self.percentile.tolist(),
            self.timings.tolist(),
            self.client.tolist(),
            self.api_node.tolist(),
            strict=True,
        )

        lines = []
        for i, record in enumerate(records):
            stamp, new, size, idx, feats, status, pred, proba, pct, timing, client, node = record
            amount, age, distance, payment, merchant, card = feats
            message: dict[str, object] = {
                "msgType": "prediction-query",
                "apinodeQueryType": "prediction",
                "serviceId": "fraud_detection",
                "endpointId": "predict_fraud",
                "serviceGenerationId": "v2" if new else "v1",
                "batchSize": size,
                "batchIdx": idx,
                "savedModel": saved_models[new],
                "features": {
                    AMOUNT_LOG_NAME: amount,
                    "customer_age": age,
                    "distance_from_home": distance,
                    "payment_type": payment,
                    "merchant_category": merchant,
                    "card_present": card,
                },
            }
            if status == 0:
                message["result"] = {
                    "prediction": pred,
                    "probaPercentile": pct,
                    "probas": {POSITIVE_CLASS: proba, NEGATIVE_CLASS: round(1.0 - proba, 6)},
                    "ignored": False,
                }
            elif status == 1:
                message["result"] = ignored
            else:
                message["result"] = "failure"
                message["errorType"], message["errorMsg"] = _FAILURES[i % len(_FAILURES)]
            message["timing"] = dict(zip(_TIMING_KEYS, timing, strict=True))
            message["userContext"] = {"request_id": _request_id(request_hex[32 * i : 32 * i + 32])}
            message["clientIP"] = _CLIENT_IPS[client]
            envelope = {
                "clientEvent": message,
                "origAddress": _API_NODES[node],
                "serverTimestamp": stamp + "+0000",
            }
            lines.append(_ENCODER.encode(envelope))
        return lines


def _saved_model(version: str) -> dict[str, str]:
    """Return the savedModel object that the API node logs for one model version."""
    return {
        "projectKey": PROJECT_KEY,
        "savedModelId": SAVED_MODEL_ID,
        "modelVersion": version,
        "fullModelId": f"S-{PROJECT_KEY}-{SAVED_MODEL_ID}-{version}",
    }


def _request_id(hex32: str) -> str:
    """Format 32 hex digits as a UUID-shaped request id."""
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _batch_sizes(rng: np.random.Generator, rows: int) -> Ints:
    """Return the record count of each call: mostly 1, sometimes 2..5, adding up to rows."""
    sizes = np.where(rng.random(rows) < _BATCHED_SHARE, rng.integers(2, 6, rows), 1)
    ends = np.cumsum(sizes)
    calls = int(np.searchsorted(ends, rows)) + 1
    sizes = sizes[:calls].astype(np.int64)
    sizes[-1] -= ends[calls - 1] - rows
    return sizes


def _call_offsets_ms(rng: np.random.Generator, calls: int, first_day: date, days: int) -> Ints:
    """Draw call times in ms after the first midnight: busy in UTC afternoons, calm at weekends."""
    hour_of_day = np.tile(np.arange(24), days)
    weekday = np.repeat((first_day.weekday() + np.arange(days)) % 7, 24)
    daily = 0.2 + np.exp(-0.5 * ((hour_of_day - 14) / 4.0) ** 2)
    weights = daily * np.where(weekday >= 5, 0.6, 1.0)
    hours = rng.choice(days * 24, size=calls, p=weights / weights.sum())
    offsets: Ints = hours * _MS_PER_HOUR + rng.integers(0, _MS_PER_HOUR, calls)
    return offsets


def _spoil_features(rng: np.random.Generator, features: _Features, rows: int) -> Ints:
    """Blank a few values in place and return the sorted rows whose age is logged as a string."""
    features.distance[rng.choice(rows, max(2, rows // 1000), replace=False)] = np.nan
    features.merchant[rng.choice(rows, max(1, rows // 2000), replace=False)] = -1
    bad_ages = np.sort(rng.choice(rows, 3 + rows // 25_000, replace=False))
    features.age[bad_ages] = np.nan
    return bad_ages


def _draw_timings(rng: np.random.Generator, rows: int) -> Ints:
    """Draw the six step durations of each record in microseconds (rows by steps)."""
    prediction = 900.0 * rng.lognormal(0.0, 0.18, rows)
    tail = rng.random(rows) < 0.03
    prediction[tail] *= 1.0 + 2.0 * rng.pareto(1.5, int(tail.sum()))
    wait = rng.geometric(0.35, rows) - 1.0
    queued = rng.random(rows) < 0.005
    wait[queued] += rng.lognormal(np.log(2000.0), 0.8, int(queued.sum()))
    steps = np.column_stack(
        [
            rng.lognormal(np.log(12.0), 0.4, rows),
            wait,
            np.zeros(rows),
            rng.lognormal(np.log(150.0), 0.3, rows),
            prediction,
            rng.lognormal(np.log(20.0), 0.3, rows),
        ]
    )
    return np.round(steps).astype(np.int64)


def _malformed_from(rng: np.random.Generator, kind: int, line: str) -> str:
    """Return a malformed line of one kind (not JSON, no timestamp, string event) after line."""
    if kind == 0:
        return _NOT_JSON_LINES[int(rng.integers(len(_NOT_JSON_LINES)))]
    envelope = json.loads(line)
    envelope["clientEvent"]["userContext"]["request_id"] = _request_id(rng.bytes(16).hex())
    if kind == 1:
        del envelope["serverTimestamp"]
    else:
        envelope["clientEvent"] = _ENCODER.encode(envelope["clientEvent"])
    return _ENCODER.encode(envelope)


def _write_events(
    rng: np.random.Generator,
    root: Path,
    times_ms: Ints,
    lines: list[str],
    first_day: date,
    days: int,
) -> tuple[int, int]:
    """Write the lines into hour folders, add the malformed ones; return (files, malformed)."""
    rows = len(lines)
    row_hour = times_ms // _MS_PER_HOUR
    bounds = np.searchsorted(row_hour, np.arange(days * 24 + 1)).tolist()

    # One line is cut mid-record at the end of the last file of a day that is not the last.
    row_day = times_ms // _MS_PER_DAY
    cut_day = int(rng.choice(np.unique(row_day[row_day < days - 1])))
    cut_hour = int(row_hour[row_day == cut_day].max())
    extra = max(5, rows // _ROWS_PER_MALFORMED_LINE) - 1
    after_rows = np.sort(rng.choice(rows, extra, replace=False)).tolist()
    inserted: dict[int, list[str]] = {}
    for k, row in enumerate(after_rows):
        inserted.setdefault(row, []).append(_malformed_from(rng, k % 3, lines[row]))

    split = rng.random(days * 24) < _SPLIT_HOUR_SHARE
    split_at = rng.random(days * 24)
    gzipped = rng.random((days * 24, 2)) < _GZIP_SHARE
    files = 0
    midnight = datetime(first_day.year, first_day.month, first_day.day)
    for hour in range(days * 24):
        start, end = bounds[hour], bounds[hour + 1]
        if start == end:
            continue
        hour_lines = lines[start:end]
        for row in reversed([r for r in after_rows if start <= r < end]):
            hour_lines[row - start + 1 : row - start + 1] = inserted.pop(row)
        chunks = [hour_lines]
        if split[hour] and len(hour_lines) > 1:
            cut = 1 + int(split_at[hour] * (len(hour_lines) - 1))
            chunks = [hour_lines[:cut], hour_lines[cut:]]
        folder = root / (midnight + timedelta(hours=hour)).strftime("%Y/%m/%d/%H")
        folder.mkdir(parents=True)
        for n, chunk in enumerate(chunks):
            text = "\n".join(chunk) + "\n"
            is_cut = hour == cut_hour and n == len(chunks) - 1
            if is_cut:
                text += lines[end - 1][: len(lines[end - 1]) * 3 // 5]
            data = text.encode()
            if gzipped[hour, n] and not is_cut:
                path = folder / f"events-{n}.log.gz"
                path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))
            else:
                path = folder / f"events-{n}.log"
                path.write_bytes(data)
            # A file was last written at the end of its hour, as an Event server leaves it.
            closed = (midnight + timedelta(hours=hour + 1)).replace(tzinfo=UTC).timestamp()
            os.utime(path, (closed, closed))
            files += 1
    return files, extra + 1
