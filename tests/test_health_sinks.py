"""Delivery of health reports: webhook against a real local HTTP server (answers,
decisions, a decider that is down, slow or answers garbage), Prometheus endpoint scraped
over HTTP, JSON lines, the async iterator, and the reporter on a live loopback session."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import edgewire
from edgewire.aio.health import (
    CallbackSink,
    HealthReporter,
    JsonLinesSink,
    PrometheusSink,
    ReportStream,
    WebhookSink,
)
from edgewire.errors import LocalProtocolError
from edgewire.health import (
    SCHEMA,
    DecisionApplier,
    HealthConfig,
    HealthMonitor,
    PsutilDevice,
    decode_report,
    load_schema,
)
from edgewire.health.sinks import DropOldestQueue, metric_samples, retry_delay

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def report(seq: int = 1, tier: str = "good") -> dict[str, Any]:
    return {"schema": SCHEMA, "ts": 1e9 + seq, "seq": seq, "session": "s", "path": "default",
            "tier": tier, "score": 70.0, "rtt_ms": {"min": 10.0, "smoothed": 12.0, "p95": 20.0},
            "jitter_ms": 1.0, "loss": {"rate": 0.02, "residual_rate": 0.0, "burst_mean": 1.0},
            "bandwidth": {"estimate_kbps": 1000.0, "goodput_kbps": 800.0},
            "queue_delay_ms": 2.0, "channels": {}, "device": {"cpu_percent": 3.0}}


class Decider:
    """A local HTTP server; ``answer(body) -> (status, bytes, delay_s)`` decides."""

    def __init__(self, answer: Callable[[bytes], tuple[int, bytes, float]]) -> None:
        self.received: list[dict[str, Any]] = []
        self.hits = 0
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.hits += 1
                status, out, delay = answer(body)
                if delay:
                    outer.stop.wait(delay)
                if status < 300:
                    outer.received.append(decode_report(body))
                try:
                    self.send_response(status)
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the client timed out and left: that is the point of the test

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/health"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def decider_factory() -> Iterator[Callable[..., Decider]]:
    made: list[Decider] = []

    def make(answer: Callable[[bytes], tuple[int, bytes, float]]) -> Decider:
        d = Decider(answer)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


async def wait_for(cond: Callable[[], bool], limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_webhook_posts_and_applies_decisions(decider_factory: Any) -> None:
    answer = json.dumps({"action": "switch", "path": "cloud", "id": "d1"}).encode()
    decider = decider_factory(lambda body: (200, answer, 0.0))
    recorded: list[dict[str, Any]] = []
    applier = DecisionApplier(handler=lambda d: {"status": "applied"},
                              paths={"default", "cloud"}, record=recorded.append)
    sink = WebhookSink(decider.url, decisions=applier)
    try:
        sink.submit(report(1))
        sink.submit(report(2))
        await wait_for(lambda: sink.sent == 2)
    finally:
        await sink.aclose()
    assert [r["seq"] for r in decider.received] == [1, 2]
    assert [o["status"] for o in recorded] == ["applied", "applied"]
    assert recorded[0]["path"] == "cloud"
    assert recorded[0]["source"] == "webhook"


@pytest.mark.asyncio
async def test_webhook_garbage_answer_is_rejected_not_fatal(decider_factory: Any) -> None:
    decider = decider_factory(lambda body: (200, b"<html>not json", 0.0))
    recorded: list[dict[str, Any]] = []
    sink = WebhookSink(decider.url, decisions=DecisionApplier(record=recorded.append))
    try:
        sink.submit(report())
        await wait_for(lambda: sink.sent == 1)
    finally:
        await sink.aclose()
    assert sink.bad_responses == 1
    assert recorded[0]["status"] == "rejected"
    assert "not JSON" in recorded[0]["reason"]


@pytest.mark.asyncio
async def test_webhook_retries_with_backoff_then_succeeds(decider_factory: Any) -> None:
    decider = decider_factory(lambda body: (503, b"", 0.0) if decider.hits <= 2
                              else (204, b"", 0.0))
    sink = WebhookSink(decider.url, retries=3, backoff_s=0.01)
    try:
        sink.submit(report())
        await wait_for(lambda: sink.sent == 1)
    finally:
        await sink.aclose()
    assert (sink.retried, sink.failed, decider.hits) == (2, 0, 3)


@pytest.mark.asyncio
async def test_webhook_client_error_is_not_retried(decider_factory: Any) -> None:
    decider = decider_factory(lambda body: (400, b"bad", 0.0))
    sink = WebhookSink(decider.url, retries=3, backoff_s=0.01)
    try:
        sink.submit(report())
        await wait_for(lambda: sink.failed == 1)
    finally:
        await sink.aclose()
    assert decider.hits == 1
    assert sink.bad_responses == 1


@pytest.mark.asyncio
async def test_slow_decider_times_out_and_queue_drops_oldest(decider_factory: Any) -> None:
    decider = decider_factory(lambda body: (200, b"", 1.0))
    sink = WebhookSink(decider.url, timeout_s=0.1, retries=0, max_queue=3)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        for i in range(10):
            sink.submit(report(i + 1))  # never blocks, however slow the decider
        assert loop.time() - start < 0.05
        # the queue kept the newest three; each times out after 0.1 s, not 1 s
        await wait_for(lambda: sink.failed == 3, limit=0.9)
    finally:
        await sink.aclose()
    assert sink.dropped == 7
    assert sink.sent == 0


@pytest.mark.asyncio
async def test_decider_down_is_counted(unused_tcp_port: int) -> None:
    sink = WebhookSink(f"http://127.0.0.1:{unused_tcp_port}/", retries=1, backoff_s=0.01)
    try:
        sink.submit(report())
        await wait_for(lambda: sink.failed == 1)
    finally:
        await sink.aclose()
    assert sink.retried == 1
    assert sink.sent == 0


def test_webhook_url_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        WebhookSink("ftp://example.com/")


@pytest.mark.asyncio
async def test_prometheus_endpoint_is_scraped_over_http() -> None:
    sink = PrometheusSink(port=0)
    try:
        sink.submit(report(1, tier="fair"))
        url = f"http://127.0.0.1:{sink.port}/metrics"
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        await sink.aclose()
    assert 'edgewire_health_score{path="default",session="s"} 70.0' in text
    assert 'edgewire_health_loss_rate{path="default",session="s"} 0.02' in text
    assert 'edgewire_health_tier{path="default",session="s",tier="fair"} 1.0' in text
    assert 'edgewire_health_tier{path="default",session="s",tier="good"} 0.0' in text


def test_metric_samples_skip_unknown_figures() -> None:
    r = report()
    r["jitter_ms"] = None
    names = dict(metric_samples(r))
    assert "jitter_ms" not in names
    assert names["goodput_kbps"] == 800.0


@pytest.mark.asyncio
async def test_json_lines_file_rotates(tmp_path: Path) -> None:
    path = tmp_path / "health.jsonl"
    sink = JsonLinesSink(path, max_bytes=2000)
    for i in range(10):
        sink.submit(report(i + 1))
    await sink.aclose()
    lines = path.read_text().splitlines()
    old = (tmp_path / "health.jsonl.1").read_text().splitlines()
    assert sink.rotations >= 1
    seqs = [json.loads(x)["seq"] for x in old + lines]
    assert seqs == list(range(10 - len(seqs) + 1, 11))
    assert path.stat().st_size <= 2000


@pytest.mark.asyncio
async def test_stream_and_callback() -> None:
    stream = ReportStream(maxlen=2)
    got: list[int] = []
    cb = CallbackSink(lambda r: got.append(r["seq"]))
    bad = CallbackSink(lambda r: 1 / 0)  # type: ignore[func-returns-value]
    for i in range(4):
        for s in (stream, cb, bad):
            s.submit(report(i + 1))
    await stream.aclose()
    assert [r["seq"] async for r in stream] == [3, 4]
    assert stream.dropped == 2
    assert got == [1, 2, 3, 4]
    assert bad.errors == 4


def test_queue_and_backoff() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(2)
    for i in range(5):
        q.push(i)
    assert list(q) == [3, 4]
    assert q.dropped == 3
    assert q.pop() == 3
    assert [retry_delay(n, base_s=0.1, cap_s=0.5) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
    with pytest.raises(LocalProtocolError):
        retry_delay(0, base_s=0.1, cap_s=1.0)
    with pytest.raises(LocalProtocolError):
        DropOldestQueue(0)


def test_psutil_device_reads_this_machine() -> None:
    d = PsutilDevice().sample()
    assert 0.0 <= d["cpu_percent"] <= 100.0
    assert 0.0 < d["memory_percent"] <= 100.0
    assert d["battery_percent"] is None or 0 <= d["battery_percent"] <= 100


@pytest.mark.asyncio
async def test_reporter_on_a_live_session(cert_pair: tuple[str, str],
                                          decider_factory: Any) -> None:
    decider = decider_factory(lambda body: (200, json.dumps(
        {"action": "switch", "path": "mars"}).encode(), 0.0))

    async def handler(conn: edgewire.Connection) -> None:
        ch = await conn.accept()
        async for _ in ch:
            pass

    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=cert_pair[0],
                                  keyfile=cert_pair[1])
    try:
        async with edgewire.connect(f"edgewire://localhost:{server.address[1]}",
                                    cafile=cert_pair[0]) as conn:
            monitor = HealthMonitor(session="live", config=HealthConfig(period_s=0.2),
                                    device=PsutilDevice())
            applier = DecisionApplier(paths={"default"}, record=monitor.record_decision)
            reporter = HealthReporter(conn, monitor, decisions=applier,
                                      sinks=[WebhookSink(decider.url, decisions=applier)])
            stream = reporter.stream()
            audio = await conn.channel("audio")
            async with reporter:
                reports = []
                async for r in stream:
                    audio.send_nowait(b"x" * 100)
                    reports.append(r)
                    if any(d["path"] == "mars" for d in r.get("decisions", [])):
                        break
                    assert len(reports) < 50
                api = reporter.decide({"action": "dance"})
    finally:
        server.close()
        await server.wait_closed()
    for r in reports:
        VALIDATOR.validate(r)
    last = reports[-1]
    assert last["decisions"][0]["status"] == "rejected"
    assert "unknown path 'mars'" in last["decisions"][0]["reason"]
    assert api[0]["status"] == "rejected"
    assert reports[0]["session"] == "live"
    assert reports[0]["rtt_ms"]["smoothed"] is not None
    assert decider.received
    assert decider.received[0]["schema"] == SCHEMA
