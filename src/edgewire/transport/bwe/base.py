"""The estimator interface, its input and output records, and the registry of estimators."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.transport.bwe.config import BweConfig

__all__ = [
    "BandwidthEstimator",
    "PacketResult",
    "ProbeRequest",
    "create_estimator",
    "estimator_names",
    "register_estimator",
]


@dataclass(frozen=True, slots=True)
class PacketResult:
    """What the receiver reported about one sent packet."""

    sequence: int
    """Transport-wide sequence number (the QUIC packet number), increasing in send order."""
    send_time: float
    """When the packet left, sender clock, seconds."""
    size_bytes: int
    """Bytes on the wire (the UDP payload)."""
    arrival_time: float | None
    """When it arrived, receiver clock (arbitrary origin: only differences matter), seconds;
    None when the receiver reported it missing."""
    probe_cluster: int | None = None
    """Id of the probe cluster the packet was sent in, if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeRequest:
    """A probe cluster the sender should send now: ``max(min_packets, rate * duration)``
    worth of packets, paced at ``rate_bps``, each tagged with ``cluster``."""

    cluster: int
    """Id of the cluster, increasing; set as ``PacketResult.probe_cluster`` of its packets."""
    rate_bps: float
    """Rate at which to send the cluster, bits/s."""
    duration: float
    """Seconds the cluster lasts."""
    min_packets: int
    """The cluster holds at least this many packets."""


class BandwidthEstimator(abc.ABC):
    """A sans-I/O bandwidth estimator fed with per-packet feedback.

    The driver reports every packet sent (:meth:`on_sent`), every feedback report
    (:meth:`on_feedback`) and RTT sample (:meth:`on_rtt`), calls :meth:`on_timer` at or after
    :meth:`get_timer`, asks :meth:`probe_request` whenever it could send a probe, and sends
    at :attr:`target_bps`.
    """

    @abc.abstractmethod
    def on_feedback(self, packets: Sequence[PacketResult], *, now: float) -> None:
        """One feedback report: results in sequence order. A packet reported missing earlier
        may show up again as received (it arrived late): it counts as received, once."""

    @abc.abstractmethod
    def on_rtt(self, rtt: float, *, now: float, min_rtt: float | None = None) -> None:
        """The connection's smoothed round-trip time, seconds; ``min_rtt``, when known,
        its smallest RTT sample so far (the path's length, which queueing and outages
        do not stretch)."""

    @abc.abstractmethod
    def on_sent(self, *, size_bytes: int, now: float) -> None:
        """A packet of ``size_bytes`` left now (feeds the send rate and the
        application-limited test)."""

    @abc.abstractmethod
    def on_timer(self, *, now: float) -> None:
        """Handle deadlines that passed; call at or after :meth:`get_timer`."""

    @abc.abstractmethod
    def get_timer(self) -> float | None:
        """When :meth:`on_timer` must be called next, or None."""

    @abc.abstractmethod
    def probe_request(self, *, now: float) -> ProbeRequest | None:
        """A probe cluster to send now, or None. Each request is returned once."""

    @property
    @abc.abstractmethod
    def target_bps(self) -> float:
        """The target send rate, bits/s, within the configured minimum and maximum."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the estimate and the counters."""

    def on_receiver_drops(self, dropped: int, *, now: float) -> None:  # noqa: B027
        """The peer's latest report said its own socket dropped ``dropped`` datagrams
        since its previous report (its receive buffer overflowed): the receiver, not the
        path, is the limit. Called after that report's :meth:`on_feedback`. The default
        ignores it."""

    @property
    def feedback_interval(self) -> float | None:
        """Seconds between the peer's feedback reports this estimator asks for (the
        session sends it in its hello), or None for the peer's default."""
        return None


_REGISTRY: dict[str, Callable[[BweConfig], BandwidthEstimator]] = {}
#: The estimator a session uses unless its configuration names another: "delivery" keeps
#: the constant-link and step goals of docs/BWE.md as "gcc" does and carries 1.2-1.9x more
#: on the cellular traces (bench bwe).
DEFAULT_ESTIMATOR = "delivery"


def register_estimator(name: str, factory: Callable[[BweConfig], BandwidthEstimator]) -> None:
    """Make ``factory`` available to :func:`create_estimator` as ``name`` (a registration
    under an existing name replaces it, so an application can swap in its own variant)."""
    if not isinstance(name, str) or not name:
        raise LocalProtocolError("an estimator name must be a non-empty string")
    if not callable(factory):
        raise LocalProtocolError(f"the factory of estimator {name!r} is not callable")
    _REGISTRY[name] = factory


def estimator_names() -> list[str]:
    """Names of the registered estimators, sorted."""
    return sorted(_REGISTRY)


def create_estimator(name: str, config: BweConfig | None = None) -> BandwidthEstimator:
    """A new estimator of the registered kind ``name`` with ``config`` (defaults if None)."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise LocalProtocolError(
            f"unknown bandwidth estimator {name!r}; known: {', '.join(estimator_names())}")
    if config is None:
        config = BweConfig()
    elif not isinstance(config, BweConfig):
        raise LocalProtocolError("config must be a BweConfig")
    return factory(config)
