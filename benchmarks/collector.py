"""Event collector speed on loopback: sustained events/s and request latency, batches of 1 and 100.

    python benchmarks/collector.py [--seconds 5] [--concurrency 16] [--max-requests 200000]

It writes a temporary project, starts the real server (`python -m apimon.collector`) as a
subprocess on 127.0.0.1 and, for each case, posts as fast as it can over keep-alive
connections for at most `--seconds` (never more than 20) and at most `--max-requests`:
- 1 event per request, 1 connection: every request waits for its own fsync;
- 1 event per request, `--concurrency` connections: requests share fsyncs (group commit);
- 100 events per request, 1 and `--concurrency / 4` connections.
It prints events/s, requests/s, p50/p99 latency at that rate, requests per commit (from
`/stats`), the disk's own write+fsync rate in the same folder, and ratios; then checks that
the files hold exactly the events acknowledged. Figures depend on the machine and its disk;
compare the ratios. Load generator and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

MAX_SECONDS = 20.0
SERVE = (sys.executable, "-m", "apimon.collector")


@dataclass
class Result:
    name: str
    connections: int
    batch: int
    seconds: float
    requests: int
    events: int
    errors: int
    p50_ms: float
    p99_ms: float
    commits: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds


def _event(i: int) -> dict[str, object]:
    return {
        "msgType": "prediction-query",
        "apinodeQueryType": "prediction",
        "serviceId": "fraud_detection",
        "endpointId": "predict_fraud",
        "savedModel": {"modelVersion": "1700000000000"},
        "features": {"transaction_amount": round(10 + i * 0.37, 2), "payment_type": "CB"},
        "result": {"prediction": "NOT_FRAUDULENT", "probas": {"FRAUDULENT": 0.1}},
        "timing": {"preparation": 150, "prediction": 900 + i % 300},
        "userContext": {"request_id": f"bench-{i}"},
    }


def _bodies(batch: int, count: int = 64) -> list[bytes]:
    return [
        "".join(json.dumps(_event(b * batch + i)) + "\n" for i in range(batch)).encode()
        for b in range(count)
    ]


def _percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(share * len(sorted_values)))
    return sorted_values[index]


async def _stats(session: aiohttp.ClientSession, base: str) -> dict[str, int]:
    async with session.get(f"{base}/stats") as response:
        data: dict[str, int] = await response.json()
        return data


async def _case(
    base: str, name: str, batch: int, connections: int, seconds: float, max_requests: int
) -> Result:
    bodies = _bodies(batch)
    url = f"{base}/events?routingKey=bench"
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections + 1)
    async with aiohttp.ClientSession(connector=connector) as session:
        before = await _stats(session, base)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stop_at = started + seconds

        async def worker(first: int) -> None:
            nonlocal errors
            i = first
            while loop.time() < stop_at and len(latencies) + errors < max_requests:
                body = bodies[i % len(bodies)]
                i += connections
                sent = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    ok = response.status == 200
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(worker(w) for w in range(connections)))
        elapsed = loop.time() - started
        after = await _stats(session, base)
    latencies.sort()
    return Result(
        name=name,
        connections=connections,
        batch=batch,
        seconds=elapsed,
        requests=len(latencies),
        events=len(latencies) * batch,
        errors=errors,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        commits=after["commits"] - before["commits"],
    )


def _disk_fsyncs_per_second(folder: Path, seconds: float = 1.0) -> float:
    """The disk's own rate of small append + fdatasync, the ceiling of one-at-a-time requests."""
    path = folder / "fsync-probe.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = b"x" * 400 + b"\n"
    count = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            os.write(fd, line)
            getattr(os, "fdatasync", os.fsync)(fd)
            count += 1
    finally:
        os.close(fd)
        path.unlink()
    return count / (time.perf_counter() - started)


def _start_server(project: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [*SERVE, "--project", str(project), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit("the collector did not start")
    return proc, int(line)


def _count_lines(root: Path) -> int:
    return sum(path.read_bytes().count(b"\n") for path in root.rglob("*.log"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per case (at most 20)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections of busy cases")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per case")
    args = parser.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)
    busy = max(1, args.concurrency)

    with tempfile.TemporaryDirectory(prefix="apimon-bench-", dir=Path.cwd()) as tmp:
        project = Path(tmp)
        (project / "apimon.toml").write_text('[collector]\nroot = "events"\n')
        disk = _disk_fsyncs_per_second(project)
        proc, port = _start_server(project)
        base = f"http://127.0.0.1:{port}"
        cases = [
            ("1 event, 1 connection", 1, 1),
            (f"1 event, {busy} connections", 1, busy),
            ("100 events, 1 connection", 100, 1),
            (f"100 events, {max(1, busy // 4)} connections", 100, max(1, busy // 4)),
        ]
        try:
            results = [
                asyncio.run(_case(base, name, batch, conns, seconds, args.max_requests))
                for name, batch, conns in cases
            ]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        on_disk = _count_lines(project / "events")

    print(f"disk: {disk:,.0f} append+fdatasync per second (one writer, 400-byte lines)")
    print(f"{'case':<28} {'events/s':>10} {'requests/s':>11} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'req/commit':>10} {'errors':>6}")  # fmt: skip
    for r in results:
        per_commit = r.requests / r.commits if r.commits else float("nan")
        print(
            f"{r.name:<28} {r.events_per_second:>10,.0f} {r.requests_per_second:>11,.0f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {per_commit:>10.1f} {r.errors:>6}"
        )
    single, grouped, batched, batched_busy = results
    print("ratios:")
    print(
        f"  group commit: {grouped.events_per_second / single.events_per_second:.1f}x the "
        f"events/s of one connection, {grouped.requests / max(1, grouped.commits):.1f} "
        "requests per fsync"
    )
    print(
        f"  batches of 100: {batched.events_per_second / single.events_per_second:.0f}x the "
        f"events/s of single events on one connection, "
        f"{batched_busy.events_per_second / grouped.events_per_second:.0f}x with "
        "several connections"
    )
    print(
        f"  one connection, 1 event: {single.requests_per_second / disk:.2f} of the disk's "
        "own append+fsync rate"
    )
    acknowledged = sum(r.events for r in results)
    verdict = "ok" if on_disk == acknowledged else "MISMATCH"
    print(f"check: {on_disk:,} lines on disk for {acknowledged:,} events acknowledged: {verdict}")


if __name__ == "__main__":
    main()
