"""Sans-I/O traffic generators and receivers shared by the demo, netsim and the benchmarks."""

from edgewire.workload.sinks import ChannelRecorder
from edgewire.workload.sources import (
    AudioSource,
    AudioSourceConfig,
    EmbeddingSource,
    EmbeddingSourceConfig,
    Frame,
    Payload,
    Source,
    TokenSource,
    TokenSourceConfig,
    VideoSource,
    VideoSourceConfig,
    WorkloadMix,
    build_sources,
    payload_size,
)

__all__ = [
    "AudioSource",
    "AudioSourceConfig",
    "ChannelRecorder",
    "EmbeddingSource",
    "EmbeddingSourceConfig",
    "Frame",
    "Payload",
    "Source",
    "TokenSource",
    "TokenSourceConfig",
    "VideoSource",
    "VideoSourceConfig",
    "WorkloadMix",
    "build_sources",
    "payload_size",
]
