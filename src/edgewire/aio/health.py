"""Health reports of a live :class:`~edgewire.aio.connection.Connection`, delivered to a
placement decider: an in-process async iterator or callback, an HTTP webhook (httpx), a
Prometheus endpoint (prometheus_client) and a JSON-lines file.

:class:`HealthReporter` drives the sans-I/O :class:`~edgewire.health.HealthMonitor` with
``loop.time()`` and hands every report to its sinks without waiting for them: a sink
that is slow, down or broken loses reports (counted), never the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol, Self

from edgewire.errors import LocalProtocolError
from edgewire.health.decisions import DecisionApplier
from edgewire.health.monitor import HealthMonitor
from edgewire.health.report import encode_report
from edgewire.health.sinks import GAUGES, DropOldestQueue, metric_samples, retry_delay

__all__ = ["CallbackSink", "HealthReporter", "JsonLinesSink", "PrometheusSink", "ReportSink",
           "ReportStream", "SinkFanout", "WebhookSink"]

log = logging.getLogger(__name__)

#: The reporter samples the session at least this often (RTT samples, silence checks).
K_OBSERVE_INTERVAL = 0.05  # seconds


class ReportSink(Protocol):
    """Where reports go. ``submit`` must return at once (queue, never wait)."""

    def submit(self, report: dict[str, Any]) -> None:
        """Take one report."""
        ...

    async def aclose(self) -> None:
        """Stop background work and release resources."""
        ...


class CallbackSink:
    """Calls ``callback(report)`` in the event loop; an exception is logged and counted."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.callback = callback
        self.errors = 0
        """Callback calls that raised."""

    def submit(self, report: dict[str, Any]) -> None:
        """Hand the report to the callback."""
        try:
            self.callback(report)
        except Exception:
            self.errors += 1
            log.exception("health report callback failed")

    async def aclose(self) -> None:
        """Nothing to release."""


class ReportStream:
    """Reports as an async iterator: ``async for report in stream``. Holds at most
    ``maxlen`` unread reports, dropping the oldest (``dropped``)."""

    def __init__(self, maxlen: int = 64) -> None:
        self._queue: DropOldestQueue[dict[str, Any]] = DropOldestQueue(maxlen)
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    @property
    def dropped(self) -> int:
        """Reports dropped because the reader fell behind."""
        return self._queue.dropped

    def submit(self, report: dict[str, Any]) -> None:
        """Queue a report for the reader."""
        self._queue.push(report)
        if self._wakeup is not None:
            self._wakeup.set()

    async def aclose(self) -> None:
        """End the iteration once queued reports are read."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        while True:
            item = self._queue.pop()
            if item is not None:
                yield item
                continue
            if self._closed:
                return
            self._wakeup.clear()
            await self._wakeup.wait()


class WebhookSink:
    """POSTs each report as JSON to ``url`` from a background task: a timeout per
    request, ``retries`` retries with exponential backoff, a bounded queue dropping the
    oldest report. A response body with decisions goes to ``decisions``.

    Counters: ``sent``, ``failed`` (given up after retries), ``retried``, ``dropped``
    (queue full), ``bad_responses`` (non-2xx status or a body that is not decisions).
    """

    def __init__(self, url: str, *, timeout_s: float = 2.0, retries: int = 2,
                 backoff_s: float = 0.2, backoff_cap_s: float = 2.0, max_queue: int = 16,
                 decisions: DecisionApplier | None = None,
                 headers: dict[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise LocalProtocolError(f"webhook URL must be http:// or https://, not {url!r}")
        if not timeout_s > 0 or retries < 0 or backoff_s < 0:
            raise LocalProtocolError("webhook timeout must be > 0, retries and backoff >= 0")
        import httpx  # the 'health' extra

        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self.decisions = decisions
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._httpx = httpx
        self._queue: DropOldestQueue[dict[str, Any]] = DropOldestQueue(max_queue)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.sent = 0
        """Reports the decider accepted (2xx)."""
        self.failed = 0
        """Reports given up after every retry."""
        self.retried = 0
        """Retries made."""
        self.bad_responses = 0
        """Answers with a non-2xx status, or a body that held no valid decisions."""

    @property
    def dropped(self) -> int:
        """Reports dropped because the queue was full (the decider is slow or down)."""
        return self._queue.dropped

    def submit(self, report: dict[str, Any]) -> None:
        """Queue a report for posting (never waits)."""
        before = self._queue.dropped
        self._queue.push(report)
        if self._queue.dropped != before:
            log.warning("health webhook %s: queue full, dropped the oldest report "
                        "(%d dropped so far)", self.url, self._queue.dropped)
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            report = self._queue.pop()
            if report is None:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._post(report)

    async def _post(self, report: dict[str, Any]) -> None:
        body = encode_report(report)
        headers = {"content-type": "application/json"}
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                await asyncio.sleep(retry_delay(attempt, base_s=self.backoff_s,
                                                cap_s=self.backoff_cap_s))
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
            except self._httpx.HTTPError as exc:
                log.warning("health webhook %s: %s (attempt %d of %d)", self.url,
                            type(exc).__name__, attempt + 1, self.retries + 1)
                continue
            if response.status_code >= 500:
                log.warning("health webhook %s: HTTP %d (attempt %d of %d)", self.url,
                            response.status_code, attempt + 1, self.retries + 1)
                continue
            if response.status_code >= 300:
                # a client error will not get better by asking again
                self.bad_responses += 1
                self.failed += 1
                log.warning("health webhook %s: HTTP %d, report not retried", self.url,
                            response.status_code)
                return
            self.sent += 1
            if self.decisions is not None:
                outcomes = self.decisions.apply_body(response.content, source="webhook")
                if any(o["status"] == "rejected" and o["action"] is None for o in outcomes):
                    self.bad_responses += 1
            return
        self.failed += 1
        log.warning("health webhook %s: report %s given up after %d attempts", self.url,
                    report.get("seq"), self.retries + 1)

    async def aclose(self) -> None:
        """Stop posting (queued reports are abandoned) and close the HTTP client."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()


class PrometheusSink:
    """Serves the latest report's figures as Prometheus gauges labelled by session and
    path (``edgewire_health_*``), plus the tier as ``edgewire_health_tier{tier=...}``."""

    def __init__(self, *, port: int = 9464, addr: str = "127.0.0.1",
                 prefix: str = "edgewire_health") -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        labels = ("session", "path")
        self._gauges = {name: Gauge(f"{prefix}_{name}", f"edgewire health report: {name}",
                                    labels, registry=self.registry) for name in GAUGES}
        self._tier = Gauge(f"{prefix}_tier", "1 for the current tier of the path",
                           (*labels, "tier"), registry=self.registry)
        self._reports = Gauge(f"{prefix}_reports", "reports seen", labels,
                              registry=self.registry)
        self._server, self._thread = start_http_server(port, addr, registry=self.registry)
        self.port = int(self._server.server_port)
        """The port actually bound (useful with ``port=0``)."""

    def submit(self, report: dict[str, Any]) -> None:
        """Set the gauges from the report."""
        session, path = str(report["session"]), str(report["path"])
        for name, value in metric_samples(report):
            self._gauges[name].labels(session, path).set(value)
        for tier in ("excellent", "good", "fair", "poor", "down"):
            self._tier.labels(session, path, tier).set(1.0 if report["tier"] == tier else 0.0)
        self._reports.labels(session, path).inc()

    async def aclose(self) -> None:
        """Stop the HTTP server."""
        self._server.shutdown()
        self._server.server_close()


class JsonLinesSink:
    """Appends each report as one JSON line; past ``max_bytes`` the file is moved to
    ``<name>.1`` (replacing it) and a new one begun, so it never grows without bound."""

    def __init__(self, path: str | Path, *, max_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.rotations = 0
        """Times the file was rotated."""
        self.errors = 0
        """Writes that failed (logged)."""

    def submit(self, report: dict[str, Any]) -> None:
        """Write one line (small and buffered: it does not hold the loop)."""
        line = encode_report(report) + b"\n"
        try:
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self.rotations += 1
            with self.path.open("ab") as f:
                f.write(line)
        except OSError as exc:
            self.errors += 1
            log.warning("health report file %s: %s", self.path, exc)

    async def aclose(self) -> None:
        """Nothing held open between writes."""


class SinkFanout:
    """What every reporter shares: a list of sinks, a reporting task, and ``emit`` /
    ``aclose`` / ``async with``. Subclasses implement ``_run``."""

    sinks: list[Any]
    _task: asyncio.Task[None] | None
    reports: int

    async def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        """Start the reporting task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def emit(self, report: dict[str, Any]) -> None:
        """Hand a report to every sink (none may hold the loop)."""
        self.reports += 1
        for sink in self.sinks:
            try:
                sink.submit(report)
            except Exception:  # a broken sink must not stop the others
                log.exception("health sink %s failed", type(sink).__name__)

    async def aclose(self) -> None:
        """Stop reporting and close every sink."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("closing health sink %s failed", type(sink).__name__)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class HealthReporter(SinkFanout):
    """Runs a :class:`HealthMonitor` on a connection and fans its reports out to sinks.

    ``async with HealthReporter(conn, monitor, sinks=[...]):`` or ``start()`` /
    ``aclose()``. ``decisions`` (optional) is where API decisions go: :meth:`decide`.
    """

    def __init__(self, connection: Any, monitor: HealthMonitor, *,
                 sinks: list[Any] | None = None,
                 decisions: DecisionApplier | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.connection = connection
        self.monitor = monitor
        self.sinks: list[Any] = list(sinks or [])
        self.decisions = decisions
        self._wall = wall_clock
        self._task: asyncio.Task[None] | None = None
        self.reports = 0
        """Reports emitted."""

    def stream(self, maxlen: int = 64) -> ReportStream:
        """A new async iterator of the reports from now on."""
        s = ReportStream(maxlen)
        self.sinks.append(s)
        return s

    def decide(self, decision: Any) -> list[dict[str, Any]]:
        """Apply decisions given through the API (outcomes go in the next report)."""
        if self.decisions is None:
            raise LocalProtocolError("this reporter has no DecisionApplier")
        return self.decisions.apply(decision, source="api")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        session = self.connection.session
        monitor = self.monitor
        while True:
            now = loop.time()
            monitor.observe(session, now=now)
            if monitor.due(now=now):
                self.emit(monitor.report(now=now, ts=self._wall()))
            timer = monitor.get_timer()
            wake = now + K_OBSERVE_INTERVAL if timer is None else min(
                timer, now + K_OBSERVE_INTERVAL)
            await asyncio.sleep(max(0.0, wake - loop.time()))
