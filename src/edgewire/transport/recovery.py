"""Loss recovery for real-time channels: Reed-Solomon FEC, deadline-aware NACK
retransmission, and the policy that mixes them (docs/RECOVERY.md).

Sans-I/O like the rest of the transport: every method takes ``now``; the session moves the
datagrams. One :class:`SendRecovery` per real-time channel this side sends on, one
:class:`ReceiveRecovery` per real-time channel it receives.

* The sender keeps a bounded history of what it sent. A NACK gets a datagram sent again only
  if it can still arrive before its frame's deadline (half the RTT ahead), was not sent
  again less than an RTT ago, and fits the retransmission budget (a share of the media
  bytes sent, as a token bucket). So a blackout cannot cause a retransmission storm: after
  it, most NACKed datagrams are past their deadline and the budget caps the rest.
* The receiver tracks per-channel sequence numbers, NACKs each gap at once and again about
  one RTT later (at most ``nack_retries`` times, never after the deadline), decodes FEC
  groups, and reports loss before recovery (rate and bursts) to the sender every
  ``report_interval`` while it sees loss, every ``report_idle_interval`` otherwise.
* The policy turns the reported loss rate and mean burst length, the RTT, the deadline and
  the datagram spacing into FEC parameters (k, m) and an ARQ on/off switch.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.transport import fec
from edgewire.transport.wire import (
    FEC_HEADER_SIZE,
    MAX_FEC_GROUP,
    MAX_NACK_RANGES,
    MAX_U32,
    FecHeader,
    as_retransmission,
    encode_fec_header,
    encode_nack,
)

__all__ = [
    "RECOVERY_MODES",
    "Protection",
    "ReceiveRecovery",
    "RecoveryConfig",
    "SendRecovery",
    "choose_protection",
    "gilbert_residual",
]

#: Recovery modes: nothing, FEC only, NACK retransmission only, both, or chosen per link.
RECOVERY_MODES = ("none", "fec", "arq", "hybrid", "auto")

#: Seconds added to the RTT between two NACKs of one datagram (the answer's own jitter).
K_NACK_SLACK = 0.005
#: Seconds of margin the policy keeps between a recovery's arrival and the deadline.
K_DEADLINE_MARGIN = 0.005
#: Parity waiting to be spread goes out anyway after this many datagram spacings.
K_SPREAD_TIMEOUT = 1.5
#: Most consecutive missing sequence numbers tracked from one gap; a larger jump is counted
#: as loss but not NACKed (the peer restarted or skipped far ahead).
K_MAX_GAP = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryConfig:
    """Settings of loss recovery, the same for every real-time channel of a session."""

    mode: str = "auto"
    """One of ``RECOVERY_MODES``."""
    target_residual: float = 0.001
    """Share of datagrams the policy accepts to leave unrecovered."""
    nack_retries: int = 3
    """NACKs per missing datagram at most."""
    retransmit_share: float = 0.5
    """Retransmitted bytes may reach this share of the media bytes sent (token bucket)."""
    retransmit_burst_bytes: int = 64 * 1024
    """Capacity of the retransmission token bucket."""
    history_datagrams: int = 4096
    """Datagrams the sender keeps for retransmission, per channel."""
    history_bytes: int = 8 << 20
    """Bytes the sender keeps for retransmission, per channel."""
    max_group: int = 16
    """Largest FEC group (k) the policy picks."""
    max_overhead: float = 2.0
    """Largest FEC overhead (m / k) the policy picks (short bursty-loss audio groups may
    need several parity datagrams per media datagram)."""
    report_interval: float = 0.1
    """Seconds between two loss reports of the receiver while it sees loss."""
    report_idle_interval: float = 1.0
    """Seconds between two loss reports while no loss is seen; a gap brings the next report
    forward to ``report_interval`` after the previous one."""
    report_memory: float = 0.98
    """Weight the sender keeps of its loss statistics per ``report_interval`` of time
    (exponential decay)."""
    receive_hold_bytes: int = 4 << 20
    """Bytes of received datagrams the receiver keeps for FEC decoding, per channel."""
    max_missing: int = 2048
    """Missing datagrams the receiver tracks for NACKs, per channel."""
    max_groups: int = 256
    """FEC groups with parity waiting for members the receiver keeps, per channel."""

    def __post_init__(self) -> None:
        if self.mode not in RECOVERY_MODES:
            raise LocalProtocolError(
                f"recovery mode {self.mode!r} is not one of {', '.join(RECOVERY_MODES)}")
        if not 0.0 < self.target_residual < 1.0:
            raise LocalProtocolError("target_residual must be in (0, 1)")
        if not 0 <= self.nack_retries <= 16:
            raise LocalProtocolError("nack_retries must be in 0..16")
        if not 0.0 <= self.retransmit_share <= 10.0:
            raise LocalProtocolError("retransmit_share must be in 0..10")
        if not 1 <= self.max_group <= MAX_FEC_GROUP:
            raise LocalProtocolError(f"max_group must be in 1..{MAX_FEC_GROUP}")
        if not self.max_overhead > 0:
            raise LocalProtocolError("max_overhead must be positive")
        if not self.report_interval > 0 or not 0.0 <= self.report_memory < 1.0:
            raise LocalProtocolError("report_interval must be > 0, report_memory in [0, 1)")
        if not self.report_idle_interval >= self.report_interval:
            raise LocalProtocolError("report_idle_interval must be >= report_interval")
        for name in ("retransmit_burst_bytes", "history_datagrams", "history_bytes",
                     "receive_hold_bytes", "max_missing", "max_groups"):
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"{name} must be positive")

    @property
    def uses_arq(self) -> bool:
        """True when NACK retransmission may be used."""
        return self.mode in ("arq", "hybrid", "auto")

    @property
    def uses_fec(self) -> bool:
        """True when FEC may be used."""
        return self.mode in ("fec", "hybrid", "auto")


# ---------------------------------------------------------------------------- policy


@lru_cache(maxsize=4096)
def _residual(p: float, burst: float, k: int, m: int) -> float:
    # Two-state Gilbert channel: the bad state loses every datagram, the good state none.
    # Mean burst b gives P(bad -> good) = 1/b; the stationary loss p then fixes
    # P(good -> bad). A Bernoulli channel is the case b = 1 / (1 - p).
    # The datagrams go out as the sender sends them: the k sources, then each parity
    # after one more media datagram of the next group (the sender spreads parity so that
    # one burst does not take the end of a group and its parity together). Dynamic
    # programme over that sequence, tracking P[state][symbols lost] and
    # E[sources lost; state, symbols lost], symbols lost capped at m + 1.
    r = min(1.0, 1.0 / burst)
    q = min(1.0, p * r / (1.0 - p))
    cap = m + 1
    # position kinds: 1 = source, 2 = parity, 0 = a datagram of another group
    pattern = [1] * k + [0, 2] * m
    prob = [[0.0] * (cap + 1) for _ in range(2)]  # [good, bad][symbols lost]
    src = [[0.0] * (cap + 1) for _ in range(2)]
    prob[0][0], prob[1][1] = 1.0 - p, p
    src[1][1] = p  # the first position is a source
    for kind in pattern[1:]:
        nprob = [[0.0] * (cap + 1) for _ in range(2)]
        nsrc = [[0.0] * (cap + 1) for _ in range(2)]
        for state in (0, 1):
            to_bad = q if state == 0 else 1.0 - r
            for n in range(cap + 1):
                pr = prob[state][n]
                if pr == 0.0:
                    continue
                ex = src[state][n]
                nprob[0][n] += pr * (1.0 - to_bad)
                nsrc[0][n] += ex * (1.0 - to_bad)
                n2 = min(cap, n + 1) if kind else n
                nprob[1][n2] += pr * to_bad
                nsrc[1][n2] += (ex + (pr if kind == 1 else 0.0)) * to_bad
        prob, src = nprob, nsrc
    return (src[0][cap] + src[1][cap]) / k


def gilbert_residual(p: float, burst: float, k: int, m: int) -> float:
    """Share of source datagrams an RS(k, m) group leaves unrecovered on a Gilbert
    channel with loss rate ``p`` and mean burst length ``burst`` (m = 0: no FEC), with
    each parity datagram sent after one more media datagram, as :class:`SendRecovery`
    does."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if m == 0:
        return p
    burst = max(1.0, burst)
    return _residual(round(p, 4), round(burst, 2), k, m)


@dataclass(frozen=True, slots=True)
class Protection:
    """What the policy chose for one channel."""

    k: int = 0
    """Datagrams per FEC group (0: no FEC)."""
    m: int = 0
    """Parity datagrams per group."""
    arq: bool = False
    """Answer NACKs with retransmissions."""
    residual: float = 0.0
    """Expected share of datagrams left unrecovered."""
    overhead: float = 0.0
    """Expected recovery bytes per media byte."""
    max_span: float = 0.0
    """Seconds a group may stay open before its parity is sent anyway."""


def choose_protection(config: RecoveryConfig, *, loss: float, burst: float, rtt: float,
                      deadline: float, interval: float) -> Protection:
    """FEC parameters and ARQ switch for a channel (docs/RECOVERY.md has the reasoning).

    ``loss`` and ``burst`` are the receiver's reported loss before recovery and mean burst
    length, ``rtt`` the smoothed RTT (s), ``deadline`` the channel's deadline (s),
    ``interval`` the mean spacing of its datagrams (s).
    """
    mode = config.mode
    if mode == "none":
        return Protection()
    owd = rtt / 2.0
    # ARQ: a gap is seen when the burst that made it ends (the next datagram arrives:
    # on average (1 + b) / 2 spacings after a lost one), the NACK and the answer take one
    # RTT, and each retry one RTT more; what arrives after the deadline is worthless
    detect = interval * (1.0 + max(1.0, burst)) / 2.0
    slack = deadline - owd - detect - K_DEADLINE_MARGIN
    rounds = max(0, min(config.nack_retries, int(slack // rtt) if rtt > 0 else 0))
    p = min(max(loss, 0.0), 0.999)
    fail = 1.0 - (1.0 - p) ** 2  # the NACK or its answer is lost
    arq_factor = fail ** rounds if rounds else 1.0
    arq_ok = config.uses_arq and rounds > 0
    if mode == "arq" or p == 0.0 or not config.uses_fec:
        # with ARQ asked for, the deadline checks of both sides decide what is worth
        # sending again; the model only says how much it will help
        arq = config.uses_arq and (arq_ok or mode == "arq")
        return Protection(arq=arq, residual=p * (arq_factor if arq else 1.0),
                          overhead=p * rounds if arq else 0.0)
    # FEC: the first datagram of a group waits for the rest of the group and for its
    # parity, which goes out spread over the next m datagram slots, then travels one way;
    # that must fit before the deadline
    span = deadline - owd - K_DEADLINE_MARGIN
    slots = max(1, int(span / max(interval, 1e-4)))
    k_limit = max(1, min(config.max_group, slots))
    candidates: list[Protection] = []
    if mode == "auto" and arq_ok:
        candidates.append(Protection(arq=True, residual=p * arq_factor,
                                     overhead=p * (1.0 + fail * (rounds - 1))))
    with_arq = (arq_ok and mode == "auto") or mode == "hybrid"
    for k in range(1, k_limit + 1):
        for m in range(1, slots + 1):
            if m / k > config.max_overhead or k + m > 255 or k - 1 + m > slots:
                break
            res = gilbert_residual(p, burst, k, m)
            overhead = m / k
            if with_arq:
                # NACKs go out at the gap, before FEC has had its chance: every loss is
                # answered once, and ARQ covers what FEC left
                res *= arq_factor
                overhead += p
            candidates.append(Protection(k=k, m=m, arq=with_arq, residual=res,
                                         overhead=overhead,
                                         max_span=max(0.0, span - m * interval)))
            if res <= config.target_residual:
                break  # more parity for this k only costs more
    good = [c for c in candidates if c.residual <= config.target_residual]
    if good:
        return min(good, key=lambda c: (c.overhead, c.residual))
    # nothing reaches the target in the time there is: the cheapest choice within twice
    # the best residual (the last factor of two costs the most parity)
    best = min(c.residual for c in candidates)
    near = [c for c in candidates if c.residual <= 2.0 * best]
    return min(near, key=lambda c: (c.overhead, c.residual))


# ---------------------------------------------------------------------------- sender


@dataclass(slots=True)
class _Sent:
    data: bytes
    deadline: float
    last_retransmit: float | None = None


@dataclass(slots=True)
class SendRecoveryStats:
    """What the sender did for recovery on one channel."""

    media_datagrams: int = 0
    """Media datagrams sent (first transmissions)."""
    media_bytes: int = 0
    """Their bytes, headers included: the base of the overhead."""
    fec_datagrams: int = 0
    """Parity datagrams sent."""
    fec_bytes: int = 0
    """Their bytes."""
    retransmitted: int = 0
    """Datagrams sent again in answer to NACKs."""
    retransmitted_bytes: int = 0
    """Their bytes."""
    nacks: int = 0
    """NACK datagrams received."""
    nacked: int = 0
    """Sequence numbers they asked for."""
    nack_unknown: int = 0
    """Asked for but not in the history (never sent, or forgotten)."""
    nack_too_late: int = 0
    """Not sent again: could not arrive before the deadline."""
    nack_recent: int = 0
    """Not sent again: already sent again less than an RTT ago."""
    nack_over_budget: int = 0
    """Not sent again: the retransmission budget was spent."""
    reports: int = 0
    """Loss reports received."""


class SendRecovery:
    """Sender half of one real-time channel's recovery."""

    def __init__(self, channel_id: int, config: RecoveryConfig, *, deadline: float) -> None:
        self.channel_id = channel_id
        self.config = config
        self.deadline = deadline
        """The channel's deadline in seconds."""
        self.protection = Protection(arq=config.uses_arq)
        """The policy's current choice."""
        self.stats = SendRecoveryStats()
        self.loss = 0.0
        """Loss before recovery the receiver reports (smoothed)."""
        self.burst = 1.0
        """Mean loss burst length the receiver reports (smoothed)."""
        self.interval = 0.02
        """Smoothed spacing of this channel's datagrams, seconds."""
        self._recv_w = 0.0
        self._lost_w = 0.0
        self._bursts_w = 0.0
        self._history: OrderedDict[int, _Sent] = OrderedDict()
        self._history_bytes = 0
        self._tokens = float(config.retransmit_burst_bytes)
        self._last_report: float | None = None
        self._group: list[bytes] = []
        self._spread: deque[tuple[float, bytes]] = deque()  # parity waiting: (latest, data)
        self._group_base = 0
        self._group_opened = 0.0
        self._last_sent: float | None = None

    # -- sending

    def on_sent(self, seq: int, datagram: bytes, *, deadline: float, now: float) -> list[bytes]:
        """Record a media datagram just handed to QUIC; returns the parity datagram to send
        right after it, if one is waiting.

        A group's parity is spread: one parity datagram after each of the next media
        datagrams (or at the usual spacing when the channel falls silent), so that one
        burst does not take the end of a group and its parity together.
        """
        cfg = self.config
        if self._last_sent is not None:
            gap = now - self._last_sent
            self.interval += 0.1 * (gap - self.interval)
        self._last_sent = now
        size = len(datagram)
        self.stats.media_datagrams += 1
        self.stats.media_bytes += size
        self._tokens = min(float(cfg.retransmit_burst_bytes),
                           self._tokens + size * cfg.retransmit_share)
        if cfg.uses_arq:
            hist = self._history
            hist[seq] = _Sent(datagram, deadline)
            self._history_bytes += size
            while len(hist) > cfg.history_datagrams or self._history_bytes > cfg.history_bytes:
                _, old = hist.popitem(last=False)
                self._history_bytes -= len(old.data)
        out = [self._spread.popleft()[1]] if self._spread else []
        prot = self.protection
        if prot.k == 0:
            if self._group:
                self._close_group(now)
            return out
        if not self._group:
            self._group_base = seq
            self._group_opened = now
        elif (seq - self._group_base) & MAX_U32 != len(self._group):
            # numbering jumped (cannot happen with send-time numbering; stay safe)
            self._close_group(now)
            self._group_base, self._group_opened = seq, now
        self._group.append(datagram)
        if len(self._group) >= prot.k:
            self._close_group(now)
        return out

    def _close_group(self, now: float) -> None:
        group = self._group
        self._group = []
        k = len(group)
        if k == 0:
            return
        prot = self.protection
        m = prot.m if prot.k else 1
        if k < prot.k:
            m = max(1, math.ceil(prot.m * k / prot.k))
        m = min(m, 255 - k)
        parity = fec.encode_parity(group, m)
        mask = (1 << k) - 1
        step = self.interval * K_SPREAD_TIMEOUT
        for i, symbol in enumerate(parity):
            data = encode_fec_header(channel_id=self.channel_id,
                                     base_sequence=self._group_base, mask=mask, m=m,
                                     index=i) + symbol
            self._spread.append((now + (i + 1) * step, data))
            self.stats.fec_datagrams += 1
            self.stats.fec_bytes += len(data)

    def get_timer(self) -> float | None:
        """When the open FEC group must be closed (its first datagram would be late), or
        when waiting parity must go out though no media datagram came."""
        t = self._group_opened + self.protection.max_span if self._group else None
        if self._spread and (t is None or self._spread[0][0] < t):
            t = self._spread[0][0]
        return t

    def on_timer(self, now: float) -> list[bytes]:
        """Parity due: of a group held open too long, or waiting for a media datagram."""
        if self._group and now >= self._group_opened + self.protection.max_span:
            self._close_group(now)
        out = []
        while self._spread and self._spread[0][0] <= now:
            out.append(self._spread.popleft()[1])
        return out

    # -- feedback

    def on_nack(self, ranges: list[tuple[int, int]], *, now: float, rtt: float) -> list[bytes]:
        """Datagrams to send again for a NACK's ranges (deadline, recency and budget
        permitting)."""
        st = self.stats
        st.nacks += 1
        if not self.protection.arq:
            st.nacked += sum(c for _, c in ranges)
            st.nack_too_late += sum(c for _, c in ranges)
            return []
        out: list[bytes] = []
        hist = self._history
        owd = rtt / 2.0
        for first, count in ranges:
            st.nacked += count
            if count > len(hist):  # a flood: no history holds that many
                st.nack_unknown += count - len(hist)
                count = len(hist)
            for i in range(count):
                sent = hist.get((first + i) & MAX_U32)
                if sent is None:
                    st.nack_unknown += 1
                    continue
                if now + owd > sent.deadline:
                    st.nack_too_late += 1
                    continue
                if sent.last_retransmit is not None and now - sent.last_retransmit < rtt:
                    st.nack_recent += 1  # the previous answer may still be on its way
                    continue
                size = len(sent.data)
                if self._tokens < size:
                    st.nack_over_budget += 1
                    continue
                self._tokens -= size
                sent.last_retransmit = now
                st.retransmitted += 1
                st.retransmitted_bytes += size
                out.append(as_retransmission(sent.data))
        self._forget_expired(now)
        return out

    def _forget_expired(self, now: float) -> None:
        hist = self._history
        while hist:
            seq, oldest = next(iter(hist.items()))
            if oldest.deadline > now:
                break
            del hist[seq]
            self._history_bytes -= len(oldest.data)

    def on_report(self, *, received: int, lost: int, bursts: int, rtt: float,
                  now: float) -> None:
        """Take a loss report of the receiver and choose the protection again."""
        cfg = self.config
        self.stats.reports += 1
        # reports come every report_interval while there is loss and less often without:
        # the memory decays with the time they cover, not with their number
        last = self._last_report
        elapsed = cfg.report_interval if last is None else max(0.0, now - last)
        self._last_report = now
        decay = cfg.report_memory ** (elapsed / cfg.report_interval)
        self._recv_w = self._recv_w * decay + received
        self._lost_w = self._lost_w * decay + lost
        self._bursts_w = self._bursts_w * decay + bursts
        total = self._recv_w + self._lost_w
        self.loss = self._lost_w / total if total > 0 else 0.0
        self.burst = self._lost_w / self._bursts_w if self._bursts_w > 0 else 1.0
        self.update_policy(rtt)

    @property
    def recovery_bytes(self) -> int:
        """Parity and retransmitted bytes sent so far."""
        return self.stats.fec_bytes + self.stats.retransmitted_bytes

    def update_policy(self, rtt: float) -> None:
        """Choose the protection for the current loss, RTT and datagram spacing."""
        self.protection = choose_protection(self.config, loss=self.loss, burst=self.burst,
                                            rtt=rtt, deadline=self.deadline,
                                            interval=self.interval)

    def summary(self) -> dict[str, Any]:
        """JSON-ready state and counters."""
        p = self.protection
        st = self.stats
        extra = st.fec_bytes + st.retransmitted_bytes
        return {"k": p.k, "m": p.m, "arq": p.arq, "loss": round(self.loss, 5),
                "burst": round(self.burst, 3),
                "overhead": round(extra / st.media_bytes, 5) if st.media_bytes else 0.0,
                **{name: getattr(st, name) for name in st.__slots__}}


# ---------------------------------------------------------------------------- receiver


@dataclass(slots=True)
class _Missing:
    deadline: float
    nacks: int = 0
    next_nack: float = 0.0


@dataclass(slots=True)
class _Group:
    header: FecHeader
    members: list[int]
    parity: dict[int, bytes] = field(default_factory=dict)
    expires: float = 0.0


@dataclass(slots=True)
class ReceiveRecoveryStats:
    """What the receiver did for recovery on one channel."""

    lost_before_recovery: int = 0
    """Sequence numbers never received as originals (gaps), reordering excepted."""
    recovered_fec: int = 0
    """Datagrams rebuilt from parity."""
    recovered_arq: int = 0
    """Missing datagrams that arrived as retransmissions."""
    nacks_sent: int = 0
    """NACK datagrams sent."""
    nacked: int = 0
    """Sequence numbers asked for (retries included)."""
    gave_up: int = 0
    """Missing datagrams no longer asked for (retries spent, deadline, or over the limit)."""
    parity_received: int = 0
    """Parity datagrams received."""
    parity_unneeded: int = 0
    """Parity for groups already complete or too old."""
    fec_failed: int = 0
    """Groups that could not be decoded (too few symbols before they were dropped)."""
    malformed: int = 0
    """Parity that failed to decode (dropped)."""


class ReceiveRecovery:
    """Receiver half of one real-time channel's recovery."""

    def __init__(self, channel_id: int, config: RecoveryConfig, *, deadline: float) -> None:
        self.channel_id = channel_id
        self.config = config
        self.deadline = deadline
        self.stats = ReceiveRecoveryStats()
        self._highest: int | None = None  # extended (64-bit) sequence numbers below
        self._missing: OrderedDict[int, _Missing] = OrderedDict()
        self._held: OrderedDict[int, bytes] = OrderedDict()
        self._held_bytes = 0
        self._groups: OrderedDict[tuple[int, int], _Group] = OrderedDict()
        self._member_of: dict[int, tuple[int, int]] = {}
        self._received = 0
        self._lost = 0
        self._bursts = 0
        self._next_report: float | None = None
        self._last_report = 0.0

    def _extend(self, seq: int) -> int:
        high = self._highest
        if high is None:
            return seq
        diff = (seq - high) & MAX_U32
        if diff >= 1 << 31:
            diff -= 1 << 32
        return high + diff

    # -- media and parity

    def on_media(self, seq: int, datagram: bytes, *, deadline: float, retransmitted: bool,
                 now: float) -> list[bytes]:
        """Account for a media datagram; returns datagrams FEC could rebuild thanks to it."""
        s = self._extend(seq)
        if self._next_report is None:
            self._next_report = now + self.config.report_interval
            self._last_report = now
        high = self._highest
        if high is None or s > high:
            if high is not None and s > high + 1:
                gap = s - high - 1
                self._lost += gap
                self._bursts += 1
                # loss is news for the sender's policy: report it soon
                self._next_report = min(self._next_report,
                                        max(now, self._last_report
                                            + self.config.report_interval))
                self.stats.lost_before_recovery += gap
                if self.config.uses_arq and gap <= K_MAX_GAP:
                    missing = self._missing
                    for x in range(high + 1, s):
                        missing[x] = _Missing(deadline=deadline, next_nack=now)
                    while len(missing) > self.config.max_missing:
                        missing.popitem(last=False)
                        self.stats.gave_up += 1
            self._highest = s
            if not retransmitted:
                self._received += 1
        else:
            miss = self._missing.pop(s, None)
            if miss is not None:
                if retransmitted:
                    self.stats.recovered_arq += 1
                else:  # reordered, not lost
                    self._lost -= 1
                    self._received += 1
                    self.stats.lost_before_recovery -= 1
            elif s in self._held:
                return []  # duplicate
            elif not retransmitted:
                # an original older than the highest, not tracked as missing (gap too
                # large, or FEC rebuilt it first)
                self._received += 1
        if not self.config.uses_fec:
            return []
        self._hold(s, datagram)
        key = self._member_of.get(s)
        if key is None:
            return []
        return self._try_decode(key, now)

    def _hold(self, s: int, datagram: bytes) -> None:
        held = self._held
        if s in held:
            return
        held[s] = datagram
        self._held_bytes += len(datagram)
        while self._held_bytes > self.config.receive_hold_bytes and held:
            _, old = held.popitem(last=False)
            self._held_bytes -= len(old)

    def on_parity(self, header: FecHeader, datagram: bytes, *, now: float) -> list[bytes]:
        """Account for a parity datagram; returns the datagrams it lets FEC rebuild."""
        self.stats.parity_received += 1
        if not self.config.uses_fec or self._highest is None:
            self.stats.parity_unneeded += 1
            return []
        base = self._extend(header.base_sequence)
        members = [base + i for i in range(MAX_FEC_GROUP) if header.mask >> i & 1]
        if all(x in self._held for x in members) or members[-1] < self._highest - K_MAX_GAP:
            self.stats.parity_unneeded += 1
            return []
        key = (base, header.mask)
        group = self._groups.get(key)
        if group is None:
            group = _Group(header=header, members=members, expires=now + self.deadline)
            self._groups[key] = group
            for x in members:
                self._member_of[x] = key
            while len(self._groups) > self.config.max_groups:
                self._drop_group(next(iter(self._groups)), failed=True)
        elif group.header.k != header.k or group.header.m != header.m:
            self.stats.malformed += 1
            return []
        group.parity[header.index] = datagram[FEC_HEADER_SIZE:]
        return self._try_decode(key, now)

    def _drop_group(self, key: tuple[int, int], *, failed: bool) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        for x in group.members:
            if self._member_of.get(x) == key:
                del self._member_of[x]
        if failed:
            self.stats.fec_failed += 1

    def _try_decode(self, key: tuple[int, int], now: float) -> list[bytes]:
        group = self._groups[key]
        k, m = group.header.k, group.header.m
        have: dict[int, bytes] = {}
        absent: list[int] = []
        for i, x in enumerate(group.members):
            data = self._held.get(x)
            if data is None:
                absent.append(i)
            else:
                have[i] = data
        if not absent:
            self._drop_group(key, failed=False)
            return []
        if len(have) + len(group.parity) < k:
            return []
        for idx, symbol in group.parity.items():
            have[k + idx] = symbol
        try:
            packets = fec.recover(k, m, have)
        except fec.FecError:
            self.stats.malformed += 1
            self._drop_group(key, failed=True)
            return []
        self._drop_group(key, failed=False)
        out = []
        for i in absent:
            x = group.members[i]
            data = packets[i]
            self._missing.pop(x, None)
            self._hold(x, data)
            out.append(data)
        self.stats.recovered_fec += len(out)
        return out

    # -- timers

    def get_timer(self) -> float | None:
        """Next NACK, report or group expiry due."""
        t = self._next_report
        if self._missing:
            first = min(miss.next_nack for miss in self._missing.values())
            t = first if t is None or first < t else t
        if self._groups:
            g = next(iter(self._groups.values())).expires
            t = g if t is None or g < t else t
        return t

    def nacks(self, *, now: float, rtt: float) -> list[bytes]:
        """NACK datagrams due now (retries about one RTT apart, none past the deadline)."""
        if not self._missing:
            return []
        cfg = self.config
        due: list[int] = []
        gone: list[int] = []
        for x, miss in self._missing.items():
            if miss.next_nack > now:
                continue
            if miss.nacks >= cfg.nack_retries or now + rtt > miss.deadline:
                # the answer could not arrive before the deadline (NACK one way, answer
                # the other), or the retries are spent
                gone.append(x)
                continue
            miss.nacks += 1
            miss.next_nack = now + rtt + K_NACK_SLACK
            due.append(x)
        for x in gone:
            del self._missing[x]
        self.stats.gave_up += len(gone)
        if not due:
            return []
        due.sort()
        ranges: list[tuple[int, int]] = []
        for x in due:
            if ranges and ranges[-1][0] + ranges[-1][1] == x and ranges[-1][1] < 0x10000:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + 1)
            else:
                ranges.append((x, 1))
        out = []
        for i in range(0, len(ranges), MAX_NACK_RANGES):
            chunk = [(first & MAX_U32, count) for first, count in ranges[i:i + MAX_NACK_RANGES]]
            out.append(encode_nack(self.channel_id, chunk))
        self.stats.nacks_sent += len(out)
        self.stats.nacked += len(due)
        return out

    def expire(self, now: float) -> None:
        """Drop FEC groups past their deadline."""
        while self._groups:
            key, group = next(iter(self._groups.items()))
            if group.expires > now:
                break
            self._drop_group(key, failed=True)

    def take_report(self, now: float) -> tuple[int, int, int] | None:
        """(received, lost, bursts) since the last report when one is due, else None."""
        cfg = self.config
        if self._next_report is None or now < self._next_report:
            return None
        if self._lost <= 0 and now < self._last_report + cfg.report_idle_interval:
            # nothing lost since the last report: it can wait
            self._next_report = self._last_report + cfg.report_idle_interval
            return None
        report = (self._received, max(0, self._lost), self._bursts)
        self._received = self._lost = self._bursts = 0
        self._last_report = now
        if report == (0, 0, 0):
            self._next_report = None  # silent channel: wait for the next datagram
            return None
        self._next_report = now + (cfg.report_interval if report[1] else
                                   cfg.report_idle_interval)
        return report

    def summary(self) -> dict[str, Any]:
        """JSON-ready counters."""
        return {name: getattr(self.stats, name) for name in self.stats.__slots__}

