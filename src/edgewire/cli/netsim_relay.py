"""``edgewire netsim relay``: a UDP relay that puts any UDP program on an emulated link."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import signal
import sys
from typing import Any

from edgewire.aio.relay import K_IDLE_TIMEOUT_S, K_MAX_CLIENTS, start_relay
from edgewire.errors import LocalProtocolError
from edgewire.netsim.scenario import Scenario, load_scenario

__all__ = ["add_relay_parser", "format_stats_line", "parse_host_port", "run_relay"]

#: Default seconds between two stats lines on stderr.
K_STATS_INTERVAL_S = 5.0


def parse_host_port(text: str, *, what: str = "address", allow_port_zero: bool = True
                    ) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> (host, port); raises LocalProtocolError saying
    what is wrong. ``what`` names the value in the message (e.g. "--listen")."""
    if not isinstance(text, str) or not text.strip():
        raise LocalProtocolError(f"{what}: empty; expected HOST:PORT or [IPV6]:PORT")
    text = text.strip()
    if any(c.isspace() for c in text):
        raise LocalProtocolError(f"{what}: {text!r} contains whitespace")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise LocalProtocolError(f"{what}: {text!r} has '[' without ']'")
        host, rest = text[1:end], text[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise LocalProtocolError(f"{what}: {host!r} inside [] is not an IPv6 "
                                     f"address") from None
        if not rest.startswith(":"):
            raise LocalProtocolError(f"{what}: {text!r} has no port; expected [{host}]:PORT")
        port_text = rest[1:]
    else:
        if text.count(":") > 1:
            raise LocalProtocolError(f"{what}: {text!r} looks like an IPv6 address; put it "
                                     f"in brackets: [IPV6]:PORT")
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise LocalProtocolError(f"{what}: {text!r} has no port; expected HOST:PORT")
        if not host:
            raise LocalProtocolError(f"{what}: {text!r} has no host (use 0.0.0.0 or [::] "
                                     f"for every interface)")
        if not all(c.isalnum() or c in "-._" for c in host):
            raise LocalProtocolError(f"{what}: {host!r} is not a host name or IPv4 address")
    if not port_text.isdigit() or not port_text.isascii():
        raise LocalProtocolError(f"{what}: port {port_text!r} is not a number")
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise LocalProtocolError(f"{what}: port {port} is outside {low}..65535")
    return host, port


def add_relay_parser(subparsers: Any) -> None:
    """Add ``relay`` to the ``netsim`` sub-command's subparsers."""
    r = subparsers.add_parser(
        "relay", help="UDP relay applying a scenario's links in real time (no root needed)",
        description="Relay UDP datagrams between clients and an upstream server through "
                    "the scenario's uplink (client to upstream) and downlink (upstream to "
                    "client), in real time. Runs until Ctrl-C.")
    r.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="address clients send to, e.g. 127.0.0.1:5000 or [::]:5000 "
                        "(port 0 picks one)")
    r.add_argument("--upstream", required=True, metavar="HOST:PORT",
                   help="address of the real server, e.g. 127.0.0.1:4433 or [::1]:4433")
    r.add_argument("--scenario", required=True, metavar="FILE",
                   help="scenario TOML: its [link]/[uplink]/[downlink] tables and "
                        "[[events]] (traffic tables are ignored)")
    r.add_argument("--seed", type=int, default=None,
                   help="seed of the link models (default: the scenario's)")
    r.add_argument("--stats-interval", type=float, default=K_STATS_INTERVAL_S, metavar="S",
                   help=f"print a stats line to stderr every S seconds "
                        f"(default {K_STATS_INTERVAL_S:g}; 0 disables)")
    r.add_argument("--max-clients", type=int, default=K_MAX_CLIENTS,
                   help=f"client addresses relayed at once (default {K_MAX_CLIENTS})")
    r.add_argument("--idle-timeout", type=float, default=K_IDLE_TIMEOUT_S, metavar="S",
                   help=f"forget a client silent this long (default {K_IDLE_TIMEOUT_S:g} s)")
    r.add_argument("--json", action="store_true", help="print the final stats as JSON on exit")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_stats_line(stats: dict[str, Any]) -> str:
    """One line summarising :meth:`Relay.stats` for the terminal."""
    parts = [f"relay {stats['elapsed_s']:.1f} s: clients {stats['clients']}"]
    for name in ("uplink", "downlink"):
        s = stats["links"][name]
        delay = s["delay_ms"]
        parts.append(f"{name} {s['packets_delivered']}/{s['packets_offered']} pkts, "
                     f"loss {s['loss_rate'] * 100:.1f} %, delay p50 {_pct(delay['p50'])} ms, "
                     f"{s['throughput_kbps']:.0f} kbit/s")
    late = stats["late_ms"]
    parts.append(f"late p50 {_pct(late['p50'])} p99 {_pct(late['p99'])} ms")
    errors = sum(stats["socket_errors"].values())
    dropped = sum(stats["dropped"].values())
    if errors or dropped or stats["clients_refused"]:
        parts.append(f"socket errors {errors}, relay drops {dropped}, "
                     f"refused {stats['clients_refused']}")
    return " | ".join(parts)


def _format_final(stats: dict[str, Any]) -> str:
    lines = [format_stats_line(stats)]
    for name in ("uplink", "downlink"):
        s = stats["links"][name]
        d = s["delay_ms"]
        lines.append(f"  {name:<8} offered {s['packets_offered']}  delivered "
                     f"{s['packets_delivered']}  lost {s['lost_by_model'] + s['lost_down']}  "
                     f"queue drops {s['dropped_by_queue']}  delay ms p50 {_pct(d['p50'])} "
                     f"p95 {_pct(d['p95'])} p99 {_pct(d['p99'])}")
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats["datagrams"].items())
    lines.append(f"  clients {stats['clients_total']} seen, {stats['clients_expired']} "
                 f"expired; datagrams {counts}")
    return "\n".join(lines)


async def _serve(args: argparse.Namespace, listen: tuple[str, int],
                 upstream: tuple[str, int], scenario: Scenario,
                 result: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        try:
            # `kill` (SIGTERM) stops the relay as cleanly as Ctrl-C does
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        except (NotImplementedError, RuntimeError):
            pass
    relay = await start_relay(listen, upstream, scenario, seed=args.seed,
                              max_clients=args.max_clients, idle_timeout_s=args.idle_timeout)
    host, port = relay.address
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    print(f"edgewire netsim relay: listening on {shown}, upstream {args.upstream}, "
          f"scenario {scenario.name!r}; Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while True:
            if args.stats_interval > 0:
                await asyncio.sleep(args.stats_interval)
                print(format_stats_line(relay.stats()), file=sys.stderr, flush=True)
            else:
                await relay.wait_closed()
                return
    finally:
        relay.close()
        await relay.wait_closed()
        result["stats"] = relay.stats()


def run_relay(args: argparse.Namespace) -> int:
    """Run the relay until Ctrl-C (or SIGTERM); print the final stats; exit status 0.
    Raises LocalProtocolError (or ScenarioError) for bad arguments before anything runs."""
    listen = parse_host_port(args.listen, what="--listen")
    upstream = parse_host_port(args.upstream, what="--upstream", allow_port_zero=False)
    if not (math.isfinite(args.stats_interval) and args.stats_interval >= 0):
        raise LocalProtocolError(f"--stats-interval must be >= 0, got {args.stats_interval}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise LocalProtocolError("--seed must be in 0 .. 2**63-1")
    if args.max_clients < 1:
        raise LocalProtocolError(f"--max-clients must be >= 1, got {args.max_clients}")
    if not (math.isfinite(args.idle_timeout) and args.idle_timeout > 0):
        raise LocalProtocolError(f"--idle-timeout must be > 0, got {args.idle_timeout}")
    scenario = load_scenario(args.scenario)
    result: dict[str, Any] = {}
    try:
        asyncio.run(_serve(args, listen, upstream, scenario, result))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    stats = result.get("stats")
    if stats is not None:
        if args.json:
            print(json.dumps(stats))
        else:
            print(_format_final(stats))
    return 0
