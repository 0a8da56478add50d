"""Send queues and priority order (scheduler.py); reassembly and duplicate ids (channel.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.errors import LocalProtocolError, QueueFullError
from edgewire.transport.channel import ChannelInfo, ChannelState, Reassembler, RecentIds
from edgewire.transport.qos import DEFAULT_QOS, ChannelKind
from edgewire.transport.scheduler import DatagramQueue, PriorityOrder, StreamQueue, earliest


def frame(n: int, tag: int = 0, size: int = 10) -> list[bytes]:
    """``n`` distinct datagrams of ``size`` bytes, recognisable by ``tag``."""
    out = [f"{tag}:{i}:".encode().ljust(size, b".") for i in range(n)]
    assert all(len(d) == size for d in out)
    return out


def joined(views: list[memoryview]) -> bytes:
    return b"".join(views)


def drain(q: DatagramQueue, now: float) -> list[bytes]:
    out = []
    while (d := q.pop(now)) is not None:
        out.append(d)
    return out


# ---------------------------------------------------------------------- DatagramQueue


def test_frame_expires_whole_at_its_deadline() -> None:
    q = DatagramQueue(limit_bytes=1 << 20)
    q.push(frame(3), deadline=1.0)
    assert q.next_deadline() == 1.0
    q.expire(0.999)
    assert len(q) == 1
    # the deadline itself is already too late
    assert q.pop(1.0) is None
    assert q.expired == 1
    assert q.bytes == 0
    assert len(q) == 0
    assert q.next_deadline() is None
    q.expire(2.0)
    assert q.expired == 1


def test_expire_counts_each_frame_once() -> None:
    q = DatagramQueue(limit_bytes=1 << 20)
    for i in range(4):
        q.push(frame(5, i), deadline=1.0 + i)
    q.expire(2.5)
    q.expire(2.5)
    assert q.expired == 2
    assert drain(q, 2.5) == frame(5, 2) + frame(5, 3)
    assert q.expired == 2


def test_started_frame_is_finished_past_its_deadline() -> None:
    q = DatagramQueue(limit_bytes=1 << 20)
    q.push(frame(3), deadline=1.0)
    q.push(frame(1, 1), deadline=1.5)
    assert q.pop(0.5) == frame(3)[0]
    q.expire(5.0)
    assert q.pop(5.0) == frame(3)[1]
    assert q.pop(9.0) == frame(3)[2]
    # the frame behind it was not started and is past its deadline
    assert q.pop(9.0) is None
    assert q.expired == 1
    assert q.bytes == 0


@settings(max_examples=200)
@given(
    frames=st.lists(st.tuples(st.integers(min_value=1, max_value=4),
                              st.floats(min_value=0, max_value=10)), max_size=10),
    now=st.floats(min_value=0, max_value=10),
)
def test_pop_skips_exactly_the_expired_frames(frames: list[tuple[int, float]],
                                              now: float) -> None:
    q = DatagramQueue(limit_bytes=1 << 20)
    for tag, (n, deadline) in enumerate(frames):
        q.push(frame(n, tag), deadline=deadline)
    out = drain(q, now)
    assert out == [d for tag, (n, dl) in enumerate(frames) if dl > now for d in frame(n, tag)]
    assert q.expired == sum(dl <= now for _, dl in frames)
    assert q.bytes == 0
    assert q.dropped == 0


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(min_value=1, max_value=4),
                  st.floats(min_value=0, max_value=3)),
        st.tuples(st.just("pop"), st.floats(min_value=0, max_value=0.5)),
        st.tuples(st.just("expire"), st.floats(min_value=0, max_value=0.5)),
    ),
    max_size=40,
)


@settings(max_examples=400)
@given(ops=ops, limit=st.one_of(st.just(1 << 30), st.integers(min_value=10, max_value=120)))
def test_frames_leave_whole_or_not_at_all(ops: list[tuple], limit: int) -> None:
    # deadlines and the byte limit may both take frames away, but never part of one
    q = DatagramQueue(limit_bytes=limit)
    now = 0.0
    deadlines: dict[int, float] = {}
    counts: dict[int, int] = {}
    sent: dict[int, list[bytes]] = {}
    first_sent_at: dict[int, float] = {}
    order: list[int] = []
    for op in ops:
        if op[0] == "push":
            tag = len(deadlines)
            deadlines[tag] = now + op[2]
            counts[tag] = op[1]
            q.push(frame(op[1], tag), deadline=now + op[2])
        else:
            now += op[1]
            if op[0] == "expire":
                q.expire(now)
                continue
            d = q.pop(now)
            if d is not None:
                tag = int(d.split(b":")[0])
                if tag not in sent:
                    order.append(tag)
                    first_sent_at[tag] = now
                sent.setdefault(tag, []).append(d)
        assert q.bytes >= 0
    for d in drain(q, math.inf):
        tag = int(d.split(b":")[0])
        assert tag in sent, "a frame started only after its deadline"
        sent[tag].append(d)
    assert q.bytes == 0
    assert len(q) == 0
    assert order == sorted(order)
    for tag, datagrams in sent.items():
        assert datagrams == frame(counts[tag], tag)
        assert first_sent_at[tag] < deadlines[tag]
    assert q.expired + q.dropped == len(deadlines) - len(sent)
    if limit == 1 << 30:
        assert q.dropped == 0


@settings(max_examples=300)
@given(sizes=st.lists(st.integers(min_value=8, max_value=50), min_size=1, max_size=15),
       limit=st.integers(min_value=1, max_value=120))
def test_byte_limit_drops_oldest_keeps_newest(sizes: list[int], limit: int) -> None:
    q = DatagramQueue(limit_bytes=limit)
    for tag, size in enumerate(sizes):
        q.push(frame(1, tag, size), deadline=10.0)
    # the longest run of newest frames that fits, and never less than the newest one
    keep = 1
    while keep < len(sizes) and sum(sizes[-keep - 1 :]) <= limit:
        keep += 1
    kept = list(range(len(sizes) - keep, len(sizes)))
    assert q.dropped == len(sizes) - keep
    assert q.bytes == sum(sizes[t] for t in kept)
    assert len(q) == keep
    assert drain(q, 0.0) == [frame(1, t, sizes[t])[0] for t in kept]
    assert q.expired == 0


def test_frame_larger_than_limit_is_kept_alone() -> None:
    q = DatagramQueue(limit_bytes=15)
    q.push(frame(1, 0), deadline=1.0)
    q.push(frame(3, 1), deadline=1.0)
    assert q.dropped == 1
    assert drain(q, 0.0) == frame(3, 1)


def test_byte_limit_spares_a_started_frame() -> None:
    q = DatagramQueue(limit_bytes=30)
    q.push(frame(3, 0), deadline=1.0)
    assert q.pop(0.0) == frame(3, 0)[0]
    q.push(frame(3, 1), deadline=1.0)
    # over the limit, but the only candidates are the started frame and the newest one
    assert q.dropped == 0
    assert q.bytes == 50
    assert drain(q, 0.0) == frame(3, 0)[1:] + frame(3, 1)


def test_byte_limit_drops_behind_a_started_frame() -> None:
    q = DatagramQueue(limit_bytes=50)
    q.push(frame(3, 0), deadline=1.0)
    q.pop(0.0)
    q.push(frame(3, 1), deadline=1.0)
    q.push(frame(3, 2), deadline=1.0)
    assert q.dropped == 1
    assert q.bytes == 50
    assert drain(q, 0.0) == frame(3, 0)[1:] + frame(3, 2)


# ---------------------------------------------------------------------- StreamQueue

# A record is pushed as consecutive parts (length header, body) and must count as one unit.
records = st.lists(st.binary(max_size=30), min_size=1, max_size=3)


@settings(max_examples=300)
@given(ops=st.lists(st.one_of(records, st.integers(min_value=-2, max_value=40)), max_size=30))
def test_stream_queue_take_splits_and_joins_exactly(ops: list[list[bytes] | int]) -> None:
    q = StreamQueue(limit_bytes=1 << 20)
    pending = bytearray()
    for op in ops:
        if isinstance(op, list):
            q.push(*op)
            pending += b"".join(op)
        else:
            views = q.take(op)
            assert all(isinstance(v, memoryview) and len(v) for v in views)
            got = joined(views)
            assert got == bytes(pending[: max(op, 0)])
            del pending[: max(op, 0)]
        assert q.bytes == len(q) == len(pending)
    assert joined(q.take(1 << 20)) == bytes(pending)
    assert q.bytes == 0
    assert q.take(1) == []


def test_stream_queue_take_nothing() -> None:
    q = StreamQueue(limit_bytes=100)
    q.push(b"abc")
    assert q.take(0) == []
    assert q.take(-5) == []
    assert q.bytes == 3
    assert StreamQueue(limit_bytes=1).take(10) == []


def test_stream_queue_empty_parts() -> None:
    q = StreamQueue(limit_bytes=100)
    q.push(b"", b"ab", b"", b"c")
    q.push()
    assert q.bytes == 3
    assert [bytes(v) for v in q.take(10)] == [b"ab", b"c"]


@settings(max_examples=300)
@given(sizes=st.lists(st.tuples(st.integers(min_value=0, max_value=40),
                                st.integers(min_value=0, max_value=40)), max_size=10),
       limit=st.integers(min_value=1, max_value=100))
def test_stream_queue_limit(sizes: list[tuple[int, int]], limit: int) -> None:
    q = StreamQueue(limit_bytes=limit)
    held = 0
    for head, body in sizes:
        size = head + body
        fits = held == 0 or held + size <= limit
        assert q.has_room(size) == fits
        if fits:
            q.push(b"h" * head, b"b" * body)
            held += size
        else:
            with pytest.raises(QueueFullError):
                q.push(b"h" * head, b"b" * body)
        assert q.bytes == held
    # refused records left nothing behind, not even their first part
    assert joined(q.take(1 << 20)) == b"".join(
        b"h" * h + b"b" * b for h, b in _accepted(sizes, limit))


def _accepted(sizes: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    held = 0
    out = []
    for head, body in sizes:
        if held == 0 or held + head + body <= limit:
            out.append((head, body))
            held += head + body
    return out


def test_empty_stream_queue_accepts_any_size() -> None:
    q = StreamQueue(limit_bytes=10)
    q.push(b"y" * 1000)
    assert q.bytes == 1000
    with pytest.raises(QueueFullError):
        q.push(b"z")
    assert issubclass(QueueFullError, LocalProtocolError)
    q.take(1000)
    q.push(b"z" * 10)
    assert q.bytes == 10


# ---------------------------------------------------------------------- PriorityOrder


@settings(max_examples=200)
@given(prios=st.dictionaries(st.integers(min_value=0, max_value=100),
                             st.integers(min_value=0, max_value=7), max_size=12),
       rounds=st.integers(min_value=1, max_value=5))
def test_priority_order_is_strict(prios: dict[int, int], rounds: int) -> None:
    order = PriorityOrder()
    for cid, prio in prios.items():
        order.add(cid, prio)
    for _ in range(rounds):
        out = order.order()
        assert sorted(out) == sorted(prios)
        assert [prios[c] for c in out] == sorted(prios[c] for c in out)


@settings(max_examples=200)
@given(n=st.integers(min_value=1, max_value=6), other=st.integers(min_value=0, max_value=3))
def test_round_robin_within_a_level(n: int, other: int) -> None:
    order = PriorityOrder()
    for cid in range(n):
        order.add(cid, 3)
    for cid in range(100, 100 + other):
        order.add(cid, 1)
    level = [[c for c in order.order() if c < 100] for _ in range(n)]
    # each channel leads exactly once per n rounds, and the cyclic order never changes
    assert sorted(r[0] for r in level) == list(range(n))
    for r in level:
        assert r == [(r[0] + i) % n for i in range(n)]


def test_priority_order_remove() -> None:
    order = PriorityOrder()
    order.add(1, 0)
    order.add(2, 5)
    order.add(3, 5)
    order.remove(2)
    assert order.order() == [1, 3]
    order.remove(99)
    assert order.order() == [1, 3]


def test_earliest() -> None:
    assert earliest() is None
    assert earliest(None, None) is None
    assert earliest(3.0, None, 1.5, 2.0) == 1.5
    assert earliest(-1.0) == -1.0


# ---------------------------------------------------------------------- Reassembler


def add(r: Reassembler, frame_id: int, index: int, count: int, payload: bytes = b"p", *,
        deadline: float = 10.0) -> tuple[bytes | None, list[int], bool]:
    return r.add(frame_id=frame_id, index=index, count=count, payload=payload, capture=0.0,
                 deadline=deadline, keyframe=False)


@settings(max_examples=300)
@given(payload=st.binary(min_size=1, max_size=200), data=st.data())
def test_fragments_in_any_order_complete_the_frame(payload: bytes, data: st.DataObject) -> None:
    count = data.draw(st.integers(min_value=1, max_value=min(len(payload), 12)))
    step = -(-len(payload) // count)
    parts = [payload[i * step : (i + 1) * step] for i in range(count)]
    order = data.draw(st.permutations(range(count)))
    r = Reassembler()
    for n, index in enumerate(order):
        whole, evicted, dup = add(r, 7, index, count, parts[index])
        assert evicted == []
        assert not dup
        if n < count - 1:
            assert whole is None
            assert r.bytes == sum(len(parts[i]) for i in order[: n + 1])
    assert whole == payload
    assert len(r) == 0
    assert r.bytes == 0
    assert 7 in r.recent


def test_duplicate_fragments() -> None:
    r = Reassembler()
    assert add(r, 1, 0, 3) == (None, [], False)
    assert add(r, 1, 0, 3) == (None, [], True)
    # a fragment that disagrees about the count is treated as a duplicate, not trusted
    assert add(r, 1, 1, 4) == (None, [], True)
    assert r.bytes == 1
    assert add(r, 1, 1, 3, b"q") == (None, [], False)
    assert add(r, 1, 2, 3, b"r") == (b"pqr", [], False)
    # stragglers of a finished frame
    assert add(r, 1, 2, 3) == (None, [], True)
    assert len(r) == 0


def test_expire_gives_up_on_partial_frames_at_their_deadline() -> None:
    r = Reassembler()
    add(r, 1, 0, 2, deadline=1.0)
    add(r, 2, 0, 2, deadline=2.0)
    assert r.next_deadline() == 1.0
    assert r.expire(0.5) == []
    assert r.expire(1.0) == [1]
    assert r.next_deadline() == 2.0
    assert r.bytes == 1
    # the late fragment of the abandoned frame must not resurrect it
    assert add(r, 1, 1, 2) == (None, [], True)
    assert r.expire(5.0) == [2]
    assert r.next_deadline() is None
    assert r.bytes == 0


def test_eviction_beyond_max_frames() -> None:
    r = Reassembler(max_frames=2)
    add(r, 10, 0, 2)
    add(r, 11, 0, 2)
    assert add(r, 12, 0, 2) == (None, [10], False)
    assert len(r) == 2
    assert 10 in r.recent
    assert add(r, 10, 1, 2) == (None, [], True)
    assert add(r, 11, 1, 2) == (b"pp", [], False)


def test_eviction_beyond_max_bytes() -> None:
    r = Reassembler(max_bytes=10)
    add(r, 1, 0, 3, b"x" * 4)
    add(r, 2, 0, 3, b"y" * 4)
    whole, evicted, dup = add(r, 3, 0, 3, b"z" * 4)
    assert (whole, evicted, dup) == (None, [1], False)
    assert r.bytes == 8
    # a single fragment over the limit evicts everything, itself included
    assert add(r, 4, 0, 2, b"w" * 11)[1] == [2, 3, 4]
    assert r.bytes == 0
    assert len(r) == 0


@settings(max_examples=200)
@given(frags=st.lists(st.tuples(st.integers(min_value=0, max_value=20),
                                st.integers(min_value=1, max_value=30)), max_size=40),
       max_frames=st.integers(min_value=1, max_value=5),
       max_bytes=st.integers(min_value=1, max_value=80))
def test_reassembler_stays_within_limits(frags: list[tuple[int, int]], max_frames: int,
                                         max_bytes: int) -> None:
    r = Reassembler(max_frames=max_frames, max_bytes=max_bytes)
    reported: list[int] = []
    for i, (fid, size) in enumerate(frags):
        whole, evicted, _ = add(r, fid, i % 3, 3, b"b" * size)
        reported += evicted
        if whole is not None:
            reported.append(fid)
        assert len(r) <= max_frames
        assert r.bytes <= max_bytes
    assert len(reported) == len(set(reported)), "a frame was finished or evicted twice"


# ---------------------------------------------------------------------- RecentIds


@settings(max_examples=200)
@given(n=st.integers(min_value=0, max_value=50), capacity=st.integers(min_value=1, max_value=10))
def test_recent_ids_keeps_the_last_capacity(n: int, capacity: int) -> None:
    recent = RecentIds(capacity)
    for i in range(n):
        recent.add(i)
    assert [i for i in range(n) if i in recent] == list(range(max(0, n - capacity), n))


@settings(max_examples=200)
@given(ids=st.lists(st.integers(min_value=0, max_value=8), max_size=40),
       capacity=st.integers(min_value=1, max_value=5))
def test_recent_ids_bounded_with_repeats(ids: list[int], capacity: int) -> None:
    recent = RecentIds(capacity)
    for i in ids:
        recent.add(i)
        assert i in recent
        assert sum(j in recent for j in range(9)) <= capacity


# ---------------------------------------------------------------------- ChannelState


@pytest.mark.parametrize("kind", list(ChannelKind))
def test_channel_state_has_the_right_queue(kind: ChannelKind) -> None:
    qos = DEFAULT_QOS[kind]
    state = ChannelState.create(ChannelInfo(channel_id=4, kind=kind, name="c", qos=qos,
                                            local=True))
    assert state.channel_id == 4
    if kind.reliable:
        assert state.stream_queue is not None
        assert state.dgram_queue is None
        assert state.stream_queue.limit_bytes == qos.max_queue_bytes
        state.stream_queue.push(b"abc")
    else:
        assert state.dgram_queue is not None
        assert state.stream_queue is None
        assert state.dgram_queue.limit_bytes == qos.max_queue_bytes
        state.dgram_queue.push([b"abc"], deadline=1.0)
    assert state.queued_bytes() == 3
