"""The idealised reactive sender of ``edgewire.netsim.bound`` and ``edgewire bench bound``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from edgewire.cli.main import main
from edgewire.netsim.bound import reactive_bound, run_policies
from edgewire.netsim.trace import CapacityTrace

QUEUE_BYTES = 100 * 1200.0


def _constant(per_ms: int = 1) -> CapacityTrace:
    """``per_ms`` opportunities of 1500 bytes every millisecond (12 Mbit/s each)."""
    return CapacityTrace(name="constant", times_ms=tuple([1] * per_ms), period_ms=1)


def _square(high_ms: int = 100, low_ms: int = 100) -> CapacityTrace:
    """Ten opportunities a ms for ``high_ms``, then one every 5 ms for ``low_ms``."""
    times: list[int] = []
    for t in range(1, high_ms + 1):
        times += [t] * 10
    times += list(range(high_ms + 5, high_ms + low_ms + 1, 5))
    return CapacityTrace(name="square", times_ms=tuple(times), period_ms=high_ms + low_ms)


def _policy(capacity: np.ndarray, gain: float, *, knowledge: str = "capacity",
            lag_ms: int = 50, drain_ms: float = 100.0) -> tuple[float, float, float]:
    u, p95, p50 = run_policies(capacity, gains=np.array([gain]), spans_ms=np.array([20]),
                               drains_ms=np.array([drain_ms]), lag_ms=lag_ms,
                               knowledge=knowledge,  # type: ignore[arg-type]
                               queue_bytes=QUEUE_BYTES)
    return float(u[0]), float(p95[0]), float(p50[0])


def test_a_sender_far_above_the_capacity_keeps_the_queue_full() -> None:
    # 12 Mbit/s, a queue of 120,000 bytes: a full queue holds 80 ms
    capacity = np.full(10_000, 1500.0)
    util, p95, p50 = _policy(capacity, 10.0, drain_ms=1e9)
    assert util > 0.97
    assert 78 <= p95 <= 81
    assert 75 <= p50 <= 81


def test_a_sender_at_half_the_capacity_builds_no_queue() -> None:
    capacity = np.full(10_000, 1500.0)
    util, p95, _ = _policy(capacity, 0.5)
    assert 0.45 <= util <= 0.51
    assert p95 <= 1


def test_a_sender_that_knows_the_delivered_bytes_finds_a_constant_capacity() -> None:
    bound = reactive_bound(_constant(), seconds=30, knowledge="delivered")
    best = bound.best_within(60)
    assert best is not None
    # startup doubles from 300 kbit/s to 12 Mbit/s in about half a second of thirty, and
    # a gain above 1 then holds a standing queue, so the link never idles
    assert best.utilization > 0.96
    assert best.queue_delay_p50_ms > 0


def _blocks(seed: int = 7, seconds: int = 20) -> CapacityTrace:
    """0-3 opportunities a ms, drawn afresh every 50 ms (not periodic within the run)."""
    rng = np.random.default_rng(seed)
    times: list[int] = []
    for block in range(seconds * 20):
        k = int(rng.integers(0, 4))
        for t in range(block * 50 + 1, block * 50 + 51):
            times += [t] * k
    return CapacityTrace(name="blocks", times_ms=tuple(times), period_ms=seconds * 1000)


def test_more_lag_costs_utilization_on_a_fluctuating_capacity() -> None:
    trace = _blocks()
    utils = []
    for lag in (0.0, 0.075, 0.3):
        best = reactive_bound(trace, seconds=20, lag=lag, knowledge="delivered").best_within(100)
        assert best is not None
        utils.append(best.utilization)
    assert utils[0] > utils[1] + 0.05 > utils[2] + 0.1


def test_the_frontier_rises_with_the_delay() -> None:
    bound = reactive_bound(_square(), seconds=10, knowledge="delivered")
    front = bound.frontier()
    assert len(front) >= 2
    for a, b in itertools.pairwise(front):
        assert a.queue_delay_p95_ms <= b.queue_delay_p95_ms
        assert a.utilization < b.utilization
    # nothing in the sweep beats a frontier point in both respects
    for p in bound.points:
        for f in front:
            assert not (p.utilization > f.utilization
                        and p.queue_delay_p95_ms < f.queue_delay_p95_ms)
    assert bound.best_within(-1) is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"seconds": 0}, "seconds"),
    ({"seconds": float("nan")}, "seconds"),
    ({"lag": -0.01}, "lag"),
    ({"knowledge": "future"}, "knowledge"),
    ({"queue_packets": 0}, "queue_packets"),
])
def test_bad_parameters_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reactive_bound(_constant(), **kwargs)  # type: ignore[arg-type]


def test_policy_arrays_must_match() -> None:
    with pytest.raises(ValueError, match="equally long"):
        run_policies(np.ones(10), gains=np.array([1.0, 2.0]), spans_ms=np.array([20]),
                     drains_ms=np.array([100.0]), lag_ms=5, knowledge="capacity",
                     queue_bytes=1000.0)


def _write_square(folder: Path) -> None:
    trace = _square()
    (folder / "sq.down").write_text("\n".join(map(str, trace.times_ms)) + "\n")


def test_cli_json_with_measured_points_and_chart(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _write_square(tmp_path)
    measured = tmp_path / "bwe.json"
    measured.write_text(json.dumps({"scenarios": {"trace-sq": {"schemes": {
        "edgewire": {"utilization": 0.5, "queue_delay_p95_ms": 40.0}}}}}))
    rc = main(["bench", "bound", "--traces", str(tmp_path), "--names", "sq",
               "--seconds", "5", "--measured", str(measured), "--plot", str(tmp_path),
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    entry = out["traces"]["sq"]
    assert set(entry) == {"delivered", "capacity", "measured"}
    assert entry["measured"]["edgewire"] == {"utilization": 0.5, "queue_delay_p95_ms": 40.0}
    assert entry["delivered"]["lag_ms"] == 75.0
    assert (tmp_path / "bound.png").stat().st_size > 10_000


def test_cli_text_names_the_best_law(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _write_square(tmp_path)
    assert main(["bench", "bound", "--traces", str(tmp_path), "--names", "sq",
                 "--seconds", "5"]) == 0
    text = capsys.readouterr().out
    assert "sq" in text
    assert "knows delivered" in text
    assert "knows capacity" in text


@pytest.mark.parametrize(("extra", "message"), [
    (["--names", "missing"], "not found"),
    (["--names", ","], "names no trace"),
    (["--names", "sq", "--seconds", "-1"], "seconds"),
    (["--names", "sq", "--measured", "/nonexistent.json"], "--measured"),
])
def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              extra: list[str], message: str) -> None:
    _write_square(tmp_path)
    assert main(["bench", "bound", "--traces", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().out
