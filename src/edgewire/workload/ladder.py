"""The video ladder: which bitrate, resolution and frame rate a video sender uses for the
share of the bandwidth estimate its channel is given (``BitrateChanged``).

Below about 250 kbit/s a lower frame rate keeps each frame legible; above it the frame
rate stays and the resolution grows with the bitrate. The resolution is a label here (the
synthetic source makes frames of the right size); the PyAV encoders of the codecs layer
scale to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgewire.errors import LocalProtocolError
from edgewire.workload.sources import VideoSource

__all__ = ["DEFAULT_LADDER", "K_AUDIO_ENCODER_SHARE", "Rung", "VideoLadder"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rung:
    """One step of the ladder, used from ``min_bps`` up."""

    min_bps: float
    """Lowest share this rung is used for, bits per second."""
    width: int
    """Frame width, pixels."""
    height: int
    """Frame height, pixels."""
    fps: float
    """Frame rate."""

    @property
    def label(self) -> str:
        """E.g. "640x360@30"."""
        return f"{self.width}x{self.height}@{self.fps:g}"


#: Rungs from the highest down.
DEFAULT_LADDER = (
    Rung(min_bps=2_500_000, width=1280, height=720, fps=30),
    Rung(min_bps=1_200_000, width=960, height=540, fps=30),
    Rung(min_bps=600_000, width=640, height=360, fps=30),
    Rung(min_bps=250_000, width=480, height=270, fps=15),
    Rung(min_bps=0, width=320, height=180, fps=10),
)
#: Share of the channel's allotment the encoder targets: the rest covers datagram
#: headers, FEC parity and the size variation of frames.
K_ENCODER_SHARE = 0.85
#: Share of an audio channel's allotment an Opus source targets (the rest covers packet
#: headers and FEC parity).
K_AUDIO_ENCODER_SHARE = 0.8
#: Lowest bitrate the encoder is set to, bits per second.
K_MIN_BITRATE = 50_000.0


class VideoLadder:
    """Applies a channel share to a :class:`VideoSource`: bitrate (at most the source's
    configured maximum) and the rung's frame rate."""

    def __init__(self, max_bps: float, rungs: tuple[Rung, ...] = DEFAULT_LADDER) -> None:
        if not rungs or sorted(rungs, key=lambda r: -r.min_bps) != list(rungs):
            raise LocalProtocolError("ladder rungs must be given from the highest min_bps down")
        if rungs[-1].min_bps != 0:
            raise LocalProtocolError("the last rung must start at 0 bit/s")
        self.max_bps = max_bps
        self.rungs = rungs
        self.rung = self.rung_for(max_bps)
        """The rung in use."""
        self.changes = 0
        """Bitrate changes applied."""

    def rung_for(self, bitrate_bps: float) -> Rung:
        """The rung a bitrate falls in."""
        return next(r for r in self.rungs if bitrate_bps >= r.min_bps)

    def apply(self, source: VideoSource, share_bps: float) -> Rung:
        """Set the source's bitrate and frame rate for a share of ``share_bps``."""
        bitrate = min(self.max_bps, max(K_MIN_BITRATE, share_bps * K_ENCODER_SHARE))
        rung = self.rung_for(bitrate)
        if rung.fps != source.fps:
            source.set_frame_rate(rung.fps)
        if rung != self.rung or self.changes == 0:
            source.set_resolution(rung.width, rung.height)
        source.set_bitrate(bitrate)
        self.rung = rung
        self.changes += 1
        return rung
