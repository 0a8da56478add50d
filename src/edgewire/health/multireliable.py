"""Reliable channels across paths: the sender's unacknowledged messages and the
receiver's in-order, duplicate-free delivery (docs/MULTIPATH.md).

Each reliable channel of a multi-endpoint session numbers its messages 0, 1, 2, ... (its
own sequence, independent of paths). The sender keeps every message until the receiver
acknowledges it cumulatively; on a switch it hands the unacknowledged ones to the new
path again. The receiver delivers sequence numbers in order exactly once.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from edgewire.errors import LocalProtocolError, QueueFullError, RemoteProtocolError

__all__ = ["ReliableReceiver", "ReliableSender"]

T = TypeVar("T")


class ReliableSender:
    """Unacknowledged messages of one reliable channel, and what the active path has
    been handed of them."""

    __slots__ = ("_unacked", "_unacked_bytes", "acked", "handed", "max_bytes",
                 "max_messages", "next_seq", "resent")

    def __init__(self, *, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise LocalProtocolError("the unacknowledged-message bounds must be >= 1")
        self.max_messages = max_messages
        """Most messages held unacknowledged; beyond it ``push`` raises QueueFullError."""
        self.max_bytes = max_bytes
        """Most bytes held unacknowledged (one message may exceed it when none is held)."""
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._unacked_bytes = 0
        self.next_seq = 0
        """Sequence number of the next message."""
        self.handed = 0
        """Next sequence number to hand to the active path."""
        self.acked = 0
        """Messages acknowledged by the receiver."""
        self.resent = 0
        """Messages handed to a path a second (or further) time after a switch."""

    def __len__(self) -> int:
        return len(self._unacked)

    @property
    def unacked_bytes(self) -> int:
        """Bytes of the messages not yet acknowledged."""
        return self._unacked_bytes

    def has_room(self, size: int) -> bool:
        """True if a message of ``size`` bytes can be pushed now."""
        if not self._unacked:
            return True
        return (len(self._unacked) < self.max_messages
                and self._unacked_bytes + size <= self.max_bytes)

    def push(self, body: bytes) -> int:
        """Keep ``body`` until it is acknowledged; returns its sequence number. Raises
        QueueFullError when the bounds are reached (the receiver is not acknowledging:
        wait, as on a full send queue)."""
        if not self.has_room(len(body)):
            raise QueueFullError(f"{len(self._unacked)} multipath messages "
                                 f"({self._unacked_bytes} bytes) wait for acknowledgement")
        seq = self.next_seq
        self.next_seq += 1
        self._unacked.append((seq, body))
        self._unacked_bytes += len(body)
        return seq

    def on_ack(self, next_expected: int) -> int:
        """The receiver has every message below ``next_expected``; returns how many were
        newly acknowledged. An ack beyond what was sent is a peer error."""
        if next_expected > self.next_seq:
            raise RemoteProtocolError(f"ack of message {next_expected - 1}, only "
                                      f"{self.next_seq} sent")
        freed = 0
        unacked = self._unacked
        while unacked and unacked[0][0] < next_expected:
            self._unacked_bytes -= len(unacked.popleft()[1])
            freed += 1
        self.acked += freed
        self.handed = max(self.handed, next_expected)
        return freed

    def rewind(self) -> int:
        """A switch: hand every unacknowledged message to the new path again; returns
        how many will be resent."""
        first = self._unacked[0][0] if self._unacked else self.next_seq
        again = self.handed - first
        self.resent += again
        self.handed = first
        return again

    def pending(self) -> list[tuple[int, bytes]]:
        """Messages not yet handed to the active path, oldest first."""
        if self.handed >= self.next_seq:
            return []
        first = self._unacked[0][0]
        return list(self._unacked)[self.handed - first:]


class ReliableReceiver(Generic[T]):
    """Delivers one reliable channel's messages in sequence order, each once."""

    __slots__ = ("_ahead", "dropped_ahead", "duplicates", "max_ahead", "next_expected")

    def __init__(self, *, max_ahead: int) -> None:
        self.max_ahead = max_ahead
        """Most messages held that arrived before a missing one."""
        self.next_expected = 0
        """Every message below it was delivered."""
        self._ahead: dict[int, T] = {}
        self.duplicates = 0
        """Messages received again (a resend after a switch) and dropped."""
        self.dropped_ahead = 0
        """Messages dropped because too many were held ahead of a gap (the sender resends
        them after the next switch)."""

    def on_message(self, seq: int, item: T) -> list[T]:
        """A message arrived; returns the items now deliverable, in order."""
        if seq < self.next_expected or seq in self._ahead:
            self.duplicates += 1
            return []
        if seq != self.next_expected:
            # paths deliver in order from the oldest unacknowledged message, so this is
            # rare (a revived old path); bounded all the same
            if len(self._ahead) >= self.max_ahead:
                self.dropped_ahead += 1
                return []
            self._ahead[seq] = item
            return []
        out = [item]
        self.next_expected += 1
        ahead = self._ahead
        while self.next_expected in ahead:
            out.append(ahead.pop(self.next_expected))
            self.next_expected += 1
        return out
