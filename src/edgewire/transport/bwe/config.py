"""Parameters of the bandwidth estimators: one frozen dataclass per part, validated.

Defaults follow draft-ietf-rmcat-gcc and the values libwebrtc's GoogCC ships with. The
trendline detector's quantities (modified trend, threshold) are dimensionless slopes scaled
by sample count and gain; GCC's tables call their unit "ms", and the threshold's adaptation
constants ``k_up``/``k_down`` are per millisecond, so those fields keep that convention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from edgewire.errors import LocalProtocolError

__all__ = [
    "AimdConfig",
    "BweConfig",
    "DeliveryConfig",
    "DetectorConfig",
    "LossConfig",
    "ProbeConfig",
    "TrendlineConfig",
    "config_changes",
    "config_with",
    "parse_setting",
]


def _finite(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _int_in(name: str, value: object, low: int, high: int) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
             f"{name} must be an integer in {low}..{high}, got {value!r}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise LocalProtocolError(message)


def _positive(name: str, value: float) -> None:
    _require(_finite(value) and value > 0, f"{name} must be a positive finite number, "
             f"got {value!r}")


def _fraction(name: str, value: float, *, open_low: bool = True) -> None:
    low_ok = value > 0 if open_low else value >= 0
    _require(_finite(value) and low_ok and value < 1,
             f"{name} must be in {'(0' if open_low else '[0'}, 1), got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrendlineConfig:
    """Inter-arrival grouping and the trendline filter of the delay-based estimator."""

    group_length: float = 0.005
    """Seconds of send time a packet group (a burst) spans."""
    burst_length: float = 0.1
    """Packets arriving back to back (closer than ``group_length``, faster than they were
    sent) join the current group while it is younger than this many seconds of arrival
    time: a burst released by the network at once carries no queueing signal."""
    max_arrival_jump: float = 3.0
    """Seconds by which a group's arrival delta may differ from its send delta; beyond it (or
    on a negative arrival delta) the receiver clock is taken to have jumped and grouping
    restarts."""
    window: int = 20
    """Samples of (arrival time, smoothed delay) in the linear regression."""
    smoothing: float = 0.9
    """Weight of the previous value in the exponential smoothing of the accumulated delay."""
    gain: float = 4.0
    """Gain applied to the slope before comparing it with the threshold."""
    max_deltas: int = 60
    """Cap on the sample count the slope is multiplied by."""

    def __post_init__(self) -> None:
        _positive("trendline.group_length", self.group_length)
        _positive("trendline.burst_length", self.burst_length)
        _positive("trendline.max_arrival_jump", self.max_arrival_jump)
        _int_in("trendline.window", self.window, 2, 1000)
        _fraction("trendline.smoothing", self.smoothing, open_low=False)
        _positive("trendline.gain", self.gain)
        _int_in("trendline.max_deltas", self.max_deltas, 1, 10_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorConfig:
    """Adaptive threshold and overuse detector (modified-trend units, see module doc)."""

    initial_threshold: float = 12.5
    """Threshold before any adaptation."""
    min_threshold: float = 6.0
    """Lowest the threshold adapts to."""
    max_threshold: float = 600.0
    """Highest the threshold adapts to."""
    k_up: float = 0.0087
    """Adaptation rate per millisecond while the trend is above the threshold."""
    k_down: float = 0.039
    """Adaptation rate per millisecond while the trend is below the threshold."""
    max_deviation: float = 15.0
    """The threshold is left alone when the trend exceeds it by more than this: a sudden
    spike (a cross-traffic burst, a route change) must not drag the threshold with it."""
    max_update_interval: float = 0.1
    """Seconds of elapsed time counted at most for one threshold adaptation step."""
    overuse_time: float = 0.010
    """Seconds of send time the trend must stay above the threshold to signal overuse."""

    def __post_init__(self) -> None:
        _positive("detector.min_threshold", self.min_threshold)
        _require(_finite(self.max_threshold) and self.max_threshold >= self.min_threshold,
                 "detector.max_threshold must be finite and >= min_threshold")
        _require(_finite(self.initial_threshold)
                 and self.min_threshold <= self.initial_threshold <= self.max_threshold,
                 "detector.initial_threshold must be in min_threshold..max_threshold")
        _positive("detector.k_up", self.k_up)
        _positive("detector.k_down", self.k_down)
        _positive("detector.max_deviation", self.max_deviation)
        _positive("detector.max_update_interval", self.max_update_interval)
        _require(_finite(self.overuse_time) and self.overuse_time >= 0,
                 "detector.overuse_time must be a finite number >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class AimdConfig:
    """The delay-based AIMD rate controller."""

    beta: float = 0.85
    """On overuse the estimate drops to ``beta`` * the acknowledged rate."""
    multiplicative_increase: float = 0.08
    """Growth per second while far from the link capacity estimate (8 %/s)."""
    min_increase_bps: float = 1000.0
    """Least multiplicative growth per second, bits/s, so a tiny rate still moves."""
    min_additive_bps: float = 4000.0
    """Least additive growth per second near the link capacity, bits/s."""
    packet_size_bytes: int = 1200
    """Packet size assumed for the additive increase (one packet per response time)."""
    response_time_extra: float = 0.1
    """Seconds added to the RTT to get the response time of the control loop."""
    max_increase_interval: float = 1.0
    """Seconds of elapsed time counted at most for one increase step."""
    acked_limit_factor: float = 1.5
    """The estimate is never raised above ``acked_limit_factor`` * acked rate + extra..."""
    acked_limit_extra_bps: float = 10_000.0
    """...plus this many bits/s: a peer cannot push it beyond what the path delivers."""
    capacity_smoothing: float = 0.05
    """Weight of a new sample in the running link-capacity estimate (taken at decreases)."""
    capacity_deviation_min: float = 0.4
    """Bounds of the normalised variance of that estimate (kbit/s units, as GCC)."""
    capacity_deviation_max: float = 2.5
    """Upper bound of the normalised variance."""
    capacity_stddevs: float = 3.0
    """Standard deviations either side of the capacity estimate that count as "near" it."""
    reduce_interval_min: float = 0.01
    """While overuse persists, the estimate is cut again at most once per RTT clamped to
    ``reduce_interval_min``..``reduce_interval_max`` seconds..."""
    reduce_interval_max: float = 0.2
    """...(upper bound of that interval)..."""
    reduce_acked_fraction: float = 0.5
    """...unless the acked rate fell below this fraction of the estimate (cut at once)."""
    drain_threshold: float = 0.04
    """Queueing delay (s) above which an overuse cut also drains the queue: a cut to
    ``beta`` x the delivered rate empties a queue at only ``1 - beta`` of the capacity..."""
    drain_time: float = 1.0
    """...so the cut goes to (1 - queueing delay / drain_time) x the delivered rate, which
    empties the queue in about ``drain_time`` seconds..."""
    min_drain_beta: float = 0.5
    """...but never below this fraction of the delivered rate."""
    base_delay_window: float = 10.0
    """Seconds over which the smallest one-way delay (the path without a queue) is kept;
    the queueing delay is the latest feedback's smallest one-way delay above it."""

    def __post_init__(self) -> None:
        _fraction("aimd.beta", self.beta)
        _positive("aimd.multiplicative_increase", self.multiplicative_increase)
        _positive("aimd.min_increase_bps", self.min_increase_bps)
        _positive("aimd.min_additive_bps", self.min_additive_bps)
        _int_in("aimd.packet_size_bytes", self.packet_size_bytes, 1, 65535)
        _positive("aimd.response_time_extra", self.response_time_extra)
        _positive("aimd.max_increase_interval", self.max_increase_interval)
        _require(_finite(self.acked_limit_factor) and self.acked_limit_factor >= 1.0,
                 "aimd.acked_limit_factor must be finite and >= 1")
        _require(_finite(self.acked_limit_extra_bps) and self.acked_limit_extra_bps >= 0,
                 "aimd.acked_limit_extra_bps must be finite and >= 0")
        _fraction("aimd.capacity_smoothing", self.capacity_smoothing)
        _positive("aimd.capacity_deviation_min", self.capacity_deviation_min)
        _require(_finite(self.capacity_deviation_max)
                 and self.capacity_deviation_max >= self.capacity_deviation_min,
                 "aimd.capacity_deviation_max must be finite and >= capacity_deviation_min")
        _positive("aimd.capacity_stddevs", self.capacity_stddevs)
        _positive("aimd.reduce_interval_min", self.reduce_interval_min)
        _require(_finite(self.reduce_interval_max)
                 and self.reduce_interval_max >= self.reduce_interval_min,
                 "aimd.reduce_interval_max must be finite and >= reduce_interval_min")
        _fraction("aimd.reduce_acked_fraction", self.reduce_acked_fraction)
        _positive("aimd.drain_threshold", self.drain_threshold)
        _positive("aimd.drain_time", self.drain_time)
        _fraction("aimd.min_drain_beta", self.min_drain_beta)
        _require(self.min_drain_beta <= self.beta, "aimd.min_drain_beta must be <= aimd.beta")
        _positive("aimd.base_delay_window", self.base_delay_window)


@dataclass(frozen=True, slots=True, kw_only=True)
class LossConfig:
    """The loss-based controller."""

    low_loss: float = 0.02
    """At or below this loss fraction the rate may grow."""
    high_loss: float = 0.10
    """Above this loss fraction the rate backs off; in between it holds."""
    increase: float = 0.08
    """Growth per second at low loss (8 %/s)."""
    decrease_factor: float = 0.5
    """A back-off multiplies the rate by ``1 - decrease_factor * loss``; each pooled
    measurement backs off at most once."""
    decrease_interval_extra: float = 0.3
    """Back-offs are at least RTT + this many seconds apart (one response per round)."""
    min_packets: int = 20
    """Reports are pooled until this many packets were reported before a loss fraction is
    computed: one small report holding one loss says little."""
    max_increase_interval: float = 1.0
    """Seconds of elapsed time counted at most for one growth step."""
    window: float = 1.0
    """Seconds reports are pooled (with at least ``min_packets``) before a loss fraction
    is computed. At 5 % random loss and 190 packets/s, a 20-packet pool shows more than
    10 % loss one time in thirteen; a one-second pool almost never."""
    heavy_loss: float = 0.2
    """A pool of twice ``min_packets`` or more with more loss than this (above the
    inherent loss) is taken at once, without waiting for ``window``."""
    inherent_time: float = 10.0
    """Time constant (s) with which loss seen while the delay-based detector finds no
    queue is learned as the path's inherent loss."""
    inherent_max: float = 0.1
    """The inherent loss is capped here: more than this always counts as congestion."""

    def __post_init__(self) -> None:
        _fraction("loss.low_loss", self.low_loss, open_low=False)
        _fraction("loss.high_loss", self.high_loss)
        _require(self.low_loss <= self.high_loss, "loss.low_loss must be <= loss.high_loss")
        _positive("loss.increase", self.increase)
        _require(_finite(self.decrease_factor) and 0 < self.decrease_factor <= 1,
                 "loss.decrease_factor must be in (0, 1]")
        _require(_finite(self.decrease_interval_extra) and self.decrease_interval_extra >= 0,
                 "loss.decrease_interval_extra must be finite and >= 0")
        _int_in("loss.min_packets", self.min_packets, 1, 100_000)
        _positive("loss.max_increase_interval", self.max_increase_interval)
        _require(_finite(self.window) and self.window >= 0,
                 "loss.window must be finite and >= 0")
        _fraction("loss.heavy_loss", self.heavy_loss)
        _require(self.high_loss <= self.heavy_loss, "loss.high_loss must be <= loss.heavy_loss")
        _positive("loss.inherent_time", self.inherent_time)
        _fraction("loss.inherent_max", self.inherent_max, open_low=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeConfig:
    """Bandwidth probing: short clusters sent faster than the estimate."""

    enabled: bool = True
    """Probe at all (initial, exponential, periodic and after-drop probes)."""
    initial_factors: tuple[float, ...] = (3.0, 6.0)
    """Clusters sent at start, as multiples of ``start_bps``."""
    duration: float = 0.015
    """Seconds a cluster lasts."""
    min_packets: int = 5
    """Packets a cluster holds at least, and must have received for a result."""
    saturated_ratio: float = 0.9
    """A cluster received at less than this fraction of its send rate saturated the
    bottleneck: its receive rate is the capacity..."""
    saturated_utilization: float = 0.95
    """...and the result is this fraction of it."""
    further_fraction: float = 0.7
    """A result above this fraction of the cluster's rate probes again..."""
    further_factor: float = 2.0
    """...at this multiple of the result (up to ``max_bps``)."""
    periodic_interval: float = 5.0
    """Seconds between probes while the application sends less than the estimate."""
    periodic_factor: float = 2.0
    """Periodic probes run at this multiple of the estimate."""
    busy_interval: float = 2.0
    """Seconds between probes while the application sends all the estimate allows but
    the path shows no queue (0: never): the capacity may have grown, and a sender at its
    estimate cannot show it. Counted from the last probe or decrease."""
    busy_queue_max: float = 0.01
    """Most queueing delay (s) at which such a probe is sent."""
    alr_fraction: float = 0.6
    """Application-limited: sent less than this fraction of the target over ``alr_window``."""
    alr_window: float = 1.0
    """Seconds of send history for the application-limited test."""
    cluster_timeout: float = 1.0
    """Seconds after a cluster is handed out by which its feedback must have arrived."""
    drop_fraction: float = 0.66
    """A decrease to below this fraction of the estimate is a "large drop"..."""
    drop_window: float = 5.0
    """...after which, for this many seconds, recovery (detector back to normal while
    application-limited) probes once..."""
    after_drop_fraction: float = 0.85
    """...at this fraction of the rate before the drop."""
    max_clusters: int = 8
    """Clusters pending or awaiting feedback at most; more are dropped (counted)."""

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), "probe.enabled must be a bool")
        _require(isinstance(self.initial_factors, tuple) and len(self.initial_factors) <= 8,
                 "probe.initial_factors must be a tuple of at most 8 values")
        for f in self.initial_factors:
            _require(_finite(f) and f > 1.0, "probe.initial_factors must be > 1")
        _positive("probe.duration", self.duration)
        _int_in("probe.min_packets", self.min_packets, 1, 1000)
        _fraction("probe.saturated_ratio", self.saturated_ratio)
        _require(_finite(self.saturated_utilization) and 0 < self.saturated_utilization <= 1,
                 "probe.saturated_utilization must be in (0, 1]")
        _fraction("probe.further_fraction", self.further_fraction)
        _require(_finite(self.further_factor) and self.further_factor > 1.0,
                 "probe.further_factor must be > 1")
        _positive("probe.periodic_interval", self.periodic_interval)
        _require(_finite(self.periodic_factor) and self.periodic_factor > 1.0,
                 "probe.periodic_factor must be > 1")
        _require(_finite(self.busy_interval) and self.busy_interval >= 0,
                 "probe.busy_interval must be finite and >= 0")
        _require(_finite(self.busy_queue_max) and self.busy_queue_max >= 0,
                 "probe.busy_queue_max must be finite and >= 0")
        _fraction("probe.alr_fraction", self.alr_fraction)
        _positive("probe.alr_window", self.alr_window)
        _positive("probe.cluster_timeout", self.cluster_timeout)
        _fraction("probe.drop_fraction", self.drop_fraction)
        _positive("probe.drop_window", self.drop_window)
        _fraction("probe.after_drop_fraction", self.after_drop_fraction)
        _int_in("probe.max_clusters", self.max_clusters, 1, 64)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    """The "delivery" estimator: the delivered rate, steered by the queueing delay."""

    queue_target: float = 0.01
    """Queueing delay (s) the rate is steered to (the queue predicted for a packet sent
    now, see ``predict``), beyond one packet's transmission time at the delivered rate."""
    gain: float = 0.25
    """With no queue the rate is the delivered rate x (1 + gain), and less as the queue
    nears the target: a sender at the path's capacity keeps about the target queued."""
    drain_horizon: float = 0.2
    """A queue above the target is drained within about this many seconds: the rate is
    the delivered rate x (1 - excess / drain_horizon)..."""
    min_factor: float = 0.5
    """...but at least this fraction of it."""
    startup_gain: float = 2.0
    """Until the first queue above the target, the rate is this multiple of the delivered
    rate (about a doubling per round trip; 1 turns startup off)."""
    rate_span: float = 0.1
    """Seconds of the latest arrivals the delivered rate is taken over (four reports at
    ``feedback_interval``)."""
    predict: bool = True
    """Steer by the queue predicted for a packet sent now (the latest reported packet's
    queue, less the time the bottleneck has had to drain it since it was sent, plus what
    was sent after it at the cautious rate below) instead of the queue the report saw: a
    report is a round trip old, and the sender knows what it sent since. Not while the
    application sends below its rate, nor in startup: the delivered rate is the
    sender's own then."""
    predict_rate_factor: float = 0.9
    """The prediction drains the queue at this fraction of the smaller of the delivered
    rates over ``rate_span`` and twice it (a cautious forecast of the bottleneck)."""
    predict_horizon: float = 0.3
    """At most this many seconds of drain are credited since the reported packet was
    sent: after an outage the bottleneck did not serve at the old rate all along."""
    predict_min_queue: float = 0.005
    """Below this measured queue (s) there is no queue to predict from (the delivered
    rate is then the sender's own, not the bottleneck's): the measured one is used."""
    queue_loss: bool = False
    """Count losses reported while the measured queue is above ``queue_target`` towards
    the loss-based controller too (False: that loss is the queue overflowing, which the
    delay law is draining already; only loss without a queue counts)."""
    base_window: float = 10.0
    """The base one-way delay is the smallest of the last one to two such periods."""
    feedback_interval: float = 0.025
    """Seconds between the receiver's feedback reports this estimator asks for in the
    hello (the receiver keeps them within 10-100 ms)."""
    timeout_factor: float = 1.0
    """Factor applied to the rate when feedback stops (1: hold). edgewire's congestion
    controller already stops the sender one window after the ACKs stop."""
    reference_rtt: float = 0.08
    """The law's time constants above are set for paths whose min RTT (the smallest
    smoothed RTT of the last one to two ``base_window`` periods) is at most this many
    seconds. On a longer path each report is older and each rate change shows later, so
    they stretch with the path: the drain horizon grows and the gain shrinks by the
    factor min RTT ÷ ``reference_rtt``, the prediction credits drain, and applies its
    cautious forecast, as a path this long would (the predict horizon plus, and the
    caution over the report's age less, the min RTT beyond it), and it takes the
    bottleneck's rate over ``rate_span`` x that factor (at most half ``acked_window``).
    Fixed, a 200 ms path oscillated at 0.81 of its capacity with 96 ms of p95 queue;
    stretched, 1.01 at 21 ms."""

    busy_rate: bool = True
    """On a path longer than ``reference_rtt``, the bottleneck's rate (the delivered rate
    the law multiplies, after startup, and the prediction's forecast) is taken over the
    time the bottleneck was busy: the gap before an arrival counts only up to the
    packet's queueing delay plus its transmission time at the fastest delivered rate.
    A sender whose full window left the bottleneck idle for a moment read that as a
    slower path, cut, and stalled its window again a round trip later: on a 300 ms path
    with video and a bulk transfer the rate swung between 0.3 and 2.1 Mbit/s every half
    second (0.60 of a 2 Mbit/s link). False: arrival time throughout, as on short
    paths."""

    startup_least_queue: bool = True
    """On a path longer than ``reference_rtt``, startup ends only on a report whose every
    packet met a queue above the target (the report's least queue), not only its latest.
    Startup there lasts many round trips at rates of a packet or two per report, and a
    pair the pacer sent back to back both looked like a faster delivery (lowering the
    target to ``queue_target``) and put its second packet a transmission time behind the
    first: with a real path's few milliseconds of jitter on top, that ended startup at a
    quarter of a 2 Mbit/s link over real sockets at 600 ms (4 of 8 runs), after which the
    stretched law took most of a 20 s run to climb. A rate above the path's fills the
    queue for a whole round trip before a report can tell, so every packet of a report
    meets it then. False: the latest packet's queue, as on short paths."""

    def __post_init__(self) -> None:
        _positive("delivery.queue_target", self.queue_target)
        _positive("delivery.reference_rtt", self.reference_rtt)
        _require(isinstance(self.busy_rate, bool), "delivery.busy_rate must be a bool")
        _require(isinstance(self.startup_least_queue, bool),
                 "delivery.startup_least_queue must be a bool")
        _require(_finite(self.gain) and 0 < self.gain <= 4, "delivery.gain must be in (0, 4]")
        _positive("delivery.drain_horizon", self.drain_horizon)
        _fraction("delivery.min_factor", self.min_factor)
        _require(_finite(self.startup_gain) and 1 <= self.startup_gain <= 8,
                 "delivery.startup_gain must be in [1, 8]")
        _positive("delivery.rate_span", self.rate_span)
        _require(isinstance(self.predict, bool), "delivery.predict must be a bool")
        _require(isinstance(self.queue_loss, bool), "delivery.queue_loss must be a bool")
        _require(_finite(self.predict_rate_factor) and 0 < self.predict_rate_factor <= 1,
                 "delivery.predict_rate_factor must be in (0, 1]")
        _positive("delivery.predict_horizon", self.predict_horizon)
        _require(_finite(self.predict_min_queue) and self.predict_min_queue >= 0,
                 "delivery.predict_min_queue must be finite and >= 0")
        _positive("delivery.base_window", self.base_window)
        _require(_finite(self.feedback_interval) and 0.001 <= self.feedback_interval <= 1,
                 "delivery.feedback_interval must be in [0.001, 1] s")
        _require(_finite(self.timeout_factor) and 0 < self.timeout_factor <= 1,
                 "delivery.timeout_factor must be in (0, 1]")


@dataclass(frozen=True, slots=True, kw_only=True)
class BweConfig:
    """Everything tunable in a bandwidth estimator (rates in bits/s, times in seconds)."""

    start_bps: float = 300_000.0
    """Target before any feedback."""
    min_bps: float = 30_000.0
    """The target never goes below this."""
    max_bps: float = 10_000_000_000.0
    """The target never goes above this: a bound for a peer's claims and a program's
    mistakes, far above what a path is likely to carry. It was 100 Mbit/s, which held a
    fast LAN path under what Reno carries, to keep a receiving process that falls behind
    from losing a tenth of the packets in its socket buffer; such a receiver now tells
    the sender (``receiver_drop_backoff``; docs/BWE.md, "A receiver that falls
    behind")."""
    receiver_drop_backoff: float = 0.85
    """When the peer reports that its own socket dropped datagrams (its receive buffer
    overflowed: the receiving application fell behind), the target falls to this fraction
    of the rate the receiver read at (the acknowledged rate of the last
    ``acked_recent_span``), once per round trip."""
    receiver_cap_growth: float = 1.0
    """After such a cut the target stays under a cap, the rate it was cut to, which grows
    by this fraction a second while no more drops come and is let go at twice the target
    (about 1.2 s after the last drop at the default, a doubling a second): a reader that
    stalls now and then shows an empty buffer between its stalls, and the delay law alone
    grew back into the next overflow within a report or two. Over loopback
    (``bench/slow_receiver.py``, a 208 KiB buffer) 0.1 a second cut the loss 0.92 % ->
    0.18 % but halved the goodput; 1.0 gives 0.47 % at 0.86 of it (docs/BWE.md)."""
    initial_rtt: float = 0.1
    """Round-trip time assumed until ``on_rtt`` reports one."""
    feedback_timeout: float = 0.5
    """Without feedback for max(this, ``feedback_timeout_rtts`` * RTT) while sending, the
    target is halved (once per such interval)."""
    feedback_timeout_rtts: float = 3.0
    """Round trips of the feedback timeout."""
    acked_window: float = 0.5
    """Seconds of arrival time the acknowledged rate is measured over."""
    acked_min_span: float = 0.15
    """Arrival-time span needed before the acknowledged rate is known."""
    acked_recent_span: float = 0.15
    """Seconds of the most recent arrivals whose rate an overuse cut is based on: the
    bottleneck is full then, so they deliver at its capacity, while the full window may
    still average in a rate from before a probe raised the estimate."""
    max_acked_packets: int = 16384
    """Packets kept for the acknowledged rate (the window shrinks beyond, at very high
    rates)."""
    max_tracked_sequences: int = 8192
    """Sequence numbers remembered to spot duplicates and late arrivals; older ones are
    counted as stale and ignored."""
    trendline: TrendlineConfig = field(default_factory=TrendlineConfig)
    """Grouping and trendline filter."""
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    """Adaptive threshold and overuse detector."""
    aimd: AimdConfig = field(default_factory=AimdConfig)
    """Delay-based AIMD rate control."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss-based control."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    """Probing."""
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    """The "delivery" estimator (the others ignore it)."""

    def __post_init__(self) -> None:
        _positive("min_bps", self.min_bps)
        _require(_finite(self.max_bps) and self.max_bps >= self.min_bps,
                 f"max_bps must be finite and >= min_bps ({self.min_bps}), got {self.max_bps!r}")
        _require(_finite(self.start_bps) and self.min_bps <= self.start_bps <= self.max_bps,
                 f"start_bps must be in min_bps..max_bps ({self.min_bps}..{self.max_bps}), "
                 f"got {self.start_bps!r}")
        _require(_finite(self.receiver_drop_backoff) and 0 < self.receiver_drop_backoff <= 1,
                 "receiver_drop_backoff must be in (0, 1]")
        _require(_finite(self.receiver_cap_growth) and 0 < self.receiver_cap_growth <= 10,
                 "receiver_cap_growth must be in (0, 10]")
        _positive("initial_rtt", self.initial_rtt)
        _positive("feedback_timeout", self.feedback_timeout)
        _positive("feedback_timeout_rtts", self.feedback_timeout_rtts)
        _positive("acked_window", self.acked_window)
        _require(_finite(self.acked_recent_span) and 0 < self.acked_recent_span
                 <= self.acked_window, "acked_recent_span must be in (0, acked_window]")
        _require(_finite(self.acked_min_span) and 0 < self.acked_min_span
                 <= self.acked_window, "acked_min_span must be in (0, acked_window]")
        _int_in("max_acked_packets", self.max_acked_packets, 2, 10_000_000)
        _int_in("max_tracked_sequences", self.max_tracked_sequences, 16, 10_000_000)
        for name, value, kind in (("trendline", self.trendline, TrendlineConfig),
                                  ("detector", self.detector, DetectorConfig),
                                  ("aimd", self.aimd, AimdConfig),
                                  ("loss", self.loss, LossConfig),
                                  ("probe", self.probe, ProbeConfig),
                                  ("delivery", self.delivery, DeliveryConfig)):
            _require(isinstance(value, kind), f"{name} must be a {kind.__name__}")


def config_with(config: BweConfig, overrides: Mapping[str, object]) -> BweConfig:
    """``config`` with the settings in ``overrides`` replaced.

    Keys are field names, nested for the parts (``{"delivery": {"queue_target": 0.02}}``),
    or dotted paths (``{"delivery.queue_target": 0.02, "start_bps": 600_000}``). A key
    that names no setting, a value of the wrong type (a number for a number, an integer
    for an integer, true or false for a switch, a table for a part) and a value the
    config refuses raise :class:`LocalProtocolError` naming the key.
    """
    result: BweConfig = _replace(config, _nest(overrides), "")
    return result


def config_changes(config: BweConfig) -> dict[str, object]:
    """The settings of ``config`` that differ from the defaults, by dotted path (a
    report's record of what a run changed)."""
    return _changes(config, BweConfig(), "")


def parse_setting(text: str) -> tuple[str, object]:
    """``"delivery.queue_target=0.02"`` -> ``("delivery.queue_target", 0.02)``: an integer,
    a number, or true / false; :class:`LocalProtocolError` for anything else."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise LocalProtocolError(f"a setting is KEY=VALUE, got {text!r}")
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    try:
        return key, int(raw)
    except ValueError:
        pass
    try:
        value = float(raw)
    except ValueError:
        raise LocalProtocolError(f"{key}: expected a number or true/false, got {raw!r}") \
            from None
    if not math.isfinite(value):
        raise LocalProtocolError(f"{key}: expected a finite number, got {raw!r}")
    return key, value


def _nest(overrides: Mapping[str, object]) -> dict[str, object]:
    nested: dict[str, object] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise LocalProtocolError(f"setting names are strings, got {key!r}")
        head, dot, rest = key.partition(".")
        if isinstance(value, Mapping):
            value = _nest(value)
        if dot:
            value = _nest({rest: value})
        existing = nested.get(head)
        if isinstance(existing, dict) and isinstance(value, dict):
            for k, v in value.items():
                if k in existing:
                    raise LocalProtocolError(f"{head}.{k}: set twice")
                existing[k] = v
        elif head in nested:
            raise LocalProtocolError(f"{head}: set twice")
        else:
            nested[head] = value
    return nested


def _replace(obj: Any, table: Mapping[str, object], prefix: str) -> Any:
    known = {f.name for f in fields(obj)}
    changes: dict[str, object] = {}
    for key, value in table.items():
        path = prefix + key
        if key not in known:
            raise LocalProtocolError(f"{path}: no such setting (known: "
                                     f"{', '.join(sorted(known))})")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, Mapping):
                raise LocalProtocolError(f"{path}: expected a table of "
                                         f"{type(current).__name__} settings, got {value!r}")
            changes[key] = _replace(current, value, path + ".")
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise LocalProtocolError(f"{path}: expected true or false, got {value!r}")
            changes[key] = value
        elif isinstance(current, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise LocalProtocolError(f"{path}: expected an integer, got {value!r}")
            changes[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LocalProtocolError(f"{path}: expected a number, got {value!r}")
            changes[key] = float(value)
    try:
        return replace(obj, **changes)
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"bwe settings: {exc}") from None


def _changes(obj: Any, default: Any, prefix: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in fields(obj):
        value, base = getattr(obj, f.name), getattr(default, f.name)
        if is_dataclass(value):
            out.update(_changes(value, base, f"{prefix}{f.name}."))
        elif value != base:
            out[prefix + f.name] = value
    return out
