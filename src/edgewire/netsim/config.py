"""Frozen parameters of one link direction, and of the loss models it can use.

A :class:`LinkConfig` describes what a packet meets on its way through one direction of a
simulated link, in this order (the same order as Linux netem): blackout, loss model,
duplication, bottleneck queue, bottleneck rate (fixed or a Mahimahi capacity trace),
propagation delay plus jitter. Every field can be replaced mid-run by a scenario event
(``dataclasses.replace``); :class:`~edgewire.netsim.link.Link` picks the new values up at once.

The loss models are the three netem offers. Parameters are probabilities in [0, 1]:

* ``bernoulli``: each packet is lost with ``rate``, independently.
* ``gilbert`` (Gilbert-Elliott): two states, good and bad. ``p`` = P(good -> bad), ``r`` =
  P(bad -> good), ``h`` = P(delivered | bad), ``k`` = P(delivered | good) (netem's
  ``loss gemodel p r 1-h 1-k`` takes the complements). ``h = 0, k = 1`` is the simple
  Gilbert model, whose mean loss rate is ``p / (p + r)`` and mean burst length ``1 / r``;
  :meth:`GilbertLoss.from_rate_burst` builds it from those two figures.
* ``markov4``: netem's 4-state model (Salsano et al.): 1 = received in a gap, 2 = received
  in a burst, 3 = lost in a burst, 4 = isolated loss in a gap; transition probabilities
  ``p13``, ``p31``, ``p32``, ``p23``, ``p14`` (netem's ``loss state`` order).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from edgewire.errors import LocalProtocolError
from edgewire.netsim.trace import CapacityTrace

__all__ = [
    "JITTER_DISTRIBUTIONS",
    "LOSS_MODELS",
    "BernoulliLoss",
    "GilbertLoss",
    "LinkConfig",
    "LossConfig",
    "Markov4Loss",
    "NoLoss",
    "register_loss_model",
]

#: Jitter distributions a link can draw from (the names netem's tables use).
JITTER_DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
#: Active queue management schemes of the bottleneck queue.
AQM_SCHEMES = ("droptail", "codel")
#: Queue limit in packets when a rate is set and no limit is given (netem's default).
K_DEFAULT_QUEUE_PACKETS = 1000


def _check_probability(model: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise LocalProtocolError(f"{model} loss: {name} must be a probability in [0, 1], "
                                 f"got {value!r}")


class LossConfig(ABC):
    """Parameters of a loss model; :meth:`mean_loss_rate` and :meth:`mean_burst_length`
    give the stationary figures the model is expected to produce."""

    model: ClassVar[str]

    @abstractmethod
    def mean_loss_rate(self) -> float:
        """Long-run fraction of packets lost."""

    @abstractmethod
    def mean_burst_length(self) -> float | None:
        """Long-run mean length of a run of consecutive losses (None without losses)."""

    @abstractmethod
    def to_dict(self) -> dict[str, float | str]:
        """The parameters as a scenario-file table (``{"model": ..., ...}``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NoLoss(LossConfig):
    """No packet is lost by a model (queues and blackouts still drop)."""

    model: ClassVar[str] = "none"

    def mean_loss_rate(self) -> float:
        """Always 0."""
        return 0.0

    def mean_burst_length(self) -> float | None:
        """Always None."""
        return None

    def to_dict(self) -> dict[str, float | str]:
        """``{"model": "none"}``."""
        return {"model": self.model}


@dataclass(frozen=True, slots=True, kw_only=True)
class BernoulliLoss(LossConfig):
    """Independent loss with probability ``rate``."""

    model: ClassVar[str] = "bernoulli"
    rate: float
    """Probability that a packet is lost."""

    def __post_init__(self) -> None:
        _check_probability(self.model, "rate", self.rate)

    def mean_loss_rate(self) -> float:
        """``rate``."""
        return self.rate

    def mean_burst_length(self) -> float | None:
        """``1 / (1 - rate)``: runs of a geometric length."""
        if self.rate == 0.0:
            return None
        return math.inf if self.rate == 1.0 else 1.0 / (1.0 - self.rate)

    def to_dict(self) -> dict[str, float | str]:
        """``{"model": "bernoulli", "rate": ...}``."""
        return {"model": self.model, "rate": self.rate}


@dataclass(frozen=True, slots=True, kw_only=True)
class GilbertLoss(LossConfig):
    """Gilbert-Elliott: good/bad states with per-state delivery probabilities."""

    model: ClassVar[str] = "gilbert"
    p: float
    """P(good -> bad) per packet."""
    r: float
    """P(bad -> good) per packet."""
    h: float = 0.0
    """P(delivered | bad state); 0 loses every packet in the bad state."""
    k: float = 1.0
    """P(delivered | good state); 1 loses no packet in the good state."""

    def __post_init__(self) -> None:
        for name in ("p", "r", "h", "k"):
            _check_probability(self.model, name, getattr(self, name))
        if self.p > 0 and self.r == 0 and self.h == 0:
            raise LocalProtocolError("gilbert loss: r = 0 with h = 0 would lose every packet "
                                     "once the bad state is reached")

    @classmethod
    def from_rate_burst(cls, rate: float, burst: float) -> GilbertLoss:
        """The simple Gilbert model (h = 0, k = 1) with mean loss ``rate`` and mean burst
        length ``burst`` packets: ``r = 1 / burst``, ``p = rate * r / (1 - rate)``."""
        _check_probability(cls.model, "rate", rate)
        if not (isinstance(burst, int | float) and math.isfinite(burst) and burst >= 1.0):
            raise LocalProtocolError(f"gilbert loss: burst must be >= 1 packet, got {burst!r}")
        if rate >= 1.0:
            raise LocalProtocolError("gilbert loss: rate must be below 1 with a burst length")
        r = 1.0 / burst
        p = rate * r / (1.0 - rate)
        if p > 1.0:
            raise LocalProtocolError(
                f"gilbert loss: rate {rate} with mean burst {burst} needs P(good->bad) = "
                f"{p:.3f} > 1; use a longer burst or a lower rate")
        return cls(p=p, r=r, h=0.0, k=1.0)

    def bad_fraction(self) -> float:
        """Stationary probability of the bad state."""
        total = self.p + self.r
        return 0.0 if total == 0 else self.p / total

    def mean_loss_rate(self) -> float:
        """``pi_bad * (1 - h) + pi_good * (1 - k)``."""
        bad = self.bad_fraction()
        return bad * (1.0 - self.h) + (1.0 - bad) * (1.0 - self.k)

    def mean_burst_length(self) -> float | None:
        """``1 / r`` for the simple Gilbert model; None (not closed-form here) otherwise."""
        if self.mean_loss_rate() == 0.0:
            return None
        if self.h == 0.0 and self.k == 1.0:
            return math.inf if self.r == 0 else 1.0 / self.r
        return None

    def to_dict(self) -> dict[str, float | str]:
        """``{"model": "gilbert", "p": ..., "r": ..., "h": ..., "k": ...}``."""
        return {"model": self.model, "p": self.p, "r": self.r, "h": self.h, "k": self.k}


@dataclass(frozen=True, slots=True, kw_only=True)
class Markov4Loss(LossConfig):
    """netem's 4-state Markov model; defaults are netem's (``loss state p13``)."""

    model: ClassVar[str] = "markov4"
    p13: float
    """P(received in gap -> lost in burst)."""
    p31: float = math.nan
    """P(lost in burst -> received in gap); default (NaN) ``1 - p13``."""
    p32: float = 0.0
    """P(lost in burst -> received in burst)."""
    p23: float = 1.0
    """P(received in burst -> lost in burst)."""
    p14: float = 0.0
    """P(received in gap -> isolated loss)."""

    def __post_init__(self) -> None:
        if math.isnan(self.p31):
            object.__setattr__(self, "p31", 1.0 - self.p13)
        for name in ("p13", "p31", "p32", "p23", "p14"):
            _check_probability(self.model, name, getattr(self, name))
        if self.p13 + self.p14 > 1.0 + 1e-12:
            raise LocalProtocolError("markov4 loss: p13 + p14 must not exceed 1")
        if self.p31 + self.p32 > 1.0 + 1e-12:
            raise LocalProtocolError("markov4 loss: p31 + p32 must not exceed 1")

    def transition_matrix(self) -> list[list[float]]:
        """Row-stochastic 4x4 matrix, states 1..4 as rows/columns 0..3."""
        stay1 = 1.0 - self.p13 - self.p14
        stay3 = 1.0 - self.p31 - self.p32
        return [
            [stay1, 0.0, self.p13, self.p14],
            [0.0, 1.0 - self.p23, self.p23, 0.0],
            [self.p31, self.p32, stay3, 0.0],
            [1.0, 0.0, 0.0, 0.0],
        ]

    def stationary(self) -> tuple[float, float, float, float]:
        """Long-run fraction of packets in states 1..4 for a chain started in state 1.

        Every cycle of this chain has length 1, 2 or 4, so its period divides 2 and the
        mean of the rows of P^n and P^(n+1) for a large n (2**48, by repeated squaring) is
        the long-run distribution, also for chains that never leave a subset of states.
        """
        p = np.array(self.transition_matrix(), dtype=np.float64)
        power = p
        for _ in range(48):
            power = power @ power
        row = (power[0] + (power @ p)[0]) / 2.0
        row = row / row.sum()
        return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))

    def mean_loss_rate(self) -> float:
        """Stationary probability of the two loss states (3 and 4)."""
        _, _, pi3, pi4 = self.stationary()
        return pi3 + pi4

    def mean_burst_length(self) -> float | None:
        """Not given in closed form here; measure it with ``edgewire netsim probe``."""
        return None

    def to_dict(self) -> dict[str, float | str]:
        """``{"model": "markov4", "p13": ..., ...}``."""
        return {"model": self.model, "p13": self.p13, "p31": self.p31, "p32": self.p32,
                "p23": self.p23, "p14": self.p14}


#: Loss models by scenario name; extend with :func:`register_loss_model`.
LOSS_MODELS: dict[str, type[LossConfig]] = {
    NoLoss.model: NoLoss,
    BernoulliLoss.model: BernoulliLoss,
    GilbertLoss.model: GilbertLoss,
    Markov4Loss.model: Markov4Loss,
}


def register_loss_model(config_class: type[LossConfig]) -> None:
    """Make a loss model available under ``config_class.model`` (its process is looked up
    by :func:`edgewire.netsim.loss.register_loss_process`)."""
    LOSS_MODELS[config_class.model] = config_class


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkConfig:
    """One direction of a link. Times in ms, rates in kbit/s (1 kbit = 1000 bits)."""

    delay_ms: float = 0.0
    """One-way propagation delay."""
    jitter_ms: float = 0.0
    """Scale of the delay variation added to every packet (see ``jitter_distribution``)."""
    jitter_distribution: str = "uniform"
    """uniform (+-jitter_ms), normal (sigma = jitter_ms), pareto or paretonormal."""
    reorder: bool = False
    """May jitter let a packet overtake an earlier one? False keeps packets in order."""
    rate_kbps: float | None = None
    """Bottleneck rate; None (and no trace) means no bottleneck and no queue."""
    trace: CapacityTrace | None = None
    """Bottleneck capacity from a Mahimahi trace instead of ``rate_kbps``."""
    queue_packets: int | None = None
    """Drop-tail limit in packets (default 1000 when no limit is given)."""
    queue_bytes: int | None = None
    """Drop-tail limit in bytes."""
    queue_ms: float | None = None
    """Drop-tail limit as waiting time at the current rate."""
    aqm: str = "droptail"
    """droptail, or codel (RFC 8289) on top of the drop-tail limit."""
    codel_target_ms: float = 5.0
    """CoDel's acceptable standing queue delay."""
    codel_interval_ms: float = 100.0
    """CoDel's sliding window."""
    loss: LossConfig = field(default_factory=NoLoss)
    """Random loss model."""
    duplicate: float = 0.0
    """Probability that a packet is sent twice."""
    down: bool = False
    """Blackout: every packet offered while down is lost."""
    read_kbps: float | None = None
    """The receiving process takes the link's arrivals from its socket at this rate;
    None (and no ``read_stall_ms``): as they arrive. With either, arrivals wait in a
    socket receive buffer of ``read_buffer_bytes`` and the wait is part of their delay."""
    read_stall_ms: float = 0.0
    """After every ``read_stall_bytes`` it reads, the receiving process spends this long
    on other work (a frame) before it reads again."""
    read_stall_bytes: int = 32_768
    """Bytes read between two stalls."""
    read_buffer_bytes: int = 212_992
    """The receiving socket's buffer (Linux's default): an arrival that does not fit is
    dropped and counted, as a kernel drops it, and the receiving endpoint is told how
    many were (``Session.receive_datagram(socket_drops=)``)."""

    def __post_init__(self) -> None:
        def finite_nonneg(name: str, value: float) -> None:
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise LocalProtocolError(f"{name} must be a finite number >= 0, got {value!r}")

        finite_nonneg("delay_ms", self.delay_ms)
        finite_nonneg("jitter_ms", self.jitter_ms)
        if self.jitter_distribution not in JITTER_DISTRIBUTIONS:
            raise LocalProtocolError(f"jitter_distribution must be one of "
                                     f"{', '.join(JITTER_DISTRIBUTIONS)}, "
                                     f"got {self.jitter_distribution!r}")
        if self.rate_kbps is not None:
            finite_nonneg("rate_kbps", self.rate_kbps)
            if self.rate_kbps == 0:
                raise LocalProtocolError("rate_kbps must be > 0 (use down = true for a blackout)")
            if self.trace is not None:
                raise LocalProtocolError("give rate_kbps or trace, not both")
        limits = [x for x in (self.queue_packets, self.queue_bytes, self.queue_ms)
                  if x is not None]
        if len(limits) > 1:
            raise LocalProtocolError("give one of queue_packets, queue_bytes, queue_ms")
        if self.queue_packets is not None and (
                not isinstance(self.queue_packets, int) or self.queue_packets < 1):
            raise LocalProtocolError(f"queue_packets must be an integer >= 1, "
                                     f"got {self.queue_packets!r}")
        if self.queue_bytes is not None and (
                not isinstance(self.queue_bytes, int) or self.queue_bytes < 1500):
            raise LocalProtocolError(f"queue_bytes must be an integer >= 1500, "
                                     f"got {self.queue_bytes!r}")
        if self.queue_ms is not None:
            finite_nonneg("queue_ms", self.queue_ms)
            if self.queue_ms == 0:
                raise LocalProtocolError("queue_ms must be > 0")
        if self.aqm not in AQM_SCHEMES:
            raise LocalProtocolError(f"aqm must be one of {', '.join(AQM_SCHEMES)}, "
                                     f"got {self.aqm!r}")
        for name in ("codel_target_ms", "codel_interval_ms"):
            value = getattr(self, name)
            finite_nonneg(name, value)
            if value == 0:
                raise LocalProtocolError(f"{name} must be > 0")
        if not isinstance(self.loss, LossConfig):
            raise LocalProtocolError(f"loss must be a LossConfig, got {type(self.loss).__name__}")
        _check_probability("link", "duplicate", self.duplicate)
        if self.read_kbps is not None:
            finite_nonneg("read_kbps", self.read_kbps)
            if self.read_kbps == 0:
                raise LocalProtocolError("read_kbps must be > 0")
        finite_nonneg("read_stall_ms", self.read_stall_ms)
        for name in ("read_stall_bytes", "read_buffer_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1500:
                raise LocalProtocolError(f"{name} must be an integer >= 1500, got {value!r}")

    @property
    def has_reader(self) -> bool:
        """True when a receiving process with a rate or stalls reads the link's arrivals
        through a socket buffer."""
        return self.read_kbps is not None or self.read_stall_ms > 0

    @property
    def has_bottleneck(self) -> bool:
        """True when a rate or a trace limits the link (and the queue applies)."""
        return self.rate_kbps is not None or self.trace is not None

    @property
    def queue_limit_packets(self) -> int | None:
        """The packet limit in force (the default when no limit of any kind is given)."""
        if self.queue_packets is not None:
            return self.queue_packets
        if self.queue_bytes is None and self.queue_ms is None:
            return K_DEFAULT_QUEUE_PACKETS
        return None

    def mean_rate_bps(self) -> float | None:
        """Long-run bottleneck rate in bit/s (a trace's mean), None without a bottleneck."""
        if self.rate_kbps is not None:
            return self.rate_kbps * 1000.0
        if self.trace is not None:
            return self.trace.mean_rate_bps
        return None
