"""The edgewire.health/1 report: JSON and CBOR round trips, decoding of hostile input
(hypothesis), and the shipped JSON Schema agreeing with the light run-time check."""

from __future__ import annotations

import copy
import json
from typing import Any

import cbor2
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.health import SCHEMA, check_report, decode_report, encode_report, load_schema

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def sample() -> dict[str, Any]:
    return {"schema": SCHEMA, "ts": 1_700_000_000.5, "seq": 3, "session": "s", "path": "edge",
            "reasons": ["periodic"], "tier": "good", "score": 77.5,
            "rtt_ms": {"min": 20.0, "smoothed": 25.1, "p95": 40.2}, "jitter_ms": 1.5,
            "loss": {"rate": 0.01, "residual_rate": None, "burst_mean": 1.2, "packets": 500},
            "bandwidth": {"estimate_kbps": 3000.0, "goodput_kbps": 2500.0},
            "queue_delay_ms": 3.0, "channels": {"audio#0": {
                "kind": "audio", "direction": "out", "on_time_ratio": 1.0}},
            "device": {"cpu_percent": 12.0, "memory_percent": 40.0,
                       "battery_percent": None, "on_battery": None},
            "decisions": []}


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_round_trip(fmt: str) -> None:
    r = sample()
    VALIDATOR.validate(r)
    assert decode_report(encode_report(r, fmt), fmt) == r


def test_unknown_format() -> None:
    with pytest.raises(LocalProtocolError):
        encode_report(sample(), "xml")
    with pytest.raises(LocalProtocolError):
        decode_report(b"{}", "xml")


MUTATIONS = [
    ("schema", "edgewire.health/2"), ("tier", "meh"), ("score", 101), ("score", "high"),
    ("session", ""), ("ts", None), ("jitter_ms", -1.0), ("rtt_ms", []),
    ("channels", None), ("device", "laptop"), ("queue_delay_ms", True),
]


@pytest.mark.parametrize(("key", "value"), MUTATIONS)
def test_check_and_schema_both_reject(key: str, value: Any) -> None:
    r = sample()
    r[key] = value
    with pytest.raises(RemoteProtocolError):
        check_report(r)
    assert not VALIDATOR.is_valid(r)


@pytest.mark.parametrize("key", ["schema", "ts", "session", "path", "tier", "score",
                                 "rtt_ms", "jitter_ms", "loss", "bandwidth",
                                 "queue_delay_ms", "channels", "device"])
def test_required_keys(key: str) -> None:
    r = sample()
    del r[key]
    with pytest.raises(RemoteProtocolError):
        check_report(r)
    assert not VALIDATOR.is_valid(r)


def test_nested_keys_and_ranges() -> None:
    r = sample()
    r["loss"]["rate"] = 1.5
    with pytest.raises(RemoteProtocolError, match=r"loss\.rate"):
        check_report(r)
    r = sample()
    del r["bandwidth"]["goodput_kbps"]
    with pytest.raises(RemoteProtocolError, match=r"bandwidth\.goodput_kbps"):
        check_report(r)


def test_too_large() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_report(b" " * (2 << 20))


@given(st.binary(max_size=300), st.sampled_from(["json", "cbor"]))
def test_decode_never_raises_anything_else(data: bytes, fmt: str) -> None:
    try:
        r = decode_report(data, fmt)
    except RemoteProtocolError:
        return
    assert r["schema"] == SCHEMA


@given(st.sampled_from(["json", "cbor"]), st.data())
def test_decode_of_mutated_reports(fmt: str, data: st.DataObject) -> None:
    r = copy.deepcopy(sample())
    key = data.draw(st.sampled_from(sorted(r)))
    r[key] = data.draw(st.none() | st.integers() | st.text(max_size=5)
                       | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2))
    raw = json.dumps(r).encode() if fmt == "json" else cbor2.dumps(r)
    try:
        out = decode_report(raw, fmt)
    except RemoteProtocolError:
        return
    assert out == r
