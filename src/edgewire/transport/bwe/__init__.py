"""Bandwidth estimators: sans-I/O, fed with per-packet feedback (``transport.feedback``).

``create_estimator("delivery")`` gives the default (``DEFAULT_ESTIMATOR``), which follows
the delivered rate, steered by the queueing delay; ``"gcc"`` is a
Google-Congestion-Control-style estimator (draft-ietf-rmcat-gcc): a trendline overuse
detector driving AIMD, a loss-based controller, and bandwidth probing; ``"loss"`` is the
loss-based part alone (docs/BWE.md). All take time as ``now`` and report deadlines through
``get_timer()``.
"""

from edgewire.transport.bwe.base import (
    DEFAULT_ESTIMATOR,
    BandwidthEstimator,
    PacketResult,
    ProbeRequest,
    create_estimator,
    estimator_names,
    register_estimator,
)
from edgewire.transport.bwe.config import (
    AimdConfig,
    BweConfig,
    DeliveryConfig,
    DetectorConfig,
    LossConfig,
    ProbeConfig,
    TrendlineConfig,
    config_changes,
    config_with,
    parse_setting,
)
from edgewire.transport.bwe.delivery import DeliveryEstimator
from edgewire.transport.bwe.gcc import GccEstimator, LossBasedEstimator

__all__ = [
    "DEFAULT_ESTIMATOR",
    "AimdConfig",
    "BandwidthEstimator",
    "BweConfig",
    "DeliveryConfig",
    "DeliveryEstimator",
    "DetectorConfig",
    "GccEstimator",
    "LossBasedEstimator",
    "LossConfig",
    "PacketResult",
    "ProbeConfig",
    "ProbeRequest",
    "TrendlineConfig",
    "config_changes",
    "config_with",
    "create_estimator",
    "estimator_names",
    "parse_setting",
    "register_estimator",
]
