"""The registered estimators: "gcc" (delay- and loss-based, with probing) and "loss".

"gcc" follows draft-ietf-rmcat-gcc as libwebrtc's GoogCC runs it on the sender: per-packet
feedback feeds the trendline overuse detector and AIMD (the delay-based estimate) and the
loss-based controller; the target is the smaller of the two. Probes find capacity the
application's own traffic cannot show. "loss" keeps only the loss-based part, as a
baseline to compare against.
"""

from __future__ import annotations

from typing import Any

from edgewire.transport.bwe.aimd import AimdRateControl
from edgewire.transport.bwe.base import PacketResult, ProbeRequest, register_estimator
from edgewire.transport.bwe.common import FeedbackEstimator
from edgewire.transport.bwe.config import BweConfig
from edgewire.transport.bwe.probe import ProbeController
from edgewire.transport.bwe.rates import WindowedMin
from edgewire.transport.bwe.trendline import InterArrival, OveruseDetector, TrendlineFilter

__all__ = ["GccEstimator", "LossBasedEstimator"]

#: Factor the target is multiplied by when feedback stops.
K_TIMEOUT_FACTOR = 0.5


class GccEstimator(FeedbackEstimator):
    """Google Congestion Control: min(delay-based, loss-based), with probing."""

    def __init__(self, config: BweConfig) -> None:
        super().__init__(config)
        self._inter_arrival = InterArrival(config.trendline)
        self._trendline = TrendlineFilter(config.trendline)
        self._detector = OveruseDetector(config.detector)
        self._aimd = AimdRateControl(config.aimd, start_bps=config.start_bps,
                                     min_bps=config.min_bps, max_bps=config.max_bps)
        self._probes = ProbeController(config.probe, start_bps=config.start_bps,
                                       max_bps=config.max_bps)
        self._probe_results_applied = 0
        self._probe_results_ignored = 0
        # one-way delay (receiver clock - sender clock, offset included): the smallest of
        # the current and the previous base_delay_window, and of the latest feedback
        self._base = WindowedMin(config.aimd.base_delay_window)
        self._batch_min = float("inf")
        self.queue_delay: float | None = None
        """Queueing delay (s) the latest feedback showed, above the smallest one-way delay
        of the last one to two ``aimd.base_delay_window`` (None before any)."""
        self._resets_seen = 0

    # ------------------------------------------------------------------ hooks

    def _begin(self, now: float) -> None:
        self._probes.start(now)

    def _on_received(self, p: PacketResult, arrival: float) -> None:
        owd = arrival - p.send_time
        if owd < self._batch_min:
            self._batch_min = owd
        if p.probe_cluster is not None:
            self._probes.on_packet(p.probe_cluster, p.send_time, arrival, p.size_bytes)
        delta = self._inter_arrival.on_packet(p.send_time, arrival)
        if self._inter_arrival.resets != self._resets_seen:
            # the receiver clock jumped: arrival times before it are meaningless now
            self._resets_seen = self._inter_arrival.resets
            self._acked.reset()
            self._base.reset()
        if delta is None:
            return
        trend = self._trendline.update(delta)
        self._detector.detect(trend, send_delta=delta.send_delta,
                              samples=self._trendline.samples, now=delta.arrival_time)

    def _note_queue_delay(self, now: float) -> None:
        batch, self._batch_min = self._batch_min, float("inf")
        if batch == float("inf"):
            return
        self.queue_delay = max(0.0, batch - self._base.add(batch, now))

    def _update(self, now: float) -> None:
        aimd = self._aimd
        self._note_queue_delay(now)
        self._probes.expire(now)
        acked = self._acked.rate_bps()
        signal = self._detector.state
        best: float | None = None
        for request, result, first in self._probes.evaluate():
            if signal == "overusing":
                # a queue is building: whatever the probe saw, more is not available now
                self._probe_results_ignored += 1
                continue
            if first:
                self._probes.follow_up(request, result, now)
            best = result if best is None else max(best, result)
        before = aimd.estimate_bps
        self._loss.note_delay(calm=signal == "normal")
        if signal == "overusing":
            recent = self._acked.recent_bps(self._config.acked_recent_span)
            delivered = recent if recent is not None else acked
            if aimd.time_to_reduce_further(now=now, acked_bps=delivered, rtt=self._rtt):
                aimd.update(signal, acked_bps=delivered, rtt=self._rtt, now=now,
                            queue_delay=self.queue_delay)
        elif best is not None and best > aimd.estimate_bps:
            aimd.set_estimate(best, now=now)
            self._loss.raise_to(aimd.estimate_bps)
            self._probe_results_applied += 1
        else:
            aimd.update(signal, acked_bps=acked, rtt=self._rtt, now=now)
        if aimd.estimate_bps < before:
            self._probes.on_decrease(before, aimd.estimate_bps, now)
        self._loss.update(now=now, rtt=self._rtt, limit_bps=aimd.acked_limit(acked),
                          cap_bps=aimd.estimate_bps)
        self._set_target(now)

    def _set_target(self, now: float) -> None:
        self._target = self._clamp(min(self._aimd.estimate_bps, self._loss.estimate_bps))
        self._probes.on_estimate(target_bps=self._target, app_limited=self._app_limited(now),
                                 detector_normal=self._detector.state == "normal", now=now,
                                 queue_delay=self.queue_delay,
                                 at_target=self._sending_at_target(now))

    def _limit_to(self, bps: float, now: float) -> None:
        """A receiver that falls behind: the AIMD estimate comes down to ``bps`` too."""
        before = self._aimd.estimate_bps
        if before > bps:
            self._aimd.set_estimate(bps, now=now)
            self._probes.on_decrease(before, self._aimd.estimate_bps, now)
        super()._limit_to(bps, now)

    def _on_timeout(self, now: float) -> None:
        before = self._aimd.estimate_bps
        self._aimd.scale(K_TIMEOUT_FACTOR, now=now)
        self._loss.scale(K_TIMEOUT_FACTOR)
        self._probes.on_decrease(before, self._aimd.estimate_bps, now)
        self._target = self._clamp(min(self._aimd.estimate_bps, self._loss.estimate_bps))

    def _on_timer(self, now: float) -> None:
        self._probes.on_timer(now)
        self._probes.on_estimate(target_bps=self._target, app_limited=self._app_limited(now),
                                 detector_normal=self._detector.state == "normal", now=now,
                                 queue_delay=self.queue_delay,
                                 at_target=self._sending_at_target(now))

    def _next_deadline(self) -> float | None:
        return self._probes.next_deadline()

    # ------------------------------------------------------------------ interface

    def probe_request(self, *, now: float) -> ProbeRequest | None:
        """The next probe cluster to send, handed out once."""
        self._begin(now)
        return self._probes.request(now)

    def state(self) -> dict[str, Any]:
        """Estimates, detector, rate control, probing and feedback counters, JSON-ready."""
        probes = self._probes
        return {
            **self._common_state(),
            "estimator": "gcc",
            "delay_based_bps": self._aimd.estimate_bps,
            "detector": self._detector.state,
            "rate_control": self._aimd.state,
            "trend": self._detector.trend,
            "threshold": self._detector.threshold,
            "link_capacity_bps": self._aimd.capacity.estimate_bps,
            "queue_delay": self.queue_delay,
            "delay_decreases": self._aimd.decreases,
            "loss_decreases": self._loss.decreases,
            "probes_sent": probes.sent,
            "probes_succeeded": probes.succeeded,
            "probes_failed": probes.failed,
            "probes_busy": probes.busy_probes,
            "probes_dropped": probes.dropped,
            "probe_results_applied": self._probe_results_applied,
            "probe_results_ignored": self._probe_results_ignored,
            "reordered_packets": self._inter_arrival.reordered,
            "arrival_resets": self._inter_arrival.resets,
            "probe_clusters": len(probes),
        }


class LossBasedEstimator(FeedbackEstimator):
    """Loss-based control only (no delay signal, no probing): the comparison baseline."""

    def _update(self, now: float) -> None:
        acked = self._acked.rate_bps()
        aimd = self._config.aimd
        limit = (None if acked is None
                 else aimd.acked_limit_factor * acked + aimd.acked_limit_extra_bps)
        self._loss.update(now=now, rtt=self._rtt, limit_bps=limit, cap_bps=None)
        self._target = self._clamp(self._loss.estimate_bps)

    def _on_timeout(self, now: float) -> None:
        self._loss.scale(K_TIMEOUT_FACTOR)
        self._target = self._clamp(self._loss.estimate_bps)

    def state(self) -> dict[str, Any]:
        """Loss-based estimate and feedback counters, JSON-ready; the delay-based fields
        are None (this estimator has no delay signal)."""
        return {
            **self._common_state(),
            "estimator": "loss",
            "delay_based_bps": None,
            "detector": None,
            "rate_control": None,
            "trend": None,
            "threshold": None,
            "loss_decreases": self._loss.decreases,
            "probes_sent": 0,
            "probes_succeeded": 0,
        }


register_estimator("gcc", GccEstimator)
register_estimator("loss", LossBasedEstimator)
