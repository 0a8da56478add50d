"""netem's netlink attributes, encoded and decoded without any I/O.

:class:`NetemSpec` is what the kernel backend applies to one direction of a veth link: netem
(delay, jitter, loss models, duplication, reordering) and tbf (rate, queue).
:func:`encode_netem_options` turns it into the ``TCA_OPTIONS`` payload of an
``RTM_NEWQDISC`` request for netem, byte for byte what iproute2's ``tc`` sends for the same
settings (the tests compare both). pyroute2 cannot be used for this payload: it has no
``TCA_NETEM_LOSS`` (Gilbert-Elliott and 4-state models) and no delay distribution tables.

Facts the encoding rests on (``include/uapi/linux/pkt_sched.h``, ``net/sched/sch_netem.c``,
iproute2 ``tc/q_netem.c``):

* The payload starts with ``struct tc_netem_qopt`` (six u32: latency, limit, loss, gap,
  duplicate, jitter) and the ``TCA_NETEM_*`` attributes follow it inside the same
  ``TCA_OPTIONS`` attribute (the kernel parses them from offset 24).
* latency and jitter: tc_netem_qopt holds them in psched ticks of 64 ns (15.625 ticks per
  microsecond on every kernel since PSCHED_SHIFT became 6), converted from whole microseconds
  and truncated. Kernels since 4.15 also take ``TCA_NETEM_LATENCY64`` / ``TCA_NETEM_JITTER64``
  (s64 nanoseconds, overriding the ticks); iproute2 6.9 and later send only those and leave
  the ticks 0. :func:`encode_netem_options` can produce either layout, or both at once (the
  kernel backend's choice: exact on new kernels, still right on kernels before 4.15). The
  kernel caps jitter at 2^31 - 1 ns.
* Probabilities are u32 fractions: ``rint(p * 0xffffffff)``, so 1.0 is 0xffffffff.
* Gilbert-Elliott (``NETEM_LOSS_GE``): the kernel loses a packet in the bad state when a
  random u32 exceeds field ``h`` (so ``h`` is P(delivered | bad)) and in the good state when
  it is below field ``k1`` (so ``k1`` is P(lost | good) = 1 - k). tc's ``loss gemodel p r
  1-h 1-k`` stores ``0xffffffff - rint((1-h) * 0xffffffff)`` in ``h`` and ``1-k`` in ``k1``.
* 4-state (``NETEM_LOSS_GI``): the struct order is p13, p31, p32, p14, p23.
* A netem rate (``TCA_NETEM_RATE``) makes netem schedule every packet after the one before
  it, so jitter can no longer reorder; the kernel backend uses the largest rate (about
  34 Gbit/s, no throttling in practice) for exactly that, and tbf for real rate limits.
* ``TCA_NETEM_PRNG_SEED`` (u64, kernels since 6.6; older ones ignore it) seeds netem's random
  numbers, so loss and jitter patterns repeat from run to run.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Literal

from edgewire.errors import LocalProtocolError
from edgewire.netsim.config import (
    JITTER_DISTRIBUTIONS,
    K_DEFAULT_QUEUE_PACKETS,
    BernoulliLoss,
    GilbertLoss,
    LinkConfig,
    LossConfig,
    Markov4Loss,
    NoLoss,
)

__all__ = [
    "K_FRAME_BYTES",
    "K_NETEM_DEFAULT_LIMIT",
    "K_TICKS_PER_US",
    "NetemOptions",
    "NetemSpec",
    "NetlinkAck",
    "TimeFormat",
    "build_qdisc_request",
    "decode_netem_options",
    "encode_netem_options",
    "ms_to_ticks",
    "parse_netlink_ack",
    "probability_to_u32",
]

#: psched ticks per microsecond (one tick is 64 ns; /proc/net/psched says 1000/64).
K_TICKS_PER_US = 15.625
#: netem's queue limit in packets when none is given (tc's default too).
K_NETEM_DEFAULT_LIMIT = 1000
#: Bytes tbf counts for a full-size packet on a veth with MTU 1500 (plus the Ethernet header).
K_FRAME_BYTES = 1514
#: Largest jitter the kernel keeps (it caps jitter at INT_MAX nanoseconds).
K_MAX_JITTER_MS = (2**31 - 1) / 1e6
#: Largest delay: s64 nanoseconds.
K_MAX_DELAY_MS = (2**63 - 1) / 1e6
#: Largest delay distribution table the kernel accepts (NETEM_DIST_MAX).
K_DIST_MAX = 16384
#: Fastest rate that fits tbf's u32 bytes/s field without TCA_TBF_RATE64, in kbit/s.
K_TBF_MAX_RATE_KBPS = 0xFFFFFFFF * 8 / 1000
#: tbf's bucket holds at least this much time at the configured rate: smaller buckets need a
#: timer per packet at high rates and shape less accurately.
K_TBF_BURST_S = 0.001  # seconds

_U32_MAX = 0xFFFFFFFF
#: netem rate (bytes/s) that only serves to keep packets in order when jitter is set.
_IN_ORDER_RATE = _U32_MAX

# rtnetlink numbers (linux/rtnetlink.h, linux/netlink.h, linux/pkt_sched.h)
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_NETEM_CORR = 1
TCA_NETEM_DELAY_DIST = 2
TCA_NETEM_REORDER = 3
TCA_NETEM_CORRUPT = 4
TCA_NETEM_LOSS = 5
TCA_NETEM_RATE = 6
TCA_NETEM_LATENCY64 = 10
TCA_NETEM_JITTER64 = 11
TCA_NETEM_PRNG_SEED = 14
NETEM_LOSS_GI = 1
NETEM_LOSS_GE = 2
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
RTM_NEWQDISC = 36
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
TC_H_ROOT = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")
_TCMSG = struct.Struct("=BBHiIII")
_RTATTR = struct.Struct("=HH")
_QOPT = struct.Struct("=6I")

#: How encode_netem_options writes delay and jitter: "ticks" (tc_netem_qopt only, like
#: iproute2 before 6.9), "ns64" (TCA_NETEM_LATENCY64/JITTER64 only, like iproute2 6.9 and
#: later) or "both".
TimeFormat = Literal["ticks", "ns64", "both"]


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _finite_nonneg(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise LocalProtocolError(f"netem: {name} must be a finite number >= 0, got {value!r}")


def _probability(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise LocalProtocolError(f"netem: {name} must be a probability in [0, 1], "
                                 f"got {value!r}")


def probability_to_u32(p: float) -> int:
    """netem's fixed-point probability: ``rint(p * 0xffffffff)`` (tc's ``set_percent``;
    Python's ``round`` rounds half to even like C's ``rint``)."""
    _probability("probability", p)
    return round(p * _U32_MAX)


def ms_to_ticks(ms: float, ticks_per_us: float = K_TICKS_PER_US, *,
                clamp: bool = False) -> int:
    """A delay in ms as psched ticks: whole microseconds (rounded), times ``ticks_per_us``,
    truncated as tc does. A value beyond u32 raises :class:`LocalProtocolError`, or becomes
    0xffffffff with ``clamp`` (when the 64-bit attribute carries the real value)."""
    _finite_nonneg("delay", ms)
    ticks = int(round(ms * 1000.0) * ticks_per_us)
    if ticks > _U32_MAX and clamp:
        return _U32_MAX
    if ticks > _U32_MAX:
        limit_s = _U32_MAX / ticks_per_us / 1e6
        raise LocalProtocolError(f"netem: {ms} ms does not fit netem's 32-bit tick field "
                                 f"(at most {limit_s:.0f} s)")
    return ticks


@dataclass(frozen=True, slots=True, kw_only=True)
class NetemSpec:
    """What the kernel backend applies to one direction: netem, then tbf.

    Probabilities are in [0, 1], times in ms, rates in kbit/s (1 kbit = 1000 bit). netem is
    installed only when something netem-specific is set (:attr:`needs_netem`); tbf only when
    ``rate_kbps`` is set (:attr:`needs_tbf`).
    """

    delay_ms: float = 0.0
    """Constant one-way delay added by netem."""
    jitter_ms: float = 0.0
    """Delay variation: +-jitter_ms for ``uniform``, the scale of the table otherwise."""
    delay_correlation: float = 0.0
    """netem's correlation of successive jitter draws (needs jitter)."""
    distribution: str = "uniform"
    """uniform (netem's built-in), or normal, pareto, paretonormal (iproute2's tables)."""
    jitter_reorders: bool = False
    """May jitter let a packet overtake an earlier one? False adds netem's rate attribute at
    its maximum, which makes netem keep packets in order; True is netem's plain behaviour."""
    loss: LossConfig = field(default_factory=NoLoss)
    """Random loss: NoLoss, BernoulliLoss, GilbertLoss or Markov4Loss."""
    duplicate: float = 0.0
    """Probability that a packet is sent twice."""
    reorder: float = 0.0
    """netem's ``reorder``: probability that a packet skips the delay (needs ``delay_ms``)."""
    reorder_correlation: float = 0.0
    """Correlation of successive reorder draws."""
    reorder_gap: int = 0
    """netem's ``gap``: only every gap-th packet may be reordered (0: tc's default, 1)."""
    limit_packets: int = K_NETEM_DEFAULT_LIMIT
    """netem's queue limit: packets it holds while they wait out their delay."""
    rate_kbps: float | None = None
    """tbf rate; None means no rate limit."""
    queue_packets: int | None = None
    """tbf queue in full-size packets (K_FRAME_BYTES each); needs ``rate_kbps``."""
    queue_bytes: int | None = None
    """tbf queue in bytes; needs ``rate_kbps``. Default with a rate: 1000 packets."""
    seed: int | None = None
    """Seed of netem's random numbers (u64; kernels before 6.6 ignore it). None: random."""

    def __post_init__(self) -> None:
        _finite_nonneg("delay_ms", self.delay_ms)
        _finite_nonneg("jitter_ms", self.jitter_ms)
        if self.delay_ms > K_MAX_DELAY_MS:
            raise LocalProtocolError(f"netem: delay_ms must be at most {K_MAX_DELAY_MS:.0f}")
        if self.jitter_ms > K_MAX_JITTER_MS:
            raise LocalProtocolError(f"netem: jitter_ms must be at most {K_MAX_JITTER_MS} "
                                     f"(the kernel caps jitter at 2^31 - 1 ns)")
        if self.distribution not in JITTER_DISTRIBUTIONS:
            raise LocalProtocolError(f"netem: distribution must be one of "
                                     f"{', '.join(JITTER_DISTRIBUTIONS)}, "
                                     f"got {self.distribution!r}")
        for name in ("delay_correlation", "duplicate", "reorder", "reorder_correlation"):
            _probability(name, getattr(self, name))
        if self.delay_correlation > 0 and self.jitter_ms == 0:
            raise LocalProtocolError("netem: delay_correlation needs jitter_ms > 0")
        if not (isinstance(self.loss, NoLoss | BernoulliLoss | GilbertLoss | Markov4Loss)
                and self.loss.model in ("none", "bernoulli", "gilbert", "markov4")):
            raise LocalProtocolError(
                f"netem: loss model {getattr(self.loss, 'model', type(self.loss).__name__)!r} "
                f"has no netem equivalent (netem knows bernoulli, gilbert and markov4); use "
                f"the simulator (edgewire netsim run) or the relay (edgewire netsim relay)")
        if self.reorder > 0 and self.delay_ms == 0:
            raise LocalProtocolError("netem: reorder needs delay_ms > 0 (a reordered packet "
                                     "is one that skips the delay)")
        if self.reorder == 0 and (self.reorder_gap or self.reorder_correlation):
            raise LocalProtocolError("netem: reorder_gap and reorder_correlation need "
                                     "reorder > 0")
        if not isinstance(self.reorder_gap, int) or not 0 <= self.reorder_gap <= _U32_MAX:
            raise LocalProtocolError(f"netem: reorder_gap must be an integer >= 0, "
                                     f"got {self.reorder_gap!r}")
        if not isinstance(self.limit_packets, int) or not 1 <= self.limit_packets <= _U32_MAX:
            raise LocalProtocolError(f"netem: limit_packets must be an integer >= 1, "
                                     f"got {self.limit_packets!r}")
        if self.rate_kbps is not None:
            _finite_nonneg("rate_kbps", self.rate_kbps)
            if not 0 < self.rate_kbps <= K_TBF_MAX_RATE_KBPS:
                raise LocalProtocolError(f"tbf: rate_kbps must be in (0, "
                                         f"{K_TBF_MAX_RATE_KBPS:.0f}], got {self.rate_kbps!r}")
        if self.seed is not None and (
                not isinstance(self.seed, int) or not 0 <= self.seed < 2**64):
            raise LocalProtocolError(f"netem: seed must be an integer in [0, 2^64), "
                                     f"got {self.seed!r}")
        if self.queue_packets is not None and self.queue_bytes is not None:
            raise LocalProtocolError("tbf: give queue_packets or queue_bytes, not both")
        if (self.queue_packets is not None or self.queue_bytes is not None) and (
                self.rate_kbps is None):
            raise LocalProtocolError("tbf: a queue limit needs rate_kbps (the queue is tbf's)")
        if self.queue_packets is not None and (
                not isinstance(self.queue_packets, int) or self.queue_packets < 1):
            raise LocalProtocolError(f"tbf: queue_packets must be an integer >= 1, "
                                     f"got {self.queue_packets!r}")
        if self.queue_bytes is not None and (
                not isinstance(self.queue_bytes, int)
                or not K_FRAME_BYTES <= self.queue_bytes <= _U32_MAX):
            raise LocalProtocolError(f"tbf: queue_bytes must be an integer >= {K_FRAME_BYTES}, "
                                     f"got {self.queue_bytes!r}")

    @classmethod
    def from_link_config(cls, cfg: LinkConfig, *, seed: int | None = None) -> NetemSpec:
        """The kernel backend's version of a simulator link direction.

        Mapping: delay, jitter, distribution, loss model and duplication carry over;
        ``reorder`` becomes :attr:`jitter_reorders`; ``rate_kbps`` and the queue limit go to
        tbf (``queue_ms`` becomes bytes at the configured rate); ``down = true`` becomes 100 %
        Bernoulli loss; ``seed`` seeds netem's random numbers. A capacity trace or CoDel
        cannot be reproduced with netem and tbf:
        :class:`LocalProtocolError` then says to use the simulator or the relay.
        """
        if not isinstance(cfg, LinkConfig):
            raise LocalProtocolError(f"from_link_config needs a LinkConfig, "
                                     f"got {type(cfg).__name__}")
        if cfg.trace is not None:
            raise LocalProtocolError(
                "the kernel backend cannot replay a capacity trace (tbf shapes one fixed "
                "rate): use the simulator (edgewire netsim run) or the relay "
                "(edgewire netsim relay) for trace-driven links")
        if cfg.aqm != "droptail":
            raise LocalProtocolError(
                f"the kernel backend has no {cfg.aqm} queue (tbf drops at the tail): use the "
                f"simulator (edgewire netsim run) or the relay (edgewire netsim relay)")
        if cfg.has_reader:
            raise LocalProtocolError(
                "read_kbps / read_stall_ms model the receiving process in a simulation; "
                "behind the kernel backend the receivers are real programs")
        queue_packets: int | None = None
        queue_bytes: int | None = None
        if cfg.rate_kbps is not None:
            if cfg.queue_bytes is not None:
                queue_bytes = max(cfg.queue_bytes, K_FRAME_BYTES)
            elif cfg.queue_ms is not None:
                queue_bytes = max(int(cfg.rate_kbps * 1000 / 8 * cfg.queue_ms / 1000),
                                  K_FRAME_BYTES)
            else:
                queue_packets = cfg.queue_limit_packets or K_DEFAULT_QUEUE_PACKETS
        return cls(
            delay_ms=cfg.delay_ms,
            jitter_ms=cfg.jitter_ms,
            distribution=cfg.jitter_distribution,
            jitter_reorders=cfg.reorder,
            loss=BernoulliLoss(rate=1.0) if cfg.down else cfg.loss,
            duplicate=cfg.duplicate,
            rate_kbps=cfg.rate_kbps,
            queue_packets=queue_packets,
            queue_bytes=queue_bytes,
            seed=seed,
        )

    @property
    def needs_netem(self) -> bool:
        """True when the direction needs the netem qdisc (anything but rate and queue)."""
        return bool(self.delay_ms or self.jitter_ms or self.duplicate or self.reorder
                    or self.loses_packets)

    @property
    def loses_packets(self) -> bool:
        """True when the loss model can lose a packet (read from the parameters, not the
        stationary figures: both netem models start in their lossless state)."""
        loss = self.loss
        if isinstance(loss, BernoulliLoss):
            return loss.rate > 0
        if isinstance(loss, GilbertLoss):
            return loss.p > 0 or loss.k < 1
        if isinstance(loss, Markov4Loss):
            return loss.p13 > 0 or loss.p14 > 0
        return False

    @property
    def needs_tbf(self) -> bool:
        """True when the direction has a rate limit (a tbf qdisc)."""
        return self.rate_kbps is not None

    @property
    def rate_bytes_per_s(self) -> int | None:
        """tbf's rate in bytes per second."""
        if self.rate_kbps is None:
            return None
        return max(1, round(self.rate_kbps * 1000 / 8))

    @property
    def tbf_limit_bytes(self) -> int | None:
        """tbf's queue in bytes (packets count as K_FRAME_BYTES each)."""
        if self.rate_kbps is None:
            return None
        if self.queue_bytes is not None:
            return self.queue_bytes
        packets = self.queue_packets if self.queue_packets is not None else (
            K_DEFAULT_QUEUE_PACKETS)
        return min(packets * K_FRAME_BYTES, _U32_MAX)

    @property
    def tbf_burst_bytes(self) -> int | None:
        """tbf's bucket: two full-size frames, or K_TBF_BURST_S at the rate if larger."""
        rate = self.rate_bytes_per_s
        if rate is None:
            return None
        return max(2 * K_FRAME_BYTES, math.ceil(rate * K_TBF_BURST_S))


def _attr(attr_type: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, attr_type) + payload + b"\0" * (_align4(length) - length)


def _loss_attribute(loss: LossConfig) -> bytes:
    u32 = probability_to_u32
    if isinstance(loss, GilbertLoss):
        # tc: h = UINT32_MAX - rint((1-h) * UINT32_MAX), k1 = rint((1-k) * UINT32_MAX)
        inner = _attr(NETEM_LOSS_GE, struct.pack(
            "=4I", u32(loss.p), u32(loss.r), _U32_MAX - u32(1.0 - loss.h), u32(1.0 - loss.k)))
    elif isinstance(loss, Markov4Loss):
        inner = _attr(NETEM_LOSS_GI, struct.pack(
            "=5I", u32(loss.p13), u32(loss.p31), u32(loss.p32), u32(loss.p14), u32(loss.p23)))
    else:
        return b""
    return _attr(TCA_NETEM_LOSS | NLA_F_NESTED, inner)


def _ms_to_ns(ms: float) -> int:
    return round(ms * 1_000_000)


def encode_netem_options(spec: NetemSpec, *, ticks_per_us: float = K_TICKS_PER_US,
                         dist_table: tuple[int, ...] | None = None,
                         time_format: TimeFormat = "both") -> bytes:
    """The payload of netem's ``TCA_OPTIONS`` attribute for ``spec`` (without the
    attribute's own 4-byte header): ``tc_netem_qopt`` followed by LATENCY64, JITTER64, CORR,
    REORDER, LOSS (nested GE or GI), RATE, PRNG_SEED and DELAY_DIST, in tc's order.

    ``time_format`` picks how delay and jitter travel (see :data:`TimeFormat`): "ticks" gives
    the bytes of iproute2 before 6.9, "ns64" those of iproute2 6.9 and later, "both" (the
    default) fills the ticks and adds the nanosecond attributes, which kernels since 4.15
    prefer.

    ``dist_table`` is the delay distribution for ``spec.distribution`` other than uniform
    (signed 16-bit values scaled by 8192, as in iproute2's ``*.dist`` files); it is sent only
    with jitter, like tc does. rate and queue are tbf's and are not part of this payload.
    """
    if spec.distribution != "uniform" and spec.jitter_ms > 0 and dist_table is None:
        raise LocalProtocolError(f"netem: distribution {spec.distribution!r} needs its table "
                                 f"(dist_table); only uniform is built into the kernel")
    if dist_table is not None:
        if not 1 <= len(dist_table) <= K_DIST_MAX:
            raise LocalProtocolError(f"netem: a distribution table has 1 to {K_DIST_MAX} "
                                     f"values, got {len(dist_table)}")
        if any(not -32768 <= v <= 32767 for v in dist_table):
            raise LocalProtocolError("netem: distribution table values must fit 16 bits")
    if time_format not in ("ticks", "ns64", "both"):
        raise LocalProtocolError(f"netem: time_format must be ticks, ns64 or both, "
                                 f"got {time_format!r}")
    u32 = probability_to_u32
    loss_field = u32(spec.loss.rate) if isinstance(spec.loss, BernoulliLoss) else 0
    gap = spec.reorder_gap or (1 if spec.reorder > 0 else 0)
    latency = jitter = 0
    if time_format != "ns64":
        clamp = time_format == "both"
        latency = ms_to_ticks(spec.delay_ms, ticks_per_us, clamp=clamp)
        jitter = ms_to_ticks(spec.jitter_ms, ticks_per_us, clamp=clamp)
    out = bytearray(_QOPT.pack(latency, spec.limit_packets, loss_field, gap,
                               u32(spec.duplicate), jitter))
    if time_format != "ticks":
        # tc sends the latency whenever a delay was typed (jitter needs one), jitter if typed
        if spec.delay_ms > 0 or spec.jitter_ms > 0:
            out += _attr(TCA_NETEM_LATENCY64, struct.pack("=q", _ms_to_ns(spec.delay_ms)))
        if spec.jitter_ms > 0:
            out += _attr(TCA_NETEM_JITTER64, struct.pack("=q", _ms_to_ns(spec.jitter_ms)))
    # tc sends the correlation struct whenever a correlation was typed, the reorder one too
    if spec.delay_correlation > 0 or spec.reorder_correlation > 0:
        out += _attr(TCA_NETEM_CORR, struct.pack("=3I", u32(spec.delay_correlation), 0, 0))
    if spec.reorder > 0:
        out += _attr(TCA_NETEM_REORDER,
                     struct.pack("=2I", u32(spec.reorder), u32(spec.reorder_correlation)))
    out += _loss_attribute(spec.loss)
    if spec.jitter_ms > 0 and not spec.jitter_reorders:
        out += _attr(TCA_NETEM_RATE, struct.pack("=IiIi", _IN_ORDER_RATE, 0, 0, 0))
    if spec.seed is not None:
        out += _attr(TCA_NETEM_PRNG_SEED, struct.pack("=Q", spec.seed))
    if dist_table is not None and spec.jitter_ms > 0:
        out += _attr(TCA_NETEM_DELAY_DIST, struct.pack(f"={len(dist_table)}h", *dist_table))
    return bytes(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetemOptions:
    """A netem ``TCA_OPTIONS`` payload taken apart, with the kernel's raw integers."""

    latency_ticks: int
    """tc_netem_qopt.latency (psched ticks)."""
    limit: int
    """tc_netem_qopt.limit (packets)."""
    loss: int
    """tc_netem_qopt.loss (Bernoulli, u32 fraction)."""
    gap: int
    """tc_netem_qopt.gap."""
    duplicate: int
    """tc_netem_qopt.duplicate (u32 fraction)."""
    jitter_ticks: int
    """tc_netem_qopt.jitter (psched ticks)."""
    correlation: tuple[int, int, int] | None = None
    """TCA_NETEM_CORR: delay, loss, duplicate correlation."""
    reorder: tuple[int, int] | None = None
    """TCA_NETEM_REORDER: probability, correlation."""
    rate: tuple[int, int, int, int] | None = None
    """TCA_NETEM_RATE: rate (bytes/s), packet overhead, cell size, cell overhead."""
    gemodel: tuple[int, int, int, int] | None = None
    """NETEM_LOSS_GE inside TCA_NETEM_LOSS: p, r, h, k1."""
    gimodel: tuple[int, int, int, int, int] | None = None
    """NETEM_LOSS_GI inside TCA_NETEM_LOSS: p13, p31, p32, p14, p23."""
    dist_table: tuple[int, ...] | None = None
    """TCA_NETEM_DELAY_DIST values."""
    latency64_ns: int | None = None
    """TCA_NETEM_LATENCY64 (nanoseconds; overrides latency_ticks)."""
    jitter64_ns: int | None = None
    """TCA_NETEM_JITTER64 (nanoseconds; overrides jitter_ticks)."""
    seed: int | None = None
    """TCA_NETEM_PRNG_SEED."""
    other: tuple[int, ...] = ()
    """Types of attributes this decoder does not interpret."""


def _iter_attrs(data: bytes, where: str) -> list[tuple[int, bytes]]:
    attrs: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _RTATTR.size:
            raise LocalProtocolError(f"{where}: {len(data) - pos} trailing bytes")
        length, attr_type = _RTATTR.unpack_from(data, pos)
        if length < _RTATTR.size or pos + length > len(data):
            raise LocalProtocolError(f"{where}: attribute length {length} at offset {pos} "
                                     f"does not fit {len(data)} bytes")
        attrs.append((attr_type, data[pos + _RTATTR.size:pos + length]))
        pos += _align4(length)
    return attrs


def _fixed(payload: bytes, fmt: str, name: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if len(payload) < size:
        raise LocalProtocolError(f"netem options: {name} has {len(payload)} bytes, "
                                 f"needs {size}")
    return struct.unpack_from(fmt, payload)


def decode_netem_options(payload: bytes) -> NetemOptions:
    """Take a netem ``TCA_OPTIONS`` payload apart (the inverse of
    :func:`encode_netem_options`). Malformed input raises :class:`LocalProtocolError`."""
    if len(payload) < _QOPT.size:
        raise LocalProtocolError(f"netem options: {len(payload)} bytes, tc_netem_qopt "
                                 f"needs {_QOPT.size}")
    latency, limit, loss, gap, duplicate, jitter = _QOPT.unpack_from(payload)
    found: dict[str, object] = {}
    other: list[int] = []
    for attr_type, value in _iter_attrs(payload[_QOPT.size:], "netem options"):
        kind = attr_type & NLA_TYPE_MASK
        if kind == TCA_NETEM_CORR:
            found["correlation"] = _fixed(value, "=3I", "TCA_NETEM_CORR")
        elif kind == TCA_NETEM_REORDER:
            found["reorder"] = _fixed(value, "=2I", "TCA_NETEM_REORDER")
        elif kind == TCA_NETEM_RATE:
            found["rate"] = _fixed(value, "=IiIi", "TCA_NETEM_RATE")
        elif kind == TCA_NETEM_LATENCY64:
            found["latency64_ns"] = _fixed(value, "=q", "TCA_NETEM_LATENCY64")[0]
        elif kind == TCA_NETEM_JITTER64:
            found["jitter64_ns"] = _fixed(value, "=q", "TCA_NETEM_JITTER64")[0]
        elif kind == TCA_NETEM_PRNG_SEED:
            found["seed"] = _fixed(value, "=Q", "TCA_NETEM_PRNG_SEED")[0]
        elif kind == TCA_NETEM_DELAY_DIST:
            if len(value) % 2:
                raise LocalProtocolError("netem options: odd-sized distribution table")
            found["dist_table"] = struct.unpack(f"={len(value) // 2}h", value)
        elif kind == TCA_NETEM_LOSS:
            for inner_type, inner in _iter_attrs(value, "TCA_NETEM_LOSS"):
                if inner_type == NETEM_LOSS_GE:
                    found["gemodel"] = _fixed(inner, "=4I", "NETEM_LOSS_GE")
                elif inner_type == NETEM_LOSS_GI:
                    found["gimodel"] = _fixed(inner, "=5I", "NETEM_LOSS_GI")
                else:
                    other.append(inner_type)
        else:
            other.append(kind)
    return NetemOptions(latency_ticks=latency, limit=limit, loss=loss, gap=gap,
                        duplicate=duplicate, jitter_ticks=jitter, other=tuple(other),
                        **found)  # type: ignore[arg-type]


def build_qdisc_request(*, ifindex: int, kind: str, options: bytes, seq: int,
                        handle: int = 0x10000, parent: int = TC_H_ROOT,
                        flags: int = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
                        ) -> bytes:
    """A complete ``RTM_NEWQDISC`` netlink message (what ``tc qdisc add`` sends):
    nlmsghdr, tcmsg, ``TCA_KIND`` and ``TCA_OPTIONS`` carrying ``options``."""
    if not 0 < ifindex < 2**31:
        raise LocalProtocolError(f"ifindex must be a positive 32-bit integer, got {ifindex!r}")
    body = (_TCMSG.pack(0, 0, 0, ifindex, handle, parent, 0)
            + _attr(TCA_KIND, kind.encode("ascii") + b"\0")
            + _attr(TCA_OPTIONS, options))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_NEWQDISC, flags, seq, 0) + body


@dataclass(frozen=True, slots=True, kw_only=True)
class NetlinkAck:
    """The kernel's answer to one request."""

    error: int
    """0 on success, else the errno (positive)."""
    message: str | None = None
    """The extended ack text (e.g. "Specified qdisc kind is unknown."), if the kernel sent
    one."""


def parse_netlink_ack(data: bytes, *, seq: int) -> NetlinkAck | None:
    """Find the ``NLMSG_ERROR`` answer to request ``seq`` in a datagram read from a netlink
    socket; None when the datagram holds no answer to it."""
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            raise LocalProtocolError(f"netlink: message length {length} at offset {pos} "
                                     f"does not fit {len(data)} bytes")
        if msg_type == NLMSG_ERROR and msg_seq == seq:
            body = data[pos + _NLMSGHDR.size:pos + length]
            if len(body) < 4 + _NLMSGHDR.size:
                raise LocalProtocolError("netlink: truncated error message")
            (code,) = struct.unpack_from("=i", body)
            message = None
            if flags & NLM_F_ACK_TLVS:
                # the request comes back whole unless the ack was capped to its header
                inner_len = _NLMSGHDR.size if flags & NLM_F_CAPPED else (
                    _NLMSGHDR.unpack_from(body, 4)[0])
                tlvs = body[4 + _align4(inner_len):]
                for attr_type, value in _iter_attrs(tlvs, "netlink ack"):
                    if attr_type & NLA_TYPE_MASK == NLMSGERR_ATTR_MSG:
                        message = value.split(b"\0", 1)[0].decode("utf-8", "replace")
            return NetlinkAck(error=-code, message=message)
        pos += _align4(length)
    return None
