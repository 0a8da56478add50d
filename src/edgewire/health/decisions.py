"""Decisions from the placement decider: parsing, validation, hand-off, outcomes.

A decider answers a report (the webhook's response body) or calls an API with one
decision, a list of them, or ``{"decisions": [...]}``; an empty body or ``{}`` means
"nothing to do". Each decision is an object::

    {"action": "switch", "path": "cloud", "id": "d-42", "reason": "hard task"}

``action`` is one of :data:`ACTIONS`; ``switch`` needs a ``path`` among the known ones.
Valid decisions go to an injected handler ``(Decision) -> outcome``; every decision,
valid or not, leaves an outcome (``status`` applied / rejected / failed, and a reason)
that the next health report carries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from edgewire.errors import RemoteProtocolError

__all__ = ["ACTIONS", "MAX_DECISIONS", "Decision", "DecisionApplier", "decisions_in",
           "parse_body", "parse_decision"]

log = logging.getLogger(__name__)

#: Actions edgewire understands: move the session's traffic to ``path``, or keep it.
ACTIONS = frozenset({"switch", "stay"})
#: Most decisions taken from one response; the rest are rejected.
MAX_DECISIONS = 16
#: Longest path name, decision id or reason accepted.
K_MAX_TEXT = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One validated decision."""

    action: str
    """One of :data:`ACTIONS`."""
    path: str | None = None
    """Endpoint to switch to (``switch``); None for ``stay``."""
    id: str | None = None
    """The decider's id for it, echoed in the outcome."""
    reason: str | None = None
    """The decider's explanation (logged, echoed)."""


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RemoteProtocolError(f"decision {key} must be a string")
    text = str(value)
    if not text or len(text) > K_MAX_TEXT:
        raise RemoteProtocolError(f"decision {key} must be 1..{K_MAX_TEXT} characters")
    return text


def parse_decision(obj: Any, *, paths: Collection[str] | None = None) -> Decision:
    """Validate one decision object; :class:`RemoteProtocolError` with the reason if it
    is malformed, names an unknown action, or a path not in ``paths`` (None: any)."""
    if not isinstance(obj, Mapping):
        raise RemoteProtocolError(f"a decision must be an object, not {type(obj).__name__}")
    action = obj.get("action")
    if not isinstance(action, str):
        raise RemoteProtocolError("decision has no action")
    if action not in ACTIONS:
        raise RemoteProtocolError(f"unknown action {action[:K_MAX_TEXT]!r} "
                                  f"(known: {', '.join(sorted(ACTIONS))})")
    path = _text(obj, "path")
    if action == "switch":
        if path is None:
            raise RemoteProtocolError("switch decision without a path")
        if paths is not None and path not in paths:
            raise RemoteProtocolError(f"unknown path {path!r} (known: "
                                      f"{', '.join(sorted(paths)) or 'none'})")
    return Decision(action=action, path=path, id=_text(obj, "id"),
                    reason=_text(obj, "reason"))


def decisions_in(body: Any) -> list[Any]:
    """The raw decision objects in a decoded response body: None or ``{}`` hold none, a
    decision object one, a list or ``{"decisions": [...]}`` several."""
    if body is None or body == {} or body == []:
        return []
    if isinstance(body, Mapping):
        if "decisions" in body:
            items = body["decisions"]
            if not isinstance(items, list):
                raise RemoteProtocolError("'decisions' must be a list")
            return items
        if "action" in body:
            return [body]
        return []  # an acknowledgement without a decision
    if isinstance(body, list):
        return body
    raise RemoteProtocolError(f"decider answered a {type(body).__name__}, not decisions")


def parse_body(data: bytes) -> list[Any]:
    """The raw decisions in an HTTP response body (JSON; empty means none)."""
    if not data.strip():
        return []
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"decider answered something that is not JSON: {exc}"
                                  ) from None
    return decisions_in(body)


Handler = Callable[[Decision], Mapping[str, Any] | None]


class DecisionApplier:
    """Validates decisions, hands valid ones to ``handler`` and records every outcome
    with ``record`` (usually ``HealthMonitor.record_decision``).

    ``paths`` are the endpoint names a ``switch`` may name (a collection, or a callable
    returning the current ones). Without a handler, ``switch`` is rejected (a single
    session has nowhere to switch to); ``stay`` needs no handler.
    """

    def __init__(self, *, handler: Handler | None = None,
                 paths: Collection[str] | Callable[[], Collection[str]] | None = None,
                 record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.handler = handler
        self._paths = paths
        self._record = record
        self.applied = 0
        """Decisions the handler applied."""
        self.rejected = 0
        """Decisions rejected (malformed, unknown action or path, over the limit)."""
        self.failed = 0
        """Decisions whose handler failed or raised."""

    def known_paths(self) -> Collection[str] | None:
        """The paths a switch may name now (None: any)."""
        return self._paths() if callable(self._paths) else self._paths

    def apply_body(self, data: bytes, *, source: str = "webhook") -> list[dict[str, Any]]:
        """Apply what an HTTP response body holds; a body that is not decisions becomes
        one rejection (logged) rather than an error."""
        try:
            items = parse_body(data)
        except RemoteProtocolError as exc:
            return [self._outcome("rejected", None, str(exc), source)]
        return self.apply(items, source=source)

    def apply(self, items: Any, *, source: str = "api") -> list[dict[str, Any]]:
        """Apply one decision object, a list of them, or a response-shaped body."""
        try:
            raw = decisions_in(items)
        except RemoteProtocolError as exc:
            return [self._outcome("rejected", None, str(exc), source)]
        outcomes = []
        for i, obj in enumerate(raw):
            if i >= MAX_DECISIONS:
                outcomes.append(self._outcome(
                    "rejected", None, f"more than {MAX_DECISIONS} decisions in one "
                    f"answer: {len(raw) - MAX_DECISIONS} ignored", source))
                break
            outcomes.append(self._one(obj, source))
        return outcomes

    def _one(self, obj: Any, source: str) -> dict[str, Any]:
        try:
            decision = parse_decision(obj, paths=self.known_paths())
        except RemoteProtocolError as exc:
            return self._outcome("rejected", obj, str(exc), source)
        if decision.action == "stay":
            return self._outcome("applied", decision, None, source)
        if self.handler is None:
            return self._outcome("rejected", decision, "no handler can switch paths in "
                                 "this session", source)
        try:
            result = self.handler(decision)
        except Exception as exc:  # a handler bug must not break the reporting loop
            log.warning("decision handler failed for %s: %r", decision, exc)
            return self._outcome("failed", decision, f"handler raised {exc!r}", source)
        result = dict(result or {})
        status = result.pop("status", "applied")
        if status not in ("applied", "rejected", "failed"):
            status = "failed"
        reason = result.pop("reason", None)
        return self._outcome(status, decision, None if reason is None else str(reason),
                             source, result)

    def _outcome(self, status: str, decision: Decision | Any, reason: str | None,
                 source: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        action: str | None
        if isinstance(decision, Decision):
            action, path, did = decision.action, decision.path, decision.id
        else:
            raw = decision if isinstance(decision, Mapping) else {}
            action = _clip(raw.get("action"))
            path = _clip(raw.get("path"))
            did = _clip(raw.get("id"))
        outcome: dict[str, Any] = {"status": status, "action": action, "path": path,
                                   "id": did, "reason": reason, "source": source}
        if extra:
            outcome["detail"] = {str(k): v for k, v in extra.items()}
        if status == "applied":
            self.applied += 1
        elif status == "rejected":
            self.rejected += 1
            log.warning("decision rejected (%s): %s", source, reason)
        else:
            self.failed += 1
        if self._record is not None:
            self._record(outcome)
        return outcome


def _clip(value: Any) -> str | None:
    """A field of a rejected decision, echoed as a short string (or None)."""
    if value is None:
        return None
    return str(value)[:K_MAX_TEXT]
