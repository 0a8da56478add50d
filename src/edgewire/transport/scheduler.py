"""Send queues with deadlines, and the priority order the session serves them in.

aioquic's own DATAGRAM queue is unbounded and never expires anything, so edgewire holds
frames here and hands aioquic only what the congestion window can take now.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from edgewire.errors import QueueFullError

__all__ = ["DatagramQueue", "PriorityOrder", "StreamQueue"]


@dataclass(slots=True)
class _Frame:
    datagrams: deque[bytes]
    deadline: float
    size: int
    started: bool = False


class DatagramQueue:
    """Frames waiting to be sent as DATAGRAMs, oldest first, each with a deadline.

    A frame leaves whole or not at all: when its deadline passes before its first fragment
    is sent, every fragment is dropped and counted once in ``expired``. Over the byte limit,
    the oldest frames are dropped (``dropped``).
    """

    __slots__ = ("_frames", "bytes", "dropped", "expired", "limit_bytes")

    def __init__(self, *, limit_bytes: int) -> None:
        self._frames: deque[_Frame] = deque()
        self.bytes = 0
        self.limit_bytes = limit_bytes
        self.expired = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, datagrams: list[bytes], *, deadline: float) -> None:
        """Queue one frame's datagrams; drop the oldest frames if over the limit."""
        if not datagrams:
            raise ValueError("a frame needs at least one datagram")
        size = sum(len(d) for d in datagrams)
        self._frames.append(_Frame(deque(datagrams), deadline, size))
        self.bytes += size
        frames = self._frames
        # drop the oldest frames not yet started: a started one is finished, since the
        # peer would otherwise get a partial frame for the bandwidth already spent
        victim = 1 if frames[0].started else 0
        while self.bytes > self.limit_bytes and len(frames) - victim > 1:
            old = frames[victim]
            del frames[victim]
            self.bytes -= old.size
            self.dropped += 1

    def next_deadline(self) -> float | None:
        """When the head frame expires; None when empty or when the head has started
        (a started frame is always finished, so nothing can expire before it leaves)."""
        frames = self._frames
        if not frames or frames[0].started:
            return None
        return frames[0].deadline

    def expire(self, now: float) -> None:
        """Drop unstarted frames at the head whose deadline has passed."""
        frames = self._frames
        while frames and frames[0].deadline <= now and not frames[0].started:
            self.bytes -= frames.popleft().size
            self.expired += 1

    def pop(self, now: float) -> bytes | None:
        """Next datagram to send, skipping expired frames; None when nothing is left.

        A frame whose first fragment went out is finished even past its deadline, since a
        partial frame is worth nothing to the receiver.
        """
        item = self.pop_with_deadline(now)
        return None if item is None else item[0]

    def pop_with_deadline(self, now: float) -> tuple[bytes, float] | None:
        """Like :meth:`pop`, with the deadline of the datagram's frame."""
        self.expire(now)
        frames = self._frames
        if not frames:
            return None
        head = frames[0]
        head.started = True
        data = head.datagrams.popleft()
        self.bytes -= len(data)
        head.size -= len(data)
        if not head.datagrams:
            frames.popleft()
        return data, head.deadline


class StreamQueue:
    """Encoded records waiting to be written to a reliable channel's stream.

    Accepted records are never dropped; ``push`` refuses beyond the byte limit instead.
    """

    __slots__ = ("_chunks", "bytes", "limit_bytes")

    def __init__(self, *, limit_bytes: int) -> None:
        self._chunks: deque[memoryview] = deque()
        self.bytes = 0
        self.limit_bytes = limit_bytes

    def __len__(self) -> int:
        return self.bytes

    def has_room(self, size: int) -> bool:
        """True if a record of ``size`` bytes would be accepted now."""
        return self.bytes + size <= self.limit_bytes or self.bytes == 0

    def push(self, *parts: bytes) -> None:
        """Queue one record given as consecutive parts (kept apart: no copy to join them).

        QueueFullError if it does not fit; an empty queue takes any size.
        """
        size = sum(len(p) for p in parts)
        if not self.has_room(size):
            raise QueueFullError(
                f"send queue holds {self.bytes} bytes; a {size}-byte message would "
                f"exceed its limit of {self.limit_bytes}"
            )
        self._chunks.extend(memoryview(p) for p in parts if p)
        self.bytes += size

    def take(self, max_bytes: int) -> list[memoryview]:
        """Up to ``max_bytes`` from the head, as views into the queued records."""
        out: list[memoryview] = []
        want = max_bytes
        chunks = self._chunks
        while chunks and want > 0:
            head = chunks[0]
            if len(head) <= want:
                out.append(chunks.popleft())
                want -= len(head)
            else:
                out.append(head[:want])
                chunks[0] = head[want:]
                want = 0
        taken = max_bytes - want
        self.bytes -= taken
        return out


class PriorityOrder:
    """Strict priority between levels, round-robin among channels of the same level."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: dict[int, deque[int]] = {}

    def add(self, channel_id: int, priority: int) -> None:
        """Schedule a channel at a priority level (0 first)."""
        self._levels.setdefault(priority, deque()).append(channel_id)

    def remove(self, channel_id: int) -> None:
        """Stop scheduling a channel."""
        for level in self._levels.values():
            if channel_id in level:
                level.remove(channel_id)

    def order(self) -> list[int]:
        """Channel ids in service order; rotates each level so equals take turns."""
        out: list[int] = []
        for prio in sorted(self._levels):
            level = self._levels[prio]
            out.extend(level)
            if len(level) > 1:
                level.rotate(-1)
        return out


def earliest(*times: float | None) -> float | None:
    """The smallest of the given times, ignoring None; None if all are None."""
    best = math.inf
    for t in times:
        if t is not None and t < best:
            best = t
    return None if best == math.inf else best
