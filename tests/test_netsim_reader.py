"""A receiving process that falls behind, in virtual time: the link's reader model drops
what its socket buffer cannot hold, the receiving session is told the count as a socket
would tell it, and the sender's estimator backs off (docs/BWE.md, "A receiver that falls
behind")."""

from __future__ import annotations

from typing import Any

import pytest

from edgewire.cli.bench_bwe import _bulk_down
from edgewire.netsim.run import run_scenario
from edgewire.netsim.scenario import ScenarioError, parse_scenario
from edgewire.transport.bwe.common import FeedbackEstimator


def _run(reader: dict[str, Any], bwe: dict[str, Any] | None = None) -> dict[str, Any]:
    down = {"delay_ms": 10, "rate_kbps": 100_000, "queue_packets": 1000, **reader}
    table: dict[str, Any] = {
        "name": "slow-reader", "duration_s": 6, "seed": 1, "uplink": {"delay_ms": 10},
        "downlink": down, "traffic": {"down": _bulk_down()}}
    if bwe:
        table["transport"] = {"bwe": bwe}
    return run_scenario(parse_scenario(table))


# a reader that takes 256 KiB at once and then works for 50 ms, behind Linux's default
# 208 KiB socket buffer: it can take 42 Mbit/s, but drops above about 34
STALLING = {"read_stall_ms": 50, "read_stall_bytes": 262_144, "read_buffer_bytes": 212_992}


def test_the_receivers_drops_reach_the_sender_and_hold_it_near_what_is_read() -> None:
    res = _run(STALLING)
    link = res["links"]["downlink"]
    drops = link["dropped_by_reader"]
    assert drops > 0
    assert link["loss_rate"] == 0.0  # the path lost nothing
    # the sender (the server, for the downlink) was told of every drop (each report
    # carries up to 127) and backed off
    sender = res["bwe"]["directions"]["downlink"]["state"]
    assert sender["receiver_drops"] == drops
    assert sender["receiver_backoffs"] >= 1
    assert drops / link["packets_offered"] < 0.01


def test_without_the_report_the_same_reader_loses_far_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    told = _run(STALLING)["links"]["downlink"]
    monkeypatch.setattr(FeedbackEstimator, "on_receiver_drops",
                        lambda self, dropped, *, now: None)
    deaf = _run(STALLING)["links"]["downlink"]
    told_rate = told["dropped_by_reader"] / told["packets_offered"]
    deaf_rate = deaf["dropped_by_reader"] / deaf["packets_offered"]
    assert deaf_rate > 10 * told_rate


def test_a_reader_at_a_steady_rate_shows_as_delay_and_drops_nothing() -> None:
    res = _run({"read_kbps": 30_000})
    link = res["links"]["downlink"]
    assert link["dropped_by_reader"] == 0
    assert link["throughput_kbps"] > 0.9 * 30_000


def test_reader_keys_are_parsed_and_checked() -> None:
    base = {"name": "r", "duration_s": 1, "link": {"delay_ms": 5}}
    sc = parse_scenario({**base, "downlink": {"read_kbps": 1000, "read_stall_ms": 2,
                                              "read_stall_bytes": 4096,
                                              "read_buffer_bytes": 65536}})
    cfg = sc.downlink
    assert (cfg.read_kbps, cfg.read_stall_ms, cfg.read_stall_bytes,
            cfg.read_buffer_bytes) == (1000.0, 2.0, 4096, 65536)
    assert cfg.has_reader
    assert not sc.uplink.has_reader
    with pytest.raises(ScenarioError, match="read_buffer_bytes"):
        parse_scenario({**base, "downlink": {"read_kbps": 1000, "read_buffer_bytes": 10}})
    with pytest.raises(ScenarioError, match="read_kbps"):
        parse_scenario({**base, "downlink": {"read_kbps": "fast"}})
