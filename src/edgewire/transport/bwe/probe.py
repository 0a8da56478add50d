"""Bandwidth probing: when to send a probe cluster, and what its feedback says.

An application that sends less than the estimate cannot show the path carries more, and
the estimate may never grow past 1.5 * what was delivered. A probe is a short cluster sent
at a higher rate: if the receiver got it about as fast as it was sent, the path carries at
least that rate; if it arrived slower, the arrival rate is the bottleneck's capacity.
"""

from __future__ import annotations

import math
from collections import deque

from edgewire.transport.bwe.base import ProbeRequest
from edgewire.transport.bwe.config import ProbeConfig

__all__ = ["ProbeController"]


class _Cluster:
    """Feedback of one cluster, summarised in constant space."""

    __slots__ = ("bytes", "first_arrival", "first_arrival_size", "first_send", "issued",
                 "last_arrival", "last_send", "last_send_size", "received", "request",
                 "result", "updated")

    def __init__(self, request: ProbeRequest, issued: float) -> None:
        self.request = request
        self.issued = issued
        self.received = 0
        self.bytes = 0
        self.first_send = math.inf
        self.last_send = -math.inf
        self.last_send_size = 0
        self.first_arrival = math.inf
        self.first_arrival_size = 0
        self.last_arrival = -math.inf
        self.result: float | None = None
        self.updated = False

    def add(self, send_time: float, arrival_time: float, size_bytes: int) -> None:
        """Fold in one received packet of the cluster."""
        self.received += 1
        self.bytes += size_bytes
        self.first_send = min(self.first_send, send_time)
        if send_time >= self.last_send:
            self.last_send = send_time
            self.last_send_size = size_bytes
        if arrival_time < self.first_arrival:
            self.first_arrival = arrival_time
            self.first_arrival_size = size_bytes
        self.last_arrival = max(self.last_arrival, arrival_time)
        self.updated = True

    def estimate(self, config: ProbeConfig) -> float | None:
        """min(send rate, receive rate), bits/s, or None without enough feedback.

        The send rate leaves out the last packet (its bytes left after the spread ended),
        the receive rate the first (its bytes arrived before the spread began). A receive
        rate well below the send rate is the bottleneck's capacity: the result is then a
        little under it, since a sender running at exactly the capacity keeps whatever
        queue the probe left.
        """
        min_packets = config.min_packets
        if self.received < max(min_packets, 2):
            return None
        arrival_spread = self.last_arrival - self.first_arrival
        if arrival_spread <= 0:
            return None
        receive_bps = (self.bytes - self.first_arrival_size) * 8 / arrival_spread
        send_spread = self.last_send - self.first_send
        # a cluster handed to the network as one burst has no send rate of its own: the
        # path's spacing of it is the whole measurement
        send_bps = ((self.bytes - self.last_send_size) * 8 / send_spread
                    if send_spread > 0 else math.inf)
        if receive_bps < config.saturated_ratio * send_bps:
            receive_bps *= config.saturated_utilization
        # a probe at rate R shows the path carries R, never more
        return min(send_bps, receive_bps, self.request.rate_bps)


class ProbeController:
    """Decides when to probe and turns cluster feedback into results."""

    def __init__(self, config: ProbeConfig, *, start_bps: float, max_bps: float) -> None:
        self._config = config
        self._start_bps = start_bps
        self._max_bps = max_bps
        self._pending: deque[ProbeRequest] = deque()
        self._announced = False
        self._clusters: dict[int, _Cluster] = {}
        self._next_id = 1
        self._latest_id = 0
        self._started = False
        self._last_probe: float | None = None
        self._app_limited = False
        self._drop: tuple[float, float] | None = None  # (rate before the drop, when)
        self.sent = 0
        """Clusters handed out."""
        self.succeeded = 0
        """Clusters that produced a result."""
        self.failed = 0
        """Clusters that timed out without a result."""
        self.dropped = 0
        """Clusters forgotten before their time because too many were outstanding."""
        self.busy_probes = 0
        """Clusters sent while the application used all of the estimate (busy_interval)."""
        self._last_decrease: float | None = None

    @property
    def busy(self) -> bool:
        """A cluster is pending or awaiting feedback."""
        return bool(self._pending) or bool(self._clusters)

    def __len__(self) -> int:
        return len(self._pending) + len(self._clusters)

    def start(self, now: float) -> None:
        """First call of the estimator: queue the initial exponential probes."""
        if self._started:
            return
        self._started = True
        if self._config.enabled:
            for factor in self._config.initial_factors:
                self._enqueue(factor * self._start_bps, now)

    def _enqueue(self, rate_bps: float, now: float) -> None:
        rate = min(rate_bps, self._max_bps)
        if len(self) >= self._config.max_clusters:
            if not self._clusters:
                self.dropped += 1
                return
            oldest = min(self._clusters)
            self._forget(oldest)
            self.dropped += 1
        cfg = self._config
        req = ProbeRequest(cluster=self._next_id, rate_bps=rate, duration=cfg.duration,
                           min_packets=cfg.min_packets)
        self._next_id += 1
        self._latest_id = req.cluster
        self._pending.append(req)
        self._announced = False
        self._last_probe = now

    def _forget(self, cluster_id: int) -> None:
        cluster = self._clusters.pop(cluster_id)
        if cluster.result is None:
            self.failed += 1

    def request(self, now: float) -> ProbeRequest | None:
        """The next cluster to send now, handed out once."""
        if not self._pending:
            return None
        req = self._pending.popleft()
        self._clusters[req.cluster] = _Cluster(req, now)
        self._last_probe = now
        self.sent += 1
        return req

    def on_packet(self, cluster_id: int, send_time: float, arrival_time: float,
                  size_bytes: int) -> None:
        """A received packet tagged with ``cluster_id`` (unknown or expired ids ignored)."""
        cluster = self._clusters.get(cluster_id)
        if cluster is not None:
            cluster.add(send_time, arrival_time, size_bytes)

    def evaluate(self) -> list[tuple[ProbeRequest, float, bool]]:
        """Results of the clusters that got feedback since the last call, as (request,
        result bits/s, first result of that cluster)."""
        out = []
        for cluster in self._clusters.values():
            if not cluster.updated:
                continue
            cluster.updated = False
            result = cluster.estimate(self._config)
            if result is None:
                continue
            first = cluster.result is None
            if first:
                self.succeeded += 1
            cluster.result = result if first else max(result, cluster.result or 0.0)
            out.append((cluster.request, result, first))
        return out

    def follow_up(self, request: ProbeRequest, result_bps: float, now: float) -> None:
        """Probe again, higher, after a result close to its cluster's rate: the path may
        carry much more (exponential search). Only the latest cluster counts, so that
        concurrent clusters do not each start a search."""
        cfg = self._config
        if request.cluster != self._latest_id:
            return
        if result_bps < cfg.further_fraction * request.rate_bps:
            return
        rate = min(cfg.further_factor * result_bps, self._max_bps)
        if rate > request.rate_bps:
            self._enqueue(rate, now)

    def on_decrease(self, before_bps: float, after_bps: float, now: float) -> None:
        """Note a cut of the estimate; a large one arms the after-drop probe."""
        self._last_decrease = now
        if after_bps < self._config.drop_fraction * before_bps:
            prior = self._drop
            # several cuts in a row count as one drop from where they started
            if prior is not None and now - prior[1] <= self._config.drop_window:
                before_bps = max(before_bps, prior[0])
            self._drop = (before_bps, now)

    def on_estimate(self, *, target_bps: float, app_limited: bool, detector_normal: bool,
                    now: float, queue_delay: float | None = None,
                    at_target: bool = False) -> None:
        """After each estimate update: periodic, busy-sender and after-drop probes
        (``at_target``: the application sends about all the estimate allows)."""
        cfg = self._config
        self._app_limited = app_limited
        if not cfg.enabled or not self._started:
            return
        drop = self._drop
        if drop is not None and now - drop[1] > cfg.drop_window:
            self._drop = drop = None
        if self.busy:
            return
        if not app_limited:
            if not at_target:
                return  # idle: probing would only wake the connection
            # a sender at its estimate cannot show the path carries more; while the path
            # shows no queue, look now and then (the exponential follow-up does the rest)
            quiet_since = max(t for t in (self._last_probe, self._last_decrease, 0.0)
                              if t is not None)
            if (cfg.busy_interval > 0 and detector_normal and queue_delay is not None
                    and queue_delay <= cfg.busy_queue_max
                    and now - quiet_since >= cfg.busy_interval
                    and target_bps < self._max_bps):
                self.busy_probes += 1
                self._enqueue(cfg.periodic_factor * target_bps, now)
            return
        if drop is not None and detector_normal:
            self._drop = None
            rate = cfg.after_drop_fraction * drop[0]
            if rate > target_bps:
                self._enqueue(rate, now)
                return
        due = self._periodic_due()
        if due is not None and now >= due and target_bps < self._max_bps:
            self._enqueue(cfg.periodic_factor * target_bps, now)

    def _periodic_due(self) -> float | None:
        if not self._app_limited or self._last_probe is None:
            return None
        return self._last_probe + self._config.periodic_interval

    def expire(self, now: float) -> None:
        """Drop clusters whose feedback is overdue."""
        timeout = self._config.cluster_timeout
        # the same sum as in next_deadline, so a timer fired at that deadline expires it
        for cid in [c for c, cl in self._clusters.items() if cl.issued + timeout <= now]:
            self._forget(cid)

    def on_timer(self, now: float) -> None:
        """Timer: expire clusters; pending ones are now announced (the sender polls
        :meth:`request`), so the timer stops pointing at them."""
        self.expire(now)
        if self._pending:
            self._announced = True

    def next_deadline(self) -> float | None:
        """Earliest of: pending cluster not yet announced (due at once), cluster
        timeouts, the periodic probe."""
        times = [cl.issued + self._config.cluster_timeout for cl in self._clusters.values()]
        if self._pending and not self._announced and self._last_probe is not None:
            times.append(self._last_probe)
        if self._config.enabled and not self.busy:
            due = self._periodic_due()
            if due is not None:
                times.append(due)
        return min(times) if times else None
