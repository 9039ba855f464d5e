"""The Event collector as a real server in a subprocess, with real files and a real DuckDB file."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import message, one, rows

from apimon.collector import TOPIC_NAMES, EventFiles, envelope_line
from apimon.config import load_project
from apimon.ingest import ingest
from apimon.logfiles import OTHER_TOPICS, QUERY_TOPIC

SERVE = (sys.executable, "-m", "apimon.collector")
LIMIT = 64 * 1024
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


class CollectorProcess:
    """`python -m apimon.collector` on a loopback port, with its project folder."""

    def __init__(self, folder: Path, collector: str = "") -> None:
        self.folder = folder
        self.root = folder / "events"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "apimon.toml").write_text(
            "[ingest]\npartial_line_grace_seconds = 0\n\n"
            f'[collector]\nroot = "events"\nmax_body_bytes = {LIMIT}\n{collector}\n\n'
            '[[sources]]\npath = "events"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, port: int = 0) -> CollectorProcess:
        with (self.folder / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [*SERVE, "--project", str(self.folder), "--port", str(port), "--quiet"],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.proc.kill()
            raise AssertionError(f"the collector did not start: {self.log()}")
        self.port = int(line)
        return self

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        return code

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            url = path + ("?" + urllib.parse.urlencode(query) if query else "")
            chunked = body is not None and not isinstance(body, bytes)
            conn.request(method, url, body=body, headers=headers or {}, encode_chunked=chunked)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response.status, json.loads(data) if data else None

    def post(self, body: Any, routing_key: str | None = "fraud-on-prod", **kw: Any) -> Any:
        query = kw.pop("query", None) or ({"routingKey": routing_key} if routing_key else None)
        return self.request("POST", "/events", body, query=query, **kw)

    def stats(self, key: str | None = None) -> Any:
        status, data = self.request("GET", "/stats", headers={"X-API-Key": key} if key else {})
        assert status == 200, data
        return data


def files_under(root: Path) -> dict[str, int]:
    """Every file below root with its size: what a request wrote, or did not."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def lines_under(root: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(root.rglob("*.log"))
        for line in path.read_text().splitlines()
    ]


def ndjson(*events: dict[str, Any]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CollectorProcess]:
    process = CollectorProcess(tmp_path).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    process = CollectorProcess(tmp_path_factory.mktemp("shared")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    keys = 'auth_keys = ["key-one-0123456789abcdef", "key-two-0123456789abcdef"]'
    process = CollectorProcess(tmp_path_factory.mktemp("keyed"), keys).start()
    yield process
    process.stop()


def test_events_land_in_the_event_server_layout_and_ingest_loads_them(
    server: CollectorProcess,
) -> None:
    by_query = ndjson(*(message(i, userContext={"request_id": f"q{i}"}) for i in range(3)))
    by_field = ndjson(message(3, userContext={"request_id": "f3"}, routingKey="fraud-on-dev"))
    assert server.post(by_query + by_field) == (200, {"accepted": 4})
    by_header = ndjson(message(4, userContext={"request_id": "h4"}))
    assert server.post(by_header, None, headers={"X-Routing-Key": "from-header"})[0] == 200
    other_topic = ndjson(message(5, userContext={"request_id": "g5"}))
    assert server.post(other_topic, query={"topic": "generic", "routingKey": "k"})[0] == 200
    pretty = json.dumps(
        message(6, userContext={"request_id": "p6"}, features={"big": 12345678901234567890123}),
        indent=2,
    ).encode()
    assert server.post(pretty)[0] == 200

    folders = sorted({str(Path(f).parent) for f in files_under(server.root)})
    hour = r"\d{4}/\d\d/\d\d/\d\d"
    expected = [
        "apinode-query/fraud-on-dev",
        "apinode-query/fraud-on-prod",
        "apinode-query/from-header",
        "generic/k",
    ]
    assert [f.rsplit("/", 4)[0] for f in folders] == expected
    assert all(re.fullmatch(hour, f.split("/", 2)[2]) for f in folders)
    for line in lines_under(server.root):
        assert sorted(line) == ["clientEvent", "origAddress", "serverTimestamp"]
        assert line["origAddress"] == "127.0.0.1"
        assert STAMP.fullmatch(line["serverTimestamp"])

    project = load_project(server.folder)
    report = ingest(project)

    assert (report.loaded, report.quarantined) == (6, 0)
    assert rows(
        project,
        "select user_context->>'$.request_id', routing_key, sender, service_id "
        "from queries order by 1",
    ) == [
        ("f3", "fraud-on-dev", "127.0.0.1", "fraud_detection"),
        ("h4", "from-header", "127.0.0.1", "fraud_detection"),
        ("p6", "fraud-on-prod", "127.0.0.1", "fraud_detection"),
        ("q0", "fraud-on-prod", "127.0.0.1", "fraud_detection"),
        ("q1", "fraud-on-prod", "127.0.0.1", "fraud_detection"),
        ("q2", "fraud-on-prod", "127.0.0.1", "fraud_detection"),
    ]
    assert "12345678901234567890123" in one(
        project, "select features::varchar from queries where features->>'$.big' is not null"
    )
    assert one(project, "select count(*) from queries where received_time is null") == 0


def test_a_gzip_body_is_inflated(shared: CollectorProcess) -> None:
    body = gzip.compress(ndjson(*(message(i) for i in range(5))))

    assert shared.post(body, headers={"Content-Encoding": "gzip"}) == (200, {"accepted": 5})


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"x" * (LIMIT + 1), {}, 413, "body too large"),
        (iter([b"{}" * 1000] * 40), {}, 413, "body too large"),  # chunked, no length
        (gzip.compress(b" " * (LIMIT + 1)), {"Content-Encoding": "gzip"}, 413, "body too large"),
        (gzip.compress(b"{}" * 10**6), {"Content-Encoding": "gzip"}, 413, "body too large"),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400, "bad gzip"),
        (gzip.compress(ndjson({"a": 1}))[:-12], {"Content-Encoding": "gzip"}, 400, "bad gzip"),
        (b"{}", {"Content-Encoding": "br"}, 415, "unsupported encoding"),
    ],
    ids=["plain", "chunked", "gzip", "gzip-bomb", "not-gzip", "cut-gzip", "brotli"],
)
def test_oversized_and_badly_encoded_bodies_are_refused_and_nothing_is_written(
    shared: CollectorProcess, body: Any, headers: dict[str, str], status: int, reason: str
) -> None:
    before = files_under(shared.root)

    got_status, answer = shared.post(body, headers=headers)

    assert (got_status, answer["reason"]) == (status, reason)
    assert "error" in answer
    assert files_under(shared.root) == before


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"a": 1}\n{"b": \n',
        b'{"a": 1}\n[1, 2]\n',
        b'[{"a": 1}]',
        b'"just a string"',
        b'{"a": NaN}',
        b'{"a": 1} {"b": 2}',
        b"\xff\xfe{}",
        b"\n \n",
        b"[" * 50_000,
        b'{"a": "tab\tinside"}',
    ],
    ids=[
        "text",
        "last-line-cut",
        "array-line",
        "array-body",
        "string",
        "nan",
        "two-on-a-line",
        "not-utf8",
        "blank",
        "deep",
        "control-char",
    ],
)
def test_malformed_bodies_get_a_4xx_json_error_and_nothing_is_written(
    shared: CollectorProcess, body: bytes
) -> None:
    valid_first = ndjson(message(1))
    before = files_under(shared.root)

    status, answer = shared.post(valid_first + body if body.startswith(b"{") else body)

    assert status == 400
    assert answer["reason"] in ("not JSON", "not an object", "not UTF-8", "empty body")
    assert answer["error"]
    assert files_under(shared.root) == before


@pytest.mark.parametrize(
    "value",
    ["../escape", "..", ".hidden", "a/b", "a\\b", "/etc", "a\x00b", "é", "x" * 129, "", " k"],
)
@pytest.mark.parametrize("field", ["topic", "routingKey"])
@pytest.mark.parametrize("where", ["query", "event"])
def test_names_that_could_leave_the_root_are_refused_naming_the_field(
    shared: CollectorProcess, field: str, value: str, where: str
) -> None:
    before = files_under(shared.root)
    outside = set(os.listdir(shared.folder))
    query = {"routingKey": "fraud-on-prod"}
    event = message(1)
    if where == "query":
        query[field] = value
    else:
        event[field] = value

    status, answer = shared.post(ndjson(event), query=query)

    assert status == 400
    assert answer["field"] == field
    assert field in answer["error"]
    assert files_under(shared.root) == before
    assert set(os.listdir(shared.folder)) == outside


def test_topic_names_are_not_routing_keys_since_ingest_would_skip_them(
    shared: CollectorProcess,
) -> None:
    assert OTHER_TOPICS | {QUERY_TOPIC} == TOPIC_NAMES
    for name in sorted(TOPIC_NAMES):
        status, answer = shared.post(ndjson(message(1)), name)
        assert (status, answer["field"]) == (400, "routingKey"), name
        assert "choose another routing key" in answer["error"]


@pytest.mark.parametrize("value", ["../escape", "a/b", "..", ".x"])
def test_routing_headers_are_validated_too(shared: CollectorProcess, value: str) -> None:
    before = files_under(shared.root)

    status, answer = shared.post(ndjson(message(1)), None, headers={"X-Routing-Key": value})

    assert (status, answer["field"]) == (400, "routingKey")
    assert files_under(shared.root) == before


def test_an_event_without_routing_key_is_refused(shared: CollectorProcess) -> None:
    status, answer = shared.post(ndjson(message(1)), None)

    assert (status, answer["reason"], answer["field"]) == (400, "missing routingKey", "routingKey")
    assert "?routingKey=" in answer["error"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong-key-0123456789abcdef"}, 401),
        ({"X-API-Key": "key-one-0123456789abcde"}, 401),
        ({"Authorization": "Basic key-one-0123456789abcdef"}, 401),
        ({"X-API-Key": "key-one-0123456789abcdef"}, 200),
        ({"X-API-Key": "key-two-0123456789abcdef"}, 200),
        ({"Authorization": "Bearer key-two-0123456789abcdef"}, 200),
    ],
)
def test_auth_keys_are_required_when_configured(
    keyed: CollectorProcess, headers: dict[str, str], status: int
) -> None:
    before = files_under(keyed.root)

    got, answer = keyed.post(ndjson(message(1)), headers=headers)

    assert got == status
    if status == 401:
        assert answer["reason"] == "unauthorized"
        assert "X-API-Key" in answer["error"]
        assert files_under(keyed.root) == before
        assert keyed.request("GET", "/stats", headers=headers)[0] == 401
    assert keyed.request("GET", "/health") == (200, {"status": "ok"})


def test_concurrent_requests_share_fsyncs_and_stats_count_everything(
    server: CollectorProcess,
) -> None:
    def send(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in range(25):
            body = ndjson(message(i, userContext={"request_id": f"w{worker}-{i}"}))
            conn.request("POST", "/events?routingKey=k", body=body)
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.close()

    threads = [threading.Thread(target=send, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.post(b"{oops")
    server.post(b"{}", None)

    stats = server.stats()

    assert (stats["requests_accepted"], stats["events_accepted"]) == (300, 300)
    assert stats["commits"] < 300  # group commit: some requests shared a commit
    assert stats["bytes_written"] == sum(files_under(server.root).values())
    assert stats["rejected"] == {"not JSON": 1, "missing routingKey": 1}
    assert stats["requests_rejected"] == 2
    assert len(lines_under(server.root)) == 300


def test_sigterm_answers_the_requests_in_flight_then_exits(tmp_path: Path) -> None:
    server = CollectorProcess(tmp_path, "flush_interval_ms = 200").start()
    acked: list[str] = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        for i in range(200):
            ids = [f"w{worker}-{i}-{j}" for j in range(5)]
            body = ndjson(*(message(0, userContext={"request_id": x}) for x in ids))
            try:
                status, _ = server.post(body)
            except (OSError, http.client.HTTPException):
                return
            if status == 200:
                with lock:
                    acked.extend(ids)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()

    assert server.stop(signal.SIGTERM, timeout=30) == 0

    # The server drains for at most 10 s; a loaded machine may add to its commit and exit.
    assert time.monotonic() - started < 25
    for thread in threads:
        thread.join()
    on_disk = Counter(
        line["clientEvent"]["userContext"]["request_id"] for line in lines_under(server.root)
    )
    assert set(acked) <= set(on_disk)
    assert max(on_disk.values()) == 1


def test_every_acknowledged_event_survives_sigkill_exactly_once(tmp_path: Path) -> None:
    server = CollectorProcess(tmp_path).start()
    port = server.port
    total_per_worker = 1000
    acked: list[str] = []
    unacked: list[str] = []
    lock = threading.Lock()
    back_up = threading.Event()

    def send(worker: int) -> None:
        chooser = random.Random(worker)
        conn: http.client.HTTPConnection | None = None
        i = 0
        while i < total_per_worker:
            ids = [
                f"w{worker}-{n}"
                for n in range(i, min(total_per_worker, i + chooser.randint(1, 10)))
            ]
            i += len(ids)
            body = ndjson(*(message(0, userContext={"request_id": x}) for x in ids))
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/events?routingKey=fraud-on-prod", body=body)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn = None
            with lock:
                (acked if ok else unacked).extend(ids)
            if not ok:
                back_up.wait(30)  # the rest is sent once the collector is back

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 1200 and time.monotonic() < deadline:
        time.sleep(0.002)
    server.stop(signal.SIGKILL)
    acked_before_kill = len(acked)
    # A power cut could leave half a line at the end of the newest file: make one.
    newest = max(server.root.rglob("*.log"), key=lambda p: p.stat().st_mtime_ns)
    with newest.open("ab") as handle:
        handle.write(b'{"clientEvent": {"msgType": "predic')
    torn_size = newest.stat().st_size
    server.start(port)
    back_up.set()
    for thread in threads:
        thread.join()
    server.stop()

    assert acked_before_kill < 4 * total_per_worker
    assert len(acked) > acked_before_kill  # the restarted server took the rest
    assert newest.stat().st_size == torn_size  # never appended to again
    project = load_project(tmp_path)
    report = ingest(project)
    loaded = Counter(
        r[0] for r in rows(project, "select user_context->>'$.request_id' from queries")
    )
    assert report.quarantined == 1
    assert one(project, "select reason from quarantine").startswith("partial last line")
    assert all(loaded[x] == 1 for x in acked), "an acknowledged event is missing"
    assert max(loaded.values()) == 1, "an event was loaded twice"
    assert set(loaded) <= set(acked) | set(unacked)


def test_files_with_the_same_first_line_still_load_separately(tmp_path: Path) -> None:
    files = EventFiles(tmp_path / "events")
    line = envelope_line(json.dumps(message(1)), "10.0.0.7", "2026-11-02T10:11:12.345+0000")
    hour = "2026/11/02/10"

    files.append([(f"apinode-query/a/{hour}", line), (f"apinode-query/b/{hour}", line)])
    files.append([(f"apinode-query/c/{hour}", line)])
    files.close()

    firsts = [p.read_bytes().split(b"\n")[0] for p in (tmp_path / "events").rglob("*.log")]
    assert len(set(firsts)) == 3
    (tmp_path / "apimon.toml").write_text('[[sources]]\npath = "events"\n')
    project = load_project(tmp_path)
    assert (ingest(project).loaded, ingest(project).loaded) == (3, 0)
    assert rows(project, "select routing_key from queries order by 1") == [("a",), ("b",), ("c",)]


def test_a_second_server_on_a_taken_port_says_how_to_fix_it(
    shared: CollectorProcess, tmp_path: Path
) -> None:
    (tmp_path / "apimon.toml").write_text('[collector]\nroot = "events"\n')
    done = subprocess.run(
        [*SERVE, "--project", str(tmp_path), "--port", str(shared.port), "--quiet"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert "--port" in done.stderr
    assert done.stdout == ""


def test_the_collector_binds_to_loopback_by_default(shared: CollectorProcess) -> None:
    table = Path("/proc/net/tcp")
    if not table.exists():
        pytest.skip("reads the kernel's socket table, which only Linux has at /proc/net/tcp")
    listening = [
        fields[1]
        for fields in (line.split() for line in table.read_text().splitlines()[1:])
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == shared.port
    ]

    assert listening == [f"0100007F:{shared.port:04X}"]  # 127.0.0.1, little-endian
