"""The ``edgewire.health/1`` report: encoding (JSON, CBOR), decoding and validation.

The JSON Schema (``health.schema.json``, shipped with the package) is the reference;
:func:`check_report` checks what a consumer relies on without needing ``jsonschema``
at run time (the tests validate every emitted report against the schema itself).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import cbor2

from edgewire.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["MAX_REPORT_BYTES", "SCHEMA", "check_report", "decode_report", "encode_report",
           "load_schema"]

#: The schema name every report carries.
SCHEMA = "edgewire.health/1"
#: Largest encoded report accepted (a report is a few kilobytes; this bounds a listener).
MAX_REPORT_BYTES = 1 << 20
_TIERS = frozenset({"excellent", "good", "fair", "poor", "down"})
_NESTED = {"rtt_ms": ("min", "smoothed", "p95"),
           "loss": ("rate", "residual_rate", "burst_mean"),
           "bandwidth": ("estimate_kbps", "goodput_kbps")}


def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``edgewire.health/1`` reports."""
    text = resources.files("edgewire.health").joinpath("health.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def encode_report(report: dict[str, Any], fmt: str = "json") -> bytes:
    """A report as UTF-8 JSON (``fmt="json"``) or CBOR (``fmt="cbor"``)."""
    if fmt == "json":
        # NaN and infinities are not JSON; the monitor never emits them
        return json.dumps(report, separators=(",", ":"), allow_nan=False).encode()
    if fmt == "cbor":
        return bytes(cbor2.dumps(report))
    raise LocalProtocolError(f"unknown report format {fmt!r} (json or cbor)")


def _number(value: Any, where: str, *, nullable: bool = True, low: float = 0.0,
            high: float = math.inf) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RemoteProtocolError(f"health report: {where} must be a number, not "
                                  f"{type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise RemoteProtocolError(f"health report: {where}={value!r} out of range")


def check_report(obj: Any) -> dict[str, Any]:
    """``obj`` if it is a well-formed ``edgewire.health/1`` report (the keys a consumer
    relies on, with the right types and ranges); :class:`RemoteProtocolError` otherwise."""
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"health report must be an object, not {type(obj).__name__}")
    if obj.get("schema") != SCHEMA:
        raise RemoteProtocolError(f"health report schema {obj.get('schema')!r} is not {SCHEMA}")
    for key in ("session", "path"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise RemoteProtocolError(f"health report: {key} must be a non-empty string")
    tier = obj.get("tier")
    if not isinstance(tier, str) or tier not in _TIERS:
        raise RemoteProtocolError(f"health report: unknown tier {tier!r}")
    _number(obj.get("ts"), "ts", nullable=False, low=-math.inf)
    _number(obj.get("score"), "score", nullable=False, high=100.0)
    for key in ("jitter_ms", "queue_delay_ms"):
        if key not in obj:
            raise RemoteProtocolError(f"health report: missing {key}")
        _number(obj[key], key)
    for key, fields in _NESTED.items():
        table = obj.get(key)
        if not isinstance(table, dict):
            raise RemoteProtocolError(f"health report: {key} must be an object")
        for name in fields:
            if name not in table:
                raise RemoteProtocolError(f"health report: missing {key}.{name}")
            high = 1.0 if key == "loss" and name != "burst_mean" else math.inf
            _number(table[name], f"{key}.{name}", high=high)
    for key in ("channels", "device"):
        if not isinstance(obj.get(key), dict):
            raise RemoteProtocolError(f"health report: {key} must be an object")
    return obj


def decode_report(data: bytes, fmt: str = "json") -> dict[str, Any]:
    """Decode and check one encoded report; :class:`RemoteProtocolError` for anything
    malformed, too large or not an ``edgewire.health/1`` report."""
    if len(data) > MAX_REPORT_BYTES:
        raise RemoteProtocolError(f"health report of {len(data)} bytes exceeds "
                                  f"{MAX_REPORT_BYTES}")
    try:
        if fmt == "json":
            obj = json.loads(data)
        elif fmt == "cbor":
            obj = cbor2.loads(data)
        else:
            raise LocalProtocolError(f"unknown report format {fmt!r} (json or cbor)")
    except LocalProtocolError:
        raise
    except (ValueError, TypeError, RecursionError, OverflowError, cbor2.CBORDecodeError,
            UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"health report is not valid {fmt}: {exc}") from None
    except Exception as exc:  # cbor2 raises assorted types for hostile input
        raise RemoteProtocolError(f"health report is not valid {fmt}: {exc}") from None
    return check_report(obj)
