"""The "delivery" estimator: the delivered rate, steered by the queueing delay.

GCC (the ``gcc`` estimator) waits for its trendline to call overuse and then drains to
0.85 x the delivered rate; on a cellular path its trendline reads the delivery jitter as
overuse many times a minute, and each cut leaves the rate well under the capacity. This
estimator never waits for a verdict. After every feedback report it takes

* ``d``, the rate the receiver got over the latest ``rate_span`` of arrivals: while a
  queue stands at the bottleneck, that is the bottleneck's capacity now;
* ``q``, the queue a packet sent now will meet (``predict``): the queue the report's
  latest-sent packet met (its one-way delay above the base, the smallest one-way delay
  of the last one to two ``base_window`` periods), less the time the bottleneck has had
  to drain it since that packet was sent (at most ``predict_horizon``), plus the bytes
  sent after it at a cautious forecast of the bottleneck's rate
  (``predict_rate_factor`` x the smaller of the delivered rates over ``rate_span`` and
  twice that). A report is a round trip old; what was sent since is the sender's own
  knowledge, so a sender that already cut for a queue does not cut again for it, and
  one that already sent into a queue does not send more. Below ``predict_min_queue``
  there is no queue to predict from, and an application sending below its rate, or a
  sender in startup, tells nothing of the bottleneck's rate (frame bursts would read as
  queue; startup's delivered rate is half what it sends by then): then the measured
  queue is taken.

and sets the rate to ``d`` x a factor of ``q``: above 1 (up to 1 + ``gain``) while the
queue is under ``queue_target``, so that the path shows any capacity the sender is not
using, and below 1 when it is over, enough to drain the excess within ``drain_horizon``.
A sender at the capacity therefore keeps about ``queue_target`` of queue and follows a
capacity change within one feedback round trip, in both directions. Until the first queue
above the target (startup), the rate is ``startup_gain`` x ``d``: about a doubling per
round trip, as a window-based slow start would do.

The rate may only fall on a report when the sender was sending all of it, or a queue
says the path is full: an application that sends less than its share has not shown the
path carries less. Heavy loss still backs the rate off through the loss-based controller
shared with ``gcc``, but only loss the queue does not explain (a policer, a shallow
buffer, a lossy radio): a loss reported while the measured queue stands above the target
is the queue overflowing, which the law above is draining already. Counted twice, an
outage's overflow would cut the loss-based estimate down to where the law had cut the
rate for the outage's queue, and hold it there: at a few packets a second its pool of
reports takes seconds to fill with the low loss that would release it.

On a path whose min RTT is longer than ``reference_rtt`` (80 ms), every report is older
and every rate change shows later by the extra round trip: the drain horizon and the gain
stretch with it, and so do the prediction's view of a report's age and the span its
forecast of the bottleneck's rate is taken over, or the law, tuned for a short path,
overshoots each way (a 200 ms round trip oscillated between a full and an empty queue).
Up to ``reference_rtt`` nothing changes. On a path whose smallest RTT sample exceeds it,
the bottleneck's rate (the delivered rate the law multiplies after startup, and the
prediction's forecast rate) is taken over the time the bottleneck was busy
(``busy_rate``): a sender whose full window left the bottleneck idle for a moment read
that as a slower path, cut, shrank its window and stalled again a round trip later.

When feedback stops, the rate is held (``timeout_factor``): edgewire's congestion
controller (``transport.cc``) bounds what is in flight to one window of the rate, so a
dead path cannot be filled beyond it, and a path whose feedback only was delayed is not
punished for it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from edgewire.transport.bwe.base import PacketResult, register_estimator
from edgewire.transport.bwe.common import FeedbackEstimator
from edgewire.transport.bwe.config import BweConfig
from edgewire.transport.bwe.rates import SentLog, WindowedMin

__all__ = ["K_BUSY_LOG_PACKETS", "K_BUSY_LOG_WINDOW", "K_BUSY_MIN_TIME", "K_MAX_DELIVERY_OVER_SEND",
           "K_SENT_LOG_PACKETS", "K_SENT_LOG_WINDOW", "DeliveryEstimator"]

#: The delivered rate taken is at most this multiple of the send rate of the same report.
K_MAX_DELIVERY_OVER_SEND = 2.0
#: Seconds of sends the prediction can look back on (a report older than that predicts
#: from every byte still logged).
K_SENT_LOG_WINDOW = 2.0
#: Packets the send log holds at most.
K_SENT_LOG_PACKETS = 32_768
#: Seconds of arrivals kept for the busy rate (``DeliveryConfig.busy_rate``), and at
#: most this many packets of them.
K_BUSY_LOG_WINDOW = 1.0
K_BUSY_LOG_PACKETS = 8192
#: Less busy time than this (seconds) gives no busy rate (arrivals a denormal apart
#: would give an infinite one).
K_BUSY_MIN_TIME = 1e-6


class DeliveryEstimator(FeedbackEstimator):
    """Rate = delivered rate x a factor of the queueing delay (module docstring)."""

    def __init__(self, config: BweConfig) -> None:
        super().__init__(config)
        self._rate = config.start_bps
        self._startup = config.delivery.startup_gain > 1.0
        self._base = WindowedMin(config.delivery.base_window)
        self._min_rtt = WindowedMin(config.delivery.base_window)
        # the fastest delivered rate (negated), over periods as long as the base delay's
        self._fastest = WindowedMin(config.delivery.base_window)
        self._report_min = math.inf
        self._report_count = 0
        self._report_bytes = 0
        self._packet_bytes = 1200.0
        self._send_first = math.inf
        self._send_last = -math.inf
        self._send_last_bytes = 0
        self._last_owd: float | None = None  # the report's latest-sent packet
        self._sent_log = SentLog(window=K_SENT_LOG_WINDOW, max_entries=K_SENT_LOG_PACKETS)
        self.sent_bps: float | None = None
        """Send rate of the latest report's received packets (their send times are the
        sender's own): the receiver cannot have got them faster than this."""
        self.queue_delay: float | None = None
        """Queueing delay (s) the latest report's latest-sent packet met (None before
        any)."""
        self.predicted_queue_delay: float | None = None
        """Queueing delay (s) predicted, at the latest report, for a packet sent then:
        what the rate is steered by (None before any)."""
        self.delivered_bps: float | None = None
        """Rate delivered over the latest ``rate_span`` of arrivals (None before known)."""
        self._decreases = 0
        self._losses_with_queue = 0
        self._queue_goal = config.delivery.queue_target  # the law's latest target
        self._startup_ended_at: float | None = None
        # (arrival, size, one-way delay) of the latest arrivals, on a long path only
        self._arrivals: deque[tuple[float, int, float]] = deque()
        self._long_path = False
        self._beyond_reference = False
        self._report_least_queue = 0.0
        self._lowest_rtt = math.inf  # the connection's smallest RTT (sample)

    # ------------------------------------------------------------------ hooks

    def on_rtt(self, rtt: float, *, now: float, min_rtt: float | None = None) -> None:
        """Take a new smoothed RTT; its smallest of the last one to two ``base_window``
        periods is the path's min RTT (``reference_rtt``). ``min_rtt`` (the smallest RTT
        sample so far; the smoothed RTT's lowest when not given) decides the busy rate."""
        super().on_rtt(rtt, now=now, min_rtt=min_rtt)
        self._min_rtt.add(self._rtt, now)
        # the connection's smallest sample, not the windowed min of the smoothed RTT: a
        # trace run that starts in a cellular outage keeps a 50 ms path's smoothed RTT
        # over 80 ms for ten seconds, and the busy rate's boost then stranded more
        # packets in the next outage
        low = self._rtt if min_rtt is None else float(min_rtt)
        self._lowest_rtt = min(self._lowest_rtt, low)
        cfg = self._config.delivery
        self._beyond_reference = self._lowest_rtt > cfg.reference_rtt
        self._long_path = cfg.busy_rate and self._beyond_reference
        if not self._long_path:
            self._arrivals.clear()

    def on_sent(self, *, size_bytes: int, now: float) -> None:
        """Count a sent packet, and log it for the queue prediction."""
        super().on_sent(size_bytes=size_bytes, now=now)
        self._sent_log.add(size_bytes, now)

    def _on_received(self, p: PacketResult, arrival: float) -> None:
        owd = arrival - p.send_time
        self._report_count += 1
        self._report_bytes += p.size_bytes
        if p.send_time < self._send_first:
            self._send_first = p.send_time
        if p.send_time >= self._send_last:
            self._send_last, self._send_last_bytes = p.send_time, p.size_bytes
            self._last_owd = owd
        if owd < self._report_min:
            self._report_min = owd
        if self._long_path:
            log = self._arrivals
            log.append((arrival, p.size_bytes, owd))
            while log and (log[0][0] < arrival - K_BUSY_LOG_WINDOW
                           or len(log) > K_BUSY_LOG_PACKETS):
                log.popleft()

    def _counts_loss(self, p: PacketResult) -> bool:
        """A loss reported while the latest measured queue stands above the target the
        law steers to (``queue_target`` plus the packet time excused at a slow rate) is
        the bottleneck's queue overflowing: the delay law is draining that queue already,
        so the loss-based part does not answer it a second time (``queue_loss``)."""
        q = self.queue_delay
        if self._config.delivery.queue_loss or q is None or q <= self._queue_goal:
            return True
        self._losses_with_queue += 1
        return False

    def _note_queue_delay(self, now: float, recent_bps: float | None) -> None:
        count, low = self._report_count, self._report_min
        self._report_count, self._report_min = 0, math.inf
        size, self._report_bytes = self._report_bytes, 0
        span = self._send_last - self._send_first
        self.sent_bps = (size - self._send_last_bytes) * 8 / span if span > 0 else None
        last_sent, last_owd = self._send_last, self._last_owd
        self._send_first, self._send_last, self._send_last_bytes = math.inf, -math.inf, 0
        self._last_owd = None
        if not count or last_owd is None:
            return
        self._packet_bytes = size / count
        if low - self._base.value > self._config.trendline.max_arrival_jump:
            # the receiver clock jumped ahead: the old base is on another time line
            self._base.reset()
        base = self._base.add(low, now)
        self.queue_delay = max(0.0, last_owd - base)
        self._report_least_queue = max(0.0, low - base)
        self.predicted_queue_delay = self._predict(self.queue_delay, last_sent, now,
                                                   recent_bps)
        if self.delivered_bps:  # the previous report's, noted alongside the base
            self._fastest.add(-self.delivered_bps, now)

    def _predict(self, queue: float, sent_at: float, now: float,
                 recent_bps: float | None) -> float:
        """The queue a packet sent at ``now`` meets, from the ``queue`` met by the packet
        sent at ``sent_at`` (module docstring); ``recent_bps`` is the delivered rate over
        ``rate_span``."""
        cfg = self._config.delivery
        if not cfg.predict or queue < cfg.predict_min_queue:
            return queue
        if self._startup or not self._sending_at_target(now):
            # in startup, or from an application below its rate, the delivered rate is
            # the sender's own, not the bottleneck's (in startup half what it sends now:
            # on a 600 ms path the bytes sent since a report, over that rate, predicted
            # 0.45 s of queue on a measured 10 ms and ended startup at a quarter of the
            # capacity), and an application's bursts (a video frame) would read as queue
            return queue
        extra = self._extra_rtt()
        if extra > 0.0:
            # the forecast divides a round trip's worth of sent bytes, so its noise grows
            # with the path: take it over a span that stretches with the path too (at
            # 0.5 Mbit/s, 0.1 s holds five packets, and one idle gap among them read as a
            # queue of a second on a 200 ms path)
            span = min(cfg.rate_span * self._stretch(), self._config.acked_window / 2)
            rates = [r for r in (self._acked.recent_bps(span),) if r]
        else:
            rates = [r for r in (recent_bps, self._acked.recent_bps(2 * cfg.rate_span))
                     if r]
        rate = min(rates) if rates else self._acked.rate_bps()
        if rate and extra > 0.0 and self._long_path:
            # the sender's own idle spells (a full window) are not the bottleneck's
            busy = self._busy_bps(span)
            if busy is not None:
                rate = max(rate, min(busy, K_MAX_DELIVERY_OVER_SEND * rate))
        if rate and self.sent_bps is not None:  # the same bound as the delivered rate's
            rate = min(rate, K_MAX_DELIVERY_OVER_SEND * self.sent_bps)
        if not rate:
            return queue
        # on a path longer than reference_rtt the report is older by the extra round trip:
        # credit that much more drain, and forecast cautiously only what was sent in the
        # part of the report's age a reference path would have (the caution's bias grows
        # with the age: over a 200 ms round trip it alone exceeded the queue target)
        age = max(now - sent_at, 0.0)
        drained = min(age, cfg.predict_horizon + extra)
        log = self._sent_log
        after_bytes = log.bytes_after(sent_at)
        if extra > 0.0:
            recent = log.bytes_after(max(sent_at, now - max(age - extra, 0.0)))
            after = ((after_bytes - recent) * 8 / rate
                     + recent * 8 / (cfg.predict_rate_factor * rate))
        else:
            after = after_bytes * 8 / (cfg.predict_rate_factor * rate)
        return max(0.0, queue - drained + after)

    def _busy_bps(self, span: float) -> float | None:
        """The rate delivered over the last ``span`` of arrivals while the bottleneck was
        busy (``DeliveryConfig.busy_rate``): the gap before each arrival counts only up
        to the packet's own queueing delay plus its transmission time at the fastest
        delivered rate, since before that the bottleneck was idle, waiting for the
        sender. None before enough is known."""
        log = self._arrivals
        base = self._base.value
        fastest = -self._fastest.value
        if len(log) < 3 or not math.isfinite(base) or not fastest > 0:
            return None
        cutoff = log[-1][0] - span
        busy = 0.0
        total = 0
        later: tuple[float, int, float] | None = None
        for entry in reversed(log):
            if later is not None:
                arrival, size, owd = later
                gap = max(arrival - entry[0], 0.0)
                busy += min(gap, max(owd - base, 0.0) + size * 8 / fastest)
                total += size
            if entry[0] <= cutoff:
                break
            later = entry
        if busy < K_BUSY_MIN_TIME or total <= 0:
            return None
        return total * 8 / busy

    def _stretch(self) -> float:
        """min RTT ÷ ``reference_rtt`` on a longer path, else 1: how much the law's time
        constants stretch."""
        return 1.0 + self._extra_rtt() / self._config.delivery.reference_rtt

    def _extra_rtt(self) -> float:
        """How much the path's min RTT exceeds ``reference_rtt`` (seconds, >= 0)."""
        low = self._min_rtt.value
        if not math.isfinite(low):
            return 0.0
        return max(0.0, low - self._config.delivery.reference_rtt)

    def _transmission_excess(self, d: float) -> float:
        """How much longer a packet takes to cross the bottleneck at ``d`` than at the
        fastest delivered rate of the last one to two ``base_window`` periods (seconds)."""
        bits = self._packet_bytes * 8
        fastest = -self._fastest.value
        if not math.isfinite(fastest):  # no rate seen yet: all of it is excused
            return bits / d
        return max(0.0, bits / d - bits / fastest)

    def _update(self, now: float) -> None:
        cfg = self._config.delivery
        d = self._acked.recent_bps(cfg.rate_span)
        if d and self._long_path and not self._startup:
            # on a long path a spell the sender left the bottleneck idle (its window full
            # after a cut) read as a slower path, and the law cut again a round trip
            # later: a standing oscillation (``busy_rate``). Startup doubles already.
            busy = self._busy_bps(cfg.rate_span)
            if busy is not None:
                d = max(d, min(busy, K_MAX_DELIVERY_OVER_SEND * d))
        self._note_queue_delay(now, d)
        q = self.predicted_queue_delay
        if d is None:
            d = self._acked.rate_bps()
        if d is not None and self.sent_bps is not None:
            # arrival times come from the peer: a claim of much faster delivery than the
            # packets were sent at is not taken (twice: a report's few packets give a
            # noisy send rate, and a draining queue delivers faster than it was filled)
            d = min(d, K_MAX_DELIVERY_OVER_SEND * self.sent_bps)
        self.delivered_bps = d
        if q is not None and d is not None and d > 0:
            # a packet's own transmission at the bottleneck is delay above a base measured
            # at a faster rate: at 0.5 Mbit/s, 19 ms for 1200 bytes against 4.8 ms at
            # 2 Mbit/s. Counted as queue, it would keep a sender under the capacity for
            # good; once the base is learned at the slower rate it holds that time already
            target = cfg.queue_target + self._transmission_excess(d)
            self._queue_goal = target
            if self._startup and q > target and not (
                    cfg.startup_least_queue and self._beyond_reference
                    and self._report_least_queue <= target):
                self._startup = False
                self._startup_ended_at = now
            stretch = self._stretch()
            if self._startup:
                self._rate = max(self._rate, cfg.startup_gain * d)
            elif q > target:
                factor = max(1.0 - (q - target) / (cfg.drain_horizon * stretch),
                             cfg.min_factor)
                if d * factor < self._rate:
                    self._rate = d * factor
                    self._decreases += 1
            else:
                rate = d * (1.0 + cfg.gain / stretch * (target - q) / target)
                # a sender below its rate has not shown the path carries less
                if rate > self._rate or self._sending_at_target(now):
                    if rate < self._rate:
                        self._decreases += 1
                    self._rate = rate
            self._loss.note_delay(calm=q <= target)
        self._rate = self._clamp(self._rate)
        self._loss.update(now=now, rtt=self._rtt, limit_bps=None, cap_bps=self._rate)
        # the loss-based part only binds while loss is heavy (raise_to refuses then)
        self._loss.raise_to(self._rate)
        self._target = self._clamp(min(self._rate, self._loss.estimate_bps))

    def _limit_to(self, bps: float, now: float) -> None:
        """A receiver that falls behind: the law's rate comes down to ``bps``, and its
        buffer is the queue startup was growing towards, so startup is over."""
        if self._startup:
            self._startup = False
            self._startup_ended_at = now
        self._rate = min(self._rate, bps)
        super()._limit_to(bps, now)

    def _on_timeout(self, now: float) -> None:
        factor = self._config.delivery.timeout_factor
        self._rate = self._clamp(self._rate * factor)
        self._loss.scale(factor)
        self._target = self._clamp(min(self._rate, self._loss.estimate_bps))

    # ------------------------------------------------------------------ interface

    @property
    def feedback_interval(self) -> float | None:
        """``delivery.feedback_interval``: the rate follows each report, so a report every
        25 ms reacts to a capacity drop a round of 75 ms sooner than one every 100 ms."""
        return self._config.delivery.feedback_interval

    def state(self) -> dict[str, Any]:
        """Rate, queue, delivered rate, loss and feedback counters, JSON-ready (the
        GCC-only fields are None)."""
        return {
            **self._common_state(),
            "estimator": "delivery",
            "delay_based_bps": self._rate,
            "delivered_bps": self.delivered_bps,
            "queue_delay": self.queue_delay,
            "predicted_queue_delay": self.predicted_queue_delay,
            "startup": self._startup,
            "startup_ended_at": self._startup_ended_at,
            "delay_decreases": self._decreases,
            "loss_decreases": self._loss.decreases,
            "losses_with_queue": self._losses_with_queue,
            "detector": None,
            "rate_control": None,
            "trend": None,
            "threshold": None,
            "probes_sent": 0,
            "probes_succeeded": 0,
        }


register_estimator("delivery", DeliveryEstimator)
