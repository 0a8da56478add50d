"""Control messages (edgewire.transport.control) and the QoS they carry (qos.py)."""

from __future__ import annotations

import math
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.transport.control import (
    MAX_CONTROL_RECORD,
    AppMessage,
    ClockSync,
    CloseChannel,
    ControlMessage,
    Hello,
    HelloAck,
    OpenChannel,
    Ping,
    Pong,
    decode_control,
    encode_control,
)
from edgewire.transport.qos import DEFAULT_QOS, ChannelKind, QoS, default_qos
from edgewire.transport.wire import ErrorCode

U16 = 0xFFFF
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1

# Far beyond the float range (2**1024), where float() raises OverflowError. Kept under
# Python's 4300-digit int-to-str limit (about 2**14284) only so that a failing example can
# still be printed; ints past that limit are covered by explicit tests below.
MAX_FUZZ_INT = 1 << 14000

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
u16 = st.integers(min_value=0, max_value=U16)
u32 = st.integers(min_value=0, max_value=U32)
u64 = st.integers(min_value=0, max_value=U64)
names = st.text(max_size=256)

# CBOR values that decode back equal to themselves (no NaN, no tuples, no surrogates).
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_FUZZ_INT, max_value=MAX_FUZZ_INT),
    finite_floats,
    st.text(max_size=20),
    st.binary(max_size=20),
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)

# What a hostile or buggy peer might put in any field: wrong types, bools where ints are
# expected, non-finite floats, values just past every range the decoder checks.
boundary_ints = st.sampled_from(
    [-1, 0, 1, 7, 8, U16, U16 + 1, U32, U32 + 1, U64, U64 + 1, -(1 << 64), 1 << 70]
)
hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    boundary_ints,
    st.integers(min_value=-MAX_FUZZ_INT, max_value=MAX_FUZZ_INT),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308]),
    st.text(max_size=8),
    st.sampled_from([k.value for k in ChannelKind] + ["", "x" * 257]),
    st.binary(max_size=8),
    st.lists(st.one_of(st.booleans(), boundary_ints, st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
hostile_cbor = st.recursive(
    hostile_values,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=3),
    ),
    max_leaves=10,
)


@st.composite
def qos_for(draw: st.DrawFn, kind: ChannelKind) -> QoS:
    deadline = st.floats(min_value=0, exclude_min=True, allow_infinity=False)
    return QoS(
        priority=draw(st.integers(min_value=0, max_value=7)),
        deadline_ms=draw(st.one_of(st.none(), deadline) if kind.reliable else deadline),
        reliable=kind.reliable,
        # the open message does not carry the queue limit: the receiver decodes it as 1
        max_queue_bytes=1,
        max_message_bytes=draw(st.integers(min_value=1, max_value=U32)),
    )


@st.composite
def open_channels(draw: st.DrawFn) -> OpenChannel:
    kind = draw(st.sampled_from(list(ChannelKind)))
    return OpenChannel(channel_id=draw(u16), kind=kind, name=draw(names),
                       qos=draw(qos_for(kind)))


hellos = st.builds(
    Hello,
    versions=st.lists(u32, min_size=1, max_size=64).map(tuple),
    clock=finite_floats,
    software=names,
    feedback_ms=st.integers(0, 60_000),
)
hello_acks = st.builds(
    HelloAck,
    version=u32,
    clock_echo=finite_floats,
    clock_recv=finite_floats,
    clock_send=finite_floats,
    software=names,
    feedback_ms=st.integers(0, 60_000),
)
clock_syncs = st.builds(ClockSync, offset=finite_floats)
pings = st.builds(Ping, clock=finite_floats)
pongs = st.builds(Pong, clock_echo=finite_floats, clock_recv=finite_floats,
                  clock_send=finite_floats)
close_channels = st.builds(CloseChannel, channel_id=u16, messages=u64)
app_messages = st.builds(AppMessage, body=cbor_values)
control_messages = st.one_of(hellos, hello_acks, clock_syncs, pings, pongs, open_channels(),
                             close_channels, app_messages)

MESSAGE_TYPES = (Hello, HelloAck, ClockSync, Ping, Pong, OpenChannel, CloseChannel,
                 AppMessage)

BASE: dict[str, dict[str, Any]] = {
    "hello": {"t": "hello", "versions": [1], "clock": 12.5, "software": "x"},
    "hello_ack": {"t": "hello_ack", "version": 1, "clock_echo": 1.0, "clock_recv": 2.0,
                  "clock_send": 2.5, "software": "y"},
    "clock": {"t": "clock", "offset": -0.25},
    "ping": {"t": "ping", "clock": 3.0},
    "pong": {"t": "pong", "clock_echo": 3.0, "clock_recv": 4.0, "clock_send": 4.0},
    "open": {"t": "open", "ch": 4, "kind": "video", "name": "cam", "priority": 2,
             "deadline_ms": 300.0, "reliable": False, "max_message_bytes": 1 << 21},
    "close": {"t": "close", "ch": 4, "messages": 3},
    "app": {"t": "app", "body": {"load": 0.5}},
}


def decode_obj(obj: Any) -> ControlMessage | None:
    return decode_control(cbor2.dumps(obj))


def assert_rejected(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_control(obj if isinstance(obj, bytes) else cbor2.dumps(obj))
    assert info.value.error_code == ErrorCode.CONTROL_PROTOCOL_ERROR


def _is_int(value: object, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _is_finite(value: object) -> bool:
    return type(value) is float and math.isfinite(value)


def assert_valid(msg: ControlMessage) -> None:
    """Everything decode_control returns satisfies the ranges docs/PROTOCOL.md promises."""
    assert isinstance(msg, MESSAGE_TYPES)
    match msg:
        case Hello():
            assert 1 <= len(msg.versions) <= 64
            assert all(_is_int(v, U32) for v in msg.versions)
            assert _is_finite(msg.clock)
            assert isinstance(msg.software, str)
            assert len(msg.software) <= 256
            assert _is_int(msg.feedback_ms, 60_000)
        case HelloAck():
            assert _is_int(msg.version, U32)
            assert all(_is_finite(c) for c in (msg.clock_echo, msg.clock_recv, msg.clock_send))
            assert isinstance(msg.software, str)
            assert len(msg.software) <= 256
            assert _is_int(msg.feedback_ms, 60_000)
        case ClockSync():
            assert _is_finite(msg.offset)
        case Ping():
            assert _is_finite(msg.clock)
        case Pong():
            assert all(_is_finite(c) for c in (msg.clock_echo, msg.clock_recv, msg.clock_send))
        case OpenChannel():
            q = msg.qos
            assert _is_int(msg.channel_id, U16)
            assert isinstance(msg.kind, ChannelKind)
            assert isinstance(msg.name, str)
            assert len(msg.name) <= 256
            assert _is_int(q.priority, 7)
            assert q.reliable is msg.kind.reliable
            assert q.deadline_ms is None or (_is_finite(q.deadline_ms) and q.deadline_ms > 0)
            assert q.deadline_ms is not None or msg.kind.reliable
            assert _is_int(q.max_message_bytes, U32)
            assert q.max_message_bytes >= 1
        case CloseChannel():
            assert _is_int(msg.channel_id, U16)
            assert _is_int(msg.messages, U64)
        case AppMessage():
            pass
    if not isinstance(msg, AppMessage):
        # what was accepted once is accepted again unchanged
        assert decode_control(encode_control(msg)) == msg


def check_decode(data: bytes) -> None:
    error: RemoteProtocolError | None = None
    try:
        msg = decode_control(data)
    except RemoteProtocolError as exc:
        error = exc
    if error is not None:
        assert error.error_code == ErrorCode.CONTROL_PROTOCOL_ERROR
    elif msg is not None:
        assert_valid(msg)


# ---------------------------------------------------------------------- round trips


def _same(decoded: ControlMessage | None, msg: ControlMessage) -> None:
    if isinstance(msg, OpenChannel):
        assert isinstance(decoded, OpenChannel)
        assert decoded == OpenChannel(channel_id=msg.channel_id, kind=msg.kind, name=msg.name,
                                      qos=msg.qos.with_(max_queue_bytes=1))
        assert type(decoded.qos.max_message_bytes) is int
    else:
        assert decoded == msg


@settings(max_examples=300)
@given(msg=control_messages)
def test_round_trip(msg: ControlMessage) -> None:
    decoded = decode_control(encode_control(msg))
    _same(decoded, msg)
    assert_valid(decoded)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("msg", "wire"),
    [
        (Hello(versions=(1, 2), clock=3.5, software="s"),
         {"t": "hello", "versions": [1, 2], "clock": 3.5, "software": "s"}),
        (HelloAck(version=1, clock_echo=1.0, clock_recv=2.0, clock_send=3.0, software="s"),
         {"t": "hello_ack", "version": 1, "clock_echo": 1.0, "clock_recv": 2.0,
          "clock_send": 3.0, "software": "s"}),
        (Hello(versions=(1,), clock=3.5, software="s", feedback_ms=25),
         {"t": "hello", "versions": [1], "clock": 3.5, "software": "s", "feedback_ms": 25}),
        (HelloAck(version=1, clock_echo=1.0, clock_recv=2.0, clock_send=3.0, software="s",
                  feedback_ms=100),
         {"t": "hello_ack", "version": 1, "clock_echo": 1.0, "clock_recv": 2.0,
          "clock_send": 3.0, "software": "s", "feedback_ms": 100}),
        (ClockSync(offset=-0.5), {"t": "clock", "offset": -0.5}),
        (Ping(clock=7.0), {"t": "ping", "clock": 7.0}),
        (Pong(clock_echo=7.0, clock_recv=8.0, clock_send=8.5),
         {"t": "pong", "clock_echo": 7.0, "clock_recv": 8.0, "clock_send": 8.5}),
        (OpenChannel(channel_id=3, kind=ChannelKind.TOKENS, name="llm",
                     qos=DEFAULT_QOS[ChannelKind.TOKENS]),
         {"t": "open", "ch": 3, "kind": "tokens", "name": "llm", "priority": 1,
          "deadline_ms": None, "reliable": True, "max_message_bytes": 65536}),
        (CloseChannel(channel_id=6, messages=10), {"t": "close", "ch": 6, "messages": 10}),
        (AppMessage(body=[1, "x"]), {"t": "app", "body": [1, "x"]}),
    ],
)
def test_wire_keys(msg: ControlMessage, wire: dict[str, Any]) -> None:
    # pins the field names docs/PROTOCOL.md documents
    assert cbor2.loads(encode_control(msg)) == wire


def test_max_control_record() -> None:
    assert MAX_CONTROL_RECORD == 64 * 1024


# ---------------------------------------------------------------------- hostile input


@settings(max_examples=500)
@given(data=st.binary(max_size=64))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    check_decode(data)


@settings(max_examples=300)
@given(obj=hostile_cbor)
def test_decode_arbitrary_cbor_values(obj: Any) -> None:
    check_decode(cbor2.dumps(obj))


@settings(max_examples=600)
@given(
    kind=st.sampled_from([*BASE, "unknown", "", "HELLO"]),
    changes=st.dictionaries(
        st.sampled_from(sorted({k for base in BASE.values() for k in base} | {"extra"})),
        st.one_of(hostile_values, st.just(KeyError)),
        max_size=4,
    ),
)
def test_decode_mutated_messages(kind: str, changes: dict[str, Any]) -> None:
    # valid messages with some fields replaced by hostile values (KeyError: field deleted)
    obj = dict(BASE.get(kind, {"t": kind}))
    for key, value in changes.items():
        if value is KeyError:
            obj.pop(key, None)
        else:
            obj[key] = value
    check_decode(cbor2.dumps(obj))


@settings(max_examples=200)
@given(msg=control_messages, data=st.data())
def test_decode_truncated_messages(msg: ControlMessage, data: st.DataObject) -> None:
    raw = encode_control(msg)
    check_decode(raw[: data.draw(st.integers(min_value=0, max_value=len(raw) - 1))])


def test_deeply_nested_input_is_rejected_cleanly() -> None:
    assert_rejected(b"\x81" * 100_000 + b"\x00")


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "hello",
        1,
        None,
        {"versions": [1]},
        {"t": 1},
        {"t": None},
        {"t": b"hello"},
    ],
)
def test_rejects_non_messages(obj: Any) -> None:
    assert_rejected(obj)


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xa1\x61", b"\xbf\x61t"])
def test_rejects_malformed_cbor(data: bytes) -> None:
    assert_rejected(data)


_BAD_FIELDS: list[tuple[str, str, Any]] = [
    ("hello", "versions", []),
    ("hello", "versions", "1"),
    ("hello", "versions", 1),
    ("hello", "versions", [True]),
    ("hello", "versions", [-1]),
    ("hello", "versions", [1 << 32]),
    ("hello", "versions", [1.0]),
    ("hello", "versions", [1, None]),
    ("hello", "clock", True),
    ("hello", "clock", math.nan),
    ("hello", "clock", math.inf),
    ("hello", "clock", -math.inf),
    ("hello", "clock", "0"),
    ("hello", "clock", None),
    ("hello_ack", "version", True),
    ("hello_ack", "version", -1),
    ("hello_ack", "version", 1 << 32),
    ("hello_ack", "version", 1.0),
    ("hello_ack", "clock_echo", math.nan),
    ("hello_ack", "clock_recv", math.inf),
    ("hello_ack", "clock_send", False),
    ("clock", "offset", math.nan),
    ("clock", "offset", True),
    ("clock", "offset", None),
    ("clock", "offset", [0.0]),
    ("ping", "clock", math.nan),
    ("ping", "clock", True),
    ("ping", "clock", "3"),
    ("pong", "clock_echo", math.inf),
    ("pong", "clock_recv", None),
    ("pong", "clock_send", False),
    ("open", "ch", -1),
    ("open", "ch", U16 + 1),
    ("open", "ch", True),
    ("open", "ch", "4"),
    ("open", "kind", "text"),
    ("open", "kind", "VIDEO"),
    ("open", "kind", 1),
    ("open", "name", "x" * 257),
    ("open", "name", None),
    ("open", "name", b"cam"),
    ("open", "priority", 8),
    ("open", "priority", -1),
    ("open", "priority", True),
    ("open", "priority", 1.0),
    ("open", "deadline_ms", 0),
    ("open", "deadline_ms", -1.0),
    ("open", "deadline_ms", math.nan),
    ("open", "deadline_ms", math.inf),
    ("open", "deadline_ms", True),
    ("open", "deadline_ms", "300"),
    ("open", "deadline_ms", None),  # real-time kinds need a deadline
    ("open", "reliable", True),  # must match the kind
    ("open", "reliable", 0),
    ("open", "max_message_bytes", -1),
    ("open", "max_message_bytes", 1 << 32),
    ("open", "max_message_bytes", True),
    ("open", "max_message_bytes", 1.0),
    ("hello", "feedback_ms", -1),
    ("hello", "feedback_ms", 60_001),
    ("hello", "feedback_ms", 25.0),
    ("hello", "feedback_ms", True),
    ("hello_ack", "feedback_ms", "25"),
    ("hello_ack", "feedback_ms", 1 << 64),
    ("close", "ch", U16 + 1),
    ("close", "ch", False),
    ("close", "messages", -1),
    ("close", "messages", 1 << 64),
    ("close", "messages", True),
]
_REQUIRED = [
    ("hello", "versions"), ("hello", "clock"),
    ("hello_ack", "version"), ("hello_ack", "clock_echo"), ("hello_ack", "clock_recv"),
    ("hello_ack", "clock_send"),
    ("clock", "offset"),
    ("ping", "clock"),
    ("pong", "clock_echo"), ("pong", "clock_recv"), ("pong", "clock_send"),
    ("open", "ch"), ("open", "kind"), ("open", "name"), ("open", "priority"),
    ("open", "reliable"), ("open", "max_message_bytes"),
    ("close", "ch"), ("close", "messages"),
    ("app", "body"),
]


def test_base_messages_are_valid() -> None:
    # the rejection tests below only mean something if the unmodified messages pass
    for obj in BASE.values():
        msg = decode_obj(obj)
        assert msg is not None
        assert_valid(msg)


@pytest.mark.parametrize(("kind", "key", "value"), _BAD_FIELDS)
def test_rejects_bad_field(kind: str, key: str, value: Any) -> None:
    assert_rejected({**BASE[kind], key: value})


@pytest.mark.parametrize(("kind", "key"), _REQUIRED)
def test_rejects_missing_field(kind: str, key: str) -> None:
    obj = dict(BASE[kind])
    del obj[key]
    assert_rejected(obj)


@pytest.mark.parametrize(
    ("kind", "reliable"),
    [("audio", True), ("video", True), ("tokens", False), ("embeddings", False)],
)
def test_rejects_reliable_flag_contradicting_kind(kind: str, reliable: bool) -> None:
    assert_rejected({**BASE["open"], "kind": kind, "reliable": reliable, "deadline_ms": 100.0})


# ---------------------------------------------------------------------- documented leniency


@pytest.mark.parametrize("t", ["nack", "", "HELLO", "hello2"])
def test_unknown_type_is_none(t: str) -> None:
    assert decode_obj({"t": t, "anything": [1, 2]}) is None


def test_extra_keys_are_ignored() -> None:
    assert decode_obj({**BASE["clock"], "future": {"x": 1}}) == ClockSync(offset=-0.25)


def test_integers_accepted_for_float_fields() -> None:
    msg = decode_obj({**BASE["hello_ack"], "clock_echo": 1, "clock_recv": -2,
                      "clock_send": 1 << 70})
    assert isinstance(msg, HelloAck)
    assert (msg.clock_echo, msg.clock_recv, msg.clock_send) == (1.0, -2.0, float(1 << 70))
    assert type(msg.clock_echo) is float


def test_optional_fields() -> None:
    hello = decode_obj({"t": "hello", "versions": [1], "clock": 0.0})
    assert hello == Hello(versions=(1,), clock=0.0, software="")
    ack = {k: v for k, v in BASE["hello_ack"].items() if k != "software"}
    assert decode_obj(ack) == HelloAck(version=1, clock_echo=1.0, clock_recv=2.0,
                                       clock_send=2.5, software="")
    tokens = {**BASE["open"], "kind": "tokens", "reliable": True}
    del tokens["deadline_ms"]
    msg = decode_obj(tokens)
    assert isinstance(msg, OpenChannel)
    assert msg.qos.deadline_ms is None


def test_hello_lists_and_strings_are_truncated() -> None:
    msg = decode_obj({**BASE["hello"], "versions": list(range(100)), "software": "s" * 1000})
    assert isinstance(msg, Hello)
    assert msg.versions == tuple(range(64))
    assert msg.software == "s" * 256


@pytest.mark.parametrize("kind", ["hello", "hello_ack"])
@pytest.mark.parametrize("software", [[1, 2], 5, None, b"edgewire", 10**5000],
                         ids=["list", "int", "null", "bytes", "5000-digit-int"])
def test_non_text_software_is_rejected(kind: str, software: Any) -> None:
    assert_rejected({**BASE[kind], "software": software})


def test_zero_max_message_bytes_becomes_one() -> None:
    msg = decode_obj({**BASE["open"], "max_message_bytes": 0})
    assert isinstance(msg, OpenChannel)
    assert msg.qos.max_message_bytes == 1


def test_reliable_channel_may_carry_a_deadline() -> None:
    msg = decode_obj({**BASE["open"], "kind": "embeddings", "reliable": True,
                      "deadline_ms": 50})
    assert isinstance(msg, OpenChannel)
    assert msg.qos.deadline_ms == 50.0


def test_app_body_may_be_null() -> None:
    assert decode_obj({"t": "app", "body": None}) == AppMessage(body=None)


# ---------------------------------------------------------------------- bignums

_HUGE = 1 << 1100  # a CBOR bignum beyond the float range


@pytest.mark.parametrize(
    ("kind", "key"),
    [("hello", "clock"), ("hello_ack", "clock_echo"), ("clock", "offset"), ("ping", "clock"),
     ("pong", "clock_send"), ("open", "deadline_ms")],
)
def test_bignum_in_float_field_is_rejected(kind: str, key: str) -> None:
    assert_rejected({**BASE[kind], key: _HUGE})
    assert_rejected({**BASE[kind], key: -_HUGE})


def test_bignum_in_float_field_within_range_is_accepted() -> None:
    # 2**1023 is a finite double: only values past the float range are refused
    assert decode_obj({**BASE["clock"], "offset": 1 << 1023}) == ClockSync(offset=2.0**1023)


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("hello_ack", "version"),
        ("open", "ch"),
        ("open", "priority"),
        ("close", "ch"),
        ("close", "messages"),
    ],
)
def test_bignum_in_int_field_is_rejected(kind: str, key: str) -> None:
    assert_rejected({**BASE[kind], key: 10**5000})


# ---------------------------------------------------------------------- QoS


def test_default_qos() -> None:
    for kind in ChannelKind:
        q = default_qos(kind)
        assert q is DEFAULT_QOS[kind]
        assert q.reliable is kind.reliable
        assert (q.deadline_ms is None) is kind.reliable
        assert default_qos(kind.value) is q
    order = sorted(ChannelKind, key=lambda k: DEFAULT_QOS[k].priority)
    assert order == [ChannelKind.AUDIO, ChannelKind.TOKENS, ChannelKind.VIDEO,
                     ChannelKind.EMBEDDINGS]


def test_default_qos_unknown_kind() -> None:
    with pytest.raises(LocalProtocolError, match="unknown channel kind"):
        default_qos("text")


@pytest.mark.parametrize(
    "changes",
    [
        {"priority": -1},
        {"priority": 8},
        {"deadline_ms": 0.0},
        {"deadline_ms": -5.0},
        {"deadline_ms": math.nan},
        {"deadline_ms": None},  # real-time needs a deadline
        {"max_queue_bytes": 0},
        {"max_message_bytes": 0},
        {"max_message_bytes": -1},
    ],
)
def test_qos_validation(changes: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        DEFAULT_QOS[ChannelKind.AUDIO].with_(**changes)


def test_qos_with_changes_one_field() -> None:
    q = DEFAULT_QOS[ChannelKind.VIDEO].with_(priority=5)
    assert q.priority == 5
    assert q.deadline_ms == DEFAULT_QOS[ChannelKind.VIDEO].deadline_ms


def test_channel_kind_reliability() -> None:
    assert {k for k in ChannelKind if k.reliable} == {ChannelKind.TOKENS,
                                                       ChannelKind.EMBEDDINGS}
