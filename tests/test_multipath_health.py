"""Health of a multi-endpoint connection over real loopback UDP (two real servers, TLS
verified): one report per path, validated against the shipped JSON Schema; a decider on a
real local HTTP server answers with a switch and the channels move; API decisions naming an
unknown path are rejected with the reason in the next report."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

from edgewire import connect_multi
from edgewire.aio.health import CallbackSink
from edgewire.aio.multi import MultiService
from edgewire.aio.multi_health import MultiHealthReporter
from edgewire.health import load_schema
from edgewire.health.monitor import HealthConfig


class _Decider:
    """A placement decider: records reports, answers the first report of the edge path
    with a switch to the cloud."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.answered = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                report = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.reports.append(report)
                body = b"{}"
                if report["path"] == "edge" and not outer.answered:
                    outer.answered = True
                    body = json.dumps({"action": "switch", "path": "cloud"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def decider() -> Iterator[_Decider]:
    d = _Decider()
    yield d
    d.close()


async def _until(cond: Any, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_per_path_reports_and_webhook_decision(cert_pair: tuple[str, str],
                                                     decider: _Decider) -> None:
    cert, key = cert_pair
    service = MultiService()
    edge = await service.listen("edge", "127.0.0.1", 0, certfile=cert, keyfile=key)
    cloud = await service.listen("cloud", "127.0.0.1", 0, certfile=cert, keyfile=key)
    local: list[dict[str, Any]] = []
    schema = load_schema()
    try:
        async with connect_multi({"edge": f"127.0.0.1:{edge[1]}",
                                  "cloud": f"127.0.0.1:{cloud[1]}"},
                                 cafile=cert, server_name="localhost") as conn:
            reporter = MultiHealthReporter(conn, session="agent-1",
                                           config=HealthConfig(period_s=0.2),
                                           sinks=[CallbackSink(local.append)])
            reporter.webhook(decider.url, timeout_s=2.0)
            async with reporter:
                audio = await conn.channel("audio")
                for _ in range(40):
                    await audio.send(b"\x00" * 80)
                    await asyncio.sleep(0.02)
                await _until(lambda: conn.active_path == "cloud")
                # the outcome of the decider's switch rides in the cloud path's next report
                await _until(lambda: any(
                    r["path"] == "cloud" and r.get("decisions") for r in local))
                # an API decision naming an unknown path changes nothing, and says why
                out = reporter.decide({"action": "switch", "path": "moon"})
                assert out[0]["status"] == "rejected"
                assert "moon" in out[0]["reason"]
                assert conn.active_path == "cloud"
                await _until(lambda: any(
                    d.get("path") == "moon" for r in local for d in r.get("decisions") or ()))
    finally:
        service.close()
    assert {r["path"] for r in local} == {"edge", "cloud"}
    assert {r["path"] for r in decider.reports} == {"edge", "cloud"}
    for report in local:
        jsonschema.validate(report, schema)
        assert report["session"] == "agent-1"
    applied = [d for r in local if r["path"] == "cloud" for d in r.get("decisions") or ()
               if d["status"] == "applied"]
    assert applied
    assert applied[0]["path"] == "cloud"
    assert applied[0]["source"] == "webhook"
