"""Run a multi-endpoint scenario: a client :class:`~edgewire.health.multipath.MultiSession`
with one QUIC connection per ``[[endpoints]]`` entry, each over its own simulated links,
and the endpoints' servers sharing one :class:`~edgewire.health.multireceiver.
MultiReceiver` (docs/NETSIM.md, "Multi-endpoint scenarios")."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.health.multipath import MultipathConfig, MultiSession
from edgewire.health.multireceiver import MultiReceiver
from edgewire.netsim import health_hook
from edgewire.netsim.config import LinkConfig
from edgewire.netsim.engine import Address, Simulator
from edgewire.netsim.link import Link
from edgewire.netsim.nodes import ServerEndpoint, simulation_quic_configs
from edgewire.netsim.run import RunOptions, link_rng
from edgewire.netsim.scenario import LinkEvent, Scenario, TrafficFlow
from edgewire.netsim.traffic import AppSession, TrafficApp
from edgewire.transport import ChannelOpened, MessageReceived, Session, SessionConfig
from edgewire.transport.bwe import DEFAULT_ESTIMATOR, BweConfig, config_changes
from edgewire.transport.qos import ChannelKind
from edgewire.transport.recovery import RecoveryConfig
from edgewire.workload.sources import Frame

__all__ = ["K_GAP_WINDOW_S", "K_GOAL_GAP_P95_MS", "media_gap_ms", "run_multi_scenario",
           "seeded_failover", "token_integrity"]

#: A switch's gap is the longest pause in media deliveries that overlaps this many seconds
#: either side of it.
K_GAP_WINDOW_S = 1.0
#: Deliveries and token messages a run records per direction (a 20-minute run at 50
#: frames/s fits).
K_MAX_RECORDED = 1 << 16

Progress = Callable[[float, float], None]


def client_address(i: int) -> Address:
    """The simulated client's address towards endpoint ``i``."""
    return ("10.0.0.1", 40000 + i)


def server_address(i: int) -> Address:
    """Endpoint ``i``'s server address (endpoint 0 sits where single runs put theirs)."""
    return (f"10.0.{i}.2", 4433)


class _RecordingApp(TrafficApp):
    """A traffic application that also logs token messages and media delivery times."""

    def __init__(self, session: Callable[[], AppSession | None], flows: tuple[TrafficFlow, ...],
                 *, touches: tuple[Address, ...], seed: int, stop_at: float) -> None:
        super().__init__(session, flows, address=None, seed=seed, stop_at=stop_at,
                         touches=touches)
        self.kinds: dict[int, ChannelKind] = {}
        self.media_at: deque[float] = deque(maxlen=K_MAX_RECORDED)
        self.tokens_sent: deque[tuple[tuple[int, ...], float]] = deque(maxlen=K_MAX_RECORDED)
        self.tokens_received: deque[tuple[tuple[int, ...], float]] = deque(
            maxlen=K_MAX_RECORDED)

    def _on_event(self, ev: Any, now: float) -> None:
        super()._on_event(ev, now)
        if isinstance(ev, ChannelOpened):
            self.kinds[ev.channel_id] = ev.kind
        elif isinstance(ev, MessageReceived):
            kind = self.kinds.get(ev.channel_id)
            if kind is ChannelKind.TOKENS:
                self.tokens_received.append((tuple(ev.payload.ids), ev.payload.timestamp))
            elif kind is not None and not kind.reliable:
                self.media_at.append(now)

    def _submit(self, session: AppSession, s: Any, frame: Frame, now: float) -> None:
        before = s.sent
        super()._submit(session, s, frame, now)
        if s.sent != before and s.flow.kind is ChannelKind.TOKENS:
            payload = frame.payload
            ids = payload.ids if hasattr(payload, "ids") else payload
            self.tokens_sent.append((tuple(ids), frame.timestamp))


class _Driver:
    """Steps the client multi-session and the shared receiver at every instant."""

    def __init__(self, multi: MultiSession, receiver: MultiReceiver,
                 touches: tuple[Address, ...]) -> None:
        self.multi = multi
        self.receiver = receiver
        self.touches = touches
        self.address: Address | None = None

    def get_timer(self) -> float | None:
        times = [t for t in (self.multi.get_timer(), self.receiver.get_timer())
                 if t is not None]
        return min(times) if times else None

    def step(self, *, now: float) -> tuple[Address, ...]:
        multi = self.multi
        timer = multi.get_timer()
        if timer is not None and timer <= now:
            multi.handle_timer(now=now)
        else:
            multi.poll(now=now)
        self.receiver.handle_timer(now=now)
        return self.touches


def media_gap_ms(deliveries: list[float], at: float, *, end: float) -> float | None:
    """Longest interval without a media delivery that overlaps ``at`` +- K_GAP_WINDOW_S
    (a pause still open at ``end`` counts up to ``end``); None without deliveries."""
    if not deliveries:
        return None
    times = sorted(deliveries)
    lo, hi = at - K_GAP_WINDOW_S, at + K_GAP_WINDOW_S
    best = 0.0
    for a, b in zip(times, [*times[1:], max(end, times[-1])], strict=True):
        if b >= lo and a <= hi:
            best = max(best, b - a)
    return round(best * 1000.0, 3)


def token_integrity(sent: list[tuple[tuple[int, ...], float]],
                    received: list[tuple[tuple[int, ...], float]]) -> dict[str, int]:
    """Token messages sent, delivered, lost (never delivered), duplicated (delivered more
    than once), reordered (delivered before one sent earlier) and foreign (not sent)."""
    pos = {key: i for i, key in enumerate(sent)}
    seen: set[tuple[tuple[int, ...], float]] = set()
    duplicated = reordered = foreign = 0
    last = -1
    for key in received:
        if key in seen:
            duplicated += 1
            continue
        seen.add(key)
        i = pos.get(key)
        if i is None:
            foreign += 1
            continue
        if i < last:
            reordered += 1
        last = max(last, i)
    return {"sent": len(sent), "delivered": len(seen), "lost": len(set(pos) - seen),
            "duplicated": duplicated, "reordered": reordered, "foreign": foreign}


def run_multi_scenario(scenario: Scenario, options: RunOptions, *, seed: int, cc: str,
                       recovery: str, estimator: str = DEFAULT_ESTIMATOR,
                       bwe: BweConfig | None = None,
                       progress: Progress | None = None,
                       wall_clock: Callable[[], float] | None = None) -> dict[str, Any]:
    """Run a scenario with ``[[endpoints]]``; the result has the single-endpoint keys
    (``links`` named ``<endpoint>-uplink``...) plus ``paths``, ``switches``, ``tokens``,
    ``decisions`` and ``multipath``."""
    started = wall_clock() if wall_clock else None
    mp = scenario.multipath
    assert mp is not None
    config = MultipathConfig(failover_after_s=mp.failover_after_s,
                             probe_interval_s=mp.probe_interval_s,
                             ack_delay_s=mp.ack_delay_s, auto_failover=mp.auto_failover)
    bwe = scenario.transport.bwe if bwe is None else bwe
    session_config = SessionConfig(shared_clock=True, stable_stream_order=True,
                                   estimator=estimator, bwe=bwe,
                                   skip_idle_sends=options.skip_idle_sends,
                                   ack_delay=scenario.transport.ack_delay_ms / 1000,
                                   recovery=RecoveryConfig(mode=recovery))
    sim = Simulator()
    receiver = MultiReceiver(config=config)
    clients: dict[str, Session] = {}
    links: dict[str, tuple[Link, Link]] = {}
    servers: list[ServerEndpoint] = []
    for i, ep in enumerate(scenario.endpoints):
        client_qc, server_qc = simulation_quic_configs(
            congestion_control=cc, max_datagram_size=scenario.transport.max_datagram_size)
        clients[ep.name] = Session(client_qc, config=session_config)
        server = ServerEndpoint(server_qc, config=session_config,
                                on_session=lambda s, _a: receiver.attach(s, now=sim.now))
        servers.append(server)
        sim.add_endpoint(client_address(i), clients[ep.name])
        sim.add_endpoint(server_address(i), server)
        up = Link(ep.uplink, rng=link_rng(seed, f"{ep.name}/uplink"), name=f"{ep.name}-uplink")
        down = Link(ep.downlink, rng=link_rng(seed, f"{ep.name}/downlink"),
                    name=f"{ep.name}-downlink")
        sim.connect(client_address(i), server_address(i), up, down)
        links[ep.name] = (up, down)
    sid = f"netsim-{seed}"
    initial = next(ep.name for ep in scenario.endpoints if ep.initial)
    multi = MultiSession(clients, session_id=sid, initial=initial, config=config)
    n = len(scenario.endpoints)
    client_addrs = tuple(client_address(i) for i in range(n))
    server_addrs = tuple(server_address(i) for i in range(n))
    sim.add_application(_Driver(multi, receiver, client_addrs + server_addrs))
    stop = scenario.duration_s
    client_app = _RecordingApp(lambda: multi, scenario.up, touches=client_addrs, seed=seed,
                               stop_at=stop)
    server_app = _RecordingApp(lambda: receiver.sessions.get(sid), scenario.down,
                               touches=server_addrs, seed=seed + 1, stop_at=stop)
    sim.add_application(client_app)
    sim.add_application(server_app)
    decisions: list[dict[str, Any]] = []
    _schedule(sim, scenario.events, links, multi, decisions)
    health = health_hook.PathHealth(sid, {name: _constant(s) for name, s in clients.items()})
    health.schedule(sim, stop)

    total = stop + options.drain_s
    for i, name in enumerate(clients):
        clients[name].connect(server_address(i), now=0.0)
    sim.run(total, progress=(lambda now: progress(now, total)) if progress else None)
    wall = (wall_clock() - started) if wall_clock and started is not None else None
    server_multi = receiver.sessions.get(sid)

    directions = {"up": list(server_app.media_at), "down": list(client_app.media_at)}
    switches = []
    for ev in multi.switches:
        gaps = {d: media_gap_ms(times, ev.at_s, end=stop) for d, times in directions.items()
                if times}
        worst = [g for g in gaps.values() if g is not None]
        switches.append({"at_s": round(ev.at_s, 6), "from": ev.from_path, "to": ev.to_path,
                         "reason": ev.reason, "gap_ms": max(worst) if worst else None,
                         "gap_ms_by_direction": gaps, "resent": ev.resent})
    stats = multi.path_stats(now=total)
    paths = {name: {"links": {"uplink": up.stats.summary(end=total),
                              "downlink": down.stats.summary(end=total)},
                    "health": {**stats[name], **health.report(name, now=total)}}
             for name, (up, down) in links.items()}
    return {
        "scenario": scenario.name, "source": scenario.source, "seed": seed,
        "duration_s": scenario.duration_s, "simulated_s": total,
        "wall_s": None if wall is None else round(wall, 3),
        "realtime_factor": None if not wall else round(total / wall, 2),
        "transport": {"cc": cc, "estimator": estimator, "recovery": recovery,
                      "bwe": config_changes(bwe)},
        "links": {f"{name}-{d}": row["links"][d] for name, row in paths.items()
                  for d in ("uplink", "downlink")},
        "channels": {"up": client_app.summary(server_app, duration_s=stop),
                     "down": server_app.summary(client_app, duration_s=stop)},
        "session": {"ready_ms": (None if client_app.ready_at is None
                                 else round(client_app.ready_at * 1000.0, 3)),
                    "closed": None if client_app.closed is None else client_app.closed.reason},
        "paths": paths,
        "switches": switches,
        "tokens": {"up": token_integrity(list(client_app.tokens_sent),
                                         list(server_app.tokens_received)),
                   "down": token_integrity(list(server_app.tokens_sent),
                                           list(client_app.tokens_received))},
        "decisions": decisions,
        "multipath": {
            "initial": initial, "active_at_end": multi.active,
            "failover_after_s": config.failover_after_s,
            "probe_interval_s": config.probe_interval_s,
            "client": {"reliable": multi.reliable_stats(), "malformed": multi.malformed},
            "server": (None if server_multi is None else
                       {"reliable": server_multi.reliable_stats(),
                        "malformed": server_multi.malformed, "active_at_end": server_multi.active,
                        "switches": [{"at_s": round(e.at_s, 6), "from": e.from_path,
                                      "to": e.to_path, "reason": e.reason}
                                     for e in server_multi.switches]}),
            "receiver": receiver.summary()},
        "steps": sim.steps,
        "engine": {"steps": sim.steps, "clock_nudges": sim.nudges,
                   "unroutable": sim.unroutable,
                   "idle_sends_skipped": sum(
                       s.idle_sends_skipped
                       for s in [*clients.values(),
                                 *(x for srv in servers for x in srv.sessions.values())])},
    }


def _schedule(sim: Simulator, events: tuple[LinkEvent, ...],
              links: dict[str, tuple[Link, Link]], multi: MultiSession,
              decisions: list[dict[str, Any]]) -> None:
    for ev in events:
        if ev.decision is not None:
            def decide(now: float, d: dict[str, Any] = ev.decision) -> None:
                decisions.append({"at_s": round(now, 6), "decision": d,
                                  "outcome": multi.apply_decision(d, now=now)})
            sim.call_at(ev.at_s, decide)
        if ev.endpoint is None:
            continue
        up, down = links[ev.endpoint]
        for link, cfg in ((up, ev.uplink), (down, ev.downlink)):
            if cfg is not None:
                sim.call_at(ev.at_s, _reconfigure(link, cfg))


def _constant(session: Session) -> Callable[[], Session]:
    return lambda: session


def _reconfigure(link: Link, cfg: LinkConfig) -> Callable[[float], None]:
    def apply(now: float) -> None:
        link.reconfigure(cfg, now=now)
    return apply


#: The failover goal (issue 7): media resumes within this long after the active path goes
#: dark, at the 95th percentile over seeded runs.
K_GOAL_GAP_P95_MS = 300.0


def seeded_failover(scenario: Scenario, seeds: list[int],
                    options: RunOptions | None = None) -> dict[str, Any]:
    """Run a multi-endpoint scenario once per seed; the p95 (nearest rank) of every
    switch's ``gap_ms`` and the tokens lost, duplicated or reordered over all runs, with
    whether the failover goal holds (p95 <= K_GOAL_GAP_P95_MS, every run switched, no token
    harmed)."""
    # local import: run.py dispatches multi-endpoint scenarios to this module
    from edgewire.netsim.run import run_scenario
    if not scenario.endpoints:
        raise LocalProtocolError("seeded failover runs need a scenario with [[endpoints]]")
    if not seeds:
        raise LocalProtocolError("no seeds")
    opts = options or RunOptions()
    gaps: list[float] = []
    runs: list[dict[str, Any]] = []
    harmed = {"lost": 0, "duplicated": 0, "reordered": 0, "foreign": 0}
    sent = 0
    for seed in seeds:
        r = run_scenario(scenario, replace(opts, seed=seed))
        run_gaps = [s["gap_ms"] for s in r["switches"] if s["gap_ms"] is not None]
        gaps += run_gaps
        for direction in r["tokens"].values():
            sent += direction["sent"]
            for key in harmed:
                harmed[key] += direction[key]
        runs.append({"seed": seed, "switches": [(s["at_s"], s["from"], s["to"], s["reason"])
                                                for s in r["switches"]],
                     "gap_ms": run_gaps, "tokens": r["tokens"]})
    ordered = sorted(gaps)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else None
    switched = all(run["gap_ms"] for run in runs)
    return {"scenario": scenario.name, "seeds": seeds, "switches": len(gaps),
            "gap_ms": {"p50": ordered[len(ordered) // 2] if ordered else None, "p95": p95,
                       "max": ordered[-1] if ordered else None},
            "tokens": {"sent": sent, **harmed},
            "goal": {"gap_p95_ms": K_GOAL_GAP_P95_MS,
                     "met": (p95 is not None and p95 <= K_GOAL_GAP_P95_MS and switched
                             and not any(harmed.values()))},
            "runs": runs}
