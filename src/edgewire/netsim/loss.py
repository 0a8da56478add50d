"""Stateful loss processes: one per link direction, drawing from the link's own RNG.

Each process answers ``lose()`` once per packet offered to the link, in offer order; its
state (Gilbert-Elliott good/bad, 4-state Markov state) carries from packet to packet, as in
Linux netem. Parameters come from the frozen configs in :mod:`edgewire.netsim.config`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import BernoulliLoss, GilbertLoss, LossConfig, Markov4Loss, NoLoss

if TYPE_CHECKING:  # the generator is injected; only its type is needed here
    from random import Random

__all__ = ["LossProcess", "make_loss_process", "register_loss_process"]


class LossProcess(ABC):
    """Decides, packet by packet, whether the loss model drops it."""

    @abstractmethod
    def lose(self) -> bool:
        """True when the next packet is lost."""


class _NoLossProcess(LossProcess):
    def lose(self) -> bool:
        return False


class _BernoulliProcess(LossProcess):
    __slots__ = ("_random", "_rate")

    def __init__(self, config: BernoulliLoss, rng: Random) -> None:
        self._rate = config.rate
        self._random = rng.random

    def lose(self) -> bool:
        return self._random() < self._rate


class _GilbertProcess(LossProcess):
    """The packet's fate follows the state it meets; the transition comes after it."""

    __slots__ = ("_c", "_random", "bad")

    def __init__(self, config: GilbertLoss, rng: Random) -> None:
        self._c = config
        self._random = rng.random
        self.bad = False
        """Current state (starts good, like netem)."""

    def lose(self) -> bool:
        c = self._c
        if self.bad:
            lost = c.h < 1.0 and self._random() >= c.h
            if self._random() < c.r:
                self.bad = False
        else:
            lost = c.k < 1.0 and self._random() >= c.k
            if self._random() < c.p:
                self.bad = True
        return lost


class _Markov4Process(LossProcess):
    """netem's 4-state model: the state entered decides the packet (3 and 4 lose it)."""

    __slots__ = ("_c", "_random", "state")

    def __init__(self, config: Markov4Loss, rng: Random) -> None:
        self._c = config
        self._random = rng.random
        self.state = 1
        """Current state, 1..4 (starts in 1, received in a gap)."""

    def lose(self) -> bool:
        c = self._c
        u = self._random()
        if self.state == 1:
            if u < c.p14:
                self.state = 4
            elif u < c.p14 + c.p13:
                self.state = 3
        elif self.state == 2:
            if u < c.p23:
                self.state = 3
        elif self.state == 3:
            if u < c.p32:
                self.state = 2
            elif u < c.p32 + c.p31:
                self.state = 1
        else:  # an isolated loss is always followed by a reception in the gap
            self.state = 1
        return self.state >= 3


_ProcessFactory = Callable[[LossConfig, "Random"], LossProcess]

_PROCESSES: dict[type[LossConfig], _ProcessFactory] = {
    NoLoss: lambda c, r: _NoLossProcess(),
    BernoulliLoss: lambda c, r: _BernoulliProcess(c, r),  # type: ignore[arg-type]
    GilbertLoss: lambda c, r: _GilbertProcess(c, r),  # type: ignore[arg-type]
    Markov4Loss: lambda c, r: _Markov4Process(c, r),  # type: ignore[arg-type]
}


def register_loss_process(config_class: type[LossConfig], factory: _ProcessFactory) -> None:
    """Use ``factory(config, rng)`` to run configs of ``config_class``."""
    _PROCESSES[config_class] = factory


def make_loss_process(config: LossConfig, rng: Random) -> LossProcess:
    """A fresh process (initial state) for ``config`` drawing from ``rng``."""
    factory = _PROCESSES.get(type(config))
    if factory is None:
        raise LocalProtocolError(f"no loss process registered for {type(config).__name__}")
    return factory(config, rng)
