"""Run a scenario: a full edgewire session (QUIC + TLS + channels) over simulated links in
virtual time, or raw probe packets through the same links; results as one JSON-ready dict."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewire.errors import LocalProtocolError
from edgewire.netsim.bwe_report import BweSampler
from edgewire.netsim.config import LinkConfig
from edgewire.netsim.engine import Address, Simulator
from edgewire.netsim.link import Link
from edgewire.netsim.nodes import ServerEndpoint, simulation_quic_configs
from edgewire.netsim.pcap import PcapTap
from edgewire.netsim.scenario import RECOVERY_MODES, Scenario, ScenarioError
from edgewire.netsim.traffic import TrafficApp
from edgewire.transport import Session, SessionConfig
from edgewire.transport.bwe import config_changes, config_with, estimator_names
from edgewire.transport.quicstats import congestion_control_names
from edgewire.transport.recovery import RecoveryConfig

if TYPE_CHECKING:
    from edgewire.traces.endpoint_log import EndpointLogWriter

__all__ = ["CLIENT_ADDR", "SERVER_ADDR", "RunOptions", "link_rng", "run_probe", "run_scenario"]

#: Addresses of the simulated client and server (also those in --pcap files).
CLIENT_ADDR: Address = ("10.0.0.1", 40000)
SERVER_ADDR: Address = ("10.0.0.2", 4433)
#: Time after the traffic stops for frames in flight and queued reliable data to land.
K_DRAIN_S = 2.0  # seconds

#: Reports progress as (simulated seconds so far, total simulated seconds).
Progress = Callable[[float, float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """Overrides of a scenario for one run (the CLI's flags)."""

    seed: int | None = None
    """Replaces the scenario's seed."""
    cc: str | None = None
    """Replaces ``[transport] cc``."""
    estimator: str | None = None
    """Replaces ``[transport] estimator``."""
    bwe: Mapping[str, object] | None = None
    """Estimator settings applied over ``[transport.bwe]`` (dotted keys:
    ``{"delivery.queue_target": 0.02}``; ``transport.bwe.config_with``)."""
    recovery: str | None = None
    """Replaces ``[transport] recovery``."""
    pcap_prefix: str | None = None
    """Write PREFIX-{uplink,downlink}-{in,out}.pcap."""
    endpoint_log_prefix: str | None = None
    """Write PREFIX-client.log and PREFIX-server.log: every message each endpoint sent and
    received, in virtual time (edgewire endpoint logs, docs/TRACES.md)."""
    drain_s: float = K_DRAIN_S
    """Simulated seconds after the traffic stops."""
    skip_idle_sends: bool = True
    """Skip asking aioquic for datagrams when its state shows there are none (see
    ``SessionConfig.skip_idle_sends``); off only to check that it changes nothing."""


def link_rng(seed: int, direction: str) -> random.Random:
    """The random generator of one link direction ("uplink"/"downlink") for ``seed``: the
    simulator and the relay (both drivers) inject the same numbers for the same seed."""
    # string seeds hash with SHA-512 inside random, independent of PYTHONHASHSEED
    return random.Random(f"edgewire-netsim/{seed}/{direction}")


def _links(scenario: Scenario, seed: int) -> tuple[Link, Link]:
    up = Link(scenario.uplink, rng=link_rng(seed, "uplink"), name="uplink")
    down = Link(scenario.downlink, rng=link_rng(seed, "downlink"), name="downlink")
    return up, down


def _reconfigure(link: Link, cfg: LinkConfig) -> Callable[[float], None]:
    def apply(now: float) -> None:
        link.reconfigure(cfg, now=now)
    return apply


def _schedule_events(sim: Simulator, scenario: Scenario, up: Link, down: Link) -> None:
    for ev in scenario.events:
        for link, cfg in ((up, ev.uplink), (down, ev.downlink)):
            if cfg is not None:
                sim.call_at(ev.at_s, _reconfigure(link, cfg))


def _open_taps(prefix: str, up: Link, down: Link) -> list[PcapTap]:
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    taps: list[PcapTap] = []
    for link, src, dst in ((up, CLIENT_ADDR, SERVER_ADDR), (down, SERVER_ADDR, CLIENT_ADDR)):
        enter = PcapTap(f"{prefix}-{link.name}-in.pcap", src, dst)
        leave = PcapTap(f"{prefix}-{link.name}-out.pcap", src, dst)
        link.on_enter = enter
        link.on_leave = leave
        taps += [enter, leave]
    return taps


def run_scenario(scenario: Scenario, options: RunOptions | None = None, *,
                 progress: Progress | None = None,
                 wall_clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Run the scenario's traffic over an edgewire session in virtual time.

    ``wall_clock`` (e.g. ``time.perf_counter``) measures the realtime factor; without it
    the factor is reported as None.
    """
    opts = options or RunOptions()
    seed = scenario.seed if opts.seed is None else opts.seed
    cc = opts.cc or scenario.transport.cc
    if cc not in congestion_control_names():
        raise ScenarioError(scenario.source, "transport.cc",
                            f"unknown congestion controller {cc!r} "
                            f"(registered: {', '.join(congestion_control_names())})")
    estimator = opts.estimator or scenario.transport.estimator
    if estimator not in estimator_names():
        raise ScenarioError(scenario.source, "transport.estimator",
                            f"unknown bandwidth estimator {estimator!r} "
                            f"(registered: {', '.join(estimator_names())})")
    bwe = scenario.transport.bwe
    if opts.bwe:
        try:
            bwe = config_with(bwe, opts.bwe)
        except LocalProtocolError as exc:
            raise ScenarioError(scenario.source, "transport.bwe", str(exc)) from None
    recovery = opts.recovery or scenario.transport.recovery
    if recovery not in RECOVERY_MODES:
        raise ScenarioError(scenario.source, "transport.recovery",
                            f"unsupported recovery mode {recovery!r} "
                            f"(this version supports: {', '.join(RECOVERY_MODES)})")
    if not opts.drain_s >= 0:
        raise LocalProtocolError("drain_s must be >= 0")
    if scenario.endpoints:
        if opts.endpoint_log_prefix:
            raise LocalProtocolError("endpoint logs are not written for multi-endpoint "
                                     "scenarios")
        # multi-endpoint scenarios: a multi-session over one connection per endpoint
        from edgewire.netsim.multi import run_multi_scenario
        return run_multi_scenario(scenario, opts, seed=seed, cc=cc, estimator=estimator,
                                  recovery=recovery, bwe=bwe,
                                  progress=progress, wall_clock=wall_clock)
    started = wall_clock() if wall_clock else None

    client_qc, server_qc = simulation_quic_configs(
        congestion_control=cc, max_datagram_size=scenario.transport.max_datagram_size)
    session_config = SessionConfig(shared_clock=True, stable_stream_order=True,
                                   estimator=estimator, bwe=bwe,
                                   skip_idle_sends=opts.skip_idle_sends,
                                   ack_delay=scenario.transport.ack_delay_ms / 1000,
                                   recovery=RecoveryConfig(mode=recovery))
    client = Session(client_qc, config=session_config)
    logs = _open_logs(opts.endpoint_log_prefix) if opts.endpoint_log_prefix else []
    if logs:
        client.set_endpoint_log(logs[0])
    server = ServerEndpoint(server_qc, config=session_config,
                            on_session=(lambda s, _addr: s.set_endpoint_log(logs[1]))
                            if logs else None)
    sim = Simulator()
    sim.add_endpoint(CLIENT_ADDR, client)
    sim.add_endpoint(SERVER_ADDR, server)
    up, down = _links(scenario, seed)
    sim.connect(CLIENT_ADDR, SERVER_ADDR, up, down)
    _schedule_events(sim, scenario, up, down)
    taps = _open_taps(opts.pcap_prefix, up, down) if opts.pcap_prefix else []

    stop = scenario.duration_s
    client_app = TrafficApp(lambda: client, scenario.up, address=CLIENT_ADDR, seed=seed,
                            stop_at=stop)
    server_app = TrafficApp(lambda: server.sessions.get(CLIENT_ADDR), scenario.down,
                            address=SERVER_ADDR, seed=seed + 1, stop_at=stop)
    sim.add_application(client_app)
    sim.add_application(server_app)
    samplers = {"uplink": BweSampler(up.stats, lambda: client, duration_s=stop),
                "downlink": BweSampler(down.stats, lambda: server.sessions.get(CLIENT_ADDR),
                                       duration_s=stop)}
    _schedule_sampling(sim, list(samplers.values()), stop)

    total = stop + opts.drain_s
    client.connect(SERVER_ADDR, now=0.0)
    try:
        sim.run(total, progress=(lambda now: progress(now, total)) if progress else None)
    finally:
        for tap in taps:
            tap.close()
        for log in logs:
            log.close()
    wall = (wall_clock() - started) if wall_clock and started is not None else None
    sessions = [client, *server.sessions.values()]

    result: dict[str, Any] = {
        "scenario": scenario.name,
        "source": scenario.source,
        "seed": seed,
        "duration_s": scenario.duration_s,
        "simulated_s": total,
        "wall_s": None if wall is None else round(wall, 3),
        "realtime_factor": (None if not wall else round(total / wall, 2)),
        "transport": {"cc": cc, "estimator": estimator, "recovery": recovery,
                      "bwe": config_changes(bwe)},
        "links": {"uplink": up.stats.summary(end=total),
                  "downlink": down.stats.summary(end=total)},
        "channels": {
            "up": _with_recovery(client_app.summary(server_app, duration_s=scenario.duration_s),
                                 client_app, client, server.sessions.get(CLIENT_ADDR)),
            "down": _with_recovery(server_app.summary(client_app,
                                                      duration_s=scenario.duration_s),
                                   server_app, server.sessions.get(CLIENT_ADDR), client)},
        "session": {
            "ready_ms": (None if client_app.ready_at is None
                         else round(client_app.ready_at * 1000.0, 3)),
            "closed": (None if client_app.closed is None else client_app.closed.reason
                       or f"error {client_app.closed.error_code}"),
            "client": _session_stats(client),
        },
        "steps": sim.steps,
        "engine": {"steps": sim.steps, "clock_nudges": sim.nudges,
                   "unroutable": sim.unroutable,
                   "idle_sends_skipped": sum(s.idle_sends_skipped for s in sessions)},
    }
    result["bwe"] = _bwe(result, samplers, client, server.sessions.get(CLIENT_ADDR),
                         ready=client_app.ready_at or 0.0, stop=stop)
    if taps:
        result["pcap"] = [str(t.path) for t in taps]
    if logs:
        result["endpoint_logs"] = [str(log.path) for log in logs]
    return result


def _open_logs(prefix: str) -> list[EndpointLogWriter]:
    """PREFIX-client.log and PREFIX-server.log."""
    from edgewire.traces.endpoint_log import EndpointLogWriter

    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    client = EndpointLogWriter(f"{prefix}-client.log")
    try:
        return [client, EndpointLogWriter(f"{prefix}-server.log")]
    except Exception:
        client.close()
        raise


def _schedule_sampling(sim: Simulator, samplers: list[BweSampler], stop: float) -> None:
    interval = samplers[0].interval

    def tick(now: float) -> None:
        for s in samplers:
            s.sample(now)
        if now + interval <= stop + 1e-9:
            sim.call_at(now + interval, tick)

    def at_stop(now: float) -> None:
        for s in samplers:
            s.mark_stop(now)

    sim.call_at(interval, tick)
    sim.call_at(stop, at_stop)


def _bwe(result: dict[str, Any], samplers: dict[str, BweSampler], client: Session,
         server: Session | None, *, ready: float, stop: float) -> dict[str, Any]:
    """The run's ``bwe`` table: the direction carrying the most media at the top level,
    both directions under ``directions``."""
    directions: dict[str, Any] = {}
    for name, side, sender in (("uplink", "up", client), ("downlink", "down", server)):
        rows = result["channels"][side]
        media = sum(r.get("goodput_kbps") or 0.0 for r in rows.values()) * 1000 / 8 * stop
        directions[name] = samplers[name].summary(
            media_bytes=round(media), start_s=ready, stop_s=stop,
            state=sender.bwe_state() if sender is not None and sender.ready else None)
        directions[name]["media_kbps"] = round(media * 8 / stop / 1000, 1) if stop else 0.0
    main = max(directions, key=lambda d: directions[d]["media_kbps"])
    top = {k: v for k, v in directions[main].items() if k != "timeline"}
    return {"direction": main, **top, "timeline": directions[main]["timeline"],
            "directions": {d: {k: v for k, v in row.items() if k != "timeline"}
                           for d, row in directions.items()}}


def _with_recovery(rows: dict[str, dict[str, Any]], app: TrafficApp,
                   sender: Session | None, receiver: Session | None
                   ) -> dict[str, dict[str, Any]]:
    """Add each real-time channel's recovery figures: what the sender did (FEC, answers to
    NACKs, overhead) and what the receiver did (gaps, rebuilt, NACKs)."""
    for name, row in rows.items():
        s = app.senders.get(name)
        if s is None or s.flow.qos.reliable or sender is None:
            continue
        send = sender.recovery_summary(s.channel_id)
        if not send:
            continue
        recv = {}
        if receiver is not None and any(c.channel_id == s.channel_id
                                        for c in receiver.channels):
            recv = receiver.recovery_summary(s.channel_id)
        row["recovery"] = {"overhead": send.pop("overhead"), "sender": send,
                           "receiver": recv}
    return rows


def _session_stats(session: Session) -> dict[str, Any]:
    stats = session.stats()
    return {k: stats[k] for k in ("rtt_ms", "cwnd_bytes", "counters") if k in stats}


def run_probe(scenario: Scenario, *, packets: int, rate_pps: float, size_bytes: int,
              seed: int | None = None, pcap_prefix: str | None = None,
              progress: Progress | None = None,
              wall_clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Send ``packets`` raw packets of ``size_bytes`` at ``rate_pps`` through each
    direction of the scenario's links (no QUIC), applying its events; link statistics."""
    if packets < 1:
        raise LocalProtocolError(f"packets must be >= 1, got {packets}")
    if not rate_pps > 0:
        raise LocalProtocolError(f"rate must be > 0 packets/s, got {rate_pps}")
    if not 1 <= size_bytes <= 65_507:
        raise LocalProtocolError(f"size must be 1 .. 65507 bytes, got {size_bytes}")
    seed = scenario.seed if seed is None else seed
    started = wall_clock() if wall_clock else None
    up, down = _links(scenario, seed)
    taps = _open_taps(pcap_prefix, up, down) if pcap_prefix else []
    events = sorted(((ev.at_s, i, link, cfg)
                     for i, ev in enumerate(scenario.events)
                     for link, cfg in ((up, ev.uplink), (down, ev.downlink))
                     if cfg is not None), key=lambda e: (e[0], e[1]))
    payload = bytes(size_bytes)
    interval = 1.0 / rate_pps
    send_end = (packets - 1) * interval
    next_event = 0
    report_every = max(1, packets // 20)
    try:
        for i in range(packets):
            now = i * interval
            while next_event < len(events) and events[next_event][0] <= now:
                at, _, link, cfg = events[next_event]
                link.reconfigure(cfg, now=at)
                next_event += 1
            for link in (up, down):
                link.send(payload, now=now)
                link.receive(now=now)
            if progress is not None and i % report_every == 0:
                progress(now, send_end)
        end = send_end
        for link in (up, down):
            while (t := link.get_timer()) is not None:
                link.receive(now=t)
                end = max(end, t)
    finally:
        for tap in taps:
            tap.close()
    end = max(end, send_end + interval)
    wall = (wall_clock() - started) if wall_clock and started is not None else None
    return {
        "scenario": scenario.name,
        "seed": seed,
        "packets": packets,
        "rate_pps": rate_pps,
        "size_bytes": size_bytes,
        "simulated_s": round(end, 6),
        "wall_s": None if wall is None else round(wall, 3),
        "realtime_factor": None if not wall else round(end / wall, 2),
        "links": {"uplink": up.stats.summary(end=end), "downlink": down.stats.summary(end=end)},
    }
