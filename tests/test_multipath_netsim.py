"""Multi-endpoint scenarios in netsim: the failover goal at fixed seeds, decisions applied
or rejected, scenario validation, single-endpoint runs untouched."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edgewire.netsim.multi import K_GOAL_GAP_P95_MS, media_gap_ms, seeded_failover, token_integrity
from edgewire.netsim.run import RunOptions, run_scenario
from edgewire.netsim.scenario import ScenarioError, load_scenario, parse_scenario

FAILOVER = Path(__file__).parent.parent / "scenarios" / "failover.toml"


def _data() -> dict[str, Any]:
    return tomllib.loads(FAILOVER.read_text())


def test_failover_goal_over_twenty_seeds() -> None:
    """Issue 7: after the edge goes dark, media flows on the cloud path within 300 ms at
    the 95th percentile over 20 seeded runs, and no token is lost, duplicated or
    reordered in either direction. The shipped scenario, cut 2 s after the outage (runs
    are deterministic per seed: everything up to then is the full run's)."""
    data = _data()
    data["duration_s"] = 12
    summary = seeded_failover(parse_scenario(data), list(range(1, 21)))
    assert summary["switches"] == 20
    for run in summary["runs"]:
        assert [s[1:] for s in run["switches"]] == [("edge", "cloud", "silence")]
        # the switch follows the outage (10 s) by about failover_after_s, never before it
        assert 10.0 < run["switches"][0][0] < 10.0 + 0.15 + 0.1
    assert summary["gap_ms"]["p95"] <= K_GOAL_GAP_P95_MS
    tokens = summary["tokens"]
    assert tokens["sent"] > 20 * 12 * 50
    assert (tokens["lost"], tokens["duplicated"], tokens["reordered"], tokens["foreign"]) \
        == (0, 0, 0, 0)
    assert summary["goal"]["met"]


def test_failover_run_json() -> None:
    data = _data()
    data["duration_s"] = 12
    r = run_scenario(parse_scenario(data), RunOptions(seed=3))
    assert set(r["paths"]) == {"edge", "cloud"}
    for row in r["paths"].values():
        assert set(row["links"]) == {"uplink", "downlink"}
        assert row["health"]["monitor"]["path"] in ("edge", "cloud")
    assert r["paths"]["edge"]["health"]["state"] == "failed"
    assert r["paths"]["cloud"]["health"]["state"] == "active"
    # the edge link dropped everything offered after 10 s; the cloud carried the rest
    assert r["paths"]["edge"]["links"]["downlink"]["packets_offered"] \
        > r["paths"]["edge"]["links"]["downlink"]["packets_delivered"]
    (switch,) = r["switches"]
    assert set(switch) >= {"at_s", "from", "to", "reason", "gap_ms"}
    assert switch["gap_ms"] == max(switch["gap_ms_by_direction"].values())
    # the server followed by itself or on the client's switch message
    assert r["multipath"]["server"]["active_at_end"] == "cloud"
    for direction in ("up", "down"):
        assert r["channels"][direction]["audio"]["delivered"] > 0.9 * 600
        t = r["tokens"][direction]
        assert t["delivered"] == t["sent"] > 0


def _decision_scenario() -> dict[str, Any]:
    data = _data()
    data["duration_s"] = 6
    data["events"] = [  # no outage: decisions only
        {"at_s": 2.0, "decision": {"action": "switch", "path": "cloud"}},
        {"at_s": 3.0, "decision": {"action": "switch", "path": "moon"}},
        {"at_s": 3.5, "decision": {"action": "teleport", "path": "edge"}},
        {"at_s": 4.0, "decision": {"action": "switch", "path": "cloud"}},
    ]
    return data


def test_decisions_move_channels_or_are_rejected() -> None:
    r = run_scenario(parse_scenario(_decision_scenario()), RunOptions(seed=2))
    outcomes = [d["outcome"] for d in r["decisions"]]
    assert [o["ok"] for o in outcomes] == [True, False, False, True]
    assert outcomes[0]["reason"] == "switched"
    assert "unknown path 'moon'" in outcomes[1]["reason"]
    assert "unknown action 'teleport'" in outcomes[2]["reason"]
    assert outcomes[3]["reason"] == "already active"
    assert [(s["from"], s["to"], s["reason"]) for s in r["switches"]] \
        == [("edge", "cloud", "decision")]
    # no outage: media continues through the switch with about one path-delay step
    assert r["switches"][0]["gap_ms"] < 100
    assert r["multipath"]["server"]["active_at_end"] == "cloud"
    for t in r["tokens"].values():
        assert (t["lost"], t["duplicated"], t["reordered"]) == (0, 0, 0)
        assert t["delivered"] == t["sent"]

    # the channels really moved: compare with the same run without the decisions
    base = _decision_scenario()
    base["events"] = []
    r0 = run_scenario(parse_scenario(base), RunOptions(seed=2))
    assert r0["switches"] == []
    cloud = r["paths"]["cloud"]["links"]["downlink"]["packets_delivered"]
    cloud0 = r0["paths"]["cloud"]["links"]["downlink"]["packets_delivered"]
    edge = r["paths"]["edge"]["links"]["downlink"]["packets_delivered"]
    edge0 = r0["paths"]["edge"]["links"]["downlink"]["packets_delivered"]
    assert cloud > cloud0 + 150  # 4 s of 50 frames/s of audio, and the tokens
    assert edge < edge0 - 150


def test_single_endpoint_json_has_no_multipath_keys() -> None:
    data = _data()
    for key in ("endpoints", "multipath"):
        del data[key]
    data["events"] = []
    data["duration_s"] = 2
    r = run_scenario(parse_scenario(data))
    assert not {"paths", "switches", "decisions", "tokens"} & set(r)
    assert set(r["links"]) == {"uplink", "downlink"}


@pytest.mark.parametrize(("change", "key", "reason"), [
    (lambda d: d["endpoints"].pop(), "endpoints", "at least two"),
    (lambda d: d["endpoints"][1].update(initial=True), "endpoints", "only one endpoint"),
    (lambda d: d["endpoints"][1].update(name="edge"), "endpoints[1].name", "unique"),
    (lambda d: d["events"][0].update(endpoint="moon"), "events[0].endpoint", "unknown"),
    (lambda d: d["events"][0].update(decision="switch"), "events[0].decision", "table"),
    (lambda d: d["endpoints"][0].update(speed=1), "endpoints[0].speed", "unknown key"),
    (lambda d: d["multipath"].update(failover_after_s=0), "multipath.failover_after_s",
     "(0, 60]"),
    (lambda d: d["events"][0].pop("link"), "events[0]", "changes nothing"),
])
def test_scenario_errors(change: Any, key: str, reason: str) -> None:
    data = copy.deepcopy(_data())
    change(data)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    assert info.value.key == key
    assert reason in info.value.reason


def test_endpoint_links_merge_over_defaults() -> None:
    s = load_scenario(FAILOVER)
    edge, cloud = s.endpoints
    assert (edge.name, edge.initial, cloud.initial) == ("edge", True, False)
    assert (edge.uplink.delay_ms, cloud.downlink.delay_ms) == (5.0, 35.0)
    assert edge.uplink.queue_ms == cloud.uplink.queue_ms == 100.0  # from [link]
    (ev,) = s.events
    assert (ev.endpoint, ev.uplink is not None and ev.uplink.down) == ("edge", True)
    assert ev.uplink is not None
    assert ev.uplink.delay_ms == 5.0  # merged with the endpoint's


def test_gap_and_integrity_helpers() -> None:
    times = [0.0, 0.02, 0.04, 0.3, 0.32]
    assert media_gap_ms(times, 0.2, end=0.33) == 260.0
    assert media_gap_ms(times, 0.2, end=1.0) == 680.0  # media stopped 0.68 s early
    assert media_gap_ms(times[:3], 0.2, end=1.0) == 960.0  # never resumed: open to the end
    assert media_gap_ms([], 0.2, end=1.0) is None
    a, b, c = ((1,), 0.0), ((2,), 0.1), ((3,), 0.2)
    assert token_integrity([a, b, c], [a, c, b, b]) == {
        "sent": 3, "delivered": 3, "lost": 0, "duplicated": 1, "reordered": 1, "foreign": 0}
    assert token_integrity([a, b, c], [a])["lost"] == 2
