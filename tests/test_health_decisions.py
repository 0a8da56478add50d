"""Decisions from the placement decider: parsing (with hypothesis), validation, the
handler hand-off and the outcomes recorded for the next report."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewire.errors import RemoteProtocolError
from edgewire.health import Decision, DecisionApplier, parse_decision
from edgewire.health.decisions import MAX_DECISIONS, decisions_in, parse_body

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def test_switch_to_a_known_path() -> None:
    d = parse_decision({"action": "switch", "path": "cloud", "id": 7, "reason": "hard task"},
                       paths={"edge", "cloud"})
    assert d == Decision(action="switch", path="cloud", id="7", reason="hard task")


@pytest.mark.parametrize(("obj", "reason"), [
    ({"action": "teleport", "path": "cloud"}, "unknown action 'teleport'"),
    ({"action": "switch", "path": "mars"}, "unknown path 'mars'"),
    ({"action": "switch"}, "without a path"),
    ({"path": "cloud"}, "no action"),
    (["switch"], "must be an object"),
    ({"action": "switch", "path": 3.5}, "path must be a string"),
    ({"action": "switch", "path": "x" * 300}, "1..256 characters"),
])
def test_bad_decisions_are_rejected_with_a_reason(obj: Any, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason):
        parse_decision(obj, paths={"edge", "cloud", "x" * 300})


@given(JSON)
def test_parse_decision_accepts_or_rejects_anything(obj: Any) -> None:
    try:
        d = parse_decision(obj, paths={"edge"})
    except RemoteProtocolError:
        return
    assert d.action in ("switch", "stay")
    assert d.action != "switch" or d.path == "edge"


@given(st.binary(max_size=200) | JSON.map(lambda o: json.dumps(o).encode()))
def test_parse_body_never_raises_anything_else(data: bytes) -> None:
    try:
        items = parse_body(data)
    except RemoteProtocolError:
        return
    assert isinstance(items, list)


@given(JSON)
def test_applier_turns_any_answer_into_outcomes(body: Any) -> None:
    recorded: list[dict[str, Any]] = []
    applier = DecisionApplier(handler=lambda d: {"switched_to": d.path},
                              paths={"edge", "cloud"}, record=recorded.append)
    outcomes = applier.apply(body)
    assert outcomes == recorded
    for o in outcomes:
        assert o["status"] in ("applied", "rejected")
        assert o["status"] == "applied" or o["reason"]
        json.dumps(o)


def test_body_shapes() -> None:
    one = {"action": "stay"}
    assert decisions_in(None) == []
    assert decisions_in({}) == []
    assert decisions_in([]) == []
    assert decisions_in(one) == [one]
    assert decisions_in([one, one]) == [one, one]
    assert decisions_in({"decisions": [one]}) == [one]
    assert decisions_in({"ok": True}) == []
    with pytest.raises(RemoteProtocolError):
        decisions_in({"decisions": "switch"})
    with pytest.raises(RemoteProtocolError):
        decisions_in("switch")
    assert parse_body(b"  ") == []
    with pytest.raises(RemoteProtocolError, match="not JSON"):
        parse_body(b"<html>oops</html>")


def test_valid_decisions_reach_the_handler_and_outcomes_are_recorded() -> None:
    seen: list[Decision] = []
    recorded: list[dict[str, Any]] = []

    def handler(d: Decision) -> dict[str, Any]:
        seen.append(d)
        return {"status": "applied", "took_ms": 12}

    applier = DecisionApplier(handler=handler, paths=lambda: ["edge", "cloud"],
                              record=recorded.append)
    out = applier.apply({"decisions": [{"action": "switch", "path": "cloud", "id": "a"},
                                       {"action": "switch", "path": "moon", "id": "b"},
                                       {"action": "dance", "id": "c"}]})
    assert [d.path for d in seen] == ["cloud"]
    assert [(o["id"], o["status"]) for o in out] == [("a", "applied"), ("b", "rejected"),
                                                     ("c", "rejected")]
    assert out[0]["detail"] == {"took_ms": 12}
    assert "unknown path 'moon'" in out[1]["reason"]
    assert "unknown action 'dance'" in out[2]["reason"]
    assert recorded == out
    assert (applier.applied, applier.rejected, applier.failed) == (1, 2, 0)


def test_handler_failures_and_missing_handler() -> None:
    def broken(d: Decision) -> dict[str, Any]:
        raise RuntimeError("path cloud is unreachable")

    out = DecisionApplier(handler=broken, paths={"cloud"}).apply(
        {"action": "switch", "path": "cloud"})
    assert out[0]["status"] == "failed"
    assert "unreachable" in out[0]["reason"]
    refused = DecisionApplier(handler=lambda d: {"status": "rejected", "reason": "busy"},
                              paths={"cloud"}).apply({"action": "switch", "path": "cloud"})
    assert refused[0]["status"] == "rejected"
    assert refused[0]["reason"] == "busy"
    none = DecisionApplier(paths={"cloud"}).apply({"action": "switch", "path": "cloud"})
    assert none[0]["status"] == "rejected"
    assert "no handler" in none[0]["reason"]
    stay = DecisionApplier().apply({"action": "stay"})
    assert stay[0]["status"] == "applied"


def test_too_many_decisions_in_one_answer() -> None:
    out = DecisionApplier().apply([{"action": "stay"}] * (MAX_DECISIONS + 5))
    assert len(out) == MAX_DECISIONS + 1
    assert out[-1]["status"] == "rejected"
    assert "5 ignored" in out[-1]["reason"]


def test_garbage_body_becomes_one_rejection() -> None:
    recorded: list[dict[str, Any]] = []
    out = DecisionApplier(record=recorded.append).apply_body(b"\xff\xfe garbage")
    assert len(out) == 1
    assert out[0]["status"] == "rejected"
    assert recorded == out
