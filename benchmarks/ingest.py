"""Ingest speed and memory: apimon beside DuckDB's own `read_json` of the same files.

    python benchmarks/ingest.py [--lines 1000000] [--envelope event-server ...] [--no-gzip]

For each envelope (event server, log4j, SageMaker capture), plain and gzip, it writes
`--lines` log lines over 24 hourly files, then in a fresh child process each:
- apimon: `ingest()` into a new warehouse (parse, type, quarantine check, ledger, commit);
- duckdb: `create table t as select * from read_json(files)` into a new database file.
It prints rows/s, peak memory (the child's max RSS) and apimon's speed as a share of
DuckDB's. Run it by hand; figures depend on the machine, compare the ratios.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ENVELOPES = ("event-server", "log4j", "sagemaker")
FILES = 24


def _message(i: int) -> dict[str, object]:
    version = "1700000000000" if i % 3 else "1710000000000"
    return {
        "msgType": "prediction-query",
        "apinodeQueryType": "prediction",
        "serviceId": "fraud_detection",
        "endpointId": "predict_fraud",
        "serviceGenerationId": "v3",
        "batchSize": 1,
        "batchIdx": 0,
        "savedModel": {
            "projectKey": "FRAUD",
            "savedModelId": "aBcD1234",
            "modelVersion": version,
            "fullModelId": f"S-FRAUD-aBcD1234-{version}",
        },
        "features": {
            "transaction_amount": round(10 + (i * 7919 % 100000) / 100, 2),
            "customer_age": 18 + i % 70,
            "payment_type": ("CB", "PAYPAL", "TRANSFER", "CHEQUE")[i % 4],
            "merchant_category": f"m{i % 10}",
            "distance_from_home": (i * 31 % 1000) / 10,
        },
        "result": {
            "prediction": "FRAUDULENT" if i % 20 == 0 else "NOT_FRAUDULENT",
            "probaPercentile": i % 100,
            "probas": {"FRAUDULENT": (i % 100) / 100, "NOT_FRAUDULENT": 1 - (i % 100) / 100},
            "ignored": False,
        },
        "timing": {
            "preProcessing": 12,
            "wait": 3,
            "enrich": 0,
            "preparation": 150,
            "prediction": 900 + i % 300,
            "postProcessing": 20,
        },
        "userContext": {"request_id": f"req-{i}"},
        "clientIP": f"10.0.0.{i % 50}",
    }


def _line(envelope: str, i: int, hour: int) -> str:
    message = _message(i)
    second = i % 3600
    stamp = f"2026-11-02T{hour:02d}:{second // 60:02d}:{second % 60:02d}"
    if envelope == "event-server":
        record: dict[str, object] = {
            "clientEvent": message,
            "origAddress": "10.0.0.7",
            "serverTimestamp": stamp + ".123+0000",
        }
    elif envelope == "log4j":
        record = {
            "timestamp": stamp.replace("-", "/").replace("T", "-") + ".123Z",
            "logger": "dku.apinode.audit.queries",
            "severity": "INFO",
            "message": message,
        }
    else:
        features = json.dumps({"features": message["features"]})
        output = json.dumps({"prediction": 1, "probabilities": [0.2, 0.8]})
        record = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "application/json",
                    "mode": "INPUT",
                    "data": base64.b64encode(features.encode()).decode() if i % 2 else features,
                    "encoding": "BASE64" if i % 2 else "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": output,
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": f"e-{i}", "inferenceTime": stamp + "Z"},
            "eventVersion": "0",
        }
    return json.dumps(record)


def write_logs(root: Path, envelope: str, lines: int, compress: bool) -> Path:
    """Write `lines` lines of one envelope in the layout its source expects."""
    if envelope == "sagemaker":
        base = root / "capture" / "fraud-endpoint" / "AllTraffic"
    else:
        base = root / "events" / "apinode-query" / "fraud-on-prod"
    per_file = -(-lines // FILES)
    for hour in range(FILES):
        folder = base / "2026" / "11" / "02" / f"{hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        start = hour * per_file
        text = "".join(
            _line(envelope, i, hour) + "\n" for i in range(start, min(lines, start + per_file))
        )
        path = folder / ("part.log.gz" if compress else "part.log")
        if compress:
            with gzip.open(path, "wt", compresslevel=1) as handle:
                handle.write(text)
        else:
            path.write_text(text)
    return base


APIMON_CHILD = textwrap.dedent(
    """
    import sys, time
    from apimon.config import parse_project
    from pathlib import Path
    root = Path(sys.argv[1])
    project = parse_project(root, (root / "apimon.toml").read_text())
    from apimon.ingest import ingest
    start = time.perf_counter()
    report = ingest(project)
    elapsed = time.perf_counter() - start
    assert report.quarantined == 0, report.as_dict()
    print(report.loaded, elapsed)
    """
)

DUCKDB_CHILD = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1] + "/raw.duckdb")
    con.execute("set enable_progress_bar = false")
    start = time.perf_counter()
    con.execute("create table t as select * from read_json(?, format='newline_delimited')",
                [sys.argv[2] + "/**/part.log*"])
    elapsed = time.perf_counter() - start
    print(con.execute("select count(*) from t").fetchone()[0], elapsed)
    """
)


def _child(code: str, *args: str) -> tuple[int, float, float]:
    """Run one measurement in a fresh process: (rows, seconds, peak resident MiB)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read().split()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"benchmark child failed with status {status}")
    return int(out[0]), float(out[1]), usage.ru_maxrss / 1024


def measure(work: Path, envelope: str, lines: int, compress: bool) -> dict[str, float]:
    case = work / f"{envelope}-{'gz' if compress else 'plain'}"
    case.mkdir()
    base = write_logs(case, envelope, lines, compress)
    (case / "apimon.toml").write_text(
        f'database = "apimon.duckdb"\n[[sources]]\npath = "{base.relative_to(case)}"\n'
        f'format = "{envelope}"\n'
    )
    rows, seconds, apimon_peak = _child(APIMON_CHILD, str(case))
    raw_rows, raw_seconds, raw_peak = _child(DUCKDB_CHILD, str(case), str(base))
    shutil.rmtree(case)
    return {
        "rows": rows,
        "apimon_s": seconds,
        "apimon_rows_s": rows / seconds,
        "apimon_peak_mib": apimon_peak,
        "duckdb_rows": raw_rows,
        "duckdb_s": raw_seconds,
        "duckdb_rows_s": raw_rows / raw_seconds,
        "duckdb_peak_mib": raw_peak,
        "speed_ratio": (rows / seconds) / (raw_rows / raw_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--envelope", action="append", choices=ENVELOPES)
    parser.add_argument("--no-gzip", action="store_true")
    args = parser.parse_args()
    envelopes = args.envelope or list(ENVELOPES)
    header = (
        f"{'case':<20}{'rows':>10}{'apimon rows/s':>15}{'peak MiB':>10}"
        f"{'duckdb rows/s':>15}{'peak MiB':>10}{'ratio':>8}"
    )
    print(f"apimon ingest vs duckdb read_json, {args.lines:,} lines per case")
    print(header)
    with tempfile.TemporaryDirectory(prefix="apimon-bench-") as tmp:
        for envelope in envelopes:
            for compress in (False,) if args.no_gzip else (False, True):
                start = time.perf_counter()
                r = measure(Path(tmp), envelope, args.lines, compress)
                name = f"{envelope}{' gz' if compress else ''}"
                print(
                    f"{name:<20}{r['rows']:>10,}{r['apimon_rows_s']:>15,.0f}"
                    f"{r['apimon_peak_mib']:>10,.0f}{r['duckdb_rows_s']:>15,.0f}"
                    f"{r['duckdb_peak_mib']:>10,.0f}{r['speed_ratio']:>8.2f}",
                    flush=True,
                )
                print(f"  (case took {time.perf_counter() - start:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
