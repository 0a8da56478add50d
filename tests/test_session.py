"""Sans-I/O session tests: an in-process client/server pair in virtual time, no sleeps."""

from __future__ import annotations

import numpy as np
import pytest

from edgewire.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MessageTooLargeError,
    QueueFullError,
)
from edgewire.transport import (
    AppMessageReceived,
    ChannelClosed,
    ChannelKind,
    ChannelOpened,
    ErrorCode,
    FrameLost,
    MessageReceived,
    QoS,
    SessionClosed,
    SessionConfig,
    SessionReady,
    TokenMessage,
)
from edgewire.transport import control as ctl
from edgewire.transport.recovery import RecoveryConfig
from edgewire.transport.wire import encode_header, encode_record
from tests.helpers import Pair


def received(pair: Pair, channel_id: int) -> list[MessageReceived]:
    return [e for e in pair.server_events
            if isinstance(e, MessageReceived) and e.channel_id == channel_id]


def test_handshake_and_hello(pair: Pair) -> None:
    assert pair.events("client", SessionReady) == [SessionReady(version=1,
                                                                peer_software="edgewire")]
    assert len(pair.events("server", SessionReady)) == 1
    q = pair.client.quic_stats()
    assert q.rtt_smoothed is not None
    assert q.rtt_smoothed == pytest.approx(0.010, abs=0.003)
    # both sides share the virtual clock, so the estimated offset must be ~0
    assert abs(pair.client.clock_offset) < 1e-3
    assert pair.server is not None
    assert abs(pair.server.clock_offset) < 1e-3


def test_wrong_certificate_authority_fails(tmp_path, cert_pair) -> None:
    from edgewire.certs import write_self_signed

    other_cert, _ = write_self_signed(tmp_path)
    p = Pair(str(other_cert), cert_pair[1])
    p.cert, p.key = cert_pair  # the server keeps its real certificate
    p.run(1.0)
    assert not p.client.ready
    closed = p.events("client", SessionClosed)
    assert closed
    assert "certificate" in closed[0].reason
    with pytest.raises(ConnectionClosedError):
        p.client.open_channel("audio", now=p.now)


def test_four_kinds_delivered(pair: Pair) -> None:
    c = pair.client
    now = pair.now
    audio = c.open_channel("audio", now=now)
    video = c.open_channel("video", now=now)
    tokens = c.open_channel("tokens", now=now)
    emb = c.open_channel(ChannelKind.EMBEDDINGS, name="vectors", now=now)
    frame = bytes(range(256)) * 40  # 10 KiB: several fragments
    array = np.random.default_rng(3).standard_normal((8, 768)).astype(np.float32)
    c.send(audio, b"a" * 160, now=now)
    c.send(video, frame, now=now, keyframe=True)
    c.send(tokens, [1, 2, 3], now=now)
    c.send(tokens, TokenMessage(ids=(4, 5), text="hello"), now=now)
    c.send(emb, array, now=now)
    pair.run(0.2)

    opened = {e.channel_id: e for e in pair.events("server", ChannelOpened)}
    assert {o.kind for o in opened.values()} == set(ChannelKind)
    assert opened[emb].name == "vectors"
    assert [m.payload for m in received(pair, audio)] == [b"a" * 160]
    (v,) = received(pair, video)
    assert v.payload == frame
    assert v.keyframe
    assert [m.payload.ids for m in received(pair, tokens)] == [(1, 2, 3), (4, 5)]
    assert received(pair, tokens)[1].payload.text == "hello"
    (e,) = received(pair, emb)
    assert e.payload.dtype == np.float32
    assert np.array_equal(e.payload, array)
    # capture-to-delivery latency is the link delay (5 ms) plus scheduling
    assert 0.004 < v.latency < 0.05
    assert pair.server is not None
    stats = pair.server.channel_stats(video)
    assert stats.delivered == 1
    assert stats.delivered_bytes == len(frame)
    assert pair.client.channel_stats(video).sent_datagrams >= 9


def test_tokens_survive_loss_in_order(cert_pair) -> None:
    # lose every 7th datagram in both directions after the handshake
    p = Pair(*cert_pair, drop=lambda d, i, data: i > 10 and i % 7 == 0)
    p.run(1.0)
    assert p.client.ready
    ch = p.client.open_channel("tokens", now=p.now)
    for i in range(300):
        p.client.send(ch, TokenMessage(ids=(i,), text=f"t{i}"), now=p.now)
        p.run(0.005)
    p.run(3.0)
    got = [m.payload.ids[0] for m in received(p, ch)]
    assert got == list(range(300))


def test_embeddings_large_message_chunked(pair: Pair) -> None:
    ch = pair.client.open_channel("embeddings", now=pair.now)
    big = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)  # 8 MB
    pair.client.send(ch, big, now=pair.now)
    pair.run(5.0)
    (msg,) = received(pair, ch)
    assert msg.payload.shape == (1000, 1000)
    assert np.array_equal(msg.payload, big)


def test_sender_drops_expired_frames(pair: Pair) -> None:
    ch = pair.client.open_channel("audio", now=pair.now)
    # captured 200 ms ago: past the 150 ms deadline before it can leave
    pair.client.send(ch, b"late", now=pair.now, timestamp=pair.now - 0.2)
    pair.client.send(ch, b"fresh", now=pair.now)
    pair.run(0.2)
    assert [m.payload for m in received(pair, ch)] == [b"fresh"]
    stats = pair.client.channel_stats(ch)
    assert stats.expired == 1
    assert stats.sent_datagrams == 1


def test_receiver_reports_incomplete_frame(cert_pair) -> None:
    dropped: list[int] = []

    def drop_second_fragment(direction: str, index: int, data: bytes) -> bool:
        # the payload is encrypted, so pick by size: the frame's datagrams are full-sized
        if direction == "c2s" and len(data) >= 1100 and not dropped and index > 5:
            dropped.append(index)
            return True
        return False

    p = Pair(*cert_pair)
    p.run(0.5)
    ch = p.client.open_channel("video", now=p.now)
    p.run(0.1)
    p.drop = drop_second_fragment
    p.client.send(ch, b"v" * 5000, now=p.now)
    p.run(1.0)
    assert dropped
    lost = [e for e in p.server_events if isinstance(e, FrameLost)]
    assert [(e.channel_id, e.reason) for e in lost] == [(ch, "incomplete")]
    assert p.server is not None
    assert p.server.channel_stats(ch).lost == 1
    assert received(p, ch) == []


def test_receiver_drops_late_frames(cert_pair) -> None:
    p = Pair(*cert_pair, delay=0.1)  # 200 ms round trip, 100 ms one way
    p.run(2.0)
    qos = QoS(priority=0, deadline_ms=50.0, reliable=False, max_queue_bytes=65536,
              max_message_bytes=1000)
    ch = p.client.open_channel("audio", qos=qos, now=p.now)
    p.client.send(ch, b"x", now=p.now)
    p.run(1.0)
    assert received(p, ch) == []
    assert [e.reason for e in p.server_events if isinstance(e, FrameLost)] == ["late"]
    assert p.server is not None
    assert p.server.channel_stats(ch).late == 1


def test_priority_audio_before_video(pair: Pair) -> None:
    video = pair.client.open_channel("video", now=pair.now)
    audio = pair.client.open_channel("audio", now=pair.now)
    pair.client.send(video, bytes(200_000), now=pair.now)
    pair.client.send(audio, b"voice", now=pair.now)
    pair.run(2.0)
    order = [e.channel_id for e in pair.server_events if isinstance(e, MessageReceived)]
    assert order == [audio, video]


def test_realtime_queue_drops_oldest(pair: Pair) -> None:
    qos = QoS(priority=2, deadline_ms=1000.0, reliable=False, max_queue_bytes=50_000,
              max_message_bytes=100_000)
    ch = pair.client.open_channel("video", qos=qos, now=pair.now)
    for i in range(10):
        pair.client.send(ch, bytes([i]) * 20_000, now=pair.now)
    stats = pair.client.channel_stats(ch)
    assert stats.dropped_queue_full == 8
    pair.run(1.0)
    assert [m.payload[0] for m in received(pair, ch)] == [8, 9]


def test_reliable_queue_full(pair: Pair) -> None:
    qos = QoS(priority=1, deadline_ms=None, reliable=True, max_queue_bytes=1000,
              max_message_bytes=2000)
    ch = pair.client.open_channel("tokens", qos=qos, now=pair.now)
    # ids of 2**30 and more take 5 bytes each in a token frame: a ~760-byte record
    pair.client.send(ch, [1 << 30] * 150, now=pair.now)
    assert not pair.client.can_send(ch, 900)
    with pytest.raises(QueueFullError):
        pair.client.send(ch, [1 << 30] * 150, now=pair.now)
    pair.run(0.5)
    assert len(received(pair, ch)) == 1  # what was accepted is delivered


def test_api_misuse_raises(pair: Pair, cert_pair) -> None:
    fresh = Pair(*cert_pair)
    with pytest.raises(LocalProtocolError, match="not ready"):
        fresh.client.open_channel("audio", now=0.0)
    c = pair.client
    with pytest.raises(LocalProtocolError, match="unknown channel kind"):
        c.open_channel("smell", now=pair.now)
    with pytest.raises(LocalProtocolError, match="no channel"):
        c.send(99, b"x", now=pair.now)
    audio = c.open_channel("audio", now=pair.now)
    with pytest.raises(MessageTooLargeError, match="max_message_bytes"):
        c.send(audio, bytes(2000), now=pair.now)  # default limit 1024
    roomy = c.open_channel("audio", name="roomy", now=pair.now, qos=QoS(
        priority=0, deadline_ms=150.0, reliable=False, max_queue_bytes=65536,
        max_message_bytes=4000))
    with pytest.raises(MessageTooLargeError, match="never fragmented"):
        c.send(roomy, bytes(2000), now=pair.now)
    with pytest.raises(LocalProtocolError, match="send bytes"):
        c.send(audio, "text", now=pair.now)
    tokens = c.open_channel("tokens", now=pair.now)
    with pytest.raises(LocalProtocolError):
        c.send(tokens, [-1], now=pair.now)
    emb = c.open_channel("embeddings", now=pair.now)
    with pytest.raises(LocalProtocolError, match="dtype"):
        c.send(emb, np.array(["a"], dtype=object), now=pair.now)
    with pytest.raises(LocalProtocolError, match="reliable"):
        c.open_channel("audio", qos=QoS(priority=0, deadline_ms=None, reliable=True,
                                        max_queue_bytes=10, max_message_bytes=10),
                       now=pair.now)
    c.close_channel(audio, now=pair.now)
    with pytest.raises(LocalProtocolError, match="closed"):
        c.send(audio, b"x", now=pair.now)


def test_close_channel_after_last_message(pair: Pair) -> None:
    ch = pair.client.open_channel("tokens", now=pair.now)
    for i in range(50):
        pair.client.send(ch, [i], now=pair.now)
    pair.client.close_channel(ch, now=pair.now)
    pair.run(1.0)
    tail = [e for e in pair.server_events
            if isinstance(e, MessageReceived | ChannelClosed) and e.channel_id == ch]
    assert len(tail) == 51
    assert isinstance(tail[-1], ChannelClosed)


def test_app_message_and_server_opened_channel(pair: Pair) -> None:
    assert pair.server is not None
    pair.client.send_app_message({"hello": [1, 2]}, now=pair.now)
    ch = pair.server.open_channel("audio", now=pair.now)
    assert ch % 2 == 1  # server-opened ids are odd
    pair.server.send(ch, b"down", now=pair.now)
    pair.run(0.2)
    assert pair.events("server", AppMessageReceived) == [AppMessageReceived(body={"hello": [1, 2]})]
    got = [e.payload for e in pair.client_events if isinstance(e, MessageReceived)]
    assert got == [b"down"]


def test_malformed_datagrams_counted_and_dropped(pair: Pair) -> None:
    quic = pair.client.quic
    quic.send_datagram_frame(b"\x00")  # too short
    quic.send_datagram_frame(b"\xff" * 30)  # wrong version nibble
    quic.send_datagram_frame(encode_header(channel_id=0, sequence=0, timestamp_us=0,
                                           frame_id=0, type=5))  # unknown type
    quic.send_datagram_frame(encode_header(channel_id=40, sequence=0, timestamp_us=0,
                                           frame_id=0) + b"x")  # never-opened channel
    pair.run(2.0)
    assert pair.server is not None
    counters = pair.server.counters
    assert counters.malformed_datagrams == 2
    assert counters.unknown_type_datagrams == 1
    assert counters.unknown_channel_datagrams == 1
    assert not pair.server.closed
    # the session still works
    ch = pair.client.open_channel("audio", now=pair.now)
    pair.client.send(ch, b"ok", now=pair.now)
    pair.run(0.2)
    assert [m.payload for m in received(pair, ch)] == [b"ok"]


def test_datagram_before_open_is_held(pair: Pair) -> None:
    # a datagram for the client's next channel id arrives before its open message
    quic = pair.client.quic
    quic.send_datagram_frame(encode_header(channel_id=0, sequence=0, timestamp_us=round(
        pair.now * 1e6), frame_id=0) + b"early")
    pair.run(0.05)
    ch = pair.client.open_channel("audio", now=pair.now)
    assert ch == 0
    pair.run(0.2)
    assert [m.payload for m in received(pair, ch)] == [b"early"]


def test_garbage_on_control_stream_closes(pair: Pair) -> None:
    pair.client.quic.send_stream_data(0, encode_record(b"\xff\xfe not cbor"))
    pair.run(1.0)
    (closed,) = pair.events("server", SessionClosed)
    assert closed.error_code == ErrorCode.CONTROL_PROTOCOL_ERROR
    assert not closed.by_peer
    (peer,) = pair.events("client", SessionClosed)
    assert peer.by_peer
    assert peer.error_code == ErrorCode.CONTROL_PROTOCOL_ERROR


def test_peer_open_with_wrong_parity_closes(pair: Pair) -> None:
    msg = ctl.OpenChannel(channel_id=1, kind=ChannelKind.AUDIO, name="a",
                          qos=QoS(priority=0, deadline_ms=100.0, reliable=False,
                                  max_queue_bytes=1, max_message_bytes=100))
    pair.client.quic.send_stream_data(0, encode_record(ctl.encode_control(msg)))
    pair.run(1.0)
    (closed,) = pair.events("server", SessionClosed)
    assert closed.error_code == ErrorCode.CONTROL_PROTOCOL_ERROR


def test_version_negotiation_failure(cert_pair, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ctl.encode_control

    def future_client(msg: ctl.ControlMessage) -> bytes:
        if isinstance(msg, ctl.Hello):
            msg = ctl.Hello(versions=(7, 8), clock=msg.clock)
        return real(msg)

    monkeypatch.setattr(ctl, "encode_control", future_client)
    p = Pair(*cert_pair)
    p.run(1.0)
    assert not p.client.ready
    (closed,) = p.events("client", SessionClosed)
    assert closed.error_code == ErrorCode.VERSION_NEGOTIATION_FAILED
    assert closed.by_peer


def test_hello_timeout(cert_pair, monkeypatch: pytest.MonkeyPatch) -> None:
    import cbor2

    from edgewire.transport import SessionConfig

    real = ctl.encode_control
    # the client's hello turns into a message type the server skips: no answer comes
    monkeypatch.setattr(ctl, "encode_control",
                        lambda m: cbor2.dumps({"t": "later"}) if isinstance(m, ctl.Hello)
                        else real(m))
    p = Pair(*cert_pair, client_config=SessionConfig(hello_timeout=2.0))
    p.run(5.0)
    (closed,) = p.events("client", SessionClosed)
    assert closed.error_code == ErrorCode.HELLO_TIMEOUT


def test_stats_dict(pair: Pair) -> None:
    ch = pair.client.open_channel("audio", now=pair.now)
    for _ in range(5):
        pair.client.send(ch, b"x" * 100, now=pair.now)
        pair.run(0.02)
    stats = pair.client.stats()
    assert stats["rtt_ms"]["min"] == pytest.approx(10.0, abs=3.0)
    assert stats["cwnd_bytes"] > 0
    assert stats["bytes_in_flight"] >= 0
    assert stats["channels"]["audio#0"]["sent_messages"] == 5
    assert pair.server is not None
    server_row = pair.server.stats()["channels"]["audio#0"]
    assert server_row["delivered"] == 5
    assert server_row["latency_ms"]["p50"] == pytest.approx(5.0, abs=2.0)


def test_started_frame_does_not_pin_the_timer(cert_pair) -> None:
    # all traffic lost: the congestion window fills with the first fragments of a big frame
    p = Pair(*cert_pair)
    p.run(0.5)
    ch = p.client.open_channel("video", now=p.now)
    p.run(0.1)
    p.drop = lambda d, i, data: True
    p.client.send(ch, bytes(200_000), now=p.now)
    p.run(0.6)  # past the 300 ms deadline: the started frame is kept, nothing can expire
    timer = p.client.get_timer()
    assert timer is None or timer > p.now


def test_datagram_on_reliable_channel_is_dropped(pair: Pair) -> None:
    qos = QoS(priority=1, deadline_ms=100.0, reliable=True, max_queue_bytes=1000,
              max_message_bytes=1000)
    ch = pair.client.open_channel("tokens", qos=qos, now=pair.now)
    pair.run(0.1)
    pair.client.quic.send_datagram_frame(
        encode_header(channel_id=ch, sequence=0, timestamp_us=0, frame_id=0) + b"raw")
    pair.run(0.2)
    assert received(pair, ch) == []
    assert pair.server is not None
    assert pair.server.channel_stats(ch).malformed == 1


def test_app_message_refused_locally(pair: Pair) -> None:
    with pytest.raises(MessageTooLargeError):
        pair.client.send_app_message(b"x" * 70_000, now=pair.now)
    with pytest.raises(LocalProtocolError, match="CBOR"):
        pair.client.send_app_message(object(), now=pair.now)
    pair.run(0.5)
    assert not pair.client.closed


def test_realtime_close_waits_for_frames_still_on_their_way(cert_pair) -> None:
    # the close travels on the control stream and may overtake the last datagrams; the
    # receiver reports ChannelClosed once every frame sent is accounted for, or one
    # deadline after the close for those that never come
    dropped: list[int] = []

    def drop_last_frame(direction: str, index: int, data: bytes) -> bool:
        if direction == "c2s" and len(data) >= 1100 and not dropped:
            dropped.append(index)
            return True
        return False

    p = Pair(*cert_pair, client_config=SessionConfig(recovery=RecoveryConfig(mode="none")))
    p.run(0.5)
    qos = QoS(priority=2, deadline_ms=300.0, reliable=False, max_queue_bytes=1 << 20,
              max_message_bytes=4000)
    ch = p.client.open_channel("video", qos=qos, now=p.now)
    p.run(0.1)
    p.client.send(ch, b"a" * 500, now=p.now)
    p.run(0.1)
    p.drop = drop_last_frame
    p.client.send(ch, b"b" * 1150, now=p.now)  # one full-size datagram, dropped
    p.client.close_channel(ch, now=p.now)
    p.run(0.1)
    assert dropped
    closed = [e for e in p.server_events if isinstance(e, ChannelClosed)]
    assert closed == []  # the second frame might still come
    assert [m.payload for m in received(p, ch)] == [b"a" * 500]
    p.run(0.3)
    closed = [e for e in p.server_events if isinstance(e, ChannelClosed)]
    assert closed == [ChannelClosed(channel_id=ch)]


def test_token_logprobs_end_and_error_reach_the_receiver(pair: Pair) -> None:
    ch = pair.client.open_channel("tokens", now=pair.now)
    pair.client.send(ch, TokenMessage(ids=(5, 7), text="hi", logprobs=(-0.25, -1.5)),
                     now=pair.now)
    pair.client.send(ch, TokenMessage(ids=(), error="model overloaded"), now=pair.now)
    pair.run(0.2)
    got = [e.payload for e in received(pair, ch)]
    assert [(m.ids, m.text, m.logprobs, m.end, m.error) for m in got] == [
        ((5, 7), "hi", (-0.25, -1.5), False, None),
        ((), None, None, True, "model overloaded"),
    ]


@pytest.mark.parametrize(("client_estimator", "server_estimator", "server_wait", "client_wait"),
                         [("delivery", "gcc", 0.025, 0.1), ("gcc", "delivery", 0.1, 0.025),
                          ("gcc", "gcc", 0.1, 0.1)])
def test_hello_carries_the_feedback_interval_each_estimator_asks_for(
        cert_pair: tuple[str, str], client_estimator: str, server_estimator: str,
        server_wait: float, client_wait: float) -> None:
    # each side's receiver reports at the interval the other side's estimator wants:
    # "delivery" asks for 25 ms, "gcc" states no wish (the 100 ms default)
    p = Pair(*cert_pair, client_config=SessionConfig(estimator=client_estimator),
             server_config=SessionConfig(estimator=server_estimator))
    p.run(0.5)
    assert p.client.ready
    assert p.server is not None
    assert p.server.ready
    assert p.server._rate.recorder.max_wait == pytest.approx(server_wait)
    assert p.client._rate.recorder.max_wait == pytest.approx(client_wait)
