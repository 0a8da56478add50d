"""``edgewire bench bwe-sockets``: the congestion-control scenarios over real UDP sockets.

``edgewire bench bwe`` runs its scenarios in netsim's virtual time. This benchmark runs the
same scenario tables (``bench_bwe.scenarios``: the constant 2 Mbit/s link, the step
2 → 0.5 → 2 Mbit/s and the competition by default, the cellular traces with ``--only
trace``) through the real-time relay (``edgewire.aio.relay``: the same link model, fed
with ``loop.time()``) between a real edgewire server and client on loopback UDP, with TLS
verified against a self-signed certificate. What runs is what an application gets from
``edgewire.serve`` and ``edgewire.connect``: the asyncio adapter, aioquic, the socket
buffers and the event loop's timing.

The server sends each scenario's own flows towards the client: 32 kbit/s audio, and in the
competition 50 tokens/s and a 1.5 Mbit/s adaptive video (``aio.runner.send_workload``, the
video following its share down the ladder), beside a bulk embeddings transfer (4 x 768
float32 per message, sent as fast as the channel takes them). Per run: throughput and
utilization (payload the client received before the traffic stopped, against the link's
capacity up to then; ``bench bwe`` also counts what lands in the 2 s after the stop, which
can take it above 1), ``link_utilization`` (every byte the link carried by then, QUIC and
edgewire headers, ACKs and feedback included), p95 queueing delay, p95 self-inflicted
queueing delay and p95 one-way delay of the relay's downlink, the sender's mean bandwidth
estimate, and how late the relay delivered in real time (``late_ms``: the lateness of the
event loop, which the link model does not see); for the step, the same reaction times as
``bench bwe``; for the competition, the token latency p95 (both ends read one clock).
``--plot DIR`` draws Pantheon's chart (``bwe-sockets-pantheon.png``) and each edgewire
run's timeline. The scenarios take their duration in real time, one scheme after the
other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import edgewire
from edgewire.aio.relay import Relay, start_relay
from edgewire.aio.runner import send_workload
from edgewire.certs import write_self_signed
from edgewire.cli.bench_bwe import (
    K_RTT_MS,
    _goals,
    _step_figures,
    add_rtt_argument,
    add_schemes_argument,
    check_rtt_ms,
    pantheon_chart,
    print_goals,
    scenarios,
    scheme_transport,
)
from edgewire.cli.bench_bwe import _trace_dir as trace_dir
from edgewire.errors import EdgewireError
from edgewire.netsim.bwe_report import BweSampler, plot_timeline
from edgewire.netsim.scenario import Scenario, parse_scenario
from edgewire.transport.bwe import DEFAULT_ESTIMATOR
from edgewire.transport.config import SessionConfig
from edgewire.workload import WorkloadMix, payload_size

__all__ = ["SCHEMES", "add_bench_bwe_sockets_arguments", "main_bench_bwe_sockets",
           "run_bench_bwe_sockets"]

#: Schemes run by default: edgewire's controller (default estimator), aioquic's two.
SCHEMES = ("edgewire", "reno", "cubic")
#: Scenarios run by default (name prefixes of ``bench_bwe.scenarios``).
DEFAULT_ONLY = ("constant", "step", "competition")
#: One embeddings message of the bulk transfer: rows x dimensions, float32 (12 kB; a
#: message counts once whole, so what arrives by the stop is short of the truth by less
#: than one: 0.5 % of a 10 s run at 2 Mbit/s).
K_BULK_SHAPE = (4, 768)
#: Seconds allowed for the QUIC handshake and the edgewire hello over the relay.
K_CONNECT_S = 10.0
#: Seconds the sessions get to close after the run.
K_CLOSE_S = 2.0


class _Run:
    """One scenario with one scheme: the sender's timeline and the receiver's counts."""

    def __init__(self, relay: Relay, scenario: Scenario) -> None:
        self.relay = relay
        self.duration = scenario.duration_s
        # the scenario's flows towards the client: the bulk embeddings transfer runs as
        # its own loop (always a message waiting), the rest through the workload driver
        flows = {f.kind.value: f.source for f in scenario.down}
        self.bulk = "embeddings" in flows
        self.mix = WorkloadMix(audio=flows.get("audio"), video=flows.get("video"),
                               tokens=flows.get("tokens"), embeddings=None)
        self.stop = asyncio.Event()
        self.sampler: BweSampler | None = None
        self.received_bytes = 0
        self.link_bytes = 0
        self.token_latency_p95_ms: float | None = None
        self.sender_error: BaseException | None = None

    @property
    def timeline(self) -> list[dict[str, Any]]:
        """The sender's estimate and the downlink, sample by sample (netsim's rows)."""
        return self.sampler.rows if self.sampler is not None else []

    async def serve(self, conn: edgewire.Connection) -> None:
        """The sender: the scenario's flows until the run stops."""
        tasks: list[asyncio.Task[Any]] = []
        try:
            async def send_bulk() -> None:
                bulk = await conn.channel("embeddings")
                rows = np.random.default_rng(1).standard_normal(K_BULK_SHAPE)
                message = rows.astype(np.float32)
                while True:
                    await bulk.send(message)

            sampler = self.sampler = BweSampler(self.relay.link_stats("downlink"),
                                                lambda: conn.session,
                                                duration_s=self.duration)

            async def sample() -> None:
                while True:
                    sampler.sample(self.relay.now())
                    await asyncio.sleep(sampler.interval)

            tasks.append(asyncio.create_task(sample()))
            if any(k is not None for k in (self.mix.audio, self.mix.video, self.mix.tokens)):
                # the adaptive video follows its share, as in netsim
                tasks.append(asyncio.create_task(send_workload(
                    conn, seconds=max(0.0, self.duration - self.relay.now()), mix=self.mix)))
            if self.bulk:
                tasks.append(asyncio.create_task(send_bulk()))
            # until the receiver stops the run; a sender task that fails ends it early
            stopped = asyncio.create_task(self.stop.wait())
            pending: set[asyncio.Task[Any]] = {stopped, *tasks}
            while not stopped.done():
                done, pending = await asyncio.wait(pending,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        raise error
        except Exception as exc:  # reported by the run, which then fails clearly
            self.sender_error = exc
            self.stop.set()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.wait_closed(), K_CLOSE_S)

    async def receive(self, conn: edgewire.Connection) -> None:
        """The receiver: read every channel; count what arrived before the stop."""
        channels: list[edgewire.Channel] = []
        readers: list[asyncio.Task[None]] = []

        async def read(ch: edgewire.Channel) -> None:
            async for msg in ch:
                if not self.stop.is_set():
                    self.received_bytes += payload_size(msg.payload)

        async def accept() -> None:
            while True:
                ch = await conn.accept()
                channels.append(ch)
                readers.append(asyncio.create_task(read(ch)))

        acceptor = asyncio.create_task(accept())
        try:
            # the relay's clock is the loop's, from the relay's start
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(),
                                       max(0.0, self.duration - self.relay.now()))
            if self.sampler is not None:
                self.sampler.mark_stop(self.relay.now())
            self.link_bytes = self.relay.link_stats("downlink").bytes_delivered
            self.stop.set()
            for ch in channels:
                if ch.kind == "tokens":
                    self.token_latency_p95_ms = ch.stats().latency.percentiles_ms((95,))["p95"]
        finally:
            for task in (acceptor, *readers):
                task.cancel()
            await asyncio.gather(acceptor, *readers, return_exceptions=True)


async def _run_one(table: dict[str, Any], scheme: str, cert: Path, key: Path,
                   seconds: float, plot_dir: Path | None) -> tuple[dict[str, Any], str | None]:
    transport = scheme_transport(scheme)
    # both ends read one clock (one process): message latencies are exact
    config = SessionConfig(estimator=transport.get("estimator", DEFAULT_ESTIMATOR),
                           shared_clock=True)
    scenario = parse_scenario({**table, "seed": 1})
    run: _Run | None = None

    async def handler(conn: edgewire.Connection) -> None:
        assert run is not None
        await run.serve(conn)

    server = await edgewire.serve("127.0.0.1", 0, handler, certfile=str(cert),
                                  keyfile=str(key), congestion_control=transport["cc"],
                                  config=config)
    try:
        relay = await start_relay(("127.0.0.1", 0), ("127.0.0.1", server.address[1]),
                                  scenario)
        run = _Run(relay, scenario)
        try:
            async with edgewire.connect(
                    f"edgewire://127.0.0.1:{relay.address[1]}", cafile=str(cert),
                    server_name="localhost", congestion_control=transport["cc"],
                    config=config, handshake_timeout=K_CONNECT_S) as conn:
                await run.receive(conn)
            # what the bottleneck still holds counts towards the delay figures
            await asyncio.sleep(0.5)
            stats = relay.stats()
        finally:
            relay.close()
            await relay.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    if run.sender_error is not None:
        raise RuntimeError(f"{table['name']}, {scheme}: the sender failed: "
                           f"{run.sender_error!r}") from run.sender_error
    down = stats["links"]["downlink"]
    estimates = [r["estimate_kbps"] for r in run.timeline if r["estimate_kbps"] is not None]
    cap = run.sampler.capacity_bits_at_stop if run.sampler is not None else None
    row: dict[str, Any] = {
        "throughput_kbps": round(run.received_bytes * 8 / scenario.duration_s / 1000.0, 1),
        "utilization": round(run.received_bytes * 8 / cap, 4) if cap else None,
        "link_utilization": round(run.link_bytes * 8 / cap, 4) if cap else None,
        "queue_delay_p95_ms": down["queue_delay_ms"]["p95"],
        "self_inflicted_p95_ms": down["self_inflicted_delay_ms"]["p95"],
        "delay_p95_ms": down["delay_ms"]["p95"],
        "estimate_mean_kbps": round(float(np.mean(estimates)), 1) if estimates else None,
        "capacity_kbps": round(cap / scenario.duration_s / 1000.0, 1) if cap else None,
        "loss_rate": down["loss_rate"],
        "relay_late_ms": stats["late_ms"],
    }
    if table["name"].startswith("step"):
        row.update(_step_figures({"bwe": {"timeline": run.timeline}}, seconds))
    if run.token_latency_p95_ms is not None:
        row["tokens_latency_p95_ms"] = run.token_latency_p95_ms
    plot = None
    if plot_dir is not None and scheme.startswith("edgewire"):
        suffix = scheme.removeprefix("edgewire")
        plot = str(plot_timeline(
            {"timeline": run.timeline},
            plot_dir / f"bwe-sockets-{table['name']}{suffix}.png",
            title=f"{table['name']}: {scheme} over real sockets (downlink)"))
    return row, plot


async def run_bench_bwe_sockets(
        *, seconds: float = 10.0, schemes: tuple[str, ...] = SCHEMES,
        only: tuple[str, ...] = DEFAULT_ONLY, plot_dir: Path | None = None,
        rtt_ms: float = K_RTT_MS,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every chosen scenario x scheme over real sockets, every link ``rtt_ms`` round
    trip; one JSON-ready dict."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    rtt_ms = check_rtt_ms(rtt_ms)
    for scheme in schemes:
        scheme_transport(scheme)  # a clear error before anything runs
    traces = trace_dir() if any("trace" in o for o in only) else None
    tables = [t for t in scenarios(seconds, traces, rtt_ms=rtt_ms)
              if any(o in t["name"] for o in only)]
    if not tables:
        known = ", ".join(t["name"] for t in scenarios(seconds, trace_dir()))
        raise ValueError(f"--only {','.join(only)!r} matches no scenario (scenarios: {known})")
    out: dict[str, Any] = {}
    plots: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = write_self_signed(tmp, ["localhost"])
        for table in tables:
            rows: dict[str, Any] = {}
            for scheme in schemes:
                if progress:
                    progress(f"bench bwe-sockets: {table['name']}, {scheme} "
                             f"({table['duration_s']:g} s)")
                rows[scheme], plot = await _run_one(table, scheme, cert, key, seconds,
                                                    plot_dir)
                if plot is not None:
                    plots.append(plot)
            out[table["name"]] = {"schemes": rows,
                                  "goals": {s: _goals(table["name"], rows, s, rtt_ms)
                                            for s in rows
                                            if s.startswith("edgewire")}}
    if plot_dir is not None:
        plots.insert(0, str(pantheon_chart(out, plot_dir / "bwe-sockets-pantheon.png")))
    report: dict[str, Any] = {"params": {"seconds": seconds, "schemes": list(schemes),
                                         "rtt_ms": rtt_ms,
                                         "transport": "real UDP sockets, loopback, "
                                                      "through the real-time relay"},
                              "scenarios": out}
    if plots:
        report["plots"] = plots
    return report


def add_bench_bwe_sockets_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgewire bench bwe-sockets``."""
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="real seconds of the constant run; the step and trace runs "
                             "take twice as long (default 10)")
    add_schemes_argument(parser)
    parser.add_argument("--only", default=",".join(DEFAULT_ONLY),
                        help="comma-separated substrings of scenario names (default: "
                             "constant,step,competition; 'trace' runs the cellular traces)")
    add_rtt_argument(parser)
    parser.add_argument("--plot", metavar="DIR",
                        help="write Pantheon's chart (throughput against p95 one-way delay) "
                             "and each edgewire run's timeline as PNG into DIR")
    parser.add_argument("--json", action="store_true")


def main_bench_bwe_sockets(args: argparse.Namespace, *,
                           progress: Callable[[str], None] | None = None) -> int:
    """The CLI entry: a table per scenario, or JSON with ``--json``."""
    schemes = tuple(s.strip() for s in args.schemes.split(",") if s.strip())
    only = tuple(o.strip() for o in args.only.split(",") if o.strip())
    if not schemes or not only:
        print("edgewire: error: --schemes and --only must name something")
        return 2
    plot_dir = Path(args.plot) if args.plot else None
    if plot_dir is not None:
        plot_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(run_bench_bwe_sockets(seconds=args.seconds, schemes=schemes,
                                                   only=only, plot_dir=plot_dir,
                                                   rtt_ms=args.rtt_ms, progress=progress))
    except ValueError as exc:
        print(f"edgewire: error: {exc}")
        return 2
    except (EdgewireError, RuntimeError, OSError, TimeoutError) as exc:
        # a run that could not connect, or whose sender failed: say which, no traceback
        print(f"edgewire: error: bench bwe-sockets failed: {exc or type(exc).__name__}")
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    for name, sc in result["scenarios"].items():
        print(f"{name} (real sockets)")
        print(f"  {'scheme':<19}{'kbit/s':>9}{'util':>7}{'qd p95':>9}{'owd p95':>9}"
              f"{'estimate':>10}{'late p99':>10}")
        for scheme, row in sc["schemes"].items():
            print(f"  {scheme:<19}{row['throughput_kbps']:>9.0f}"
                  f"{(row['utilization'] or 0):>7.2f}{(row['queue_delay_p95_ms'] or 0):>9.1f}"
                  f"{(row['delay_p95_ms'] or 0):>9.1f}{(row['estimate_mean_kbps'] or 0):>10.0f}"
                  f"{(row['relay_late_ms'].get('p99') or 0):>10.2f}")
        print_goals(sc)
    for p in result.get("plots", []):
        print(f"plot: {p}")
    return 0
