"""The link-health monitor of one session on one path, sans-I/O.

A driver calls :meth:`HealthMonitor.observe` on every tick (cheap: it reads a few numbers
off the session) and asks :meth:`HealthMonitor.due` whether a report should go out now;
:meth:`HealthMonitor.report` builds an ``edgewire.health/1`` dict (docs/HEALTH.md).

Where the figures come from:

* per-packet send and arrival times of the transport-wide feedback the peer sends back
  (``Session.add_feedback_observer``): RFC 3550 jitter of the one-way delay, loss before
  recovery, burst lengths, goodput (bytes that reached the peer), queueing delay (one-way
  delay above its minimum over ``base_window_s``);
* QUIC's RTT samples: windowed min, smoothed, p95;
* channel counters: residual loss and on-time ratio of the frames this side receives,
  FEC and retransmission overhead of the frames it sends;
* ``Session.last_received``: silence longer than the down threshold means the path is down.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgewire.errors import LocalProtocolError
from edgewire.health.device import DeviceProbe
from edgewire.health.report import SCHEMA

if TYPE_CHECKING:
    from edgewire.transport import Session
    from edgewire.transport.bwe import PacketResult

__all__ = ["TIERS", "HealthConfig", "HealthMonitor", "score_of", "tier_of"]

#: Tiers from worst to best.
TIERS = ("down", "poor", "fair", "good", "excellent")
#: How often the windows are re-evaluated for tier changes and spikes between reports.
K_EVAL_INTERVAL = 0.05  # seconds
#: Channel and recovery counters are snapshotted this often (window deltas come from them).
K_SNAPSHOT_INTERVAL = 0.1  # seconds
#: RTT is sampled at most this often, however often the driver ticks.
K_RTT_SAMPLE_INTERVAL = 0.005  # seconds
#: Fewest packets in the spike window before a loss spike is believed.
K_SPIKE_MIN_PACKETS = 20
#: A loss spike is that many binomial standard deviations above the last report's rate
#: (itself taken as at least K_SPIKE_FLOOR): steady 5 % loss must not look like spikes.
K_SPIKE_SIGMAS = 3.0
K_SPIKE_FLOOR = 0.01
#: Silence is only "down" after this much more than one smoothed RTT: a lone packet after an
#: idle spell is answered one RTT later, and that wait is not an outage.
K_SILENCE_RTT_MARGIN = 0.05  # seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """Periods, windows, tier thresholds and spike triggers of a :class:`HealthMonitor`."""

    period_s: float = 1.0
    """A report at least this often."""
    window_s: float = 1.0
    """Rates (loss, goodput, overhead, on-time) and RTT p95 cover this many seconds: equal
    to the period, so the second report after a change reflects only the new state."""
    base_window_s: float = 10.0
    """Minimum RTT and minimum one-way delay (the queueing-delay baseline) cover this."""
    down_after_s: float = 0.2
    """Nothing heard from the peer for this long (while it should talk) means down."""
    thresholds: tuple[float, float, float] = (85.0, 65.0, 40.0)
    """Lowest score of excellent, good and fair; anything lower (but heard) is poor."""
    hysteresis: float = 5.0
    """Score points beyond a threshold before the tier moves."""
    upgrade_hold_s: float = 2.0
    """A better tier is taken only after the score stayed there this long."""
    spike_loss: float = 0.05
    """Loss rate over ``spike_window_s`` this far above the last report's: report now."""
    spike_delay_ms: float = 50.0
    """Latest RTT this far above the last report's smoothed RTT: report now."""
    spike_window_s: float = 0.25
    """Window of the loss spike trigger."""
    min_urgent_gap_s: float = 0.1
    """Urgent reports (tier change, down, spike) are at least this far apart."""
    max_samples: int = 4096
    """Bound of every sample window (oldest dropped and counted beyond it)."""
    max_decisions: int = 32
    """Decision outcomes held for the next report (oldest dropped and counted)."""

    def __post_init__(self) -> None:
        for name in ("period_s", "window_s", "base_window_s", "down_after_s",
                     "spike_window_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise LocalProtocolError(f"HealthConfig.{name} must be > 0, got {value!r}")
        for name in ("hysteresis", "upgrade_hold_s", "spike_loss", "spike_delay_ms",
                     "min_urgent_gap_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise LocalProtocolError(f"HealthConfig.{name} must be >= 0, got {value!r}")
        t = self.thresholds
        if len(t) != 3 or not 100 >= t[0] > t[1] > t[2] > 0:
            raise LocalProtocolError("HealthConfig.thresholds must be 100 >= excellent > "
                                     f"good > fair > 0, got {t!r}")
        if self.max_samples < 16 or self.max_decisions < 1:
            raise LocalProtocolError("HealthConfig.max_samples >= 16, max_decisions >= 1")


def _ramp(value: float | None, good: float, bad: float, weight: float) -> float:
    """0 at ``good`` or better, ``weight`` at ``bad`` or worse, linear between."""
    if value is None or value <= good:
        return 0.0
    return weight * min(1.0, (value - good) / (bad - good))


def score_of(*, rtt_ms: float | None, loss: float | None, residual: float | None,
             jitter_ms: float | None, queue_delay_ms: float | None,
             on_time: float | None) -> float:
    """The 0-100 score (docs/HEALTH.md): 100 minus penalties for RTT, loss before and
    after recovery, jitter, queueing delay and late frames. Unknown residual loss is
    taken to be the loss before recovery."""
    penalty = (_ramp(rtt_ms, 50.0, 400.0, 30.0)
               + _ramp(loss, 0.0, 0.10, 15.0)
               + _ramp(loss if residual is None else residual, 0.0, 0.05, 30.0)
               + _ramp(jitter_ms, 5.0, 50.0, 10.0)
               + _ramp(queue_delay_ms, 20.0, 200.0, 15.0)
               + _ramp(None if on_time is None else 1.0 - on_time, 0.01, 0.2, 20.0))
    return max(0.0, 100.0 - penalty)


def tier_of(score: float, thresholds: Sequence[float]) -> str:
    """The tier of a score without hysteresis (never "down": that comes from silence)."""
    for name, low in zip(("excellent", "good", "fair"), thresholds, strict=True):
        if score >= low:
            return name
    return "poor"


class _Window:
    """(time, values...) rows kept for ``span`` seconds, at most ``limit`` rows."""

    __slots__ = ("dropped", "limit", "rows", "span")

    def __init__(self, span: float, limit: int) -> None:
        self.span = span
        self.limit = limit
        self.rows: deque[tuple[float, ...]] = deque()
        self.dropped = 0

    def add(self, row: tuple[float, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) > self.limit:
            self.rows.popleft()
            self.dropped += 1

    def trim(self, now: float) -> None:
        rows = self.rows
        while rows and rows[0][0] < now - self.span:
            rows.popleft()

    def since(self, start: float) -> list[tuple[float, ...]]:
        """Rows after ``start`` (exclusive): windows ending where the next one starts
        share no row, so back-to-back periodic reports count each feedback once."""
        return [r for r in self.rows if r[0] > start]


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


class HealthMonitor:
    """Rolling link-health figures, score and tier of one session on one path."""

    def __init__(self, *, session: str, path: str = "default",
                 config: HealthConfig | None = None,
                 device: DeviceProbe | None = None) -> None:
        self.session_name = session
        self.path = path
        self.config = cfg = config or HealthConfig()
        self.device = device
        lim = cfg.max_samples
        # feedback batches: (t, received, lost, bursts, recv_bytes, owd_sum, owd_min)
        self._fb = _Window(max(cfg.window_s, cfg.spike_window_s), lim)
        self._owd_base = _Window(cfg.base_window_s, lim)  # (t, min one-way delay)
        self._rtt = _Window(cfg.window_s, lim)  # (t, rtt)
        self._rtt_base = _Window(cfg.base_window_s, lim)  # (t, rtt)
        # (t, {channel id: counters}) snapshots for window deltas
        self._snaps: deque[tuple[float, dict[int, tuple[int, ...]]]] = deque(
            maxlen=int(cfg.window_s / K_SNAPSHOT_INTERVAL) + 4)
        self._attached: Session | None = None
        self._last_pn = -1
        self._last_lost = False
        self._prev_arrival: tuple[float, float] | None = None  # (send, arrival)
        self._jitter: float | None = None  # seconds, RFC 3550 estimator
        self._last_rtt_at = -math.inf
        self._last_rtt: float | None = None
        self._last_snapshot = -math.inf
        self._next_eval = -math.inf
        self._session: Session | None = None
        self._heard: float | None = None
        self._first_seen: float | None = None
        self._score = 100.0
        self._tier = "excellent"  # replaced by the first evaluation
        self._evaluated = False
        self._better_since: float | None = None
        self._next_periodic: float | None = None
        self._urgent: list[str] = []
        self._last_report_at = -math.inf
        self._reported_loss = 0.0
        self._reported_rtt: float | None = None
        self._decisions: deque[dict[str, Any]] = deque()
        self.decisions_dropped = 0
        """Decision outcomes dropped because more than ``max_decisions`` awaited a report."""
        self.reports = 0
        """Reports built."""

    # ------------------------------------------------------------------ inputs

    def observe(self, session: Session, *, now: float) -> None:
        """Pull a sample from ``session`` (call on every driver tick; cheap)."""
        if self._attached is not session:
            self._attach(session)
        self._session = session
        if self._first_seen is None:
            self._first_seen = now
            self._next_periodic = now + self.config.period_s
        if session.last_received is not None:
            self._heard = session.last_received
        if now - self._last_rtt_at >= K_RTT_SAMPLE_INTERVAL:
            q = session.quic_stats()
            if q.rtt_latest is not None:
                self._last_rtt_at = now
                self._last_rtt = q.rtt_latest
                self._rtt.add((now, q.rtt_latest))
                self._rtt_base.add((now, q.rtt_latest))
        if now - self._last_snapshot >= K_SNAPSHOT_INTERVAL:
            self._last_snapshot = now
            self._snaps.append((now, _counters(session)))
        if now >= self._next_eval:
            self._next_eval = now + K_EVAL_INTERVAL
            self._evaluate(now)
        elif self._tier != "down" and self._is_silent(now):
            self._evaluate(now)

    def _attach(self, session: Session) -> None:
        self._attached = session

        def on_feedback(results: list[PacketResult], now: float) -> None:
            if self._attached is session:  # a replaced session's feedback is ignored
                self.on_packet_results(results, now=now,
                                       receiver_drops=session.peer_socket_drops)

        session.add_feedback_observer(on_feedback)

    def on_packet_results(self, results: Sequence[PacketResult], *, now: float,
                          receiver_drops: int = 0) -> None:
        """Per-packet results of one transport-wide feedback (sender side). Called by the
        observer :meth:`observe` installs; public for drivers without a session.
        ``receiver_drops``: how many datagrams the peer's own socket dropped, as the same
        feedback said (``loss.receiver_rate``)."""
        received = lost = bursts = 0
        size = 0
        owd_sum = 0.0
        owd_min = math.inf
        for r in results:
            if r.sequence <= self._last_pn and r.arrival_time is None:
                continue  # reported missing twice
            if r.arrival_time is None:
                lost += 1
                if not (self._last_lost and r.sequence == self._last_pn + 1):
                    bursts += 1
                self._last_lost = True
            else:
                if r.sequence <= self._last_pn:
                    lost -= 1  # a late arrival of one counted lost: reordering, not loss
                received += 1
                size += r.size_bytes
                owd = r.arrival_time - r.send_time
                owd_sum += owd
                owd_min = min(owd_min, owd)
                prev = self._prev_arrival
                if prev is not None and r.sequence > self._last_pn:
                    d = (r.arrival_time - prev[1]) - (r.send_time - prev[0])
                    j = self._jitter if self._jitter is not None else abs(d)
                    self._jitter = j + (abs(d) - j) / 16.0  # RFC 3550 section 6.4.1
                if r.sequence > self._last_pn:
                    self._prev_arrival = (r.send_time, r.arrival_time)
                    self._last_lost = False
            self._last_pn = max(self._last_pn, r.sequence)
        self._fb.add((now, received, lost, bursts, size, owd_sum, owd_min,
                      max(0, int(receiver_drops))))
        if received:
            self._owd_base.add((now, owd_min))

    def record_decision(self, outcome: dict[str, Any]) -> None:
        """Carry a decision's outcome (or rejection) in the next report."""
        self._decisions.append(dict(outcome))
        if len(self._decisions) > self.config.max_decisions:
            self._decisions.popleft()
            self.decisions_dropped += 1
        self._urgent.append("decision")

    # ------------------------------------------------------------------ figures

    def _is_silent(self, now: float) -> bool:
        s = self._session
        if s is None:
            return False
        if s.closed:
            return True
        if self._heard is None:
            return False
        q = s.quic_stats()
        if q.bytes_in_flight <= 0:
            return False  # nothing the peer owes an answer for
        return now - self._heard > self._silence_limit(q.rtt_smoothed)

    def _silence_limit(self, rtt: float | None) -> float:
        return max(self.config.down_after_s, (rtt or 0.0) + K_SILENCE_RTT_MARGIN)

    def _loss(self, start: float
              ) -> tuple[float | None, float | None, int, int, float | None]:
        """(loss rate, mean burst length, packets, received bytes, the part of the loss
        rate the peer's socket dropped: its drops, at most the packets lost, over the
        packets) since ``start``."""
        rec = lost = bursts = size = drops = 0
        for row in self._fb.since(start):
            rec += int(row[1])
            lost += int(row[2])
            bursts += int(row[3])
            size += int(row[4])
            drops += int(row[7])
        lost = max(0, lost)
        total = rec + lost
        rate = lost / total if total else None
        burst = lost / bursts if bursts else (0.0 if total else None)
        receiver = min(drops, lost) / total if total else None
        return rate, burst, total, size, receiver

    def figures(self, *, now: float) -> dict[str, Any]:
        """The windowed figures (seconds, ratios) the score and the report use."""
        cfg = self.config
        for w in (self._fb, self._owd_base, self._rtt, self._rtt_base):
            w.trim(now)
        start = now - cfg.window_s
        rate, burst, packets, size, receiver = self._loss(start)
        span = min(cfg.window_s, now - (self._first_seen if self._first_seen is not None
                                        else now))
        rtts = sorted(r[1] for r in self._rtt.rows)
        base_rtts = [r[1] for r in self._rtt_base.rows]
        fb = self._fb.since(start)
        owd_n = sum(int(r[1]) for r in fb)
        owd_mean = sum(r[5] for r in fb) / owd_n if owd_n else None
        owd_base = min((r[1] for r in self._owd_base.rows), default=None)
        q = self._session.quic_stats() if self._session is not None else None
        chans, residual, on_time, overhead, unprotected = self._channel_figures(now)
        if unprotected and rate is not None:
            # frames this side sends with neither FEC nor ARQ: nothing repairs a loss, so
            # the loss before recovery is theirs after it (the peer measures the rest)
            residual = rate if residual is None else max(residual, rate)
        return {
            "rtt_min": min(base_rtts) if base_rtts else None,
            "rtt_smoothed": q.rtt_smoothed if q is not None else None,
            "rtt_p95": rtts[min(len(rtts) - 1, math.ceil(0.95 * len(rtts)) - 1)]
            if rtts else None,
            "jitter": self._jitter,
            "loss": rate, "burst": burst, "packets": packets, "receiver_loss": receiver,
            "residual": residual, "on_time": on_time, "overhead": overhead,
            "goodput_bps": size * 8 / span if span > 0 and packets else None,
            "queue_delay": (max(0.0, owd_mean - owd_base)
                            if owd_mean is not None and owd_base is not None else None),
            "channels": chans,
        }

    def _channel_figures(self, now: float) -> tuple[dict[str, Any], float | None,
                                                    float | None, float | None, bool]:
        s = self._session
        if s is None or not self._snaps:
            return {}, None, None, None, False
        cur = _counters(s)
        old = next((c for t, c in self._snaps if t >= now - self.config.window_s - 1e-9),
                   self._snaps[-1][1])
        out: dict[str, Any] = {}
        got = missed = media = extra = 0
        worst: float | None = None
        unprotected = False
        for info in s.channels:
            c = cur.get(info.channel_id)
            if c is None:
                continue
            o = old.get(info.channel_id, (0,) * len(c))
            d = [a - b for a, b in zip(c[:-1], o[:-1], strict=True)]
            sent, expired, dropped, delivered, lost, late, media_b, extra_b = d
            realtime = info.qos.deadline_ms is not None and not info.qos.reliable
            ratio: float | None = None
            if not info.local and realtime and delivered + lost + late > 0:
                ratio = delivered / (delivered + lost + late)
                got += delivered
                missed += lost + late
            elif info.local and realtime and sent > 0:
                # what the sender alone knows: frames that never left in time
                ratio = max(0.0, 1.0 - (expired + dropped) / sent)
                unprotected = unprotected or not c[-1]
            if ratio is not None:
                worst = ratio if worst is None else min(worst, ratio)
            media += media_b
            extra += extra_b
            out[f"{info.name}#{info.channel_id}"] = {
                "kind": info.kind.value, "direction": "out" if info.local else "in",
                "on_time_ratio": _r(ratio, 4), "sent": sent, "delivered": delivered,
                "lost": lost, "late": late, "expired": expired + dropped}
        residual = missed / (got + missed) if got + missed else None
        overhead = extra / media if media else None
        return out, residual, worst, overhead, unprotected

    def _evaluate(self, now: float) -> None:
        cfg = self.config
        f = self.figures(now=now)
        self._score = score_of(
            rtt_ms=None if f["rtt_smoothed"] is None else f["rtt_smoothed"] * 1000,
            loss=f["loss"], residual=f["residual"],
            jitter_ms=None if f["jitter"] is None else f["jitter"] * 1000,
            queue_delay_ms=None if f["queue_delay"] is None else f["queue_delay"] * 1000,
            on_time=f["on_time"])
        if self._is_silent(now):
            self._set_tier("down")
            return
        cur = TIERS.index(self._tier)
        if not self._evaluated or self._tier == "down":
            # the first figures, or the peer heard again: no history to be sticky about
            if self._evaluated:
                self._set_tier(tier_of(self._score, cfg.thresholds))
            else:
                self._tier = tier_of(self._score, cfg.thresholds)
            self._evaluated = True
            self._better_since = None
        elif TIERS.index(lower := tier_of(self._score + cfg.hysteresis, cfg.thresholds)) < cur:
            # worse news is taken at once, once the score is clearly below the threshold
            self._better_since = None
            self._set_tier(lower)
        elif TIERS.index(upper := tier_of(self._score - cfg.hysteresis, cfg.thresholds)) > cur:
            # better news must last: a link that flickers stays at its worse tier
            if self._better_since is None:
                self._better_since = now
            if now - self._better_since >= cfg.upgrade_hold_s:
                self._better_since = None
                self._set_tier(upper)
        else:
            self._better_since = None
        short, _, n, _, _ = self._loss(now - cfg.spike_window_s)
        if short is not None and n >= K_SPIKE_MIN_PACKETS:
            # a spike must be large and unlikely to be noise: the excess over the last
            # report's rate beyond K_SPIKE_SIGMAS binomial deviations of that rate
            base = max(self._reported_loss, K_SPIKE_FLOOR)
            sigma = math.sqrt(n * base * (1 - base))
            if (short - self._reported_loss >= cfg.spike_loss
                    and (short - base) * n > K_SPIKE_SIGMAS * sigma):
                self._flag("loss_spike")
        if (self._last_rtt is not None and self._reported_rtt is not None
                and (self._last_rtt - self._reported_rtt) * 1000 >= cfg.spike_delay_ms):
            self._flag("delay_spike")

    def _set_tier(self, tier: str) -> None:
        if tier != self._tier:
            self._flag("down" if tier == "down" else "tier_change")
            self._tier = tier

    def _flag(self, reason: str) -> None:
        if reason not in self._urgent:
            self._urgent.append(reason)

    # ------------------------------------------------------------------ outputs

    @property
    def tier(self) -> str:
        """excellent, good, fair, poor or down (with hysteresis)."""
        return self._tier

    @property
    def score(self) -> float:
        """The latest 0-100 score (0 when down)."""
        return 0.0 if self._tier == "down" else self._score

    def get_timer(self) -> float | None:
        """When a report is due next (periodic or urgent), or when silence would mean the
        path is down; None before the first :meth:`observe`."""
        if self._next_periodic is None:
            return None
        t = self._next_periodic
        if self._urgent:
            t = min(t, self._last_report_at + self.config.min_urgent_gap_s)
        s = self._session
        if self._tier != "down" and self._heard is not None and s is not None:
            q = s.quic_stats()
            if q.bytes_in_flight > 0:
                t = min(t, self._heard + self._silence_limit(q.rtt_smoothed) + 1e-6)
        return t

    def due(self, *, now: float) -> bool:
        """A report is due now: the period passed, or something urgent happened."""
        if self._next_periodic is None:
            return False
        if now >= self._next_periodic:
            return True
        return bool(self._urgent) and now >= self._last_report_at + self.config.min_urgent_gap_s

    def report(self, *, now: float, ts: float) -> dict[str, Any]:
        """An ``edgewire.health/1`` report (JSON-ready) at monotonic ``now`` and unix
        time ``ts``; clears the urgent reasons. A report at or after the periodic time
        is (also) ``periodic`` and moves that time one period on; an urgent report
        between two periodic ones leaves it alone, so the periodic windows tile time. A
        report asked for early with nothing urgent is ``periodic`` and restarts the
        period from ``now``."""
        cfg = self.config
        self._evaluate(now)
        f = self.figures(now=now)
        reasons = self._urgent
        on_grid = self._next_periodic is not None and now >= self._next_periodic
        if on_grid or not reasons:
            # The periodic schedule is a fixed grid that urgent reports do not move: an
            # urgent report (a loss spike, a tier change) is triggered by the very events
            # it reports, so restarting the period there would leave those events between
            # two periodic windows, and the periodic series would under-read loss. A
            # report asked for early with nothing urgent restarts the grid, as it always
            # did: its window overlaps the last one, it leaves no gap.
            reasons = [*reasons, "periodic"]
            nxt = (self._next_periodic if on_grid and self._next_periodic is not None
                   else now) + cfg.period_s
            self._next_periodic = nxt if nxt > now else now + cfg.period_s
        self._urgent = []
        self._last_report_at = now
        self._reported_loss = f["loss"] or 0.0
        self._reported_rtt = f["rtt_smoothed"]
        self.reports += 1
        s = self._session
        q = s.quic_stats() if s is not None else None
        bwe = s.bwe_state() if s is not None and s.ready else {}
        decisions = list(self._decisions)
        self._decisions.clear()

        def ms(v: float | None) -> float | None:
            return None if v is None else _r(v * 1000.0)

        est = s.bandwidth_estimate_bps if s is not None else None
        return {
            "schema": SCHEMA,
            "ts": round(ts, 3),
            "seq": self.reports,
            "session": self.session_name,
            "path": self.path,
            "reasons": reasons,
            "tier": self.tier,
            "score": round(self.score, 1),
            "rtt_ms": {"min": ms(f["rtt_min"]), "smoothed": ms(f["rtt_smoothed"]),
                       "p95": ms(f["rtt_p95"])},
            "jitter_ms": ms(f["jitter"]),
            "loss": {"rate": _r(f["loss"], 5), "residual_rate": _r(f["residual"], 5),
                     "burst_mean": _r(f["burst"], 3), "packets": f["packets"],
                     "receiver_rate": _r(f["receiver_loss"], 5)},
            "bandwidth": {"estimate_kbps": None if est is None else _r(est / 1000, 1),
                          "goodput_kbps": (None if f["goodput_bps"] is None
                                           else _r(f["goodput_bps"] / 1000, 1))},
            "queue_delay_ms": ms(f["queue_delay"]),
            "overhead": _r(f["overhead"], 4),
            "silence_ms": (None if self._heard is None else _r((now - self._heard) * 1000)),
            "congestion": {
                "state": bwe.get("detector") or "unknown",
                "rate_control": bwe.get("rate_control"),
                "cwnd_bytes": None if q is None else q.cwnd_bytes,
                "bytes_in_flight": None if q is None else q.bytes_in_flight},
            "channels": f["channels"],
            "device": self.device.sample() if self.device is not None else {},
            "decisions": decisions,
            "window_s": cfg.window_s,
            "dropped": {"samples": sum(w.dropped for w in (
                self._fb, self._owd_base, self._rtt, self._rtt_base)),
                "decisions": self.decisions_dropped},
        }


def _counters(session: Session) -> dict[int, tuple[int, ...]]:
    """Cumulative counters per channel: sent, expired, queue drops, delivered, lost,
    late, media bytes sent, FEC + retransmitted bytes sent, 1 if recovery protects it."""
    out: dict[int, tuple[int, ...]] = {}
    for info in session.channels:
        st = session.channel_stats(info.channel_id)
        media = extra = 0
        protected = 1
        if info.local and not info.qos.reliable:
            rec = session.recovery_summary(info.channel_id)
            protected = 1 if rec else 0
            if rec:
                media = int(rec.get("media_bytes", 0))
                extra = int(rec.get("fec_bytes", 0)) + int(rec.get("retransmitted_bytes", 0))
        out[info.channel_id] = (st.sent_messages, st.expired, st.dropped_queue_full,
                                st.delivered, st.lost, st.late, media, extra, protected)
    return out
