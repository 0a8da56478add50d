"""Endpoints for the simulator: an edgewire server that accepts sessions as datagrams arrive,
and the dev certificate both simulated sides use."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import lru_cache

from aioquic.buffer import Buffer, BufferReadError  # type: ignore[attr-defined]
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import pull_quic_header

from edgewire.certs import generate_self_signed
from edgewire.netsim.engine import Address
from edgewire.transport import Session, SessionConfig, quic_configuration

__all__ = ["ServerEndpoint", "simulation_certificate", "simulation_quic_configs"]

#: Sessions one simulated server holds; datagrams for further ones are dropped and counted.
K_MAX_SERVER_SESSIONS = 64


@lru_cache(maxsize=1)
def simulation_certificate() -> tuple[bytes, bytes]:
    """A self-signed (certificate PEM, key PEM) for "localhost", made once per process.

    Ed25519 with a fixed serial number and validity start: the certificate and every
    handshake signature have the same length in every run and every process, so the
    handshake's packets do too, and a seed replays a lossy run packet for packet (ECDSA
    signatures vary in length by a few bytes).
    """
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    return generate_self_signed(["localhost"], key_type="ed25519", serial=0x65646765,
                                now=start, days=36_500)


def simulation_quic_configs(*, congestion_control: str = "edgewire",
                            max_datagram_size: int = 1200
                            ) -> tuple[QuicConfiguration, Callable[[], QuicConfiguration]]:
    """The client configuration (verifying the simulation certificate) and a factory of
    server configurations (holding it)."""
    cert_pem, key_pem = simulation_certificate()
    client = quic_configuration(is_client=True, server_name="localhost", cadata=cert_pem,
                                congestion_control=congestion_control,
                                max_datagram_size=max_datagram_size)

    def server() -> QuicConfiguration:
        return quic_configuration(is_client=False, certificate_pem=(cert_pem, key_pem),
                                  congestion_control=congestion_control,
                                  max_datagram_size=max_datagram_size)

    return client, server


class ServerEndpoint:
    """Accepts edgewire sessions: one :class:`Session` per client address, created from
    the first datagram (its destination connection id) like a real server."""

    def __init__(self, configuration: Callable[[], QuicConfiguration], *,
                 config: SessionConfig | None = None,
                 on_session: Callable[[Session, Address], None] | None = None) -> None:
        self._configuration = configuration
        self._config = config
        self._on_session = on_session
        self.sessions: dict[Address, Session] = {}
        """Sessions by client address."""
        self.dropped = 0
        """Datagrams dropped: unparsable first packets, or over the session limit."""

    def receive_datagram(self, data: bytes, addr: Address, *, now: float,
                         socket_drops: int | None = None) -> None:
        """Route a datagram to its session, creating it for a new client (``socket_drops``
        as for :meth:`Session.receive_datagram`)."""
        session = self.sessions.get(addr)
        if session is None:
            if len(self.sessions) >= K_MAX_SERVER_SESSIONS:
                self.dropped += 1
                return
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            except (BufferReadError, ValueError):
                self.dropped += 1
                return
            session = Session(self._configuration(), config=self._config,
                              original_destination_connection_id=header.destination_cid)
            self.sessions[addr] = session
            if self._on_session is not None:
                self._on_session(session, addr)
        session.receive_datagram(data, addr, now=now, socket_drops=socket_drops)

    def handle_timer(self, *, now: float) -> None:
        """Fire the timers of sessions that are due."""
        # Session.handle_timer checks each of its own deadlines, so asking every session
        # for its timer first would only compute it twice
        for session in self.sessions.values():
            session.handle_timer(now=now)

    def get_timer(self) -> float | None:
        """The earliest timer of any session."""
        best: float | None = None
        for session in self.sessions.values():
            t = session.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def datagrams_to_send(self, *, now: float) -> list[tuple[bytes, Address]]:
        """What every session wants to send."""
        if len(self.sessions) == 1:  # the common case, without building a second list
            for session in self.sessions.values():
                return session.datagrams_to_send(now=now)
        out: list[tuple[bytes, Address]] = []
        for session in self.sessions.values():
            out.extend(session.datagrams_to_send(now=now))
        return out
