"""Scenario files: a network, how it changes over time, and the traffic to run over it.

TOML, read with the standard library's ``tomllib``; every key is documented in
docs/NETSIM.md. Unknown keys, wrong types and impossible values raise
:class:`ScenarioError` naming the file, the key and the reason, before anything runs.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgewire.errors import EdgewireError, LocalProtocolError
from edgewire.netsim.config import (
    LOSS_MODELS,
    BernoulliLoss,
    GilbertLoss,
    LinkConfig,
    LossConfig,
    Markov4Loss,
    NoLoss,
)
from edgewire.netsim.trace import CapacityTrace, load_mahimahi
from edgewire.transport.bwe import DEFAULT_ESTIMATOR, BweConfig, config_with, estimator_names
from edgewire.transport.config import K_MAX_ACK_DELAY, K_MIN_ACK_DELAY
from edgewire.transport.qos import ChannelKind, QoS, default_qos
from edgewire.transport.quicstats import congestion_control_names
from edgewire.transport.recovery import RECOVERY_MODES as _RECOVERY_MODES
from edgewire.workload.sources import (
    AudioSourceConfig,
    EmbeddingSourceConfig,
    TokenSourceConfig,
    VideoSourceConfig,
)

__all__ = [
    "RECOVERY_MODES",
    "EndpointSpec",
    "LinkEvent",
    "MultipathSettings",
    "Scenario",
    "ScenarioError",
    "TrafficFlow",
    "TransportSettings",
    "load_scenario",
    "parse_scenario",
]

#: Loss recovery modes a scenario may ask for (docs/RECOVERY.md).
RECOVERY_MODES = _RECOVERY_MODES
#: Largest integer any key accepts (beyond it floats lose whole units).
K_MAX_INT = 2**53
#: Longest scenario accepted, seconds (a day).
K_MAX_DURATION_S = 86_400.0

_LINK_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "delay_ms": ((int, float), "one-way propagation delay in ms"),
    "jitter_ms": ((int, float), "delay variation in ms"),
    "jitter_distribution": (str, "uniform, normal, pareto or paretonormal"),
    "reorder": (bool, "true lets jitter reorder packets"),
    "rate_kbps": ((int, float), "bottleneck rate in kbit/s"),
    "trace": (str, "Mahimahi trace file, relative to the scenario file"),
    "trace_start_ms": (int, "start the trace this many ms into it (it wraps around)"),
    "queue_packets": (int, "drop-tail limit in packets"),
    "queue_bytes": (int, "drop-tail limit in bytes"),
    "queue_ms": ((int, float), "drop-tail limit in ms of waiting"),
    "aqm": (str, "droptail or codel"),
    "codel_target_ms": ((int, float), "CoDel target in ms"),
    "codel_interval_ms": ((int, float), "CoDel interval in ms"),
    "loss": (dict, "a loss model table"),
    "duplicate": ((int, float), "duplication probability"),
    "down": (bool, "true: blackout"),
    "read_kbps": ((int, float), "rate the receiving process reads its socket at, kbit/s"),
    "read_stall_ms": ((int, float), "the receiving process's work between reads, ms"),
    "read_stall_bytes": (int, "bytes the receiving process reads between two stalls"),
    "read_buffer_bytes": (int, "the receiving socket's buffer in bytes"),
}
# Keys that replace one another: giving one in an override or event clears the others.
_EXCLUSIVE = (("rate_kbps", "trace"), ("queue_packets", "queue_bytes", "queue_ms"))

_LOSS_PARAMS: dict[str, tuple[str, ...]] = {
    "none": (),
    "bernoulli": ("rate",),
    "gilbert": ("rate", "burst", "p", "r", "h", "k"),
    "markov4": ("p13", "p31", "p32", "p23", "p14"),
}

# traffic key -> (source config field, scale); deadline_ms and priority go to the QoS
_TRAFFIC_KEYS: dict[str, dict[str, tuple[str, float, type | tuple[type, ...]]]] = {
    "audio": {"bitrate_kbps": ("bitrate_bps", 1000.0, (int, float)),
              "frame_ms": ("frame_ms", 1.0, (int, float)),
              "codec": ("codec", 0.0, str)},
    "video": {"bitrate_kbps": ("bitrate_bps", 1000.0, (int, float)),
              "fps": ("fps", 1.0, (int, float)),
              "keyframe_interval_s": ("keyframe_interval_s", 1.0, (int, float)),
              "keyframe_scale": ("keyframe_scale", 1.0, (int, float)),
              "size_jitter": ("size_jitter", 1.0, (int, float)),
              "adapt": ("adaptive", 0.0, bool),
              "codec": ("codec", 0.0, str)},
    "tokens": {"rate_per_s": ("tokens_per_s", 1.0, (int, float)),
               "batch": ("batch", 1.0, int)},
    "embeddings": {"rate_per_s": ("interval_s", -1.0, (int, float)),
                   "dim": ("dim", 1.0, int),
                   "batch": ("batch", 1.0, int),
                   "dtype": ("dtype", 0.0, str)},
}
_SOURCE_CLASSES: dict[str, type] = {
    "audio": AudioSourceConfig, "video": VideoSourceConfig,
    "tokens": TokenSourceConfig, "embeddings": EmbeddingSourceConfig,
}


class ScenarioError(EdgewireError):
    """A scenario file (or table) is invalid: ``source``, ``key`` and ``reason`` say how."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        """The file (or "<dict>") the scenario came from."""
        self.key = key
        """Dotted path of the offending key ("link.loss.rate"); "" for the whole file."""
        self.reason = reason
        """What is wrong."""
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkEvent:
    """New link parameters from ``at_s`` on (already merged with what was in force)."""

    at_s: float
    """Scenario time of the change, seconds."""
    uplink: LinkConfig | None = None
    """Client-to-server parameters from then on; None leaves the direction unchanged."""
    downlink: LinkConfig | None = None
    """Server-to-client parameters from then on; None leaves the direction unchanged."""
    endpoint: str | None = None
    """Multi-endpoint scenarios: the endpoint whose links change (None: single endpoint)."""
    decision: dict[str, Any] | None = None
    """Multi-endpoint scenarios: a placement decision handed to the client's multi-session
    at ``at_s`` (``{"action": "switch", "path": "cloud"}``), applied as given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficFlow:
    """One channel of traffic in one direction: its source parameters and QoS."""

    kind: ChannelKind
    """Channel kind."""
    source: Any
    """AudioSourceConfig, VideoSourceConfig, TokenSourceConfig or EmbeddingSourceConfig."""
    qos: QoS
    """The channel's QoS (the kind's defaults with the scenario's deadline/priority)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportSettings:
    """The ``[transport]`` table."""

    cc: str = "edgewire"
    """Congestion controller registered with aioquic."""
    estimator: str = DEFAULT_ESTIMATOR
    """Bandwidth estimator (``edgewire.transport.bwe`` registry: delivery, the default;
    gcc; loss)."""
    recovery: str = "auto"
    """Loss recovery mode (see RECOVERY_MODES)."""
    max_datagram_size: int = 1200
    """QUIC's max_datagram_size (UDP payload bytes)."""
    ack_delay_ms: float = 25.0
    """How long an ACK may wait to ride on a packet going the other way
    (``SessionConfig.ack_delay``)."""
    bwe: BweConfig = field(default_factory=BweConfig)
    """The estimators' settings: the defaults with the ``[transport.bwe]`` table's
    (``BweConfig`` fields; its parts as sub-tables or dotted keys, e.g.
    ``delivery.queue_target = 0.02``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    """One ``[[endpoints]]`` entry: a server the client keeps a connection to."""

    name: str
    """Path name ("edge", "cloud")."""
    uplink: LinkConfig
    """Client-to-this-endpoint link at the start."""
    downlink: LinkConfig
    """This-endpoint-to-client link at the start."""
    initial: bool = False
    """The path the channels use first (exactly one endpoint has it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MultipathSettings:
    """The ``[multipath]`` table (``edgewire.health.multipath.MultipathConfig``)."""

    failover_after_s: float = 0.15
    """Silence on the active path before the client switches by itself."""
    probe_interval_s: float = 0.05
    """Probe (keep-alive) interval on every path."""
    ack_delay_s: float = 0.01
    """Delay before reliable messages are acknowledged."""
    auto_failover: bool = True
    """Switch on silence by itself (false: only on decisions)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A parsed scenario file."""

    name: str
    """Short name."""
    duration_s: float
    """Seconds of traffic."""
    seed: int = 1
    """Seed of every random draw (links and traffic)."""
    description: str = ""
    """Free text."""
    uplink: LinkConfig = field(default_factory=LinkConfig)
    """Client-to-server link at the start."""
    downlink: LinkConfig = field(default_factory=LinkConfig)
    """Server-to-client link at the start."""
    events: tuple[LinkEvent, ...] = ()
    """Changes over time, sorted by ``at_s``."""
    transport: TransportSettings = field(default_factory=TransportSettings)
    """Congestion control and loss recovery."""
    up: tuple[TrafficFlow, ...] = ()
    """Channels the client sends."""
    down: tuple[TrafficFlow, ...] = ()
    """Channels the server sends."""
    source: str = "<dict>"
    """Where the scenario was read from."""
    endpoints: tuple[EndpointSpec, ...] = ()
    """Multi-endpoint scenarios: the endpoints with their links at the start (empty: the
    classic single endpoint over ``uplink``/``downlink``)."""
    multipath: MultipathSettings | None = None
    """Multi-endpoint scenarios: the ``[multipath]`` table."""

    def link_at(self, direction: str, t: float) -> LinkConfig:
        """The parameters of "uplink" or "downlink" in force at scenario time ``t``."""
        cfg: LinkConfig = getattr(self, direction)
        for ev in self.events:
            if ev.at_s > t:
                break
            new = getattr(ev, direction)
            if new is not None:
                cfg = new
        return cfg


# ---------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self._traces: dict[Path, CapacityTrace] = {}
        self._started: dict[tuple[CapacityTrace, int], CapacityTrace] = {}

    def error(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.source, key, reason)

    def check_keys(self, table: dict[str, Any], allowed: set[str] | dict[str, Any],
                   where: str) -> None:
        for key in table:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.error(f"{where}.{key}" if where else key,
                                 f"unknown key (known: {known})")

    def typed(self, value: Any, types: type | tuple[type, ...], key: str) -> Any:
        wanted = types if isinstance(types, tuple) else (types,)
        # TOML booleans are ints to Python; a number key must not take true/false
        if isinstance(value, bool) and bool not in wanted:
            raise self.error(key, f"expected {_type_names(wanted)}, got a boolean")
        if not isinstance(value, wanted):
            raise self.error(key, f"expected {_type_names(wanted)}, got "
                                  f"{type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(key, f"must be finite, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > K_MAX_INT:
            raise self.error(key, f"out of range: {value}")
        return value

    def table(self, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"{where}{key}", f"expected a table, got {type(value).__name__}")
        return value

    # -- links

    def link_overrides(self, table: dict[str, Any], where: str) -> dict[str, Any]:
        self.check_keys(table, _LINK_KEYS, where)
        out: dict[str, Any] = {}
        for key, value in table.items():
            types, _ = _LINK_KEYS[key]
            out[key] = self.typed(value, types, f"{where}.{key}")
        return out

    def merge(self, base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for group in _EXCLUSIVE:
            if any(k in over for k in group):
                for k in group:
                    merged.pop(k, None)
        if "rate_kbps" in over or ("trace" in over and "trace_start_ms" not in over):
            # a rate has no trace to start into; a new trace starts at its beginning
            merged.pop("trace_start_ms", None)
        merged.update(over)
        return merged

    def build_link(self, raw: dict[str, Any], where: str) -> LinkConfig:
        kwargs: dict[str, Any] = {k: v for k, v in raw.items()
                                  if k not in ("loss", "trace", "trace_start_ms")}
        if "loss" in raw:
            kwargs["loss"] = self.loss(raw["loss"], f"{where}.loss")
        if "trace" in raw:
            kwargs["trace"] = self.trace(raw["trace"], f"{where}.trace",
                                         raw.get("trace_start_ms", 0),
                                         f"{where}.trace_start_ms")
        elif "trace_start_ms" in raw:
            raise self.error(f"{where}.trace_start_ms", "needs a trace to start into")
        for key in ("rate_kbps", "delay_ms", "jitter_ms", "queue_ms", "duplicate",
                    "codel_target_ms", "codel_interval_ms", "read_kbps", "read_stall_ms"):
            if key in kwargs:
                kwargs[key] = float(kwargs[key])
        try:
            return LinkConfig(**kwargs)
        except LocalProtocolError as exc:
            raise self.error(where, str(exc)) from None

    def loss(self, table: dict[str, Any], where: str) -> LossConfig:
        model = table.get("model")
        if model is None:
            raise self.error(f"{where}.model", f"missing (one of {', '.join(LOSS_MODELS)})")
        if not isinstance(model, str) or model not in _LOSS_PARAMS:
            raise self.error(f"{where}.model", f"unknown loss model {model!r} "
                                               f"(known: {', '.join(_LOSS_PARAMS)})")
        params = {k: v for k, v in table.items() if k != "model"}
        self.check_keys(params, set(_LOSS_PARAMS[model]), where)
        for key, value in params.items():
            self.typed(value, (int, float), f"{where}.{key}")
        p = {k: float(v) for k, v in params.items()}
        try:
            if model == "none":
                return NoLoss()
            if model == "bernoulli":
                if "rate" not in p:
                    raise self.error(f"{where}.rate", "missing (loss probability)")
                return BernoulliLoss(rate=p["rate"])
            if model == "gilbert":
                if "rate" in p or "burst" in p:
                    if set(p) != {"rate", "burst"}:
                        raise self.error(where, "give rate and burst, or p, r (h, k); "
                                                "not a mix")
                    return GilbertLoss.from_rate_burst(p["rate"], p["burst"])
                if "p" not in p or "r" not in p:
                    raise self.error(where, "gilbert needs rate + burst, or p and r")
                return GilbertLoss(**p)
            if "p13" not in p:
                raise self.error(f"{where}.p13", "missing (P(gap -> burst loss))")
            return Markov4Loss(**p)
        except LocalProtocolError as exc:
            raise self.error(where, str(exc)) from None

    def trace(self, name: str, where: str, start_ms: int, start_where: str) -> CapacityTrace:
        if start_ms < 0:
            raise self.error(start_where, f"must be >= 0 ms, got {start_ms}")
        trace = self._load_trace(name, where)
        key = (trace, start_ms % trace.period_ms)
        # one object per file and start: a link restarts its trace only when an event
        # installs a different one (an event that changes only the loss keeps it running)
        if key not in self._started:
            self._started[key] = trace.starting_at(start_ms)
        return self._started[key]

    def _load_trace(self, name: str, where: str) -> CapacityTrace:
        if "\x00" in name:
            raise self.error(where, "a trace file name cannot contain a NUL character")
        path = Path(name)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        path = path.resolve()
        if path not in self._traces:
            try:
                self._traces[path] = load_mahimahi(path)
            except LocalProtocolError as exc:
                raise self.error(where, str(exc)) from None
        return self._traces[path]

    # -- traffic

    def flows(self, table: dict[str, Any], where: str) -> tuple[TrafficFlow, ...]:
        self.check_keys(table, _TRAFFIC_KEYS, where)
        flows: list[TrafficFlow] = []
        for kind in ("audio", "video", "tokens", "embeddings"):
            if kind not in table:
                continue
            spec = table[kind]
            key = f"{where}.{kind}"
            if not isinstance(spec, dict):
                raise self.error(key, "expected a table")
            allowed = {*_TRAFFIC_KEYS[kind], "priority"}
            if kind in ("audio", "video"):
                allowed.add("deadline_ms")
            self.check_keys(spec, allowed, key)
            kwargs: dict[str, Any] = {}
            for name, value in spec.items():
                if name in ("deadline_ms", "priority"):
                    continue
                field_name, scale, types = _TRAFFIC_KEYS[kind][name]
                self.typed(value, types, f"{key}.{name}")
                if scale == 0.0:
                    kwargs[field_name] = value
                elif scale < 0:
                    if value <= 0:
                        raise self.error(f"{key}.{name}", "must be > 0")
                    kwargs[field_name] = -scale / value
                elif isinstance(value, float) or scale != 1.0:
                    kwargs[field_name] = value * scale
                else:
                    kwargs[field_name] = value
            qos = default_qos(kind)
            changes: dict[str, Any] = {}
            if "deadline_ms" in spec:
                changes["deadline_ms"] = float(self.typed(spec["deadline_ms"], (int, float),
                                                          f"{key}.deadline_ms"))
            if "priority" in spec:
                changes["priority"] = self.typed(spec["priority"], int, f"{key}.priority")
            try:
                source = _SOURCE_CLASSES[kind](**kwargs)
                if changes:
                    qos = qos.with_(**changes)
            except LocalProtocolError as exc:
                raise self.error(key, str(exc)) from None
            flows.append(TrafficFlow(kind=ChannelKind(kind), source=source, qos=qos))
        return tuple(flows)

    # -- whole file

    def scenario(self, data: dict[str, Any]) -> Scenario:
        top = {"name", "description", "duration_s", "seed", "link", "uplink", "downlink",
               "events", "transport", "traffic", "endpoints", "multipath"}
        self.check_keys(data, top, "")
        name = data.get("name")
        if name is None:
            raise self.error("name", "missing")
        self.typed(name, str, "name")
        description = self.typed(data.get("description", ""), str, "description")
        if "duration_s" not in data:
            raise self.error("duration_s", "missing (seconds of traffic)")
        duration = float(self.typed(data["duration_s"], (int, float), "duration_s"))
        if not 0 < duration <= K_MAX_DURATION_S:
            raise self.error("duration_s", f"must be in (0, {K_MAX_DURATION_S:g}] s")
        seed = self.typed(data.get("seed", 1), int, "seed")
        if not 0 <= seed < 2**63:
            raise self.error("seed", "must be in 0 .. 2**63-1")

        both = self.link_overrides(self.table(data, "link", ""), "link")
        raw = {d: self.merge(both, self.link_overrides(self.table(data, d, ""), d))
               for d in ("uplink", "downlink")}
        uplink = self.build_link(raw["uplink"], "uplink")
        downlink = self.build_link(raw["downlink"], "downlink")

        events_raw = data.get("events", [])
        if not isinstance(events_raw, list):
            raise self.error("events", "expected an array of tables ([[events]])")
        multi: dict[str, Any] = {}
        if "endpoints" in data or "multipath" in data:
            # local import: the multi-endpoint parser builds on this class
            from edgewire.netsim.scenario_multi import parse_endpoints
            multi = parse_endpoints(self, data, raw, events_raw, duration)
            events_raw = []
        timed: list[tuple[float, int, dict[str, Any]]] = []
        for i, ev in enumerate(events_raw):
            where = f"events[{i}]"
            if not isinstance(ev, dict):
                raise self.error(where, "expected a table")
            self.check_keys(ev, {"at_s", "link", "uplink", "downlink"}, where)
            if "at_s" not in ev:
                raise self.error(f"{where}.at_s", "missing (seconds from the start)")
            at = float(self.typed(ev["at_s"], (int, float), f"{where}.at_s"))
            if not 0 <= at <= duration:
                raise self.error(f"{where}.at_s", f"must be within 0 .. duration_s "
                                                  f"({duration:g}), got {at:g}")
            if not any(k in ev for k in ("link", "uplink", "downlink")):
                raise self.error(where, "changes nothing: give link, uplink or downlink")
            timed.append((at, i, ev))
        timed.sort(key=lambda x: (x[0], x[1]))
        events: list[LinkEvent] = list(multi.get("events", ()))
        for at, i, ev in timed:
            where = f"events[{i}]"
            both_ev = self.link_overrides(self.table(ev, "link", f"{where}."), f"{where}.link")
            new: dict[str, LinkConfig | None] = {}
            for d in ("uplink", "downlink"):
                over = self.merge(both_ev, self.link_overrides(
                    self.table(ev, d, f"{where}."), f"{where}.{d}"))
                if over:
                    raw[d] = self.merge(raw[d], over)
                    new[d] = self.build_link(raw[d], f"{where}.{d}")
                else:
                    new[d] = None
            events.append(LinkEvent(at_s=at, uplink=new["uplink"], downlink=new["downlink"]))

        transport = self.transport(self.table(data, "transport", ""))
        traffic = self.table(data, "traffic", "")
        self.check_keys(traffic, {"up", "down"}, "traffic")
        if traffic:
            up = self.flows(self.table(traffic, "up", "traffic."), "traffic.up")
            down = self.flows(self.table(traffic, "down", "traffic."), "traffic.down")
        else:
            up = (TrafficFlow(kind=ChannelKind.AUDIO, source=AudioSourceConfig(),
                              qos=default_qos("audio")),)
            down = ()
        if not up and not down:
            raise self.error("traffic", "no channel in either direction")
        return Scenario(name=name, duration_s=duration, seed=seed, description=description,
                        uplink=uplink, downlink=downlink, events=tuple(events),
                        transport=transport, up=up, down=down, source=self.source,
                        endpoints=multi.get("endpoints", ()),
                        multipath=multi.get("multipath"))

    def transport(self, table: dict[str, Any]) -> TransportSettings:
        allowed = {f.name for f in fields(TransportSettings)}
        self.check_keys(table, allowed, "transport")
        cc = self.typed(table.get("cc", "edgewire"), str, "transport.cc")
        names = congestion_control_names()
        if cc not in names:
            raise self.error("transport.cc", f"unknown congestion controller {cc!r} "
                                             f"(registered: {', '.join(names)})")
        estimator = self.typed(table.get("estimator", DEFAULT_ESTIMATOR), str,
                               "transport.estimator")
        if estimator not in estimator_names():
            raise self.error("transport.estimator",
                             f"unknown bandwidth estimator {estimator!r} "
                             f"(registered: {', '.join(estimator_names())})")
        recovery = self.typed(table.get("recovery", "auto"), str, "transport.recovery")
        if recovery not in RECOVERY_MODES:
            raise self.error("transport.recovery",
                             f"unknown recovery mode {recovery!r} "
                             f"(one of: {', '.join(RECOVERY_MODES)})")
        mds = self.typed(table.get("max_datagram_size", 1200), int,
                         "transport.max_datagram_size")
        if not 1200 <= mds <= 65527:
            raise self.error("transport.max_datagram_size", "must be in 1200 .. 65527")
        ack_ms = float(self.typed(table.get("ack_delay_ms", 25.0), (int, float),
                                  "transport.ack_delay_ms"))
        if not K_MIN_ACK_DELAY * 1000 <= ack_ms <= K_MAX_ACK_DELAY * 1000:
            raise self.error("transport.ack_delay_ms",
                             f"must be in {K_MIN_ACK_DELAY * 1000:g} .. "
                             f"{K_MAX_ACK_DELAY * 1000:g} (the max_ack_delay QUIC advertises)")
        try:
            bwe = config_with(BweConfig(), self.table(table, "bwe", "transport."))
        except LocalProtocolError as exc:
            raise self.error("transport.bwe", str(exc)) from None
        return TransportSettings(cc=cc, estimator=estimator, recovery=recovery,
                                 max_datagram_size=mds,
                                 ack_delay_ms=ack_ms, bwe=bwe)


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
             dict: "a table"}
    if set(types) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def parse_scenario(data: dict[str, Any], *, source: str = "<dict>",
                   base_dir: str | Path | None = None) -> Scenario:
    """Validate a scenario given as a dict (the shape of the TOML file)."""
    if not isinstance(data, dict):
        raise ScenarioError(source, "", "a scenario is a table")
    parser = _Parser(source, Path(base_dir) if base_dir is not None else None)
    return parser.scenario(data)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(str(path), "", "file not found") from None
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "", f"invalid TOML: {exc}") from None
    return parse_scenario(data, source=str(path), base_dir=path.parent)
