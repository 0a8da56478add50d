"""``edgewire health listen``: receive health reports over HTTP and print them as a live
table; and the ``demo --health-url`` reporter."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from edgewire.errors import RemoteProtocolError
from edgewire.health.report import MAX_REPORT_BYTES, decode_report

__all__ = ["add_health_parser", "format_row", "health_reporting", "run_health"]

HEADER = (f"{'time':>10} {'session':<12} {'path':<10} {'tier':<9} {'score':>5} "
          f"{'rtt ms':>7} {'p95':>7} {'jit ms':>6} {'loss %':>6} {'resid %':>7} "
          f"{'est kb/s':>9} {'good kb/s':>9} {'queue ms':>8} {'cpu %':>5}  why")


def _cell(value: Any, width: int, scale: float = 1.0, digits: int = 1) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{'-':>{width}}"
    return f"{value * scale:>{width}.{digits}f}"


def format_row(r: dict[str, Any]) -> str:
    """One line of the live table for a report."""
    rtt, loss, bw = r.get("rtt_ms", {}), r.get("loss", {}), r.get("bandwidth", {})
    clock = f"{r['ts'] % 86400 // 3600:02.0f}:{r['ts'] % 3600 // 60:02.0f}:" \
            f"{r['ts'] % 60:04.1f}"
    return (f"{clock:>10} {str(r['session'])[:12]:<12} {str(r['path'])[:10]:<10} "
            f"{r['tier']:<9} {_cell(r['score'], 5, digits=0)} "
            f"{_cell(rtt.get('smoothed'), 7)} {_cell(rtt.get('p95'), 7)} "
            f"{_cell(r.get('jitter_ms'), 6)} {_cell(loss.get('rate'), 6, 100)} "
            f"{_cell(loss.get('residual_rate'), 7, 100)} "
            f"{_cell(bw.get('estimate_kbps'), 9, digits=0)} "
            f"{_cell(bw.get('goodput_kbps'), 9, digits=0)} "
            f"{_cell(r.get('queue_delay_ms'), 8)} "
            f"{_cell(r.get('device', {}).get('cpu_percent'), 5, digits=0)}  "
            f"{','.join(r.get('reasons', []))}")


def make_server(host: str, port: int, out: TextIO, *, as_json: bool = False
                ) -> ThreadingHTTPServer:
    """An HTTP server printing every valid report POSTed to it (any path); it answers
    ``{}`` (no decision), 400 with the reason for anything that is not a report."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_REPORT_BYTES:
                self._answer(400, {"error": "content-length missing or too large"})
                return
            body = self.rfile.read(length)
            try:
                report = decode_report(body)
            except RemoteProtocolError as exc:
                self._answer(400, {"error": str(exc)})
                print(f"rejected a report from {self.client_address[0]}: {exc}",
                      file=sys.stderr, flush=True)
                return
            with lock:
                print(json.dumps(report) if as_json else format_row(report), file=out,
                      flush=True)
            self._answer(200, {})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the table is the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def add_health_parser(sub: Any) -> None:
    """Register ``edgewire health listen``."""
    h = sub.add_parser("health", help="link-health reports (docs/HEALTH.md)")
    hsub = h.add_subparsers(dest="health", required=True)
    listen = hsub.add_parser("listen", help="receive reports over HTTP, print a live table")
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=8787, help="default 8787")
    listen.add_argument("--json", action="store_true", help="print each report as JSON")


def run_health(args: argparse.Namespace) -> int:
    """Run ``edgewire health listen`` until interrupted."""
    server = make_server(args.host, args.port, sys.stdout, as_json=args.json)
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"listening for health reports on http://{host}:{port}/ (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    if not args.json:
        print(HEADER, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


@contextlib.asynccontextmanager
async def health_reporting(conn: Any, url: str | None) -> AsyncIterator[Any]:
    """Post the connection's health reports to ``url`` while the block runs (nothing
    when ``url`` is None); yields the reporter."""
    if url is None:
        yield None
        return
    from edgewire.aio.health import HealthReporter, WebhookSink
    from edgewire.health import DecisionApplier, HealthMonitor, PsutilDevice

    monitor = HealthMonitor(session="demo", device=PsutilDevice())
    applier = DecisionApplier(paths={monitor.path}, record=monitor.record_decision)
    sink = WebhookSink(url, decisions=applier)
    async with HealthReporter(conn, monitor, sinks=[sink], decisions=applier) as reporter:
        yield reporter
