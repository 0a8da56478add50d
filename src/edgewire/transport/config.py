"""Session settings and the aioquic configuration edgewire needs."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TextIO

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.logger import QuicLogger
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgewire.errors import LocalProtocolError
from edgewire.transport.bwe import DEFAULT_ESTIMATOR, BweConfig
from edgewire.transport.recovery import RecoveryConfig

__all__ = ["ALPN", "K_MAX_ACK_DELAY", "K_MIN_ACK_DELAY", "SessionConfig", "quic_configuration"]

#: ALPN token of edgewire sessions.
ALPN = "edgewire/1"
#: Largest DATAGRAM frame edgewire accepts (transport parameter max_datagram_frame_size).
MAX_DATAGRAM_FRAME = 65536
#: The max_ack_delay aioquic advertises to its peer (RFC 9000's default); an ACK held
#: longer would be outside what the peer's loss timers allow for.
K_MAX_ACK_DELAY = 0.025  # seconds
#: aioquic's own ACK delay (its timer granularity).
K_MIN_ACK_DELAY = 0.001  # seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Settings of an edgewire session beyond QUIC's."""

    max_channels: int = 64
    """Channels the peer may open; one more closes with CHANNEL_LIMIT_EXCEEDED."""
    hello_timeout: float = 10.0
    """Seconds after the QUIC handshake (or connect) for the edgewire hello to finish."""
    max_events: int = 65536
    """Events held for the driver; beyond it real-time messages are dropped and counted."""
    early_datagrams: int = 64
    """Datagrams held for channels whose open message has not arrived yet."""
    early_datagram_ttl: float = 1.0
    """Seconds such datagrams are held before being dropped."""
    max_unknown_stream_bytes: int = 8 << 20
    """Bytes held, over all streams, for channels whose open has not arrived yet."""
    software: str = "edgewire"
    """Implementation name sent in the hello."""
    shared_clock: bool = False
    """Both peers read the same clock (one process, or netsim's virtual time): the clock
    offset stays 0 and no clock probes are sent, so latencies are exact even on a path
    whose two directions have different delays."""
    stable_stream_order: bool = False
    """Keep aioquic's stream round robin in a reproducible order (it otherwise follows
    object addresses). netsim sets it so a seed replays a run packet for packet; real
    sockets need not pay for it."""
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    """Loss recovery of real-time channels: FEC, NACK retransmission, or both, chosen by
    ``recovery.mode`` ("auto" by default; docs/RECOVERY.md)."""
    estimator: str = DEFAULT_ESTIMATOR
    """Bandwidth estimator (``edgewire.transport.bwe`` registry): "delivery" (the default:
    the delivered rate steered by the queueing delay), "gcc" (delay- and loss-based, with
    probing; docs/BWE.md compares the two) or "loss" (loss-based only)."""
    bwe: BweConfig = field(default_factory=BweConfig)
    """The estimator's parameters (start, minimum and maximum rate among them)."""
    ack_delay: float = K_MAX_ACK_DELAY
    """Seconds an ACK may wait, after an ack-eliciting packet arrives, for a data packet
    to ride on; a second ack-eliciting packet makes it due within 1 ms (RFC 9000 13.2.2
    asks for an ACK every second packet; the millisecond lets a fast bulk flow batch its
    packets into one ACK, as aioquic does). aioquic on its own acknowledges after 1 ms,
    which in a two-way call doubles the packets: every media packet is answered by an
    ACK-only one. At most the 25 ms aioquic advertises as max_ack_delay; 0.001 gives
    aioquic's own behaviour."""
    skip_idle_sends: bool = True
    """Answer ``datagrams_to_send`` with nothing, without asking aioquic, when aioquic's
    state shows it has nothing to send (see ``quicstats.nothing_to_send``). After most
    received datagrams there is nothing to send (an ACK waits to ride on data), and asking
    aioquic builds and throws away an empty packet: in a simulation step that costs as much
    as the rest of the step, and on real sockets it was about a tenth of a bulk transfer's
    CPU (``edgewire bench throughput``). The tests require identical simulation results
    with and without it, and check every "nothing" against aioquic, in simulation and over
    loopback sockets. False always asks aioquic."""

    def __post_init__(self) -> None:
        if self.max_channels < 1 or self.max_channels > 32768:
            raise LocalProtocolError("max_channels must be in 1..32768")
        if self.hello_timeout <= 0:
            raise LocalProtocolError("hello_timeout must be positive")
        if not K_MIN_ACK_DELAY <= self.ack_delay <= K_MAX_ACK_DELAY:
            raise LocalProtocolError(
                f"ack_delay must be in {K_MIN_ACK_DELAY}..{K_MAX_ACK_DELAY} s (the max_ack_delay "
                f"advertised to the peer), got {self.ack_delay!r}")


def quic_configuration(
    *,
    is_client: bool,
    server_name: str | None = None,
    cafile: str | None = None,
    cadata: bytes | None = None,
    insecure: bool = False,
    certfile: str | None = None,
    keyfile: str | None = None,
    certificate_pem: tuple[bytes, bytes] | None = None,
    congestion_control: str = "edgewire",
    idle_timeout: float = 30.0,
    max_datagram_size: int = 1200,
    secrets_log_file: TextIO | None = None,
    quic_logger: QuicLogger | None = None,
) -> QuicConfiguration:
    """A QuicConfiguration with edgewire's ALPN and DATAGRAM support.

    Clients verify the server's certificate (system trust store, or ``cafile``/``cadata``)
    unless ``insecure`` is set. Servers need ``certfile`` and ``keyfile``, or
    ``certificate_pem`` = (certificate PEM, private key PEM) held in memory.
    """
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        max_datagram_frame_size=MAX_DATAGRAM_FRAME,
        congestion_control_algorithm=congestion_control,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
        secrets_log_file=secrets_log_file,
        quic_logger=quic_logger,
        server_name=server_name,
        # windows large enough that flow control does not cap bulk embeddings on fast links
        max_data=16 << 20,
        max_stream_data=8 << 20,
    )
    if is_client:
        config.verify_mode = ssl.CERT_NONE if insecure else ssl.CERT_REQUIRED
        if cafile is not None or cadata is not None:
            config.load_verify_locations(cafile=cafile, cadata=cadata)
    else:
        if certificate_pem is not None:
            cert_pem, key_pem = certificate_pem
            config.certificate = x509.load_pem_x509_certificate(cert_pem)
            config.private_key = serialization.load_pem_private_key(key_pem, password=None)
        elif certfile is None:
            raise LocalProtocolError("a server needs a certificate (certfile and keyfile)")
        else:
            config.load_cert_chain(certfile, keyfile)
    return config
