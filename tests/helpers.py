"""A client and a server Session joined by an in-memory link, driven in virtual time."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import pull_quic_header

from edgewire.certs import write_self_signed
from edgewire.netsim.config import LinkConfig
from edgewire.netsim.engine import Simulator
from edgewire.netsim.link import Link
from edgewire.netsim.nodes import ServerEndpoint, simulation_quic_configs
from edgewire.netsim.run import CLIENT_ADDR as SIM_CLIENT
from edgewire.netsim.run import SERVER_ADDR as SIM_SERVER
from edgewire.transport import Event, Session, SessionConfig, quic_configuration, quicstats
from edgewire.transport.bwe import BweConfig

CLIENT_ADDR = ("10.0.0.1", 1111)
SERVER_ADDR = ("10.0.0.2", 2222)

_CERTS: dict[str, tuple[str, str]] = {}


def certs(tmp: Path) -> tuple[str, str]:
    """A self-signed certificate for localhost, made once per test session."""
    if "default" not in _CERTS:
        cert, key = write_self_signed(tmp)
        _CERTS["default"] = (str(cert), str(key))
    return _CERTS["default"]


#: Start rate of the helper sessions' bandwidth estimate.
FAST_START_BPS = 50_000_000.0


def _fast_start(config: SessionConfig | None) -> SessionConfig:
    config = config or SessionConfig()
    if config.bwe != BweConfig():
        return config
    return dataclasses.replace(config, bwe=BweConfig(start_bps=FAST_START_BPS))


@dataclass
class Pair:
    """Client and server sessions over a link with a one-way ``delay`` in each direction.

    ``drop`` decides per datagram (direction "c2s"/"s2c", index, bytes) whether the link
    loses it. Time only moves inside ``run``: to the next delivery or timer.
    """

    cert: str
    key: str
    delay: float = 0.005
    drop: Callable[[str, int, bytes], bool] | None = None
    client_config: SessionConfig | None = None
    server_config: SessionConfig | None = None
    now: float = 0.0
    client: Session = field(init=False)
    server: Session | None = field(init=False, default=None)
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    _in_flight: list[tuple[float, int, str, bytes]] = field(default_factory=list)
    _seq: int = 0
    _counts: dict[str, int] = field(default_factory=lambda: {"c2s": 0, "s2c": 0})

    def __post_init__(self) -> None:
        # these sessions use edgewire's congestion control, as every session does, but
        # start it high: the tests check session behaviour in a fraction of a second,
        # which the default 300 kbit/s start would stretch (tests/test_bwe.py and the
        # netsim runs check how the estimate gets there)
        self.client_config = _fast_start(self.client_config)
        self.server_config = _fast_start(self.server_config)
        qc = quic_configuration(is_client=True, server_name="localhost", cafile=self.cert)
        self.client = Session(qc, config=self.client_config)
        self.client.connect(SERVER_ADDR, now=self.now)

    def _server_for(self, data: bytes) -> Session:
        if self.server is None:
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            qc = quic_configuration(is_client=False, certfile=self.cert, keyfile=self.key)
            self.server = Session(qc, config=self.server_config,
                                  original_destination_connection_id=header.destination_cid)
        return self.server

    def _collect(self) -> None:
        for direction, session in (("c2s", self.client), ("s2c", self.server)):
            if session is None:
                continue
            for data, _ in session.datagrams_to_send(now=self.now):
                index = self._counts[direction]
                self._counts[direction] += 1
                if self.drop is not None and self.drop(direction, index, data):
                    continue
                self._seq += 1
                self._in_flight.append((self.now + self.delay, self._seq, direction, data))
        for session, sink in ((self.client, self.client_events),
                              (self.server, self.server_events)):
            while session is not None and (ev := session.next_event()) is not None:
                sink.append(ev)

    def run(self, duration: float) -> None:
        """Advance virtual time by ``duration``, delivering datagrams and firing timers."""
        until = self.now + duration
        self._collect()
        for _ in range(1_000_000):
            times = [t for t in (self.client.get_timer(),
                                 self.server.get_timer() if self.server else None)
                     if t is not None]
            if self._in_flight:
                times.append(min(self._in_flight)[0])
            if not times or min(times) > until:
                break
            self.now = max(self.now, min(times))
            self._in_flight.sort()
            while self._in_flight and self._in_flight[0][0] <= self.now:
                _, _, direction, data = self._in_flight.pop(0)
                if direction == "c2s":
                    self._server_for(data).receive_datagram(data, CLIENT_ADDR, now=self.now)
                else:
                    self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
            for session in (self.client, self.server):
                if session is not None:
                    timer = session.get_timer()
                    if timer is not None and timer <= self.now:
                        session.handle_timer(now=self.now)
            self._collect()
        else:  # pragma: no cover - a timer that never advances would spin forever
            raise RuntimeError("virtual clock stuck")
        self.now = until
        self._collect()

    def flush(self) -> None:
        """Send what the application queued at the current time."""
        self._collect()

    def events(self, side: str, kind: type) -> list[object]:
        """Events of one type seen so far by 'client' or 'server'."""
        source = self.client_events if side == "client" else self.server_events
        return [e for e in source if isinstance(e, kind)]


def simulated_pair(config: SessionConfig, *, max_data: int | None = None
                   ) -> tuple[Simulator, Session, ServerEndpoint]:
    """(Simulator, client Session, ServerEndpoint) joined by two 10 ms netsim links, the
    client's handshake started at 0; ``max_data`` sets the server's connection window."""
    client_qc, server_factory = simulation_quic_configs()

    def server_qc() -> QuicConfiguration:
        qc = server_factory()
        if max_data is not None:
            qc.max_data = max_data
        return qc

    client = Session(client_qc, config=config)
    server = ServerEndpoint(server_qc, config=config)
    sim = Simulator()
    sim.add_endpoint(SIM_CLIENT, client)
    sim.add_endpoint(SIM_SERVER, server)
    sim.connect(SIM_CLIENT, SIM_SERVER,
                Link(LinkConfig(delay_ms=10), rng=random.Random(1)),
                Link(LinkConfig(delay_ms=10), rng=random.Random(2)))
    client.connect(SIM_SERVER, now=0.0)
    return sim, client, server


class CheckedNothingToSend:
    """Wraps ``nothing_to_send``: every "nothing" answer is checked against aioquic itself.
    When nothing is to be sent, ``datagrams_to_send`` changes nothing that matters, so the
    run goes on exactly as it would have."""

    def __init__(self) -> None:
        self.real = quicstats.nothing_to_send
        self.skips = 0
        self.wrong: list[tuple[float, int]] = []

    def __call__(self, quic: Any, now: float) -> bool:
        answer = self.real(quic, now)
        if answer:
            self.skips += 1
            timer = quic.get_timer()
            sent = quic.datagrams_to_send(now=now)
            if sent or quic.get_timer() != timer:
                self.wrong.append((now, len(sent)))
        return answer
