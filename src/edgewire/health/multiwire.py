"""Wire additions of multi-endpoint sessions (docs/MULTIPATH.md, docs/PROTOCOL.md section
"Multipath"): a sequence header in front of reliable records, and small control messages
carried as application messages under the key ``"edgewire.mp"``.

Everything here is pure encoding and validation. Decoders raise
:class:`~edgewire.errors.RemoteProtocolError` for malformed peer input, never a bare
``IndexError``/``KeyError``/``TypeError``; the multipath session counts and drops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.transport.messages import (
    TokenMessage,
    decode_array,
    decode_tokens,
    encode_array,
    encode_tokens,
)
from edgewire.transport.qos import ChannelKind
from edgewire.transport.session import K_MULTIPATH_KEY

__all__ = [
    "K_MAX_ACK_ENTRIES",
    "K_MAX_NAME",
    "K_MAX_SEQUENCE",
    "MpAck",
    "MpEcho",
    "MpHello",
    "MpMessage",
    "MpProbe",
    "MpSwitch",
    "decode_mp_control",
    "decode_reliable_body",
    "decode_seq_header",
    "encode_mp_control",
    "encode_reliable_body",
    "encode_seq_header",
]

#: Largest multipath sequence number (a QUIC variable-length integer holds 62 bits).
K_MAX_SEQUENCE = (1 << 62) - 1
#: Longest path name, session id or channel name in a control message, characters.
K_MAX_NAME = 256
#: Most channels one ack message may name.
K_MAX_ACK_ENTRIES = 256


def encode_seq_header(seq: int) -> bytes:
    """``seq`` as a QUIC variable-length integer (RFC 9000 section 16): 1, 2, 4 or 8
    bytes, the top two bits of the first byte giving the length."""
    if not 0 <= seq <= K_MAX_SEQUENCE:
        raise LocalProtocolError(f"multipath sequence {seq} out of range")
    if seq < 1 << 6:
        return seq.to_bytes(1, "big")
    if seq < 1 << 14:
        return (seq | 0x4000).to_bytes(2, "big")
    if seq < 1 << 30:
        return (seq | 0x8000_0000).to_bytes(4, "big")
    return (seq | 0xC000_0000_0000_0000).to_bytes(8, "big")


def decode_seq_header(data: bytes | memoryview) -> tuple[int, int]:
    """(sequence number, header length) from the start of a multipath record."""
    if len(data) < 1:
        raise RemoteProtocolError("multipath record without a sequence header")
    length = 1 << (data[0] >> 6)
    if len(data) < length:
        raise RemoteProtocolError(f"multipath sequence header truncated ({len(data)} of "
                                  f"{length} bytes)")
    value = int.from_bytes(bytes(data[:length]), "big") & ((1 << (8 * length - 2)) - 1)
    return value, length


@dataclass(frozen=True, slots=True, kw_only=True)
class MpHello:
    """First multipath message on a path (client to server): which session and path."""

    session: str
    """Id of the multi-endpoint session, the same on every path."""
    path: str
    """Name of this path ("edge", "cloud")."""
    active: bool
    """True if the client sends on this path now."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MpProbe:
    """Keep-alive probe (client to server); the server answers with :class:`MpEcho`."""

    n: int
    """Probe number, echoed back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MpEcho:
    """Answer to a probe."""

    n: int
    """The probe's number."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MpAck:
    """Cumulative acknowledgements of multipath reliable messages."""

    acks: dict[str, int]
    """Channel name -> next sequence number expected (all below it were received)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MpSwitch:
    """The client moved its channels to the path this message travels on."""

    path: str
    """The new active path (the one carrying this message)."""
    acks: dict[str, int]
    """The client's cumulative acknowledgements, so the server resends only what is
    missing."""


MpMessage = MpHello | MpProbe | MpEcho | MpAck | MpSwitch
"""Any multipath control message."""


def encode_mp_control(msg: MpMessage) -> dict[str, Any]:
    """The application-message body (a CBOR-ready dict) carrying ``msg``."""
    body: dict[str, Any]
    if isinstance(msg, MpHello):
        body = {"t": "hello", "sid": msg.session, "path": msg.path, "active": msg.active}
    elif isinstance(msg, MpProbe):
        body = {"t": "probe", "n": msg.n}
    elif isinstance(msg, MpEcho):
        body = {"t": "echo", "n": msg.n}
    elif isinstance(msg, MpAck):
        body = {"t": "ack", "a": dict(msg.acks)}
    else:
        body = {"t": "switch", "path": msg.path, "a": dict(msg.acks)}
    return {K_MULTIPATH_KEY: body}


def _name(mp: dict[Any, Any], key: str) -> str:
    value = mp.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= K_MAX_NAME:
        raise RemoteProtocolError(f"multipath {mp.get('t')!r}: {key} must be a string of "
                                  f"1..{K_MAX_NAME} characters")
    return value


def _count(mp: dict[Any, Any], key: str) -> int:
    value = mp.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= K_MAX_SEQUENCE:
        raise RemoteProtocolError(f"multipath {mp.get('t')!r}: {key} must be an integer in "
                                  f"0..2**62-1")
    return value


def _acks(mp: dict[Any, Any]) -> dict[str, int]:
    table = mp.get("a")
    if not isinstance(table, dict) or len(table) > K_MAX_ACK_ENTRIES:
        raise RemoteProtocolError(f"multipath {mp.get('t')!r}: a must be a map of at most "
                                  f"{K_MAX_ACK_ENTRIES} channels")
    out: dict[str, int] = {}
    for name, seq in table.items():
        if not isinstance(name, str) or not 0 < len(name) <= K_MAX_NAME:
            raise RemoteProtocolError("multipath ack: channel names are strings")
        out[name] = _count({"t": "ack", "n": seq}, "n")
    return out


def decode_mp_control(body: Any) -> MpMessage | None:
    """The multipath message in an application-message body; None if the body is not a
    multipath message at all (an ordinary application message)."""
    if not isinstance(body, dict) or K_MULTIPATH_KEY not in body:
        return None
    mp = body[K_MULTIPATH_KEY]
    if not isinstance(mp, dict):
        raise RemoteProtocolError("multipath message is not a map")
    kind = mp.get("t")
    if kind == "hello":
        active = mp.get("active", False)
        if not isinstance(active, bool):
            raise RemoteProtocolError("multipath 'hello': active must be a boolean")
        return MpHello(session=_name(mp, "sid"), path=_name(mp, "path"), active=active)
    if kind == "probe":
        return MpProbe(n=_count(mp, "n"))
    if kind == "echo":
        return MpEcho(n=_count(mp, "n"))
    if kind == "ack":
        return MpAck(acks=_acks(mp))
    if kind == "switch":
        return MpSwitch(path=_name(mp, "path"), acks=_acks(mp))
    raise RemoteProtocolError(f"unknown multipath message type {kind!r}")


def encode_reliable_body(kind: ChannelKind, payload: Any, timestamp: float) -> bytes:
    """The record body of a tokens (TokenMessage or token ids) or embeddings (array)
    message, as ``Session.send`` would encode it (the sequence header goes in front)."""
    if kind is ChannelKind.EMBEDDINGS:
        return encode_array(payload, timestamp)
    if isinstance(payload, TokenMessage):
        return encode_tokens(tuple(payload.ids), payload.text, timestamp,
                             logprobs=payload.logprobs, end=payload.end, error=payload.error)
    if isinstance(payload, Sequence) and not isinstance(payload, str | bytes):
        return encode_tokens(tuple(payload), None, timestamp)
    raise LocalProtocolError("tokens channels send a TokenMessage or token ids")


def decode_reliable_body(kind: ChannelKind, record: bytes,
                         clock_offset: float) -> tuple[int, Any, float]:
    """(sequence number, payload, capture time on this side's clock) of a multipath
    record; the payload is a TokenMessage (its timestamp corrected) or an array."""
    seq, offset = decode_seq_header(record)
    rest = record[offset:]
    if kind is ChannelKind.TOKENS:
        msg = decode_tokens(rest)
        capture = msg.timestamp - clock_offset
        return seq, replace(msg, timestamp=capture), capture
    array, ts = decode_array(rest)
    return seq, array, ts - clock_offset
