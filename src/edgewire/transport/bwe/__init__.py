"""Bandwidth estimators: sans-I/O, fed with per-packet feedback (``transport.feedback``).

``create_estimator("gcc")`` gives the default, a Google-Congestion-Control-style estimator
(draft-ietf-rmcat-gcc): a trendline overuse detector driving AIMD, a loss-based controller,
and bandwidth probing; ``"loss"`` is the loss-based part alone; ``"delivery"`` follows the
delivered rate, steered by the queueing delay (docs/BWE.md). All take time as ``now`` and
report deadlines through ``get_timer()``.
"""

from edgewire.transport.bwe.base import (
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
)
from edgewire.transport.bwe.delivery import DeliveryEstimator
from edgewire.transport.bwe.gcc import GccEstimator, LossBasedEstimator

__all__ = [
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
    "create_estimator",
    "estimator_names",
    "register_estimator",
]
