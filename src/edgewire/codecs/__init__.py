"""Payload codecs: what turns audio, video, LLM tokens and embeddings into channel payloads.

One interface (:class:`Encoder` / :class:`Decoder`) and a registry by name:

* audio: ``opus`` (PyAV, the ``media`` extra), ``pcm16``, ``g711u``, ``g711a``;
* video: ``h264`` (libx264) and ``vp8`` (libvpx), both PyAV;
* ``tokens``: compact token frames (varint ids, optional text and logprobs);
* ``embeddings``: float32, float16, bfloat16, int8 and int4 vectors in a CBOR envelope of
  RFC 8746 typed arrays, with ``precision="auto"`` following the channel's share.

docs/CODECS.md has the formats, the options and the measured figures.
"""

from edgewire.codecs.base import (
    CodecError,
    CodecInfo,
    CodecKind,
    CodecUnavailableError,
    Decoder,
    EncodedPacket,
    Encoder,
    available_codecs,
    codec_info,
    create_decoder,
    create_encoder,
    register_codec,
)

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
    "register_codec",
]
