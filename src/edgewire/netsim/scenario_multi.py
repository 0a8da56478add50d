"""Multi-endpoint scenario keys: ``[[endpoints]]``, ``[multipath]`` and per-endpoint
``[[events]]`` (docs/NETSIM.md, "Multi-endpoint scenarios")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgewire.netsim.config import LinkConfig
from edgewire.netsim.scenario import EndpointSpec, LinkEvent, MultipathSettings

if TYPE_CHECKING:
    from edgewire.netsim.scenario import _Parser

__all__ = ["K_MAX_ENDPOINTS", "parse_endpoints"]

#: Most endpoints a scenario may declare.
K_MAX_ENDPOINTS = 8
_ENDPOINT_KEYS = {"name", "initial", "link", "uplink", "downlink"}
_EVENT_KEYS = {"at_s", "endpoint", "link", "uplink", "downlink", "decision"}


def _multipath(p: _Parser, table: dict[str, Any]) -> MultipathSettings:
    p.check_keys(table, {"failover_after_s", "probe_interval_s", "ack_delay_s",
                         "auto_failover"}, "multipath")
    values: dict[str, Any] = {}
    for key in ("failover_after_s", "probe_interval_s", "ack_delay_s"):
        if key in table:
            value = float(p.typed(table[key], (int, float), f"multipath.{key}"))
            if not 0 < value <= 60:
                raise p.error(f"multipath.{key}", "must be in (0, 60] seconds")
            values[key] = value
    if "auto_failover" in table:
        values["auto_failover"] = p.typed(table["auto_failover"], bool,
                                          "multipath.auto_failover")
    return MultipathSettings(**values)


def parse_endpoints(p: _Parser, data: dict[str, Any], defaults: dict[str, dict[str, Any]],
                    events_raw: list[Any], duration: float) -> dict[str, Any]:
    """Endpoints (their links are the top-level ``[link]``/``[uplink]``/``[downlink]``
    merged under their own), the multipath settings and every event, as keyword
    arguments of :class:`Scenario`."""
    table = data.get("endpoints")
    if not isinstance(table, list) or len(table) < 2:
        raise p.error("endpoints", "a multi-endpoint scenario declares at least two "
                                   "[[endpoints]]")
    if len(table) > K_MAX_ENDPOINTS:
        raise p.error("endpoints", f"at most {K_MAX_ENDPOINTS} endpoints")
    raws: dict[str, dict[str, dict[str, Any]]] = {}
    specs: list[EndpointSpec] = []
    initial: list[str] = []
    for i, ep in enumerate(table):
        where = f"endpoints[{i}]"
        if not isinstance(ep, dict):
            raise p.error(where, "expected a table")
        p.check_keys(ep, _ENDPOINT_KEYS, where)
        if "name" not in ep:
            raise p.error(f"{where}.name", "missing (the path name, e.g. \"edge\")")
        name = p.typed(ep["name"], str, f"{where}.name")
        if not name or len(name) > 64 or name in raws:
            raise p.error(f"{where}.name", "must be 1..64 characters and unique")
        if p.typed(ep.get("initial", False), bool, f"{where}.initial"):
            initial.append(name)
        both = p.link_overrides(p.table(ep, "link", f"{where}."), f"{where}.link")
        raw = {d: p.merge(p.merge(defaults[d], both),
                          p.link_overrides(p.table(ep, d, f"{where}."), f"{where}.{d}"))
               for d in ("uplink", "downlink")}
        raws[name] = raw
        specs.append(EndpointSpec(name=name, uplink=p.build_link(raw["uplink"], f"{where}.uplink"),
                                  downlink=p.build_link(raw["downlink"], f"{where}.downlink"),
                                  initial=False))
    if len(initial) > 1:
        raise p.error("endpoints", f"only one endpoint may be initial, got {initial}")
    first = initial[0] if initial else specs[0].name
    specs = [EndpointSpec(name=s.name, uplink=s.uplink, downlink=s.downlink,
                          initial=s.name == first) for s in specs]

    timed: list[tuple[float, int, dict[str, Any]]] = []
    for i, ev in enumerate(events_raw):
        where = f"events[{i}]"
        if not isinstance(ev, dict):
            raise p.error(where, "expected a table")
        p.check_keys(ev, _EVENT_KEYS, where)
        if "at_s" not in ev:
            raise p.error(f"{where}.at_s", "missing (seconds from the start)")
        at = float(p.typed(ev["at_s"], (int, float), f"{where}.at_s"))
        if not 0 <= at <= duration:
            raise p.error(f"{where}.at_s", f"must be within 0 .. duration_s ({duration:g})")
        if not any(k in ev for k in ("link", "uplink", "downlink", "decision")):
            raise p.error(where, "changes nothing: give link, uplink, downlink or decision")
        if "endpoint" in ev and ev["endpoint"] not in raws:
            raise p.error(f"{where}.endpoint", f"unknown endpoint {ev['endpoint']!r} "
                                               f"(declared: {', '.join(raws)})")
        if "decision" in ev and not isinstance(ev["decision"], dict):
            raise p.error(f"{where}.decision", "expected a table, e.g. "
                                               "{ action = \"switch\", path = \"cloud\" }")
        timed.append((at, i, ev))
    timed.sort(key=lambda x: (x[0], x[1]))
    events: list[LinkEvent] = []
    for at, i, ev in timed:
        where = f"events[{i}]"
        if "decision" in ev:
            events.append(LinkEvent(at_s=at, decision=dict(ev["decision"])))
        both = p.link_overrides(p.table(ev, "link", f"{where}."), f"{where}.link")
        targets = [ev["endpoint"]] if "endpoint" in ev else list(raws)
        for name in targets:
            new: dict[str, LinkConfig | None] = {}
            for d in ("uplink", "downlink"):
                over = p.merge(both, p.link_overrides(p.table(ev, d, f"{where}."),
                                                      f"{where}.{d}"))
                if over:
                    raws[name][d] = p.merge(raws[name][d], over)
                    new[d] = p.build_link(raws[name][d], f"{where}.{d}")
                else:
                    new[d] = None
            if new["uplink"] is not None or new["downlink"] is not None:
                events.append(LinkEvent(at_s=at, endpoint=name, uplink=new["uplink"],
                                        downlink=new["downlink"]))
    return {"endpoints": tuple(specs), "events": tuple(events),
            "multipath": _multipath(p, p.table(data, "multipath", ""))}
