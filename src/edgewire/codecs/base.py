"""One Encoder/Decoder interface for every payload codec, and the registry that names them.

An encoder turns what an application produces (PCM audio, video frames, LLM tokens,
embedding vectors) into packets for one channel; the matching decoder turns the packets
the channel delivers back into the application's items. Codecs are sans-I/O: they never
touch a socket or a clock; timestamps are passed in and carried through.

Codecs are looked up by name (``create_encoder("opus", bitrate_bps=24_000)``). A codec
whose library is missing (Opus, H.264 and VP8 need PyAV, the ``media`` extra) is still
registered, and creating it raises :class:`CodecUnavailableError` naming the extra.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edgewire.errors import EdgewireError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "CodecError",
    "CodecInfo",
    "CodecKind",
    "CodecUnavailableError",
    "Decoder",
    "EncodedPacket",
    "Encoder",
    "available_codecs",
    "codec_info",
    "create_decoder",
    "create_encoder",
    "ffmpeg_has",
    "media_available",
    "register_codec",
    "require_media",
]


CodecKind = Literal["audio", "video", "tokens", "embeddings"]
"""The channel kind a codec's packets are for (the values of ``ChannelKind``; codecs do
not import the transport, which imports them)."""
KINDS: tuple[CodecKind, ...] = ("audio", "video", "tokens", "embeddings")


class CodecError(RemoteProtocolError):
    """A packet or envelope could not be decoded (corrupt, truncated, wrong dtype or size).

    Decoders raise it for bad input from a peer or a file; callers count and drop."""


class CodecUnavailableError(EdgewireError):
    """The codec exists but the library it needs is not installed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedPacket:
    """One packet an encoder produced, ready for ``Session.send`` on its channel."""

    data: bytes
    """The encoded bytes."""
    timestamp: float
    """Capture time of the item it encodes (seconds, the caller's clock)."""
    keyframe: bool = False
    """Video: decodable without earlier packets. Always True for audio and data codecs."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Codec-specific details (frame size, precision chosen, ...), never sent."""


class Encoder(ABC):
    """Encodes items of one kind into packets."""

    name: str = ""
    """Registry name, set by :func:`register_codec`."""
    kind: CodecKind = "audio"
    """Channel kind the packets are for, set by :func:`register_codec`."""

    @abstractmethod
    def encode(self, item: Any, *, timestamp: float) -> list[EncodedPacket]:
        """Encode one item (may return no packet while the codec buffers, or several)."""

    def flush(self) -> list[EncodedPacket]:
        """Packets still buffered inside the codec (end of stream)."""
        return []

    def set_target_bitrate(self, bitrate_bps: float) -> None:
        """Follow a new target (``BitrateChanged``); codecs without a rate ignore it."""
        if not bitrate_bps > 0:
            raise LocalProtocolError(f"target bitrate must be positive, got {bitrate_bps!r}")

    def request_keyframe(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Make the next packet decodable on its own (video); a no-op elsewhere."""

    def stats(self) -> dict[str, Any]:
        """Counters (items, packets, bytes), JSON-ready."""
        return {}


class Decoder(ABC):
    """Decodes packets of one codec back into items."""

    name: str = ""
    kind: CodecKind = "audio"

    @abstractmethod
    def decode(self, data: bytes | None, *, timestamp: float) -> list[Any]:
        """Decode one packet; ``data=None`` reports a lost packet (audio conceals it).

        Raises :class:`CodecError` for a packet that cannot be decoded; the decoder stays
        usable for the next one."""

    @property
    def needs_keyframe(self) -> bool:
        """True when the decoder cannot continue without a keyframe (video)."""
        return False

    def stats(self) -> dict[str, Any]:
        """Counters (packets, items, errors, concealed), JSON-ready."""
        return {}


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What the registry knows about one codec."""

    name: str
    kind: CodecKind
    encoder: Callable[..., Encoder]
    decoder: Callable[..., Decoder]
    requires: str | None = None
    """Extra that provides the codec's library (``"media"``), None when always present."""
    available: Callable[[], bool] = lambda: True
    """Whether the library is importable here."""
    description: str = ""


def media_available() -> bool:
    """True when PyAV (the ``media`` extra) can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def ffmpeg_has(name: str) -> bool:
    """True when PyAV's FFmpeg has the codec ``name`` (PyAV must be importable)."""
    import av

    return name in av.codecs_available


def require_media(codec: str) -> None:
    """Raise CodecUnavailableError unless PyAV and its FFmpeg codec ``codec`` exist."""
    if not media_available():
        raise CodecUnavailableError(
            f"codec {codec!r} needs PyAV: pip install 'edgewire[media]'")
    if not ffmpeg_has(codec):
        raise CodecUnavailableError(f"this PyAV's FFmpeg has no {codec!r} codec")


_REGISTRY: dict[str, CodecInfo] = {}


def register_codec(info: CodecInfo) -> None:
    """Add a codec; names are unique (lower case)."""
    name = info.name.lower()
    if name in _REGISTRY:
        raise LocalProtocolError(f"codec {name!r} is already registered")
    _REGISTRY[name] = info


def codec_info(name: str) -> CodecInfo:
    """The registered codec called ``name``; LocalProtocolError lists the known ones."""
    _load_builtin()
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise LocalProtocolError(f"unknown codec {name!r}; known: {known}") from None


def available_codecs(kind: str | None = None) -> list[str]:
    """Names of the registered codecs (of one kind) whose library is installed."""
    _load_builtin()
    if kind is not None and kind not in KINDS:
        raise LocalProtocolError(f"unknown channel kind {kind!r}; one of {', '.join(KINDS)}")
    want = kind
    return sorted(n for n, i in _REGISTRY.items()
                  if (want is None or i.kind == want) and i.available())


def _checked(name: str) -> CodecInfo:
    info = codec_info(name)
    if not info.available():
        raise CodecUnavailableError(
            f"codec {info.name!r} needs the {info.requires!r} extra: "
            f"pip install 'edgewire[{info.requires}]'")
    return info


def create_encoder(name: str, **options: Any) -> Encoder:
    """A new encoder of the named codec, configured by keyword options."""
    info = _checked(name)
    enc = info.encoder(**options)
    enc.name, enc.kind = info.name, info.kind
    return enc


def create_decoder(name: str, **options: Any) -> Decoder:
    """A new decoder of the named codec, configured by keyword options."""
    info = _checked(name)
    dec = info.decoder(**options)
    dec.name, dec.kind = info.name, info.kind
    return dec


_LOADED = False


def _load_builtin() -> None:
    """Import the built-in codec modules once (each registers itself on import)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for module in ("audio", "video", "tokens", "embeddings"):
        try:
            importlib.import_module(f"edgewire.codecs.{module}")
        except ModuleNotFoundError as exc:
            # only a missing codec module is tolerated; a missing dependency inside one is
            # handled by the module itself (it registers with available() False)
            if exc.name != f"edgewire.codecs.{module}":
                raise
