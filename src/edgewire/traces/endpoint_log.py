"""edgewire's per-packet endpoint log: what one endpoint sent and received, per channel.

Format (UTF-8 text, one record per line)::

    # edgewire-endpoint-log v1
    time_s,event,channel,seq,size_bytes
    12.003125,send,audio#0,0,160
    12.043990,recv,tokens#3,0,14

``time_s`` is the endpoint's clock in seconds (any origin; both endpoints on one clock for
delays to mean anything), ``event`` is ``send`` or ``recv``, ``channel`` a name without
commas, ``seq`` the channel's sequence number (integer, one per message sent),
``size_bytes`` the payload size. A sender's log and a receiver's log together give exact
per-channel loss and one-way delay (:func:`compare_endpoint_logs`).

edgewire endpoints write it themselves: :class:`EndpointLogWriter` is an
``edgewire.transport.session.EndpointLog``, attached with ``Session.set_endpoint_log``, or
opened from a path by ``edgewire.connect(..., endpoint_log=PATH)``,
``edgewire.serve(..., endpoint_log=PATH)``, ``edgewire demo --endpoint-log DIR`` and
``edgewire netsim run --endpoint-log PREFIX``. The session names channels ``<name>#<id>``
and numbers messages by frame id (audio, video) or message index (tokens, embeddings);
docs/TRACES.md has the details.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from edgewire.errors import LocalProtocolError
from edgewire.traces.match import MatchConfig, Obs, match_streams
from edgewire.traces.problems import Problems, TraceFormatError

__all__ = ["EndpointLogWriter", "compare_endpoint_logs", "read_endpoint_log"]

K_MAGIC = "# edgewire-endpoint-log v1"
K_COLUMNS = "time_s,event,channel,seq,size_bytes"


class EndpointLogWriter:
    """Writes an endpoint log (plain buffered file I/O; call :meth:`close` or use ``with``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        """The file written."""
        try:
            self._f: IO[str] = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise LocalProtocolError(f"cannot write {path}: {exc.strerror}") from None
        self._f.write(f"{K_MAGIC}\n{K_COLUMNS}\n")
        self.records = 0
        """Records written."""

    def _write(self, event: str, now: float, channel: str, seq: int, size_bytes: int) -> None:
        if "," in channel or "\n" in channel:
            raise LocalProtocolError(f"channel name {channel!r} contains a comma or newline")
        self._f.write(f"{now:.6f},{event},{channel},{int(seq)},{int(size_bytes)}\n")
        self.records += 1

    def sent(self, *, now: float, channel: str, seq: int, size_bytes: int) -> None:
        """Record that message ``seq`` of ``channel`` was sent at ``now``."""
        self._write("send", now, channel, seq, size_bytes)

    def received(self, *, now: float, channel: str, seq: int, size_bytes: int) -> None:
        """Record that message ``seq`` of ``channel`` arrived at ``now``."""
        self._write("recv", now, channel, seq, size_bytes)

    def close(self) -> None:
        """Flush and close."""
        self._f.close()

    def __enter__(self) -> EndpointLogWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_endpoint_log(path: str | Path, problems: Problems,
                      event: str | None = None) -> Iterator[tuple[float, str, str, int, int]]:
    """``(time_s, event, channel, seq, size_bytes)`` per record (only ``event`` ones if
    given); malformed lines are reported to ``problems`` with their line index and skipped."""
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TraceFormatError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        if f.readline().strip() != K_MAGIC:
            raise TraceFormatError(f"{path} is not an edgewire endpoint log "
                                   f"(first line is not {K_MAGIC!r})")
        for i, line in enumerate(f, start=1):
            line = line.strip()
            if not line or line == K_COLUMNS or line.startswith("#"):
                continue
            parts = line.split(",")
            try:
                if len(parts) != 5 or parts[1] not in ("send", "recv"):
                    raise ValueError(line[:40])
                rec = (float(parts[0]), parts[1], parts[2], int(parts[3]), int(parts[4]))
            except ValueError:
                problems.add("bad_log_line", "malformed endpoint log line", i)
                continue
            if event is None or rec[1] == event:
                yield rec


def _obs(path: str | Path, problems: Problems, event: str) -> Iterator[Obs]:
    for t, _ev, channel, seq, size in read_endpoint_log(path, problems, event):
        yield t, (channel, seq), channel, size


def compare_endpoint_logs(sender: str | Path, receiver: str | Path,
                          cfg: MatchConfig | None = None) -> dict[str, Any]:
    """Per channel: messages sent and received, exact loss (with bursts and the fitted
    Gilbert-Elliott model), one-way delay and its variation, from the two endpoints' logs.

    The sequence number is the position in the loss pattern, so loss bursts are in
    sequence order whatever order the messages arrived in.
    """
    problems = Problems()
    result = match_streams(_obs(sender, problems, "send"), _obs(receiver, problems, "recv"),
                           cfg)
    result["problems"] = problems.as_list()
    return result
