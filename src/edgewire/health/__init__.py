"""Link health: the monitor, the ``edgewire.health/1`` report, decisions from a
placement decider (docs/HEALTH.md). The asyncio sinks live in :mod:`edgewire.aio.health`."""

from edgewire.health.decisions import ACTIONS, Decision, DecisionApplier, parse_decision
from edgewire.health.device import DeviceProbe, PsutilDevice, StaticDevice
from edgewire.health.monitor import TIERS, HealthConfig, HealthMonitor, score_of, tier_of
from edgewire.health.report import SCHEMA, check_report, decode_report, encode_report, load_schema

__all__ = [
    "ACTIONS",
    "SCHEMA",
    "TIERS",
    "Decision",
    "DecisionApplier",
    "DeviceProbe",
    "HealthConfig",
    "HealthMonitor",
    "PsutilDevice",
    "StaticDevice",
    "check_report",
    "decode_report",
    "encode_report",
    "load_schema",
    "parse_decision",
    "score_of",
    "tier_of",
]
