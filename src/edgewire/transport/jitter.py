"""Adaptive jitter buffer for audio and video frames (sans-I/O).

The receiving session pushes each frame with its ``frame_id`` (consecutive per channel,
wrapping at 2**32), its capture ``timestamp`` on the receiver's clock and the arrival time
``now``. The buffer holds the frame until its playout time, ``timestamp + playout delay``, so
the output keeps the capture spacing; the driver asks :meth:`JitterBuffer.get_timer` when
to call :meth:`JitterBuffer.pop` next.

Playout delay
    The target is the ``percentile`` of the last ``window`` transit samples
    (``now - timestamp``) plus ``recovery_ms``, clamped to ``[min_delay_ms, deadline_ms]``.
    The delay in effect rises to the target at once (when a sample or ``recovery_ms`` raises
    it), because a delay that is too short turns frames into losses. It falls only when a
    frame is played, by at most ``decrease_fraction * frame_ms`` per frame plus any silence
    before that frame (capture gap beyond the nominal spacing), so playout times never go
    backwards and the output is never squeezed by more than that fraction. With
    ``adapt=False`` the target ignores the samples: ``min_delay_ms + recovery_ms``.

Missing frames
    A missing id is known to be missing once a later frame (or a late copy of it) is in the
    buffer. Its slot is its capture time, interpolated between its neighbours, plus the
    delay; when the slot passes, :meth:`JitterBuffer.pop` returns a concealed item (the
    decoder runs loss concealment or freezes). A recovered frame that arrives before its slot
    is played as usual. Missing frames at the tail are not concealed: nothing distinguishes
    them from a sender that has paused.

Bounds
    Only ids in ``[next, next + max_frames)`` are held, ``next`` being the next id to play,
    so at most ``max_frames`` frames are held and one gap yields at most ``max_frames``
    concealed items. Ids outside that window are dropped and counted, except when the stream
    has been silent for longer than the deadline: then a fresh frame outside the window
    restarts the buffer there (``resyncs``), so a sender restart or a long outage cannot
    wedge it, while a stray id in a live stream cannot hijack it.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgewire.errors import LocalProtocolError
from edgewire.transport.stats import LatencySamples

__all__ = ["JitterBuffer", "JitterBufferConfig", "JitterStats", "PlayoutItem"]

K_ID_MODULUS = 1 << 32
K_ID_HALF = 1 << 31
#: Slack when comparing a playout time with ``now``: ``timestamp + (now - timestamp)`` need
#: not round back to ``now`` exactly.
K_EPSILON = 1e-9  # seconds
K_MAX_WINDOW = 1_000_000
K_MAX_FRAMES = 1 << 20


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class JitterBufferConfig:
    """Settings of one channel's jitter buffer. Invalid values raise LocalProtocolError."""

    deadline_ms: float
    """Capture-to-playout deadline of the channel, and the upper bound of the playout delay.
    A frame arriving after ``timestamp + deadline`` is always late."""
    frame_ms: float
    """Nominal spacing of consecutive frames (20 for audio, 33.3 for 30 fps video). Used to
    estimate the capture time of missing frames and to scale how fast the delay falls."""
    percentile: float = 95.0
    """The playout delay covers this percentile of the measured transit delays, so about
    ``100 - percentile`` percent of frames arrive late in steady state. 0 to 100."""
    window: int = 500
    """Number of transit samples the percentile is taken over (the most recent ones)."""
    min_delay_ms: float = 0.0
    """Lower bound of the playout delay; with ``adapt=False``, the fixed jitter allowance."""
    recovery_ms: float = 0.0
    """Extra delay that FEC or retransmission needs to repair a frame, added to the
    percentile. The session raises it from the RTT when retransmission is on (see
    :meth:`JitterBuffer.set_recovery_ms`)."""
    adapt: bool = True
    """True: the delay follows the measured percentile (up at once, down slowly). False: the
    delay is fixed at ``min_delay_ms + recovery_ms`` (capped by the deadline)."""
    decrease_fraction: float = 0.05
    """Largest fall of the delay per played frame, as a fraction of ``frame_ms`` (0 to 1;
    0 never lets it fall). Silence before a frame allows a larger fall."""
    max_frames: int = 256
    """Largest number of frames held, and the width of the accepted id window."""

    def __post_init__(self) -> None:
        if not _finite(self.deadline_ms) or not self.deadline_ms > 0:
            raise LocalProtocolError(f"deadline_ms must be positive, got {self.deadline_ms!r}")
        if not _finite(self.frame_ms) or not self.frame_ms > 0:
            raise LocalProtocolError(f"frame_ms must be positive, got {self.frame_ms!r}")
        if not _finite(self.percentile) or not 0 <= self.percentile <= 100:
            raise LocalProtocolError(f"percentile must be in 0..100, got {self.percentile!r}")
        if (
            not isinstance(self.window, int)
            or isinstance(self.window, bool)
            or not 1 <= self.window <= K_MAX_WINDOW
        ):
            raise LocalProtocolError(f"window must be in 1..{K_MAX_WINDOW}, got {self.window!r}")
        if not _finite(self.min_delay_ms) or not 0 <= self.min_delay_ms <= self.deadline_ms:
            raise LocalProtocolError(
                f"min_delay_ms must be in 0..deadline_ms, got {self.min_delay_ms!r}"
            )
        if not _finite(self.recovery_ms) or self.recovery_ms < 0:
            raise LocalProtocolError(f"recovery_ms must be >= 0, got {self.recovery_ms!r}")
        if not isinstance(self.adapt, bool):
            raise LocalProtocolError(f"adapt must be a bool, got {self.adapt!r}")
        if not self.adapt and self.min_delay_ms == 0:
            raise LocalProtocolError("a fixed playout delay (adapt=False) needs min_delay_ms > 0")
        if not _finite(self.decrease_fraction) or not 0 <= self.decrease_fraction <= 1:
            raise LocalProtocolError(
                f"decrease_fraction must be in 0..1, got {self.decrease_fraction!r}"
            )
        if (
            not isinstance(self.max_frames, int)
            or isinstance(self.max_frames, bool)
            or not 1 <= self.max_frames <= K_MAX_FRAMES
        ):
            raise LocalProtocolError(
                f"max_frames must be in 1..{K_MAX_FRAMES}, got {self.max_frames!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutItem:
    """One slot of output, in frame_id order: a frame to decode, or one to conceal."""

    frame_id: int
    """The frame's id (0 .. 2**32 - 1)."""
    timestamp: float
    """Capture time on the receiver's clock; estimated when ``concealed``."""
    payload: Any
    """The frame as pushed; None when ``concealed``."""
    concealed: bool
    """True when the frame never arrived in time: the decoder conceals it."""
    playout_time: float
    """When the frame is due (seconds, the driver's clock). Never earlier than the previous
    item's; may be earlier than the ``now`` of the pop that returned it."""
    delay_ms: float
    """Playout delay applied: ``playout_time - timestamp``, in milliseconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JitterStats:
    """A snapshot of one jitter buffer's state and counters."""

    playout_delay_ms: float
    """Playout delay in effect."""
    target_delay_ms: float
    """Delay the buffer is moving towards (percentile + recovery, clamped)."""
    played: int
    """Frames returned with their payload."""
    late: int
    """Frames dropped because they arrived after their playout time (or were concealed
    already)."""
    concealed: int
    """Concealed items returned (missing or late frames)."""
    duplicates: int
    """Copies of frames already held or played."""
    dropped: int
    """Frames dropped for an invalid timestamp, an id outside the window, or at a resync."""
    resyncs: int
    """Restarts at an out-of-window id after the stream was silent beyond the deadline."""
    held: int
    """Frames held now (late frames awaiting their concealed slot included)."""
    delay_p50_ms: float | None
    """Median playout delay applied to recently played frames; None before any."""
    delay_p95_ms: float | None
    """95th percentile of the playout delay applied to recently played frames."""

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Held:
    timestamp: float
    arrival: float
    payload: Any
    late: bool = False


@dataclass(slots=True)
class _Samples:
    """The most recent transit samples, kept both in arrival order and sorted."""

    capacity: int
    fifo: deque[float] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        if len(self.fifo) == self.capacity:
            old = self.fifo.popleft()
            del self.ordered[bisect_left(self.ordered, old)]
        self.fifo.append(value)
        insort(self.ordered, value)

    def percentile(self, q: float) -> float | None:
        """Linear interpolation between closest ranks (numpy's default method)."""
        ordered = self.ordered
        if not ordered:
            return None
        pos = (len(ordered) - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class JitterBuffer:
    """Holds real-time frames until their playout time; reports gaps for concealment.

    Sans-I/O: every call takes ``now`` (seconds). ``push`` each received frame, ``pop`` at
    :meth:`get_timer` (or whenever convenient; overdue items come out at once).
    """

    __slots__ = (
        "_anchor_id",
        "_anchor_ts",
        "_applied",
        "_config",
        "_deadline",
        "_delay",
        "_frame",
        "_head",
        "_heap",
        "_held",
        "_history",
        "_last_accept",
        "_last_playout",
        "_played_ids",
        "_recovery",
        "_samples",
        "_step",
        "_target",
        "concealed",
        "dropped",
        "duplicates",
        "late",
        "played",
        "resyncs",
    )

    def __init__(self, config: JitterBufferConfig) -> None:
        self._config = config
        self._deadline = config.deadline_ms / 1000.0
        self._frame = config.frame_ms / 1000.0
        self._step = config.decrease_fraction * self._frame
        self._recovery = config.recovery_ms / 1000.0
        self._samples = _Samples(config.window)
        self._held: dict[int, _Held] = {}
        self._heap: list[int] = []
        # unwrapped id of the next slot to play; None until the first frame
        self._head: int | None = None
        # the last slot played or concealed: neighbour for interpolating missing frames
        self._anchor_id: int | None = None
        self._anchor_ts = 0.0
        # outcomes of recent slots behind the head, to tell duplicates from late copies
        self._history: deque[int] = deque(maxlen=config.max_frames)
        self._played_ids: set[int] = set()
        self._last_playout = -math.inf
        self._last_accept = -math.inf
        self._applied = LatencySamples(config.window)
        self._target = self._compute_target()
        self._delay = self._target
        self.played = 0
        """Frames returned with their payload."""
        self.late = 0
        """Frames dropped for arriving after their playout time."""
        self.concealed = 0
        """Concealed items returned."""
        self.duplicates = 0
        """Copies of frames already held or played."""
        self.dropped = 0
        """Frames dropped: invalid timestamp, id outside the window, or flushed at a resync."""
        self.resyncs = 0
        """Restarts of the id window after a silent stream."""

    # ------------------------------------------------------------------ public API

    @property
    def config(self) -> JitterBufferConfig:
        """The configuration this buffer was built with (``recovery_ms`` as at creation)."""
        return self._config

    @property
    def playout_delay(self) -> float:
        """Playout delay in effect, seconds."""
        return self._delay

    @property
    def recovery_ms(self) -> float:
        """Extra delay currently reserved for FEC or retransmission, milliseconds."""
        return self._recovery * 1000.0

    def set_recovery_ms(self, recovery_ms: float) -> None:
        """Change the delay reserved for repair (e.g. from the RTT). A rise takes effect at
        once; a fall lowers the delay gradually, like any other fall of the target."""
        if not _finite(recovery_ms) or recovery_ms < 0:
            raise LocalProtocolError(f"recovery_ms must be >= 0, got {recovery_ms!r}")
        self._recovery = recovery_ms / 1000.0
        self._retarget()

    def __len__(self) -> int:
        """Frames held now (late frames awaiting their concealed slot included)."""
        return len(self._held)

    def push(self, frame_id: int, timestamp: float, payload: Any, *, now: float) -> None:
        """Take one received frame (capture ``timestamp`` on this side's clock, seconds).

        Late frames, duplicates and ids outside the window are counted and dropped; a late
        frame still marks its slot for concealment. Raises LocalProtocolError for a
        ``frame_id`` outside 0 .. 2**32 - 1 or a non-finite ``now``; a bad ``timestamp``
        (remote data) is counted in ``dropped``.
        """
        _check_now(now)
        if (
            not isinstance(frame_id, int)
            or isinstance(frame_id, bool)
            or not 0 <= frame_id < K_ID_MODULUS
        ):
            raise LocalProtocolError(f"frame_id must be in 0..2**32-1, got {frame_id!r}")
        # capture times ahead of the clock by more than the deadline are not ours to trust;
        # it also keeps every held timestamp within a deadline of its arrival
        if not _finite(timestamp) or timestamp > now + self._deadline:
            self.dropped += 1
            return
        timestamp = float(timestamp)
        head = self._head
        if head is None:
            head = self._head = frame_id
            self._last_accept = now
        ext = head + ((frame_id - head + K_ID_HALF) % K_ID_MODULUS) - K_ID_HALF
        ahead = ext - head
        max_frames = self._config.max_frames
        if ahead < 0:
            if ext in self._played_ids:
                self._last_accept = now
                self.duplicates += 1
                return
            if self._anchor_id is None and self._fits_below(ext):
                # nothing played yet: an earlier frame that overtook nothing may lead
                self._head = head = ext
                ahead = 0
            elif -ahead <= max_frames:
                self._last_accept = now
                self._add_sample(now - timestamp)
                self.late += 1
                return
        if not 0 <= ahead < max_frames:
            if not self._resync(frame_id, timestamp, now):
                self.dropped += 1
                return
            ext = frame_id
        self._last_accept = now
        if ext in self._held:
            self.duplicates += 1
            return
        self._add_sample(now - timestamp)
        late = now > timestamp + self._delay + K_EPSILON
        if late:
            self.late += 1
            payload = None
        self._held[ext] = _Held(timestamp, now, payload, late)
        heapq.heappush(self._heap, ext)

    def get_timer(self) -> float | None:
        """When the next item is due (possibly in the past), or None when nothing is."""
        nxt = self._next_slot()
        return None if nxt is None else nxt[0]

    def pop(self, now: float) -> list[PlayoutItem]:
        """Every item due at ``now``, in frame_id order: frames whose playout time has come
        and, for missing frames whose slot has passed, concealed items."""
        _check_now(now)
        out: list[PlayoutItem] = []
        while (nxt := self._next_slot()) is not None:
            playout, timestamp, delay = nxt
            if playout > now + K_EPSILON:
                break
            head = self._head
            assert head is not None  # _next_slot found a slot
            entry = self._held.pop(head, None)
            if entry is not None:
                heapq.heappop(self._heap)
            self._head = head + 1
            self._anchor_id = head
            self._anchor_ts = timestamp
            self._last_playout = playout
            self._history_add(head, played=entry is not None and not entry.late)
            if entry is None or entry.late:
                self.concealed += 1
                out.append(
                    PlayoutItem(
                        frame_id=head % K_ID_MODULUS,
                        timestamp=timestamp,
                        payload=None,
                        concealed=True,
                        playout_time=playout,
                        delay_ms=(playout - timestamp) * 1000.0,
                    )
                )
                continue
            self._delay = delay
            self.played += 1
            self._applied.add(playout - timestamp)
            out.append(
                PlayoutItem(
                    frame_id=head % K_ID_MODULUS,
                    timestamp=timestamp,
                    payload=entry.payload,
                    concealed=False,
                    playout_time=playout,
                    delay_ms=(playout - timestamp) * 1000.0,
                )
            )
        return out

    def stats(self) -> JitterStats:
        """A snapshot of the delay and the counters."""
        applied = self._applied.percentiles_ms((50, 95))
        return JitterStats(
            playout_delay_ms=self._delay * 1000.0,
            target_delay_ms=self._target * 1000.0,
            played=self.played,
            late=self.late,
            concealed=self.concealed,
            duplicates=self.duplicates,
            dropped=self.dropped,
            resyncs=self.resyncs,
            held=len(self._held),
            delay_p50_ms=applied["p50"],
            delay_p95_ms=applied["p95"],
        )

    # ------------------------------------------------------------------ internals

    def _compute_target(self) -> float:
        cfg = self._config
        if cfg.adapt:
            base = self._samples.percentile(cfg.percentile) or 0.0
        else:
            base = cfg.min_delay_ms / 1000.0
        return min(max(base + self._recovery, cfg.min_delay_ms / 1000.0), self._deadline)

    def _retarget(self) -> None:
        self._target = self._compute_target()
        if self._target > self._delay:
            self._delay = self._target

    def _add_sample(self, transit: float) -> None:
        if self._config.adapt:
            self._samples.add(transit)
            self._retarget()

    def _fits_below(self, ext: int) -> bool:
        """Whether the window can start at ``ext`` and still cover every held frame."""
        newest = max(self._held, default=ext)
        return newest - ext < self._config.max_frames

    def _resync(self, frame_id: int, timestamp: float, now: float) -> bool:
        """Restart the window at ``frame_id`` if the stream has been silent beyond the
        deadline and the frame is still playable; the frames held are dropped."""
        if now - self._last_accept <= self._deadline:
            return False
        if now > timestamp + self._delay + K_EPSILON:
            return False
        self.dropped += sum(1 for e in self._held.values() if not e.late)
        self._held.clear()
        self._heap.clear()
        self._history.clear()
        self._played_ids.clear()
        self._head = frame_id
        self._anchor_id = None
        self.resyncs += 1
        return True

    def _history_add(self, ext: int, *, played: bool) -> None:
        history = self._history
        if len(history) == history.maxlen:
            self._played_ids.discard(history[0])
        history.append(ext)
        if played:
            self._played_ids.add(ext)

    def _slot(self, entry: _Held, delay: float) -> float:
        # a frame is never held beyond a deadline after its arrival, whatever its timestamp
        return min(entry.timestamp + delay, entry.arrival + self._deadline)

    def _next_slot(self) -> tuple[float, float, float] | None:
        """(playout time, capture timestamp, delay to commit) of the head slot, or None
        when the head is missing and nothing later is held (its slot is unknown)."""
        head = self._head
        if head is None:
            return None
        entry = self._held.get(head)
        if entry is not None:
            delay = self._delay if entry.late else self._delay_for(head, entry.timestamp)
            return max(self._slot(entry, delay), self._last_playout), entry.timestamp, delay
        if not self._heap:
            return None
        nxt = self._heap[0]
        following = self._held[nxt]
        ts = following.timestamp - (nxt - head) * self._frame
        if self._anchor_id is not None:
            frac = (head - self._anchor_id) / (nxt - self._anchor_id)
            interpolated = self._anchor_ts + (following.timestamp - self._anchor_ts) * frac
            if math.isfinite(interpolated):
                ts = interpolated
        slot = min(ts + self._delay, self._slot(following, self._delay))
        return max(slot, self._last_playout), ts, self._delay

    def _delay_for(self, head: int, timestamp: float) -> float:
        """The delay for the frame at the head: the current one, lowered towards the target
        by the step, plus the silence since the previous slot."""
        delay = self._delay
        if self._target >= delay:
            return delay
        allowed = self._step
        if self._anchor_id is not None:
            expected = self._anchor_ts + (head - self._anchor_id) * self._frame
            allowed += max(0.0, timestamp - expected)
        return max(self._target, delay - allowed)


def _check_now(now: float) -> None:
    if not _finite(now):
        raise LocalProtocolError(f"now must be a finite number of seconds, got {now!r}")
