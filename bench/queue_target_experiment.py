"""Experiment, not part of the library: a queue-delay-target rate controller on the bench's
scenarios.

``python bench/queue_target_experiment.py [--qt 0.015] [--horizon 0.1] [--cap 1.1]
[--adaptive-cap A] [--up 0.25] [--only constant,step,Verizon,ATT,TMobile]``

The controller keeps a small standing queue instead of waiting for the trendline to call
overuse. After every feedback it takes the queueing delay q (smallest one-way delay of the
report above the smallest of the last 10-20 s) and the delivered rate d (last 0.2 s of
arrivals):

* q above the target ``qt``: rate = min(rate, d x max(1 - (q - qt) / horizon, 0.5)), so
  the excess queue drains within about ``horizon`` seconds;
* otherwise the rate grows by ``up`` x (qt - q) / qt per 50 ms, but never beyond
  ``cap`` x d (``--adaptive-cap A``: cap = 1 + A x (qt - q) / qt, a faster ramp while
  the queue is empty);
* no feedback for 0.15 s: rate x 0.7 every 50 ms (an outage: stop filling the queue).

The loss-based controller of ``gcc`` still bounds the target. The script registers this
estimator under the name "gcc" in its own process only, so netsim's sessions use it, and
prints one line per scenario with the figures ``edgewire bench bwe`` reports. Results of
its variants are in docs/BWE-HISTORY.md ("What the traces allow, and what was tried on them").
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edgewire.cli.bench_bwe import _row, _step_figures, _trace_dir, scenarios
from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import parse_scenario
from edgewire.transport.bwe.base import register_estimator
from edgewire.transport.bwe.common import FeedbackEstimator
from edgewire.transport.bwe.config import BweConfig

P: dict[str, float] = {}


class QueueTarget(FeedbackEstimator):
    """The experimental controller described in the module docstring."""

    def __init__(self, config: BweConfig) -> None:
        super().__init__(config)
        self._base_start: float | None = None
        self._base_min = self._base_prev = self._batch_min = math.inf
        self.queue_delay: float | None = None
        self._rate = config.start_bps
        self._next_decay: float | None = None
        self._last_update: float | None = None
        self._loss_prev = 0.0
        self.cuts = 0

    def _on_received(self, p: Any, arrival: float) -> None:
        self._batch_min = min(self._batch_min, arrival - p.send_time)

    def _update(self, now: float) -> None:
        self._next_decay = now + 0.15
        batch, self._batch_min = self._batch_min, math.inf
        if batch < math.inf:
            if self._base_start is None:
                self._base_start = now
            elif now - self._base_start >= 10.0:
                self._base_prev, self._base_min = self._base_min, math.inf
                self._base_start = now
            self._base_min = min(self._base_min, batch)
            self.queue_delay = max(0.0, batch - min(self._base_min, self._base_prev))
        q, qt = self.queue_delay, P["qt"]
        d = self._acked.recent_bps(0.2) or self._acked.rate_bps()
        dt = 0.05 if self._last_update is None else min(now - self._last_update, 0.2)
        self._last_update = now
        if q is not None and d is not None:
            if q > qt:
                new = min(self._rate, d * max(1 - (q - qt) / P["horizon"], 0.5))
                self.cuts += new < self._rate
                self._rate = new
            else:
                cap = P["cap"] if not P["adaptive_cap"] else 1 + P["adaptive_cap"] * (qt - q) / qt
                if self._rate < d * cap:
                    grown = self._rate * (1 + P["up"] * (qt - q) / qt * dt / 0.05)
                    self._rate = min(grown, d * cap)
        self._loss.update(now=now, rtt=self._rtt, limit_bps=None, cap_bps=self._rate)
        if self._loss.estimate_bps >= self._loss_prev:
            self._loss.raise_to(self._rate)
        self._loss_prev = self._loss.estimate_bps
        self._target = self._clamp(min(self._rate, self._loss.estimate_bps))

    def _on_timeout(self, now: float) -> None:
        pass  # the 0.15 s decay below has already acted

    def _on_timer(self, now: float) -> None:
        if self._next_decay is not None and now >= self._next_decay:
            self._rate = max(self._rate * 0.7, self._config.min_bps)
            self._target = self._clamp(min(self._rate, self._loss.estimate_bps))
            self._next_decay = now + 0.05

    def _next_deadline(self) -> float | None:
        return self._next_decay

    def state(self) -> dict[str, Any]:
        return {**self._common_state(), "estimator": "queue-target",
                "delay_based_bps": self._rate, "queue_delay": self.queue_delay,
                "delay_decreases": self.cuts, "loss_decreases": self._loss.decreases,
                "detector": None, "probes_sent": 0, "probes_succeeded": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qt", type=float, default=0.015)
    ap.add_argument("--horizon", type=float, default=0.1)
    ap.add_argument("--cap", type=float, default=1.1)
    ap.add_argument("--adaptive-cap", type=float, default=0.0)
    ap.add_argument("--up", type=float, default=0.25)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--only", default="constant,step,Verizon,ATT,TMobile")
    args = ap.parse_args()
    P.update(qt=args.qt, horizon=args.horizon, cap=args.cap,
             adaptive_cap=args.adaptive_cap, up=args.up)
    register_estimator("gcc", QueueTarget)
    names = args.only.split(",")
    for table in scenarios(args.seconds, _trace_dir()):
        if not any(n in table["name"] for n in names):
            continue
        result = run_scenario(parse_scenario(
            {**table, "seed": 1, "transport": {"cc": "edgewire"}}))
        row = _row(result)
        line = (f"{table['name']}: utilization {row['utilization']:.2f}, p95 queueing delay "
                f"{row['queue_delay_p95_ms']:.1f} ms, throughput {row['throughput_kbps']:.0f}"
                " kbit/s")
        if "step" in table["name"]:
            line += f", step {_step_figures(result, args.seconds * 1.0)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
