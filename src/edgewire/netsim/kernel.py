"""Kernel backend of netsim: two network namespaces joined by a veth pair, shaped by the
Linux qdiscs netem (delay, jitter, loss, duplication, reordering) and tbf (rate, queue).

Unlike the simulator (virtual time) and the relay (a user-space UDP forwarder), this backend
lets any program -- QUIC stacks, browsers, ``iperf3`` -- run unmodified inside
``ip netns exec NS ...`` while the kernel shapes its packets. It needs root (or
CAP_NET_ADMIN + CAP_SYS_ADMIN) and, for anything but rate limits, the ``sch_netem`` module.

Each direction has its own :class:`~edgewire.netsim.netem.NetemSpec`, applied to the egress
of the sending side's veth end: netem as the root qdisc (handle 1:) with tbf as its child
(handle 2:, parent 1:1), or tbf alone at the root when only a rate is set, or netem alone.
netem's options are encoded by :mod:`edgewire.netsim.netem` and sent on a netlink socket of
our own inside the namespace (pyroute2 cannot encode loss models or distributions);
namespaces, veth, addresses and tbf go through pyroute2.

This module performs I/O (netlink, /proc, iproute2's distribution files). It imports
pyroute2 only when a link is brought up, so :class:`NetemSpec` works without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import itertools
import os
import re
import signal
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from edgewire.errors import EdgewireError, LocalProtocolError
from edgewire.netsim.netem import (
    K_TICKS_PER_US,
    NetemSpec,
    build_qdisc_request,
    encode_netem_options,
    parse_netlink_ack,
)

__all__ = [
    "K_ALTERNATIVES",
    "KernelBackendError",
    "NetemLink",
    "NetemSpec",
    "dist_table_dirs",
    "explain_errno",
    "link_names",
    "load_dist_table",
    "read_ticks_per_us",
    "teardown",
]

#: Where to go when the kernel backend cannot run here.
K_ALTERNATIVES = ("use the simulator (`edgewire netsim run`: virtual time, no privileges) or "
                  "the relay (`edgewire netsim relay`: real UDP sockets, no privileges)")
#: Longest name prefix: interface names are PREFIX-va / PREFIX-vb and Linux allows 15 bytes.
K_MAX_NAME = 12
#: How long to wait for the kernel's answer to a netlink request.
K_NETLINK_TIMEOUT_S = 5.0  # seconds

# Linux ABI numbers for our own netlink socket (socket.AF_NETLINK & co; the socket module is
# kept out of netsim, and pyroute2 creates the socket inside the namespace for us)
_AF_NETLINK = 16
_SOCK_RAW = 3
_NETLINK_ROUTE = 0
_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
_NEEDED_CAPS = (1 << _CAP_NET_ADMIN) | (1 << _CAP_SYS_ADMIN)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SEQ = itertools.count(1)


class KernelBackendError(EdgewireError):
    """The kernel backend could not build or remove a link: missing privileges, a kernel
    without netem/tbf/veth, names already in use, or another netlink error. The message says
    what is missing and what to do instead; ``errno`` is the kernel's error number if any."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def explain_errno(code: int, action: str, *, kind: str | None = None,
                  detail: str | None = None) -> KernelBackendError:
    """The :class:`KernelBackendError` for errno ``code`` raised while doing ``action``
    (for example "adding the netem qdisc to ew-va"); ``kind`` names the qdisc or link type
    involved, ``detail`` is the kernel's extended-ack text."""
    suffix = f'; the kernel says "{detail}"' if detail else ""
    if code in (errno.EPERM, errno.EACCES):
        return KernelBackendError(
            f"{action} was refused ({errno.errorcode.get(code, code)}{suffix}): the kernel "
            f"backend needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN, to create network "
            f"namespaces, veth pairs and qdiscs. Run it with sudo, or {K_ALTERNATIVES}.",
            errno=code)
    if code == errno.ENOENT and kind in ("netem", "tbf"):
        module, config = {"netem": ("sch_netem", "CONFIG_NET_SCH_NETEM"),
                          "tbf": ("sch_tbf", "CONFIG_NET_SCH_TBF")}[kind]
        extra = (" Rate limits alone (tbf) work without netem." if kind == "netem" else "")
        return KernelBackendError(
            f"{action} failed: this kernel has no {kind} qdisc ({module} is missing: "
            f"ENOENT{suffix}). Load it with `modprobe {module}` or use a kernel built with "
            f"{config}; without it, {K_ALTERNATIVES}.{extra}", errno=code)
    if code in (errno.EOPNOTSUPP, errno.ENOENT) and kind == "veth":
        return KernelBackendError(
            f"{action} failed: this kernel cannot create veth pairs "
            f"({errno.errorcode.get(code, code)}{suffix}). Load it with `modprobe veth` or "
            f"use a kernel built with CONFIG_VETH; without it, {K_ALTERNATIVES}.", errno=code)
    if code == errno.EEXIST:
        return KernelBackendError(
            f"{action} failed: it already exists (EEXIST{suffix}). Remove a previous link with "
            f"`edgewire netsim netem down --name PREFIX` or choose another --name.",
            errno=code)
    return KernelBackendError(
        f"{action} failed: {os.strerror(code)} ({errno.errorcode.get(code, code)}{suffix})",
        errno=code)


def _error_code(exc: BaseException) -> int | None:
    # pyroute2's NetlinkError carries .code, OSError .errno
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return abs(code)
    code = getattr(exc, "errno", None)
    return abs(code) if isinstance(code, int) else None


@contextlib.contextmanager
def _step(action: str, *, kind: str | None = None) -> Iterator[None]:
    """Turn netlink and OS errors of one setup step into a clear KernelBackendError."""
    try:
        yield
    except KernelBackendError:
        raise
    except Exception as exc:  # pyroute2 NetlinkError, OSError, TimeoutError ...
        code = _error_code(exc)
        if code is None:
            raise KernelBackendError(f"{action} failed: {exc!r}") from exc
        raise explain_errno(code, action, kind=kind) from exc


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while tearing down, so a second Ctrl-C cannot leave half a link;
    the interrupt is delivered once the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if previous is signal.default_int_handler:
                raise KeyboardInterrupt
            if callable(previous):
                previous(signal.SIGINT, None)


def _check_privileges(action: str, *, status: Path = Path("/proc/self/status")) -> None:
    """Refuse early, with the clear EPERM explanation, when the process lacks CAP_NET_ADMIN or
    CAP_SYS_ADMIN (pyroute2 would fail less clearly, and leak sockets doing so)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                effective = int(line.split()[1], 16)
                break
        else:
            return
    except (OSError, ValueError, IndexError):
        return  # cannot tell: let the kernel decide
    if effective & _NEEDED_CAPS != _NEEDED_CAPS:
        raise explain_errno(errno.EPERM, action)


def _pyroute2() -> tuple[ModuleType, Any]:
    try:
        from pyroute2 import IPRoute, netns  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise KernelBackendError(
            "the kernel backend needs pyroute2: pip install 'edgewire[kernel]' "
            f"(or {K_ALTERNATIVES})") from exc
    return netns, IPRoute


def dist_table_dirs() -> list[Path]:
    """Where iproute2 keeps its delay distribution tables (``normal.dist`` ...): the
    directory in ``$TC_LIB_DIR``, then the usual library directories of distributions."""
    dirs: list[Path] = []
    if os.environ.get("TC_LIB_DIR"):
        dirs.append(Path(os.environ["TC_LIB_DIR"]))
    dirs += [Path("/usr/lib/tc"), Path("/usr/lib64/tc"), Path("/usr/local/lib/tc")]
    # Debian and Ubuntu use the multiarch directory (/usr/lib/x86_64-linux-gnu/tc)
    dirs += sorted(Path("/usr/lib").glob("*-linux-gnu*/tc"))
    return dirs


def load_dist_table(name: str, *, dirs: list[Path] | None = None) -> tuple[int, ...]:
    """Read iproute2's ``NAME.dist`` (comment lines start with '#', then whitespace-separated
    integers scaled by 8192), searching :func:`dist_table_dirs`. Raises
    :class:`KernelBackendError` when no table is found: netem has no built-in normal or
    pareto distribution, and silently falling back to uniform would change the experiment."""
    if not _NAME_RE.fullmatch(name):
        raise LocalProtocolError(f"bad distribution name {name!r}")
    searched = dirs if dirs is not None else dist_table_dirs()
    for directory in searched:
        path = directory / f"{name}.dist"
        if not path.is_file():
            continue
        values: list[int] = []
        with path.open(encoding="ascii") as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                for word in line.split():
                    try:
                        value = int(word, 0)
                    except ValueError as exc:
                        raise KernelBackendError(f"{path}: {word!r} is not an integer") from exc
                    # tc stores each value in a signed 16-bit slot
                    values.append(struct.unpack("=h", struct.pack("=H", value & 0xFFFF))[0])
        if not values:
            raise KernelBackendError(f"{path} holds no values")
        return tuple(values)
    raise KernelBackendError(
        f"netem's {name!r} jitter distribution needs iproute2's table {name}.dist, not found "
        f"in {', '.join(str(d) for d in searched)}: install iproute2 (which ships the "
        f"tables) or set TC_LIB_DIR, use --distribution uniform, or {K_ALTERNATIVES}")


def read_ticks_per_us(path: Path = Path("/proc/net/psched")) -> float:
    """psched ticks per microsecond as tc computes them from /proc/net/psched; falls back
    to :data:`K_TICKS_PER_US` when the file cannot be read."""
    try:
        t2us, us2t, clock_res = (int(word, 16) for word in path.read_text().split()[:3])
    except (OSError, ValueError):
        return K_TICKS_PER_US
    if clock_res == 1_000_000_000:
        # the kernel reports a multiplier of 1000 for nanosecond clocks that really is 1
        t2us = us2t
    if us2t == 0:
        return K_TICKS_PER_US
    return t2us / us2t * (clock_res / 1_000_000)


def link_names(name: str) -> tuple[str, str, str, str]:
    """``(ns_a, ns_b, if_a, if_b)`` for the prefix ``name``: namespaces NAME-a and NAME-b,
    veth ends NAME-va (in NAME-a) and NAME-vb (in NAME-b)."""
    if not (isinstance(name, str) and len(name) <= K_MAX_NAME and _NAME_RE.fullmatch(name)):
        raise LocalProtocolError(
            f"link name must be 1 to {K_MAX_NAME} characters of letters, digits, '_', '.', "
            f"'-' (it prefixes namespace and interface names), got {name!r}")
    return f"{name}-a", f"{name}-b", f"{name}-va", f"{name}-vb"


def _existing_namespaces(netns: ModuleType) -> set[str]:
    with _step("listing network namespaces"):
        return set(netns.listnetns())


def teardown(name: str) -> list[str]:
    """Remove the namespaces NAME-a and NAME-b (and with them the veth pair and its qdiscs).
    Returns the namespaces removed; missing ones are skipped. Programs still running inside
    a namespace keep it alive until they exit."""
    ns_a, ns_b, _, _ = link_names(name)
    _check_privileges(f"removing network namespaces {ns_a} and {ns_b}")
    netns, _ = _pyroute2()
    removed: list[str] = []
    failures: list[str] = []
    with _sigint_deferred():
        existing = _existing_namespaces(netns)
        for ns in (ns_b, ns_a):
            if ns not in existing:
                continue
            try:
                with _step(f"removing network namespace {ns}"):
                    netns.remove(ns)
                removed.append(ns)
            except KernelBackendError as exc:
                failures.append(str(exc))
    if failures:
        raise KernelBackendError("; ".join(failures))
    return removed


class NetemLink:
    """Two network namespaces joined by a veth pair, shaped by netem and tbf.

    ``with NetemLink(spec_ab, spec_ba, name="ew") as link:`` creates namespaces
    ``link.ns_a`` / ``link.ns_b`` with addresses ``link.addr_a`` / ``link.addr_b``, applies
    ``spec_ab`` to traffic from a to b and ``spec_ba`` to traffic from b to a (None: the same
    as ``spec_ab``, its seed plus one; pass ``NetemSpec()`` for an unshaped direction), and
    removes everything
    on exit -- also after an exception or Ctrl-C. A failed setup removes what it created
    before raising :class:`KernelBackendError`. :meth:`up` and :meth:`down` do the same
    without a ``with`` block (the CLI leaves links up between commands).
    """

    def __init__(self, spec_ab: NetemSpec | None = None, spec_ba: NetemSpec | None = None,
                 *, name: str = "ew", addr_a: str = "10.77.0.1/24",
                 addr_b: str = "10.77.0.2/24") -> None:
        self.name = name
        self.ns_a, self.ns_b, self.if_a, self.if_b = link_names(name)
        for spec in (spec_ab, spec_ba):
            if spec is not None and not isinstance(spec, NetemSpec):
                raise LocalProtocolError(f"NetemLink needs NetemSpec objects, "
                                         f"got {type(spec).__name__}")
        self.spec_ab = spec_ab if spec_ab is not None else NetemSpec()
        if spec_ba is None:
            spec_ba = self.spec_ab
            if spec_ba.seed is not None:
                # the same settings, but not the same random numbers in both directions
                spec_ba = dataclasses.replace(spec_ba, seed=(spec_ba.seed + 1) % 2**64)
        self.spec_ba = spec_ba
        try:
            self._iface_a = ipaddress.ip_interface(addr_a)
            self._iface_b = ipaddress.ip_interface(addr_b)
        except ValueError as exc:
            raise LocalProtocolError(f"bad address: {exc}") from exc
        if self._iface_a.network != self._iface_b.network or self._iface_a == self._iface_b:
            raise LocalProtocolError(f"addr_a {addr_a} and addr_b {addr_b} must be two "
                                     f"different addresses in the same subnet")
        self._created: list[str] = []
        self._up = False
        # only the process that built the link removes it: a forked child (pyroute2's
        # helpers, or the caller's) unwinding through our cleanup must not tear it down
        self._owner_pid = os.getpid()

    @property
    def addr_a(self) -> str:
        """Address of side a (no prefix length), reachable from ``ns_b``."""
        return str(self._iface_a.ip)

    @property
    def addr_b(self) -> str:
        """Address of side b (no prefix length), reachable from ``ns_a``."""
        return str(self._iface_b.ip)

    @property
    def is_up(self) -> bool:
        """True between a successful :meth:`up` and :meth:`down`."""
        return self._up

    def exec_argv(self, side: str, *argv: str) -> list[str]:
        """The command line that runs ``argv`` inside side ``"a"`` or ``"b"``."""
        if side not in ("a", "b"):
            raise LocalProtocolError(f"side must be 'a' or 'b', got {side!r}")
        return ["ip", "netns", "exec", self.ns_a if side == "a" else self.ns_b, *argv]

    def describe(self) -> list[str]:
        """Human-readable lines: what exists and how to use it."""
        lines = [
            f"namespace {self.ns_a}: {self.if_a} {self._iface_a.with_prefixlen}",
            f"namespace {self.ns_b}: {self.if_b} {self._iface_b.with_prefixlen}",
            f"a -> b ({self.if_a} egress): {_qdisc_summary(self.spec_ab)}",
            f"b -> a ({self.if_b} egress): {_qdisc_summary(self.spec_ba)}",
        ]
        return lines

    def __enter__(self) -> NetemLink:
        return self.up()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.down()
        except KernelBackendError as teardown_error:
            if exc is None:
                raise
            # keep the original error; say what could not be removed
            exc.add_note(f"edgewire: tearing down the kernel link also failed: "
                         f"{teardown_error}")

    def up(self) -> NetemLink:
        """Create namespaces, veth pair, addresses and qdiscs. On any failure (or Ctrl-C)
        everything created so far is removed before the exception propagates."""
        if self._up:
            raise LocalProtocolError(f"link {self.name} is already up")
        # everything that can fail without side effects comes first
        tables = {spec.distribution: load_dist_table(spec.distribution)
                  for spec in (self.spec_ab, self.spec_ba)
                  if spec.needs_netem and spec.jitter_ms > 0 and spec.distribution != "uniform"}
        ticks_per_us = read_ticks_per_us()
        options = {id(spec): encode_netem_options(spec, ticks_per_us=ticks_per_us,
                                                  dist_table=tables.get(spec.distribution))
                   for spec in (self.spec_ab, self.spec_ba) if spec.needs_netem}
        _check_privileges(f"creating network namespace {self.ns_a}")
        netns, iproute = _pyroute2()
        self._owner_pid = os.getpid()
        try:
            taken = {self.ns_a, self.ns_b} & _existing_namespaces(netns)
            if taken:
                raise KernelBackendError(
                    f"network namespace {', '.join(sorted(taken))} already exists: remove it "
                    f"with `edgewire netsim netem down --name {self.name}` or choose another "
                    f"--name", errno=errno.EEXIST)
            for ns in (self.ns_a, self.ns_b):
                # recorded first: a create that fails half-way may leave its mount point
                self._created.append(ns)
                with _step(f"creating network namespace {ns}"):
                    netns.create(ns)
            with _step(f"creating veth pair {self.if_a} ({self.ns_a}) <-> {self.if_b} "
                       f"({self.ns_b})", kind="veth"), iproute(netns=self.ns_a) as ipr:
                ipr.link("add", ifname=self.if_a, kind="veth",
                         peer={"ifname": self.if_b, "net_ns_fd": self.ns_b})
            sides = ((self.ns_a, self.if_a, self._iface_a, self.spec_ab),
                     (self.ns_b, self.if_b, self._iface_b, self.spec_ba))
            for ns, ifname, iface, spec in sides:
                with _step(f"opening rtnetlink in {ns}"), iproute(netns=ns) as ipr:
                    index = self._configure(ipr, ns, ifname, iface)
                    self._shape(ipr, ns, ifname, index, spec, options.get(id(spec)))
        except BaseException:
            if os.getpid() == self._owner_pid:
                with _sigint_deferred():
                    self._remove_created(netns)
            raise
        self._up = True
        return self

    def down(self) -> None:
        """Remove both namespaces (and with them the veth pair and qdiscs). Idempotent; does
        nothing in a process forked from the one that called :meth:`up`."""
        if not self._created or os.getpid() != self._owner_pid:
            self._up = False
            return
        netns, _ = _pyroute2()
        with _sigint_deferred():
            failures = self._remove_created(netns)
        self._up = False
        if failures:
            raise KernelBackendError("; ".join(failures))

    def _remove_created(self, netns: ModuleType) -> list[str]:
        failures: list[str] = []
        try:
            existing = _existing_namespaces(netns)
        except KernelBackendError as exc:
            return [str(exc)]
        for ns in reversed(self._created):
            if ns in existing:
                try:
                    with _step(f"removing network namespace {ns}"):
                        netns.remove(ns)
                except KernelBackendError as exc:
                    failures.append(str(exc))
                    continue
            self._created.remove(ns)
        return failures

    @staticmethod
    def _configure(ipr: Any, ns: str, ifname: str,
                   iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> int:
        with _step(f"configuring {ifname} in {ns}"):
            index = int(ipr.link_lookup(ifname=ifname)[0])
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ipr.link("set", index=index, state="up")
            loopback = ipr.link_lookup(ifname="lo")
            if loopback:
                ipr.link("set", index=int(loopback[0]), state="up")
        return index

    @staticmethod
    def _shape(ipr: Any, ns: str, ifname: str, index: int, spec: NetemSpec,
               options: bytes | None) -> None:
        tbf_parent = 0xFFFFFFFF  # TC_H_ROOT
        tbf_handle = 0x10000
        if options is not None:
            _add_qdisc(ns, ifname, index, "netem", options)
            tbf_parent, tbf_handle = 0x10001, 0x20000  # child of netem's class 1:1
        if spec.needs_tbf:
            with _step(f"adding the tbf qdisc to {ifname} in {ns}", kind="tbf"):
                ipr.tc("add", "tbf", index, tbf_handle, parent=tbf_parent,
                       rate=spec.rate_bytes_per_s, burst=spec.tbf_burst_bytes,
                       limit=spec.tbf_limit_bytes)


def _add_qdisc(ns: str, ifname: str, index: int, kind: str, options: bytes, *,
               handle: int = 0x10000, parent: int = 0xFFFFFFFF) -> None:
    """Send our own RTM_NEWQDISC (netem: root, handle 1:) on a netlink socket in ``ns``."""
    netns, _ = _pyroute2()
    action = f"adding the {kind} qdisc to {ifname} in {ns}"
    seq = next(_SEQ)
    request = build_qdisc_request(ifindex=index, kind=kind, options=options, seq=seq,
                                  handle=handle, parent=parent)
    with _step(f"opening a netlink socket in {ns}"):
        sock = netns.create_socket(ns, family=_AF_NETLINK, socket_type=_SOCK_RAW,
                                   proto=_NETLINK_ROUTE)
    try:
        with _step(action, kind=kind):
            for option in (_NETLINK_EXT_ACK, _NETLINK_CAP_ACK):
                with contextlib.suppress(OSError):  # older kernels: plain acks are fine
                    sock.setsockopt(_SOL_NETLINK, option, 1)
            sock.settimeout(K_NETLINK_TIMEOUT_S)
            sock.bind((0, 0))
            sock.sendto(request, (0, 0))
            while True:
                ack = parse_netlink_ack(bytes(sock.recv(65536)), seq=seq)
                if ack is not None:
                    break
    finally:
        sock.close()
    if ack.error:
        raise explain_errno(ack.error, action, kind=kind, detail=ack.message)


def _qdisc_summary(spec: NetemSpec) -> str:
    parts: list[str] = []
    if spec.needs_netem:
        netem = [f"delay {spec.delay_ms:g} ms"]
        if spec.jitter_ms:
            netem.append(f"jitter {spec.jitter_ms:g} ms {spec.distribution}"
                         + ("" if spec.jitter_reorders else " (in order)"))
        if spec.loses_packets:
            params = " ".join(f"{key}={value:.4g}" for key, value in spec.loss.to_dict().items()
                              if isinstance(value, float))
            netem.append(f"loss {spec.loss.model} {params} (mean "
                         f"{spec.loss.mean_loss_rate():.2%})")
        if spec.duplicate:
            netem.append(f"duplicate {spec.duplicate:g}")
        if spec.reorder:
            netem.append(f"reorder {spec.reorder:g} gap {spec.reorder_gap or 1}")
        if spec.seed is not None:
            netem.append(f"seed {spec.seed}")
        parts.append("netem " + ", ".join(netem) + f", limit {spec.limit_packets}")
    if spec.needs_tbf:
        parts.append(f"tbf rate {spec.rate_kbps:g} kbit/s, queue {spec.tbf_limit_bytes} B, "
                     f"burst {spec.tbf_burst_bytes} B")
    return " -> ".join(parts) if parts else "unshaped"
