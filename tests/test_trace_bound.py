"""bench/trace_bound.py: the replay of a trace against a late-knowing sender."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "trace_bound.py"
    spec = importlib.util.spec_from_file_location("trace_bound", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["trace_bound"] = mod
    spec.loader.exec_module(mod)
    return mod


tb = _load()


def _steady(ms: int, per_ms: int = 1) -> np.ndarray:
    return np.full(ms, per_ms, dtype=np.int64)


def test_a_sender_knowing_a_steady_link_fills_it_without_queue() -> None:
    util, p95 = tb.replay(_steady(4000), 1.0, 0.1, 0.05)
    assert util > 0.97  # only the first lag + window is lost
    assert p95 <= 1.0


def test_feedback_times_wait_for_the_uplink_and_stop_in_its_outage() -> None:
    up = _steady(3000)
    up[1000:2000] = 0  # the uplink is dark for a second
    known = tb.feedback_times(up, 3000, 25, 10)
    assert known[500] == pytest.approx(475, abs=25)  # a report every 25 ms, 10 ms late
    # nothing reported during the outage reaches the sender before it ends
    assert known[1500] == known[1009]
    assert known[1500] < 1000
    # after it, the queued reports arrive in order, one per opportunity
    assert known[2100] > known[1500]


def test_a_longer_hold_sends_more_into_an_uplink_outage() -> None:
    """With the downlink fine and the uplink dark for 1 s, a sender that stops after
    0.13 s of unconfirmed rate idles the downlink; a longer hold and blind sending use
    more of it, and none exceeds the capacity."""
    n = 4000
    down = _steady(n)
    up = _steady(n)
    up[1000:2000] = 0
    known = tb.feedback_times(up, n, 25, 25)
    known = np.where(known >= 0, np.maximum(known - 25, 0), -1)
    utils = [tb.replay_uplink(down, known, 0.9, 0.1, hold)[0] for hold in (0.13, 0.5, None)]
    assert utils[0] < utils[1] < utils[2] <= 1.0
    assert utils[0] < 0.8  # a second of 4 idle, near enough
