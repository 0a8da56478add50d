"""Keyframe requests: a video receiver asks, the sender's application is told (sans-I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError, RemoteProtocolError
from edgewire.transport import ChannelOpened, KeyframeRequested
from edgewire.transport import control as ctl
from edgewire.transport.session import K_KEYFRAME_REQUEST_INTERVAL
from tests.helpers import Pair


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_keyframe_request_round_trip(channel_id: int) -> None:
    msg = ctl.KeyframeRequest(channel_id=channel_id)
    assert ctl.decode_control(ctl.encode_control(msg)) == msg


@pytest.mark.parametrize("ch", [-1, 0x10000, True, "3", 1.5, None])
def test_keyframe_request_bad_channel_rejected(ch: object) -> None:
    import cbor2

    with pytest.raises(RemoteProtocolError):
        ctl.decode_control(cbor2.dumps({"t": "kf", "ch": ch}))


def _video_pair(pair: Pair) -> tuple[int, int]:
    """(client-side id of a server-opened video channel, same id on the server)."""
    assert pair.server is not None
    ch = pair.server.open_channel("video", now=pair.now)
    pair.server.send(ch, b"k" * 3000, now=pair.now, keyframe=True)
    pair.run(0.2)
    opened = [e for e in pair.client_events if isinstance(e, ChannelOpened)]
    assert [e.channel_id for e in opened] == [ch]
    return ch, ch


def test_request_reaches_the_sender_once_per_interval(pair: Pair) -> None:
    ch, _ = _video_pair(pair)
    assert pair.client.request_keyframe(ch, now=pair.now) is True
    # a second loss before the keyframe could come back asks nothing new
    assert pair.client.request_keyframe(ch, now=pair.now + 0.01) is False
    pair.run(0.1)
    assert pair.events("server", KeyframeRequested) == [KeyframeRequested(channel_id=ch)]
    assert pair.client.keyframe_requests_sent == 1
    assert pair.client.keyframe_requests_suppressed == 1
    pair.run(K_KEYFRAME_REQUEST_INTERVAL)
    assert pair.client.request_keyframe(ch, now=pair.now) is True
    pair.run(0.1)
    assert len(pair.events("server", KeyframeRequested)) == 2
    assert pair.server is not None
    assert pair.server.keyframe_requests_received == 2


def test_request_for_own_or_non_video_channel_is_refused(pair: Pair) -> None:
    ch, _ = _video_pair(pair)
    own = pair.client.open_channel("video", now=pair.now)
    audio = pair.client.open_channel("audio", now=pair.now)
    for bad in (own, audio, 999):
        with pytest.raises(LocalProtocolError):
            pair.client.request_keyframe(bad, now=pair.now)
    assert pair.client.request_keyframe(ch, now=pair.now)


def test_peer_flooding_requests_is_coalesced(pair: Pair) -> None:
    ch, _ = _video_pair(pair)
    for _ in range(50):  # a peer ignoring the rate limit
        pair.client._send_control(ctl.KeyframeRequest(channel_id=ch))
    pair.client._send_control(ctl.KeyframeRequest(channel_id=4242))  # not a channel
    pair.run(0.1)
    assert pair.server is not None
    assert pair.server.keyframe_requests_received == 50
    assert len(pair.events("server", KeyframeRequested)) == 1
    assert pair.server.counters.stray_reports == 1
