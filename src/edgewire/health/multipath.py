"""Multi-endpoint sessions, sans-I/O: one :class:`~edgewire.transport.Session` per path
("edge", "cloud"), channels that follow the active path, and a switcher.

A :class:`MultiSession` looks like one session to the application (``open_channel``,
``send``, ``next_event`` with its own channel ids) while it keeps a warm QUIC connection on
every path, probes them, and moves the channels when the active path falls silent for
``failover_after_s``, closes, or a decision says so. Reliable channels number their
messages and resend the unacknowledged ones on the new path (``multireliable``); media
simply goes on the new path from the next frame. docs/MULTIPATH.md has the whole story.

The driver feeds the path sessions as usual (each is an ordinary endpoint) and calls
:meth:`MultiSession.poll` after they received or fired timers, and
:meth:`MultiSession.handle_timer` at :meth:`MultiSession.get_timer`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from edgewire.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MessageTooLargeError,
    RemoteProtocolError,
)
from edgewire.health.events import PathSwitched
from edgewire.health.multistate import (
    K_MAX_OUTSTANDING_PROBES,
    LogicalChannel,
    MultipathConfig,
    PathState,
    check_decision,
    path_figures,
    reliable_figures,
)
from edgewire.health.multiwire import (
    MpAck,
    MpEcho,
    MpHello,
    MpMessage,
    MpProbe,
    MpSwitch,
    decode_mp_control,
    decode_reliable_body,
    encode_mp_control,
    encode_reliable_body,
    encode_seq_header,
)
from edgewire.transport import (
    AppMessageReceived,
    BitrateChanged,
    ChannelClosed,
    ChannelInfo,
    ChannelKind,
    ChannelOpened,
    Event,
    FrameLost,
    KeyframeRequested,
    MessageReceived,
    QoS,
    Session,
    SessionClosed,
    SessionReady,
    default_qos,
)

__all__ = ["MultiEvent", "MultiSession", "MultipathConfig"]

MultiEvent = Event | PathSwitched
"""What :meth:`MultiSession.next_event` hands out."""


class MultiSession:
    """One logical session over several paths (client side: it leads; server side: it
    follows the client and is created by :class:`~edgewire.health.multireceiver.
    MultiReceiver`)."""

    def __init__(self, paths: Mapping[str, Session], *, session_id: str,
                 initial: str | None = None, config: MultipathConfig | None = None) -> None:
        if not paths and initial is not None:
            raise LocalProtocolError("no paths")
        sides = {s.is_client for s in paths.values()}
        if len(sides) > 1:
            raise LocalProtocolError("all paths must be client sessions or all server sessions")
        self.config = config or MultipathConfig()
        self.session_id = session_id
        """Id shared by every path (sent in the multipath hello)."""
        self.is_client = sides.pop() if sides else False
        self._paths: dict[str, PathState] = {}
        self._logical: dict[int, LogicalChannel] = {}
        self._peer_by_name: dict[str, int] = {}
        self._next_local = 0 if self.is_client else 1
        self._next_peer = 1 if self.is_client else 0
        self._events: deque[MultiEvent] = deque()
        self._ack_due: float | None = None
        self._ack_path: str | None = None
        self.active: str | None = None
        """Name of the path the channels use now (None before the first path)."""
        self.ready = False
        """True once the active path is ready (the application may open channels)."""
        self.closed = False
        """True once every path is closed."""
        self.switches: deque[PathSwitched] = deque(maxlen=self.config.max_switch_history)
        """The latest switches, oldest first."""
        self.malformed = 0
        """Multipath headers, control messages or acks from the peer that were invalid
        (counted and dropped)."""
        self.events_dropped = 0
        """Media events dropped because the driver did not drain ``next_event``."""
        self.messages_acked = 0
        """Reliable messages the peer has acknowledged, all channels: when it grows, a
        sender that met QueueFullError has room again (drivers wake it on that)."""
        for name, session in paths.items():
            self.add_path(name, session)
        if initial is not None:
            if initial not in self._paths:
                raise LocalProtocolError(f"initial path {initial!r} is not one of "
                                         f"{', '.join(self._paths)}")
            self.active = initial
            self._paths[initial].state = "active"

    # ------------------------------------------------------------------ paths

    @property
    def paths(self) -> list[str]:
        """Path names, in preference order (the order they were given)."""
        return list(self._paths)

    def session(self, path: str) -> Session:
        """The QUIC session of one path."""
        return self._path(path).session

    def add_path(self, name: str, session: Session, *, active: bool = False) -> None:
        """Add a path (the client gives all at construction; a server adds each as its
        hello arrives)."""
        if name in self._paths:
            raise LocalProtocolError(f"path {name!r} already exists")
        if not name or len(name) > 256:
            raise LocalProtocolError("path names are 1..256 characters")
        if self._paths and session.is_client != self.is_client:
            raise LocalProtocolError("all paths must be on the same side")
        self.is_client = session.is_client
        path = self._paths[name] = PathState(name, session)
        if self.is_client:
            session.multipath = {"t": "hello", "sid": self.session_id, "path": name}
        if self.active is None or active:
            if self.active is not None:
                self._paths[self.active].state = "standby"
            self.active = name
            path.state = "active"

    def _path(self, name: str) -> PathState:
        path = self._paths.get(name)
        if path is None:
            raise LocalProtocolError(f"unknown path {name!r} (known: {', '.join(self._paths)})")
        return path

    # ------------------------------------------------------------------ switching

    def switch(self, path: str, *, now: float, reason: str = "manual") -> bool:
        """Move the channels to ``path`` now; False if it already is the active one.
        Raises LocalProtocolError for an unknown path or one not ready."""
        target = self._path(path)
        if self.active == path:
            return False
        if not target.session.ready or target.session.closed:
            raise LocalProtocolError(f"path {path!r} is not ready")
        old = self.active
        if old is not None:
            prev = self._paths[old]
            prev.state = ("closed" if prev.session.closed
                          else "failed" if reason in ("silence", "closed") else "standby")
        self.active = path
        target.state = "active"
        target.active_since = now
        self._open_on(target, now)
        resent = 0
        for lg in self._logical.values():
            if lg.sender is not None:
                resent += lg.sender.rewind()
        if self.is_client:
            self._control(target, MpSwitch(path=path, acks=self._acks()), now)
        elif any(lg.receiver is not None for lg in self._logical.values()):
            self._control(target, MpAck(acks=self._acks()), now)
        self._pump(now)
        ev = PathSwitched(at_s=now, from_path=old or "", to_path=path, reason=reason,
                          resent=resent)
        self.switches.append(ev)
        self._events.append(ev)
        return True

    def apply_decision(self, decision: Any, *, now: float) -> dict[str, Any]:
        """Apply a placement decision ``{"action": "switch", "path": name}`` (a map, or an
        object with ``action`` and ``path``, such as ``edgewire.health.Decision``). Returns
        ``{"ok", "status", "action", "path", "reason"}``; an unknown action or path, or a
        path that is not ready, gives ``ok: False``, status "rejected" and the reason, and
        changes nothing."""
        out = check_decision(decision, self._paths)
        if out["ok"]:
            moved = self.switch(out["path"], now=now, reason="decision")
            out["reason"] = "switched" if moved else "already active"
        return out

    def _failover(self, now: float) -> None:
        if not self.config.auto_failover or self.active is None:
            return
        active = self._paths[self.active]
        reason = "closed" if active.session.closed else None
        if reason is None:
            heard = max(active.session.last_received or 0.0, active.active_since)
            if now - heard < self.config.failover_after_s:
                return
            reason = "silence"
        fresh = [p for p in self._paths.values()
                 if p is not active and p.session.ready and not p.session.closed
                 and p.session.last_received is not None
                 and now - p.session.last_received < self.config.failover_after_s]
        if not fresh:
            return
        if not self.is_client:
            # the client leads; a server only follows to where it last heard the client
            fresh.sort(key=lambda p: -(p.session.last_received or 0.0))
        self.switch(fresh[0].name, now=now, reason=reason)

    # ------------------------------------------------------------------ application API

    def open_channel(self, kind: ChannelKind | str, *, name: str | None = None,
                     qos: QoS | None = None, now: float) -> int:
        """Open a channel on every path (the standbys' copies stay idle until a switch);
        returns its id in this multi-session. Names must be unique per side."""
        self._check_usable()
        base = default_qos(kind)
        kind = ChannelKind(kind)
        name = kind.value if name is None else name
        if any(lg.info.local and lg.info.name == name for lg in self._logical.values()):
            raise LocalProtocolError(f"a channel named {name!r} is already open; multipath "
                                     "channels are matched across paths by name")
        lid = self._next_local
        self._next_local += 2
        info = ChannelInfo(channel_id=lid, kind=kind, name=name, qos=qos or base, local=True)
        self._logical[lid] = LogicalChannel(info, self.config)
        for path in self._paths.values():
            if path.opened and path.session.ready and not path.session.closed:
                path.local_cids[lid] = path.session.open_channel(kind, name=name, qos=qos,
                                                                 now=now)
        return lid

    def send(self, channel_id: int, payload: Any, *, now: float,
             timestamp: float | None = None, keyframe: bool = False) -> None:
        """Send on the active path: media at once (frames keep one counter across paths),
        reliable messages with a sequence number, kept until acknowledged (QueueFullError
        when ``max_unacked_messages``/``bytes`` are reached)."""
        self._check_usable()
        lg = self._logical.get(channel_id)
        if lg is None or not lg.info.local:
            raise LocalProtocolError(f"no local channel {channel_id}")
        ts = now if timestamp is None else timestamp
        if lg.sender is None:
            path = self._paths[self.active or ""]
            cid = path.local_cids.get(channel_id)
            if cid is None:
                raise LocalProtocolError(f"channel {channel_id} is not open on path "
                                         f"{path.name!r} yet")
            path.session.set_next_frame_id(cid, lg.next_frame)
            path.session.send(cid, payload, now=now, timestamp=ts, keyframe=keyframe)
            lg.next_frame = (lg.next_frame + 1) & 0xFFFFFFFF
            return
        body = encode_reliable_body(lg.info.kind, payload, ts)
        if len(body) > lg.info.qos.max_message_bytes:
            raise MessageTooLargeError(f"{len(body)}-byte message exceeds the channel's "
                                       f"max_message_bytes ({lg.info.qos.max_message_bytes})")
        lg.sender.push(body)
        self._pump(now)

    def request_keyframe(self, channel_id: int, *, now: float) -> bool:
        """Ask the peer for a keyframe on one of its video channels (on the active path)."""
        path = self._paths.get(self.active or "")
        if path is None:
            return False
        for cid, lid in path.peer_cids.items():
            if lid == channel_id:
                return path.session.request_keyframe(cid, now=now)
        return False

    def send_app_message(self, body: Any, *, now: float) -> None:
        """Send an application message on the active path."""
        self._check_usable()
        self._paths[self.active or ""].session.send_app_message(body, now=now)

    def channel_info(self, channel_id: int) -> ChannelInfo:
        """Kind, name and QoS of a channel (ids of this multi-session)."""
        lg = self._logical.get(channel_id)
        if lg is None:
            raise LocalProtocolError(f"no channel {channel_id}")
        return lg.info

    @property
    def channels(self) -> list[ChannelInfo]:
        """Every channel, local and the peer's."""
        return [lg.info for lg in self._logical.values()]

    def unacked(self, channel_id: int) -> int:
        """Reliable messages of a local channel not yet acknowledged."""
        lg = self._logical.get(channel_id)
        if lg is None or lg.sender is None:
            raise LocalProtocolError(f"channel {channel_id} is not a local reliable channel")
        return len(lg.sender)

    def close(self, *, now: float) -> None:
        """Close every path."""
        for path in self._paths.values():
            path.session.close(now=now)

    def next_event(self) -> MultiEvent | None:
        """Next event for the application (channel ids of this multi-session)."""
        return self._events.popleft() if self._events else None

    def _check_usable(self) -> None:
        if self.closed:
            raise ConnectionClosedError("every path is closed")
        if not self.ready or self.active is None:
            raise LocalProtocolError("multi-session is not ready yet")

    # ------------------------------------------------------------------ driver

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (probes, acks, the failover check)."""
        times: list[float] = []
        if self._ack_due is not None:
            times.append(self._ack_due)
        for path in self._paths.values():
            if path.next_probe is not None and not path.session.closed:
                times.append(path.next_probe)
        if self.config.auto_failover and self.active is not None and len(self._paths) > 1:
            active = self._paths[self.active]
            heard = max(active.session.last_received or 0.0, active.active_since)
            times.append(heard + self.config.failover_after_s)
        return min(times) if times else None

    def handle_timer(self, *, now: float) -> None:
        """Probes and acks due, and the failover check."""
        self.poll(now=now)
        for path in self._paths.values():
            if (path.next_probe is not None and now >= path.next_probe
                    and not path.session.closed):
                path.next_probe = now + self.config.probe_interval_s
                if path.probes_sent - path.echoes >= K_MAX_OUTSTANDING_PROBES:
                    # a dark path: QUIC keeps retransmitting the probes already queued,
                    # and their echoes show when it is back; more would only pile up
                    continue
                n = path.probes_sent
                path.probes_sent += 1
                path.probes.append((n, now))
                self._control(path, MpProbe(n=n), now)
        if self._ack_due is not None and now >= self._ack_due:
            self._send_acks(now)
        if self.ready:
            self._failover(now)
        self._pump(now)

    def poll(self, *, now: float) -> None:
        """Take in what the path sessions produced (call after feeding them)."""
        for path in list(self._paths.values()):
            session = path.session
            if not path.opened and session.ready and not session.closed:
                self._open_on(path, now)
            while (ev := session.next_event()) is not None:
                self._on_event(path, ev, now)
        if (not self.ready and self.active is not None
                and self._paths[self.active].opened):
            self.ready = True
            self._paths[self.active].active_since = now
            self._events.append(SessionReady(version=self._paths[self.active].session.version
                                             or 0, peer_software="edgewire-multipath"))
        if not self.closed and self._paths and all(p.session.closed
                                                  for p in self._paths.values()):
            self.closed = True
            self._events.append(SessionClosed(error_code=0, reason="every path closed",
                                              by_peer=False))
        elif self.ready and self.active is not None and self._paths[self.active].session.closed:
            self._failover(now)
        self._pump(now)

    # ------------------------------------------------------------------ internals

    def _open_on(self, path: PathState, now: float) -> None:
        if path.opened or not path.session.ready or path.session.closed:
            return
        path.opened = True
        if self.is_client:
            self._control(path, MpHello(session=self.session_id, path=path.name,
                                        active=path.name == self.active), now)
            path.next_probe = now + self.config.probe_interval_s
        for lid, lg in self._logical.items():
            if lg.info.local and lid not in path.local_cids:
                path.local_cids[lid] = path.session.open_channel(
                    lg.info.kind, name=lg.info.name, qos=lg.info.qos, now=now)

    def _control(self, path: PathState, msg: MpMessage, now: float) -> None:
        if path.session.ready and not path.session.closed:
            path.session.send_app_message(encode_mp_control(msg), now=now)

    def _acks(self) -> dict[str, int]:
        return {lg.info.name: lg.receiver.next_expected for lg in self._logical.values()
                if lg.receiver is not None}

    def _send_acks(self, now: float) -> None:
        self._ack_due = None
        acks = self._acks()
        name = self._ack_path or self.active
        path = self._paths.get(name or "")
        if acks and path is not None:
            self._control(path, MpAck(acks=acks), now)

    def _pump(self, now: float) -> None:
        """Hand the active path the reliable messages it has not had, while its send
        queues take them."""
        path = self._paths.get(self.active or "")
        if path is None or not path.opened or path.session.closed:
            return
        session = path.session
        for lid, lg in self._logical.items():
            sender = lg.sender
            if sender is None or sender.handed >= sender.next_seq:
                continue
            cid = path.local_cids.get(lid)
            if cid is None:
                continue
            for seq, body in sender.pending():
                record = encode_seq_header(seq) + body
                if not session.can_send(cid, len(record)):
                    break  # the path's queue is full; the next poll goes on
                session.send_record(cid, record, now=now)
                sender.handed = seq + 1

    def _push(self, ev: MultiEvent) -> None:
        if (len(self._events) >= self.config.max_events and isinstance(ev, MessageReceived)
                and not self.channel_info(ev.channel_id).qos.reliable):
            self.events_dropped += 1
            return
        self._events.append(ev)

    def _on_event(self, path: PathState, ev: Event, now: float) -> None:
        if isinstance(ev, MessageReceived):
            lid = path.peer_cids.get(ev.channel_id)
            if lid is None:
                return
            lg = self._logical[lid]
            if lg.receiver is None:
                self._push(replace(ev, channel_id=lid))
            else:
                self._on_reliable(path, lg, ev, now)
        elif isinstance(ev, ChannelOpened):
            lid = self._peer_by_name.get(ev.name)
            if lid is None:
                lid = self._next_peer
                self._next_peer += 2
                self._peer_by_name[ev.name] = lid
                info = ChannelInfo(channel_id=lid, kind=ev.kind, name=ev.name, qos=ev.qos,
                                   local=False)
                self._logical[lid] = LogicalChannel(info, self.config)
                self._push(replace(ev, channel_id=lid))
            path.peer_cids[ev.channel_id] = lid
        elif isinstance(ev, AppMessageReceived):
            try:
                msg = decode_mp_control(ev.body)
            except RemoteProtocolError:
                self.malformed += 1
                return
            if msg is None:
                self._push(ev)
            else:
                self._on_control(path, msg, now)
        elif isinstance(ev, FrameLost | ChannelClosed):
            lid = path.peer_cids.get(ev.channel_id)
            if lid is not None and (isinstance(ev, FrameLost) or path.name == self.active):
                self._push(replace(ev, channel_id=lid))
        elif isinstance(ev, KeyframeRequested | BitrateChanged):
            lid = next((k for k, v in path.local_cids.items() if v == ev.channel_id), None)
            if lid is not None and path.name == self.active:
                self._push(replace(ev, channel_id=lid))
        elif isinstance(ev, SessionClosed):
            path.state = "closed"
            path.next_probe = None

    def _on_reliable(self, path: PathState, lg: LogicalChannel, ev: MessageReceived,
                     now: float) -> None:
        assert lg.receiver is not None
        body = ev.payload
        try:
            if not isinstance(body, bytes):
                raise RemoteProtocolError("multipath record is not bytes")
            seq, payload, capture = decode_reliable_body(lg.info.kind, body,
                                                         path.session.clock_offset)
        except RemoteProtocolError:
            self.malformed += 1
            return
        for n, item, cap in lg.receiver.on_message(seq, (seq, payload, capture)):
            self._push(MessageReceived(channel_id=lg.id, payload=item, timestamp=cap,
                                       latency=now - cap, frame_id=n))
        self._ack_path = path.name
        if self._ack_due is None:
            self._ack_due = now + self.config.ack_delay_s

    def _follow(self, path: PathState, now: float) -> None:
        """Server side: the client sends on another path; answer there."""
        if path.session.ready and not path.session.closed:
            self.switch(path.name, now=now, reason="peer")

    def _on_control(self, path: PathState, msg: MpMessage, now: float) -> None:
        if isinstance(msg, MpProbe):
            if not self.is_client:
                self._control(path, MpEcho(n=msg.n), now)
        elif isinstance(msg, MpEcho):
            for n, sent in path.probes:
                if n == msg.n:
                    path.echoes += 1
                    path.probe_rtt = now - sent
                    if path.state == "failed":
                        path.state = "standby"  # it answers again
                    break
        elif isinstance(msg, MpAck | MpSwitch):
            if isinstance(msg, MpSwitch) and not self.is_client:
                self._follow(path, now)
            for name, next_expected in msg.acks.items():
                lg = next((x for x in self._logical.values()
                           if x.sender is not None and x.info.name == name), None)
                if lg is None or lg.sender is None:
                    continue  # a channel this side has not opened yet
                try:
                    self.messages_acked += lg.sender.on_ack(next_expected)
                except RemoteProtocolError:
                    self.malformed += 1
            self._pump(now)
        # MpHello: the server's MultiReceiver has read it already

    # ------------------------------------------------------------------ figures

    def path_stats(self, *, now: float) -> dict[str, dict[str, Any]]:
        """Per path: state, readiness, RTT, silence, probes, QUIC figures (JSON-ready)."""
        return path_figures(self._paths, now=now)

    def reliable_stats(self) -> dict[str, dict[str, int]]:
        """Per reliable channel (by name): sent/acked/resent or delivered/duplicates."""
        return reliable_figures(self._logical)
