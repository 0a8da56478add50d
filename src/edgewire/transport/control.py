"""Control messages: CBOR maps sent as records on the control stream (client bidi stream 0).

Each message is a CBOR map with a text key ``"t"`` naming its type. Decoding validates every
field and raises :class:`RemoteProtocolError` with ``CONTROL_PROTOCOL_ERROR``; the session
closes the connection on it, since a peer that garbles the control stream cannot be trusted
to agree on channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cbor2

from edgewire.errors import RemoteProtocolError
from edgewire.transport.qos import ChannelKind, QoS
from edgewire.transport.wire import ErrorCode

__all__ = [
    "MAX_CONTROL_RECORD",
    "AppMessage",
    "ClockSync",
    "CloseChannel",
    "ControlMessage",
    "Hello",
    "HelloAck",
    "KeyframeRequest",
    "OpenChannel",
    "Ping",
    "Pong",
    "RecoveryReport",
    "decode_control",
    "encode_control",
]

#: Largest control record accepted from a peer.
MAX_CONTROL_RECORD = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First message of the client: the protocol versions it speaks and its clock."""

    versions: tuple[int, ...]
    """Protocol versions the client supports."""
    clock: float
    """Client's clock (seconds) when it sent the hello."""
    software: str = ""
    """Free-form implementation name, for logs."""
    feedback_ms: int = 0
    """How often (ms) the sender's bandwidth estimator wants the peer's arrival feedback
    (0: no wish; the peer's default)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloAck:
    """Server's answer: the chosen version and three clock readings for offset estimation."""

    version: int
    """Protocol version both sides use from now on."""
    clock_echo: float
    """The client's ``Hello.clock``."""
    clock_recv: float
    """Server clock when the hello arrived."""
    clock_send: float
    """Server clock when this answer was sent."""
    software: str = ""
    """Free-form implementation name, for logs."""
    feedback_ms: int = 0
    """How often (ms) the sender's bandwidth estimator wants the peer's arrival feedback
    (0: no wish; the peer's default)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockSync:
    """Client tells the server the clock offset it measured (server clock minus client's)."""

    offset: float
    """Seconds to add to a client clock reading to get the server clock."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Clock probe (client to server); the server answers with a Pong at once."""

    clock: float
    """Client clock when sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """Answer to a Ping with the server's clock readings."""

    clock_echo: float
    """The Ping's ``clock``."""
    clock_recv: float
    """Server clock when the Ping arrived."""
    clock_send: float
    """Server clock when this Pong was sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenChannel:
    """Announces a channel the sender opened, with its kind and QoS."""

    channel_id: int
    """Channel id: even if opened by the client, odd if by the server."""
    kind: ChannelKind
    """Kind of payload."""
    name: str
    """Name the application chose (defaults to the kind)."""
    qos: QoS
    """Delivery settings."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseChannel:
    """The sender will send nothing more on this channel."""

    channel_id: int
    """The channel being closed."""
    messages: int = 0
    """Messages the sender sent on it (reliable channels): the receiver reports the channel
    closed only after delivering that many, since the close travels on another stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    """Receiver's loss before recovery on one real-time channel since its last report
    (the sender chooses FEC and retransmission from it)."""

    channel_id: int
    """The channel the counts are for (one the receiving side did not open)."""
    received: int
    """Datagrams received as originals."""
    lost: int
    """Sequence numbers missing (before FEC or retransmission)."""
    bursts: int
    """Runs of consecutive missing sequence numbers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyframeRequest:
    """Receiver of a video channel cannot decode on without a keyframe (a frame was lost
    or could not be decoded): the sender should make its next frame one."""

    channel_id: int
    """The video channel (one the receiving side did not open)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppMessage:
    """Small application message on the control stream (reports, requests, decisions)."""

    body: Any
    """Any CBOR value."""


ControlMessage = (
    Hello | HelloAck | ClockSync | Ping | Pong | OpenChannel | CloseChannel | RecoveryReport
    | KeyframeRequest | AppMessage
)


def encode_control(msg: ControlMessage) -> bytes:
    """Encode a control message as a CBOR map (without the record length)."""
    obj: dict[str, Any]
    match msg:
        case Hello():
            obj = {"t": "hello", "versions": list(msg.versions), "clock": msg.clock,
                   "software": msg.software}
        case HelloAck():
            obj = {"t": "hello_ack", "version": msg.version, "clock_echo": msg.clock_echo,
                   "clock_recv": msg.clock_recv, "clock_send": msg.clock_send,
                   "software": msg.software}
        case ClockSync():
            obj = {"t": "clock", "offset": msg.offset}
        case Ping():
            obj = {"t": "ping", "clock": msg.clock}
        case Pong():
            obj = {"t": "pong", "clock_echo": msg.clock_echo, "clock_recv": msg.clock_recv,
                   "clock_send": msg.clock_send}
        case OpenChannel():
            q = msg.qos
            obj = {"t": "open", "ch": msg.channel_id, "kind": msg.kind.value, "name": msg.name,
                   "priority": q.priority, "deadline_ms": q.deadline_ms,
                   "reliable": q.reliable, "max_message_bytes": q.max_message_bytes}
        case CloseChannel():
            obj = {"t": "close", "ch": msg.channel_id, "messages": msg.messages}
        case RecoveryReport():
            obj = {"t": "rx", "ch": msg.channel_id, "received": msg.received,
                   "lost": msg.lost, "bursts": msg.bursts}
        case KeyframeRequest():
            obj = {"t": "kf", "ch": msg.channel_id}
        case AppMessage():
            obj = {"t": "app", "body": msg.body}
    if isinstance(msg, Hello | HelloAck) and msg.feedback_ms:
        obj["feedback_ms"] = msg.feedback_ms  # optional: absent means no wish
    return bytes(cbor2.dumps(obj))


def _fail(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad control message: {why}",
                               error_code=ErrorCode.CONTROL_PROTOCOL_ERROR)


def _get(obj: dict[Any, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise _fail(f"missing {key!r}")
    value = obj[key]
    # bool is an int subclass: a field typed int must not accept True
    if isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise _fail(f"{key!r} has type bool")
    if not isinstance(value, typ):
        raise _fail(f"{key!r} has type {type(value).__name__}")
    return value


def _float(obj: dict[Any, Any], key: str) -> float:
    raw = _get(obj, key, (int, float))
    try:
        value = float(raw)
    except OverflowError:  # a CBOR bignum beyond float range
        raise _fail(f"{key!r} out of range") from None
    if not math.isfinite(value):
        raise _fail(f"{key!r} is not finite")
    return value


def _uint(obj: dict[Any, Any], key: str, limit: int) -> int:
    value: int = _get(obj, key, int)
    if not 0 <= value <= limit:
        # no value in the message: str() of a huge int is itself an error
        raise _fail(f"{key!r} out of range 0..{limit}")
    return value


def _software(obj: dict[Any, Any]) -> str:
    value = obj.get("software", "")
    if not isinstance(value, str):
        raise _fail("'software' is not text")
    return value[:256]


#: Largest ``feedback_ms`` a hello may carry.
MAX_FEEDBACK_MS = 60_000


def _feedback_ms(obj: dict[Any, Any]) -> int:
    if "feedback_ms" not in obj:  # optional: a peer without an estimator wish
        return 0
    return _uint(obj, "feedback_ms", MAX_FEEDBACK_MS)


def decode_control(data: bytes) -> ControlMessage | None:
    """Decode and validate one control record body; None for a type this version lacks."""
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on garbage; all mean the same here
        raise _fail(f"not CBOR ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise _fail("not a map")
    kind = _get(obj, "t", str)
    if kind == "hello":
        versions = _get(obj, "versions", list)
        if not versions or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 32
            for v in versions
        ):
            raise _fail("'versions' must be a non-empty list of integers")
        return Hello(versions=tuple(versions[:64]), clock=_float(obj, "clock"),
                     software=_software(obj), feedback_ms=_feedback_ms(obj))
    if kind == "hello_ack":
        return HelloAck(version=_uint(obj, "version", (1 << 32) - 1),
                        clock_echo=_float(obj, "clock_echo"),
                        clock_recv=_float(obj, "clock_recv"),
                        clock_send=_float(obj, "clock_send"),
                        software=_software(obj), feedback_ms=_feedback_ms(obj))
    if kind == "clock":
        return ClockSync(offset=_float(obj, "offset"))
    if kind == "ping":
        return Ping(clock=_float(obj, "clock"))
    if kind == "pong":
        return Pong(clock_echo=_float(obj, "clock_echo"), clock_recv=_float(obj, "clock_recv"),
                    clock_send=_float(obj, "clock_send"))
    if kind == "open":
        try:
            ch_kind = ChannelKind(_get(obj, "kind", str))
        except ValueError:
            raise _fail(f"unknown channel kind {obj['kind']!r}") from None
        deadline = obj.get("deadline_ms")
        if deadline is not None:
            deadline = _float(obj, "deadline_ms")
        reliable = _get(obj, "reliable", bool)
        if reliable != ch_kind.reliable:
            raise _fail(f"{ch_kind.value} channel with reliable={reliable}")
        name = _get(obj, "name", str)
        if len(name) > 256:
            raise _fail("channel name longer than 256 characters")
        try:
            qos = QoS(priority=_uint(obj, "priority", 7), deadline_ms=deadline,
                      reliable=reliable, max_queue_bytes=1,
                      max_message_bytes=_uint(obj, "max_message_bytes", (1 << 32) - 1) or 1)
        except Exception as exc:
            raise _fail(str(exc)) from None
        return OpenChannel(channel_id=_uint(obj, "ch", 0xFFFF), kind=ch_kind, name=name,
                           qos=qos)
    if kind == "close":
        return CloseChannel(channel_id=_uint(obj, "ch", 0xFFFF),
                            messages=_uint(obj, "messages", (1 << 64) - 1))
    if kind == "rx":
        lost = _uint(obj, "lost", (1 << 32) - 1)
        bursts = _uint(obj, "bursts", (1 << 32) - 1)
        if bursts > lost:
            raise _fail("more loss bursts than losses")
        return RecoveryReport(channel_id=_uint(obj, "ch", 0xFFFF),
                              received=_uint(obj, "received", (1 << 32) - 1),
                              lost=lost, bursts=bursts)
    if kind == "kf":
        return KeyframeRequest(channel_id=_uint(obj, "ch", 0xFFFF))
    if kind == "app":
        if "body" not in obj:
            raise _fail("missing 'body'")
        return AppMessage(body=obj["body"])
    return None  # an unknown type from a newer peer: the session counts and skips it
