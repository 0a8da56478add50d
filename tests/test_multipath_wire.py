"""Multipath wire additions and reliable-channel state: encoding, decoding of peer input
(hypothesis), ordering and deduplication across paths."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError, QueueFullError, RemoteProtocolError
from edgewire.health.multireliable import ReliableReceiver, ReliableSender
from edgewire.health.multiwire import (
    K_MAX_SEQUENCE,
    MpAck,
    MpEcho,
    MpHello,
    MpProbe,
    MpSwitch,
    decode_mp_control,
    decode_reliable_body,
    decode_seq_header,
    encode_mp_control,
    encode_reliable_body,
    encode_seq_header,
)
from edgewire.transport import ChannelKind, TokenMessage

names = st.text(min_size=1, max_size=20)
acks = st.dictionaries(names, st.integers(0, K_MAX_SEQUENCE), max_size=5)
messages = st.one_of(
    st.builds(MpHello, session=names, path=names, active=st.booleans()),
    st.builds(MpProbe, n=st.integers(0, K_MAX_SEQUENCE)),
    st.builds(MpEcho, n=st.integers(0, K_MAX_SEQUENCE)),
    st.builds(MpAck, acks=acks),
    st.builds(MpSwitch, path=names, acks=acks),
)
cbor_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5) | st.integers(),
                                                                 inner, max_size=4),
    max_leaves=12)


@settings(max_examples=400)
@given(st.integers(0, K_MAX_SEQUENCE), st.binary(max_size=8))
def test_seq_header_round_trip(seq: int, rest: bytes) -> None:
    header = encode_seq_header(seq)
    assert len(header) in (1, 2, 4, 8)
    assert decode_seq_header(header + rest) == (seq, len(header))


@settings(max_examples=400)
@given(st.binary(max_size=12))
def test_seq_header_decoder_only_raises_remote_errors(data: bytes) -> None:
    try:
        seq, length = decode_seq_header(data)
    except RemoteProtocolError:
        assert len(data) < 1 << (data[0] >> 6) if data else True
        return
    assert 0 <= seq <= K_MAX_SEQUENCE
    assert length <= len(data)
    # non-minimal encodings are accepted; the value re-encodes to itself
    assert decode_seq_header(encode_seq_header(seq))[0] == seq


def test_seq_header_rejects_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        encode_seq_header(-1)
    with pytest.raises(LocalProtocolError):
        encode_seq_header(K_MAX_SEQUENCE + 1)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decode_seq_header(b"\xc0\x00\x00")


@settings(max_examples=300)
@given(messages)
def test_control_round_trip(msg: Any) -> None:
    assert decode_mp_control(encode_mp_control(msg)) == msg


@settings(max_examples=600)
@given(cbor_like, st.sampled_from(["hello", "probe", "echo", "ack", "switch", "x", None]))
def test_control_decoder_only_raises_remote_errors(value: Any, kind: Any) -> None:
    for body in (value, {"edgewire.mp": value}, {"edgewire.mp": {"t": kind, "n": value,
                                                                 "a": value, "sid": value,
                                                                 "path": value}}):
        try:
            decode_mp_control(body)
        except RemoteProtocolError:
            pass


def test_control_decoder_reasons() -> None:
    assert decode_mp_control({"other": 1}) is None
    assert decode_mp_control([1, 2]) is None
    with pytest.raises(RemoteProtocolError, match="unknown multipath message"):
        decode_mp_control({"edgewire.mp": {"t": "teleport"}})
    with pytest.raises(RemoteProtocolError, match="n must be an integer"):
        decode_mp_control({"edgewire.mp": {"t": "probe", "n": -1}})
    with pytest.raises(RemoteProtocolError, match="at most 256"):
        decode_mp_control({"edgewire.mp": {"t": "ack", "a": {str(i): 0 for i in range(257)}}})


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from([ChannelKind.TOKENS, ChannelKind.EMBEDDINGS]))
def test_reliable_body_decoder_only_raises_remote_errors(data: bytes, kind: ChannelKind) -> None:
    try:
        decode_reliable_body(kind, data, 0.0)
    except RemoteProtocolError:
        pass


def test_reliable_body_round_trip() -> None:
    body = encode_seq_header(70_000) + encode_reliable_body(
        ChannelKind.TOKENS, TokenMessage(ids=(1, 2), text="ab", end=True), 5.0)
    seq, msg, capture = decode_reliable_body(ChannelKind.TOKENS, body, 0.25)
    assert seq == 70_000
    assert (msg.ids, msg.text, msg.end, capture, msg.timestamp) == ((1, 2), "ab", True, 4.75,
                                                                    4.75)
    with pytest.raises(LocalProtocolError):
        encode_reliable_body(ChannelKind.TOKENS, "text", 0.0)


# ---------------------------------------------------------------------------- reliable state


def test_sender_keeps_until_acked_and_rewinds_on_switch() -> None:
    s = ReliableSender(max_messages=3, max_bytes=1000)
    for i in range(3):
        assert s.push(bytes([i])) == i
    with pytest.raises(QueueFullError):
        s.push(b"x")
    assert [seq for seq, _ in s.pending()] == [0, 1, 2]
    s.handed = 3
    assert s.pending() == []
    assert s.on_ack(2) == 2
    assert len(s) == 1
    assert s.rewind() == 1  # message 2 goes again on the new path
    assert s.pending() == [(2, b"\x02")]
    with pytest.raises(RemoteProtocolError):
        s.on_ack(9)
    assert s.push(b"y") == 3


def test_sender_byte_bound() -> None:
    s = ReliableSender(max_messages=100, max_bytes=10)
    s.push(b"x" * 20)  # one message may exceed the bound when nothing is held
    with pytest.raises(QueueFullError):
        s.push(b"y")


@settings(max_examples=300)
@given(st.integers(1, 40), st.data())
def test_receiver_delivers_each_message_once_in_order(n: int, data: st.DataObject) -> None:
    """Paths deliver runs that start at or below what the receiver has (a resend after a
    switch), in any interleaving, with duplicates; the output is 0..n-1 exactly once."""
    runs: list[list[int]] = []
    covered = 0
    while covered < n:
        start = data.draw(st.integers(0, covered))
        end = data.draw(st.integers(covered + 1, n))
        runs.append(list(range(start, end)))
        covered = end
    order = data.draw(st.permutations(range(len(runs))))
    r: ReliableReceiver[int] = ReliableReceiver(max_ahead=64)
    out: list[int] = []
    # runs are FIFO streams; interleave them by the drawn order, message by message
    queues = [runs[i][:] for i in order]
    while any(queues):
        i = data.draw(st.sampled_from([k for k, q in enumerate(queues) if q]))
        seq = queues[i].pop(0)
        out += r.on_message(seq, seq)
    assert out == list(range(n))
    assert r.duplicates == sum(len(x) for x in runs) - n

