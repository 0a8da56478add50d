"""Kernel backend of netsim: netem's netlink encoding checked byte for byte against iproute2's
``tc``, tbf shaping real UDP traffic through a veth pair between two namespaces, edgewire's
congestion control against reno on a tbf bottleneck (client and server in the two
namespaces), teardown on every exit path, and the errors that explain what is missing.

Tests that create namespaces need root; the ``tc`` comparison needs ``tc``, ``strace`` and
``unshare`` (iproute2, strace, util-linux) and runs in a throwaway network namespace, so the
host is never touched. None of them needs netem in the kernel: tc's request is recorded even
when the kernel refuses it.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgewire.errors import EdgewireError, LocalProtocolError
from edgewire.netsim.config import (
    BernoulliLoss,
    GilbertLoss,
    LinkConfig,
    LossConfig,
    Markov4Loss,
    NoLoss,
)
from edgewire.netsim.kernel import (
    KernelBackendError,
    NetemLink,
    NetemSpec,
    explain_errno,
    link_names,
    load_dist_table,
    read_ticks_per_us,
    teardown,
)
from edgewire.netsim.netem import (
    K_FRAME_BYTES,
    K_TICKS_PER_US,
    RTM_NEWQDISC,
    TCA_OPTIONS,
    TimeFormat,
    build_qdisc_request,
    decode_netem_options,
    encode_netem_options,
    ms_to_ticks,
    parse_netlink_ack,
    probability_to_u32,
)
from edgewire.netsim.trace import CapacityTrace

# pyroute2 forks to enter namespaces; Python 3.12+ warns about fork() once any other test
# has left a thread running, which is harmless for these short-lived helpers
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .*is multi-threaded, use of fork:DeprecationWarning")

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: creates network namespaces, veth pairs and qdiscs "
                        "(run the suite as root, e.g. in CI's privileged job)")
U32 = 0xFFFFFFFF


def unique_name(tag: str) -> str:
    """A link name no parallel test run shares (at most 12 characters)."""
    return f"ew{tag}{os.getpid() % 100000}"


def namespaces() -> set[str]:
    netns_dir = Path("/var/run/netns")
    return {p.name for p in netns_dir.iterdir()} if netns_dir.is_dir() else set()


# ---------------------------------------------------------------------------------------------
# tc's request, recorded with strace in a throwaway network namespace


def _strace_buffers(text: str) -> list[bytes]:
    """The data buffers of ``strace -e write=all``: '* N bytes in buffer K' headers, then
    hexdump lines ' | 00000  58 00 ... |' with the hex in fixed columns."""
    buffers: list[bytes] = []
    current: bytearray | None = None
    for line in text.splitlines():
        if re.match(r"^ \* \d+ bytes in buffer \d+", line):
            current = bytearray()
            buffers.append(current)  # type: ignore[arg-type]
        elif line.startswith(" | ") and current is not None:
            current += bytes.fromhex(line[10:59])
    return [bytes(b) for b in buffers]


def _netlink_attrs(data: bytes) -> dict[int, bytes]:
    attrs = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        attrs[kind & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return attrs


def tc_netem_request(args: list[str], tmp_path: Path) -> bytes:
    """The RTM_NEWQDISC message ``tc qdisc add dev lo root netem ARGS`` sends."""
    for tool in ("tc", "strace", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: iproute2, strace, util-linux)")
    # a private network namespace: nothing on the host is touched, whatever the kernel has
    prefix = ["unshare", "--net"] if IS_ROOT else ["unshare", "--user", "--map-root-user",
                                                   "--net"]
    out = tmp_path / "strace.txt"
    cmd = [*prefix, "strace", "-qq", "-f", "-e", "trace=sendmsg,sendto", "-e", "write=all",
           "-o", str(out), "tc", "qdisc", "add", "dev", "lo", "root", "netem", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    if not out.exists():
        pytest.skip(f"cannot run tc under strace in a private namespace: {proc.stderr.strip()}")
    for buf in _strace_buffers(out.read_text()):
        pos = 0
        while pos + 16 <= len(buf):
            length, msg_type = struct.unpack_from("=IH", buf, pos)
            if msg_type == RTM_NEWQDISC:
                return buf[pos:pos + length]
            pos += max((length + 3) & ~3, 16)
    raise AssertionError(f"tc sent no RTM_NEWQDISC (tc said {proc.stderr.strip()!r})")


def tc_options(message: bytes) -> bytes:
    return _netlink_attrs(message[16 + 20:])[TCA_OPTIONS]


def tc_time_format(options: bytes) -> TimeFormat:
    """iproute2 6.9 and later send delay and jitter as 64-bit nanoseconds only."""
    return "ns64" if decode_netem_options(options).latency64_ns is not None else "ticks"


def pct(text: str) -> float:
    """A percentage as tc reads it (strtod, then / 100), so both sides hold the same double."""
    return float(text) / 100.0


# (tc arguments, the same settings as a NetemSpec); times in whole microseconds like the
# encoder rounds them, probabilities chosen so that 1 - (1 - x) == x in binary floating point
TC_CASES = {
    "delay+jitter (reordering)": (
        ["delay", "10000us", "2000us"],
        NetemSpec(delay_ms=10.0, jitter_ms=2.0, jitter_reorders=True)),
    "delay+jitter in order": (
        ["delay", "10000us", "2000us", "rate", "34359738360bit"],
        NetemSpec(delay_ms=10.0, jitter_ms=2.0)),
    "delay correlation": (
        ["delay", "25000us", "5000us", "25%"],
        NetemSpec(delay_ms=25.0, jitter_ms=5.0, delay_correlation=pct("25"),
                  jitter_reorders=True)),
    "bernoulli": (
        ["loss", "random", "2.5%"],
        NetemSpec(loss=BernoulliLoss(rate=pct("2.5")))),
    "bernoulli 100%": (
        ["loss", "100%"],
        NetemSpec(loss=BernoulliLoss(rate=1.0))),
    "gemodel": (
        ["loss", "gemodel", "1%", "10%", "75%", "6.25%"],
        NetemSpec(loss=GilbertLoss(p=pct("1"), r=pct("10"), h=0.25, k=0.9375))),
    "gemodel simple gilbert": (
        ["loss", "gemodel", "2%", "25%", "100%", "0%"],
        NetemSpec(loss=GilbertLoss(p=pct("2"), r=pct("25")))),
    "4-state": (
        ["loss", "state", "1%", "30%", "10%", "80%", "0.5%"],
        NetemSpec(loss=Markov4Loss(p13=pct("1"), p31=pct("30"), p32=pct("10"), p23=pct("80"),
                                   p14=pct("0.5")))),
    "duplicate": (
        ["duplicate", "1%"],
        NetemSpec(duplicate=pct("1"))),
    "reorder with gap": (
        ["delay", "10000us", "reorder", "25%", "50%", "gap", "5"],
        NetemSpec(delay_ms=10.0, reorder=pct("25"), reorder_correlation=pct("50"),
                  reorder_gap=5)),
    "reorder": (
        ["delay", "10000us", "reorder", "25%"],
        NetemSpec(delay_ms=10.0, reorder=pct("25"))),
    "limit": (
        ["limit", "50", "delay", "1000us"],
        NetemSpec(delay_ms=1.0, limit_packets=50)),
    "everything": (
        ["limit", "3000", "delay", "40000us", "8000us", "loss", "gemodel", "0.5%", "20%", "50%",
         "1%", "duplicate", "0.5%", "reorder", "5%", "gap", "3"],
        NetemSpec(delay_ms=40.0, jitter_ms=8.0, jitter_reorders=True, limit_packets=3000,
                  loss=GilbertLoss(p=pct("0.5"), r=pct("20"), h=0.5, k=1.0 - pct("1")),
                  duplicate=pct("0.5"), reorder=pct("5"), reorder_gap=3)),
}


@pytest.mark.parametrize("case", list(TC_CASES))
def test_netem_options_match_tc(case: str, tmp_path: Path) -> None:
    args, spec = TC_CASES[case]
    theirs = tc_options(tc_netem_request(args, tmp_path))
    ours = encode_netem_options(spec, ticks_per_us=read_ticks_per_us(),
                                time_format=tc_time_format(theirs))
    assert ours.hex() == theirs.hex()


def test_whole_request_matches_tc(tmp_path: Path) -> None:
    args, spec = TC_CASES["gemodel"]
    message = tc_netem_request(args, tmp_path)
    seq = struct.unpack_from("=I", message, 8)[0]
    ifindex = struct.unpack_from("=i", message, 16 + 4)[0]  # lo in the private namespace
    options = encode_netem_options(spec, time_format=tc_time_format(tc_options(message)))
    ours = build_qdisc_request(ifindex=ifindex, kind="netem", seq=seq, handle=0,
                               options=options)
    assert ours.hex() == message.hex()


def test_distribution_table_matches_tc(tmp_path: Path) -> None:
    try:
        table = load_dist_table("normal")
    except KernelBackendError as exc:
        pytest.skip(f"no iproute2 distribution tables here: {exc}")
    message = tc_netem_request(["delay", "10000us", "2000us", "distribution", "normal",
                                "rate", "34359738360bit"], tmp_path)
    spec = NetemSpec(delay_ms=10.0, jitter_ms=2.0, distribution="normal")
    theirs = tc_options(message)
    ours = encode_netem_options(spec, ticks_per_us=read_ticks_per_us(), dist_table=table,
                                time_format=tc_time_format(theirs))
    assert ours == theirs
    assert decode_netem_options(ours).dist_table == table


# ---------------------------------------------------------------------------------------------
# encoder properties (no root, no kernel)

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
positive_probabilities = st.floats(min_value=1e-6, max_value=1.0, allow_nan=False)


@st.composite
def losses(draw: st.DrawFn) -> LossConfig:
    kind = draw(st.sampled_from(["none", "bernoulli", "gilbert", "markov4"]))
    if kind == "bernoulli":
        return BernoulliLoss(rate=draw(probabilities))
    if kind == "gilbert":
        p, r, h, k = (draw(probabilities) for _ in range(4))
        assume(not (p > 0 and r == 0 and h == 0))
        return GilbertLoss(p=p, r=r, h=h, k=k)
    if kind == "markov4":
        p13 = draw(probabilities)
        p14 = draw(st.floats(min_value=0.0, max_value=1.0 - p13))
        p31 = draw(probabilities)
        p32 = draw(st.floats(min_value=0.0, max_value=1.0 - p31))
        return Markov4Loss(p13=p13, p31=p31, p32=p32, p23=draw(probabilities), p14=p14)
    return NoLoss()


@st.composite
def specs(draw: st.DrawFn) -> NetemSpec:
    delay = draw(st.floats(min_value=0.0, max_value=10_000.0))
    jitter = draw(st.floats(min_value=0.0, max_value=1_000.0))
    reorder = draw(positive_probabilities) if delay > 0 and draw(st.booleans()) else 0.0
    return NetemSpec(
        delay_ms=delay,
        jitter_ms=jitter,
        delay_correlation=draw(probabilities) if jitter > 0 else 0.0,
        jitter_reorders=draw(st.booleans()),
        loss=draw(losses()),
        duplicate=draw(probabilities),
        reorder=reorder,
        reorder_correlation=draw(probabilities) if reorder else 0.0,
        reorder_gap=draw(st.integers(0, 1000)) if reorder else 0,
        limit_packets=draw(st.integers(1, U32)),
        seed=draw(st.none() | st.integers(0, 2**64 - 1)),
    )


def close(u32: int, p: float) -> bool:
    return abs(u32 / U32 - p) <= 1e-9


@settings(max_examples=300, deadline=None)
@given(spec=specs(), time_format=st.sampled_from(["ticks", "ns64", "both"]))
def test_encoding_decodes_back(spec: NetemSpec, time_format: TimeFormat) -> None:
    payload = encode_netem_options(spec, time_format=time_format)
    assert len(payload) % 4 == 0
    got = decode_netem_options(payload)
    assert got.other == ()
    if time_format == "ns64":
        assert got.latency_ticks == got.jitter_ticks == 0
    else:
        assert got.latency_ticks == ms_to_ticks(spec.delay_ms)
        assert abs(got.latency_ticks / K_TICKS_PER_US / 1000 - spec.delay_ms) <= 0.001
        assert abs(got.jitter_ticks / K_TICKS_PER_US / 1000 - spec.jitter_ms) <= 0.001
    if time_format == "ticks" or spec.delay_ms == spec.jitter_ms == 0:
        assert got.latency64_ns is None
    else:
        assert got.latency64_ns is not None
        assert abs(got.latency64_ns / 1e6 - spec.delay_ms) <= 1e-6
    if time_format == "ticks" or spec.jitter_ms == 0:
        assert got.jitter64_ns is None
    else:
        assert got.jitter64_ns is not None
        assert abs(got.jitter64_ns / 1e6 - spec.jitter_ms) <= 1e-6
    assert got.seed == spec.seed
    assert got.limit == spec.limit_packets
    assert close(got.duplicate, spec.duplicate)
    loss = spec.loss
    assert close(got.loss, loss.rate if isinstance(loss, BernoulliLoss) else 0.0)
    if isinstance(loss, GilbertLoss):
        assert got.gemodel is not None
        p, r, h, k1 = got.gemodel
        # the kernel's h is P(delivered | bad), k1 is P(lost | good) = 1 - k
        assert close(p, loss.p)
        assert close(r, loss.r)
        assert close(h, loss.h)
        assert close(k1, 1.0 - loss.k)
    else:
        assert got.gemodel is None
    if isinstance(loss, Markov4Loss):
        assert got.gimodel is not None
        for value, expected in zip(got.gimodel, (loss.p13, loss.p31, loss.p32, loss.p14,
                                                 loss.p23), strict=True):
            assert close(value, expected)
    else:
        assert got.gimodel is None
    if spec.reorder:
        assert got.reorder is not None
        assert close(got.reorder[0], spec.reorder)
        assert close(got.reorder[1], spec.reorder_correlation)
        assert got.gap == (spec.reorder_gap or 1)
    else:
        assert got.reorder is None
        assert got.gap == 0
    # the in-order trick: netem's own rate at its maximum, only with jitter
    assert (got.rate is not None) == (spec.jitter_ms > 0 and not spec.jitter_reorders)
    if got.rate is not None:
        assert got.rate == (U32, 0, 0, 0)
    assert got.dist_table is None


@settings(max_examples=200, deadline=None)
@given(spec=specs())
def test_pyroute2_parses_our_encoding(spec: NetemSpec) -> None:
    sched_netem = pytest.importorskip("pyroute2.netlink.rtnl.tcmsg.sched_netem")
    payload = encode_netem_options(spec)
    parsed = sched_netem.options(struct.pack("=HH", 4 + len(payload), TCA_OPTIONS) + payload)
    parsed.decode()
    raw = decode_netem_options(payload)
    assert parsed["delay"] == raw.latency_ticks
    assert parsed["jitter"] == raw.jitter_ticks
    assert parsed["limit"] == raw.limit
    assert parsed["gap"] == raw.gap
    assert parsed["loss"] == raw.loss
    assert parsed["duplicate"] == raw.duplicate
    reorder = parsed.get_attr("TCA_NETEM_REORDER")
    if raw.reorder is None:
        assert reorder is None
    else:
        assert (reorder["prob_reorder"], reorder["corr_reorder"]) == raw.reorder
    rate = parsed.get_attr("TCA_NETEM_RATE")
    assert (rate is None) == (raw.rate is None)
    names = [name for name, *_ in parsed["attrs"]]
    assert ("TCA_NETEM_LOSS" in names) == isinstance(spec.loss, GilbertLoss | Markov4Loss)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_decoders_reject_garbage_cleanly(data: bytes) -> None:
    # malformed input is a LocalProtocolError, never a bare struct.error or IndexError
    try:
        decode_netem_options(data)
    except LocalProtocolError:
        pass
    try:
        parse_netlink_ack(data, seq=1)
    except LocalProtocolError:
        pass


def test_probability_scaling_is_tcs() -> None:
    assert probability_to_u32(0.0) == 0
    assert probability_to_u32(1.0) == U32
    assert probability_to_u32(0.01) == 0x028F5C29  # what tc sends for 1%
    assert probability_to_u32(0.5) == 0x80000000  # 2147483647.5 rounds half to even
    with pytest.raises(LocalProtocolError):
        probability_to_u32(1.5)


def test_ticks() -> None:
    assert ms_to_ticks(10.0) == 156250  # tc: delay 10ms
    assert ms_to_ticks(0.0) == 0
    with pytest.raises(LocalProtocolError, match="32-bit"):
        ms_to_ticks(300_000.0)
    assert ms_to_ticks(300_000.0, clamp=True) == U32
    # a long delay: the ticks saturate, the 64-bit attribute carries the value
    got = decode_netem_options(encode_netem_options(NetemSpec(delay_ms=300_000.0)))
    assert got.latency_ticks == U32
    assert got.latency64_ns == 300_000_000_000
    with pytest.raises(LocalProtocolError, match="32-bit"):
        encode_netem_options(NetemSpec(delay_ms=300_000.0), time_format="ticks")


def test_read_ticks_per_us(tmp_path: Path) -> None:
    psched = tmp_path / "psched"
    psched.write_text("000003e8 00000040 000f4240 3b9aca00\n")
    assert read_ticks_per_us(psched) == 15.625
    assert read_ticks_per_us(tmp_path / "missing") == K_TICKS_PER_US


def test_parse_ack_with_extack() -> None:
    request_hdr = struct.pack("=IHHII", 60, RTM_NEWQDISC, 0x605, 9, 0)
    text = b"Specified qdisc kind is unknown.\0"
    tlv = struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * (-len(text) % 4)
    body = struct.pack("=i", -errno.ENOENT) + request_hdr + tlv
    # flags: NLM_F_CAPPED | NLM_F_ACK_TLVS
    msg = struct.pack("=IHHII", 16 + len(body), 2, 0x300, 9, 1234) + body
    ack = parse_netlink_ack(msg, seq=9)
    assert ack is not None
    assert ack.error == errno.ENOENT
    assert ack.message == "Specified qdisc kind is unknown."
    assert parse_netlink_ack(msg, seq=10) is None
    ok = struct.pack("=IHHII", 36, 2, 0, 11, 0) + struct.pack("=i", 0) + request_hdr
    ack = parse_netlink_ack(ok, seq=11)
    assert ack is not None
    assert ack.error == 0
    assert ack.message is None


def test_distribution_needs_a_table() -> None:
    spec = NetemSpec(delay_ms=10, jitter_ms=2, distribution="pareto")
    with pytest.raises(LocalProtocolError, match="table"):
        encode_netem_options(spec)
    # without jitter there is nothing to distribute, like tc
    assert decode_netem_options(encode_netem_options(
        NetemSpec(delay_ms=10, distribution="pareto"))).dist_table is None


def test_load_dist_table(tmp_path: Path) -> None:
    (tmp_path / "custom.dist").write_text("# a comment\n 1 -2 0x10\n\n 32767 -32768\n")
    assert load_dist_table("custom", dirs=[tmp_path]) == (1, -2, 16, 32767, -32768)
    with pytest.raises(KernelBackendError, match=r"normal\.dist.*edgewire netsim run"):
        load_dist_table("normal", dirs=[tmp_path])


# ---------------------------------------------------------------------------------------------
# NetemSpec: mapping from the simulator's LinkConfig, and clear errors


def test_from_link_config_maps_every_field() -> None:
    loss = GilbertLoss(p=0.01, r=0.3, h=0.1, k=0.99)
    cfg = LinkConfig(delay_ms=30, jitter_ms=4, jitter_distribution="normal", reorder=True,
                     rate_kbps=5000, queue_packets=50, loss=loss, duplicate=0.01)
    spec = NetemSpec.from_link_config(cfg)
    assert spec == NetemSpec(delay_ms=30, jitter_ms=4, distribution="normal",
                             jitter_reorders=True, rate_kbps=5000, queue_packets=50,
                             loss=loss, duplicate=0.01)
    assert spec.needs_netem
    assert spec.needs_tbf
    assert spec.tbf_limit_bytes == 50 * K_FRAME_BYTES
    assert spec.rate_bytes_per_s == 625_000


def test_from_link_config_defaults_and_queues() -> None:
    plain = NetemSpec.from_link_config(LinkConfig())
    assert not plain.needs_netem
    assert not plain.needs_tbf
    in_order = NetemSpec.from_link_config(LinkConfig(delay_ms=10, jitter_ms=5))
    assert not in_order.jitter_reorders
    assert decode_netem_options(encode_netem_options(in_order)).rate == (U32, 0, 0, 0)
    rate_only = NetemSpec.from_link_config(LinkConfig(rate_kbps=2000))
    assert rate_only.needs_tbf
    assert not rate_only.needs_netem
    assert rate_only.queue_packets == 1000  # the simulator's default queue
    by_time = NetemSpec.from_link_config(LinkConfig(rate_kbps=8000, queue_ms=50))
    assert by_time.tbf_limit_bytes == 50_000  # 1 MB/s for 50 ms
    by_bytes = NetemSpec.from_link_config(LinkConfig(rate_kbps=8000, queue_bytes=20_000))
    assert by_bytes.tbf_limit_bytes == 20_000
    # no bottleneck in the simulator means no queue either
    assert NetemSpec.from_link_config(LinkConfig(queue_packets=10)).queue_packets is None


@pytest.mark.parametrize(("loss", "loses"), [
    (NoLoss(), False),
    (BernoulliLoss(rate=0.0), False),
    (BernoulliLoss(rate=0.1), True),
    (GilbertLoss(p=0.0, r=0.5), False),
    (GilbertLoss(p=0.0, r=0.5, k=0.9), True),
    (GilbertLoss(p=0.1, r=0.5), True),
    (Markov4Loss(p13=0.0), False),
    (Markov4Loss(p13=0.0, p14=0.1), True),
    (Markov4Loss(p13=0.2, p31=0.0, p23=0.0), True),
])
def test_which_losses_need_netem(loss: LossConfig, loses: bool) -> None:
    spec = NetemSpec(loss=loss)
    assert spec.loses_packets is loses
    assert spec.needs_netem is loses


def test_from_link_config_blackout_is_total_loss() -> None:
    spec = NetemSpec.from_link_config(LinkConfig(down=True))
    assert spec.loss == BernoulliLoss(rate=1.0)
    assert spec.needs_netem
    assert decode_netem_options(encode_netem_options(spec)).loss == U32


def test_from_link_config_refuses_what_netem_cannot_do() -> None:
    trace = CapacityTrace(name="t.up", times_ms=(1, 2, 3), period_ms=3)
    with pytest.raises(LocalProtocolError) as info:
        NetemSpec.from_link_config(LinkConfig(trace=trace))
    assert "edgewire netsim run" in str(info.value)
    assert "edgewire netsim relay" in str(info.value)
    with pytest.raises(LocalProtocolError, match="codel"):
        NetemSpec.from_link_config(LinkConfig(rate_kbps=1000, aqm="codel"))
    with pytest.raises(LocalProtocolError, match="receiving process"):
        NetemSpec.from_link_config(LinkConfig(read_stall_ms=5.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"delay_ms": -1.0}, "delay_ms"),
    ({"jitter_ms": math.inf}, "jitter_ms"),
    ({"jitter_ms": 2148.0}, "caps jitter"),
    ({"seed": -1}, "seed"),
    ({"duplicate": 1.5}, "duplicate"),
    ({"distribution": "lognormal"}, "distribution"),
    ({"reorder": 0.1}, "reorder needs delay_ms"),
    ({"delay_ms": 5.0, "reorder_gap": 3}, "need reorder"),
    ({"delay_ms": 5.0, "delay_correlation": 0.2}, "needs jitter"),
    ({"limit_packets": 0}, "limit_packets"),
    ({"rate_kbps": 0.0}, "rate_kbps"),
    ({"rate_kbps": 1e9}, "rate_kbps"),
    ({"queue_packets": 10}, "needs rate_kbps"),
    ({"rate_kbps": 100.0, "queue_packets": 10, "queue_bytes": 20000}, "not both"),
    ({"rate_kbps": 100.0, "queue_bytes": 100}, "queue_bytes"),
])
def test_impossible_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        NetemSpec(**kwargs)  # type: ignore[arg-type]


def test_unknown_loss_model_points_elsewhere() -> None:
    class Weird(NoLoss):
        model = "weird"

    with pytest.raises(LocalProtocolError, match="edgewire netsim relay"):
        NetemSpec(loss=Weird())


def test_names_and_addresses() -> None:
    assert link_names("ew") == ("ew-a", "ew-b", "ew-va", "ew-vb")
    for bad in ("", "a" * 13, "-x", "a b", "x/y"):
        with pytest.raises(LocalProtocolError):
            link_names(bad)
    link = NetemLink(name="ewz", addr_a="10.9.0.1/30", addr_b="10.9.0.2/30")
    assert (link.addr_a, link.addr_b) == ("10.9.0.1", "10.9.0.2")
    assert link.exec_argv("b", "ping", "10.9.0.1") == ["ip", "netns", "exec", "ewz-b", "ping",
                                                       "10.9.0.1"]
    with pytest.raises(LocalProtocolError, match="same subnet"):
        NetemLink(addr_a="10.9.0.1/24", addr_b="10.10.0.2/24")


def test_error_messages_say_what_is_missing() -> None:
    netem = explain_errno(errno.ENOENT, "adding netem", kind="netem",
                          detail="Specified qdisc kind is unknown.")
    text = str(netem)
    for needle in ("sch_netem", "ENOENT", "modprobe sch_netem", "CONFIG_NET_SCH_NETEM",
                   "edgewire netsim run", "edgewire netsim relay", "qdisc kind is unknown"):
        assert needle in text
    assert netem.errno == errno.ENOENT
    assert isinstance(netem, EdgewireError)
    perm = str(explain_errno(errno.EPERM, "creating network namespace ew-a"))
    for needle in ("EPERM", "root", "CAP_NET_ADMIN", "sudo", "edgewire netsim run",
                   "edgewire netsim relay"):
        assert needle in perm
    assert "modprobe veth" in str(explain_errno(errno.EOPNOTSUPP, "veth", kind="veth"))
    assert "netsim netem down" in str(explain_errno(errno.EEXIST, "creating ns"))


# ---------------------------------------------------------------------------------------------
# CLI


def netem_parser() -> argparse.ArgumentParser:
    from edgewire.cli.netsim_kernel import add_netem_parser

    parser = argparse.ArgumentParser(prog="edgewire netsim")
    add_netem_parser(parser.add_subparsers(dest="netsim", required=True))
    return parser


def test_cli_builds_the_spec() -> None:
    from edgewire.cli.netsim_kernel import spec_from_args

    args = netem_parser().parse_args([
        "netem", "up", "--name", "lab", "--delay-ms", "20", "--jitter-ms", "5",
        "--gilbert", "1%,0.25", "--duplicate", "0.5%", "--rate-kbps", "4000",
        "--queue-packets", "30"])
    spec = spec_from_args(args)
    assert spec == NetemSpec(delay_ms=20, jitter_ms=5, loss=GilbertLoss(p=0.01, r=0.25),
                             duplicate=0.005, rate_kbps=4000, queue_packets=30)
    args = netem_parser().parse_args(["netem", "up", "--loss-state", "0.01,0.3",
                                      "--delay-ms", "5", "--reorder", "10%"])
    spec = spec_from_args(args)
    assert spec.loss == Markov4Loss(p13=0.01, p31=0.3)
    assert spec.reorder == 0.1
    assert spec_from_args(netem_parser().parse_args(
        ["netem", "up", "--loss", "2%"])).loss == BernoulliLoss(rate=0.02)


@pytest.mark.parametrize("argv", [
    ["netem", "up", "--loss", "1.5"],
    ["netem", "up", "--loss", "1%", "--gilbert", "0.1,0.2"],
    ["netem", "up", "--gilbert", "0.1"],
    ["netem", "up", "--delay-ms", "-3"],
    ["netem", "sideways"],
])
def test_cli_rejects_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        netem_parser().parse_args(argv)
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# real namespaces (root)


def _receive(sock: socket.socket, arrivals: list[tuple[float, int]], deadline: float) -> None:
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            if arrivals and time.monotonic() - arrivals[-1][0] > 0.5:
                return
            continue
        arrivals.append((time.monotonic(), len(data)))


@needs_root
def test_tbf_limits_real_udp_traffic() -> None:
    netns = pytest.importorskip("pyroute2.netns")
    rate_kbps = 2000.0
    name = unique_name("tb")
    with NetemLink(NetemSpec(rate_kbps=rate_kbps), NetemSpec(), name=name) as link:
        assert {link.ns_a, link.ns_b} <= namespaces()
        # sockets inside the namespaces, opened before any thread starts (pyroute2 forks)
        rx = netns.create_socket(link.ns_b, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM)
        tx = netns.create_socket(link.ns_a, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM)
        try:
            rx.bind((link.addr_b, 0))
            tx.connect((link.addr_b, rx.getsockname()[1]))
            arrivals: list[tuple[float, int]] = []
            receiver = threading.Thread(target=_receive,
                                        args=(rx, arrivals, time.monotonic() + 6.0))
            receiver.start()
            payload = bytes(1200)
            end = time.monotonic() + 2.0
            # a blocking socket: the send buffer fills while tbf holds packets, which keeps
            # the queue short and the sender from spinning
            while time.monotonic() < end:
                tx.send(payload)
            receiver.join()
        finally:
            rx.close()
            tx.close()
    assert not {link.ns_a, link.ns_b} & namespaces()
    assert len(arrivals) > 100
    # tbf counts whole frames: payload + UDP 8 + IPv4 20 + Ethernet 14
    wire_bits = sum((size + 42) * 8 for _, size in arrivals[1:])
    seconds = arrivals[-1][0] - arrivals[0][0]
    ratio = wire_bits / seconds / (rate_kbps * 1000)
    print(f"tbf throughput ratio {ratio:.3f} over {seconds:.2f} s, {len(arrivals)} packets")
    assert 0.8 <= ratio <= 1.1


def _fail_inside(link: NetemLink, error: BaseException) -> None:
    with link:
        assert {link.ns_a, link.ns_b} <= namespaces()
        raise error


@needs_root
def test_teardown_after_exception_and_ctrl_c() -> None:
    link = NetemLink(NetemSpec(rate_kbps=1000), name=unique_name("ex"))
    with pytest.raises(RuntimeError, match="boom"):
        _fail_inside(link, RuntimeError("boom"))
    assert not {link.ns_a, link.ns_b} & namespaces()
    with pytest.raises(KeyboardInterrupt):
        _fail_inside(link, KeyboardInterrupt())
    assert not {link.ns_a, link.ns_b} & namespaces()
    link.down()  # idempotent


@needs_root
def test_failed_setup_removes_only_what_it_created() -> None:
    netns = pytest.importorskip("pyroute2.netns")
    name = unique_name("fs")
    ns_a, ns_b, _, _ = link_names(name)
    netns.create(ns_b)
    try:
        with pytest.raises(KernelBackendError, match="already exists") as info:
            NetemLink(name=name).up()
        assert info.value.errno == errno.EEXIST
        assert ns_a not in namespaces()
        assert ns_b in namespaces()
    finally:
        teardown(name)
    assert ns_b not in namespaces()


def _udp_one_way_delays(link: NetemLink, count: int) -> list[float]:
    netns = pytest.importorskip("pyroute2.netns")
    rx = netns.create_socket(link.ns_b, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM)
    tx = netns.create_socket(link.ns_a, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM)
    try:
        rx.bind((link.addr_b, 0))
        rx.settimeout(2.0)
        tx.connect((link.addr_b, rx.getsockname()[1]))
        delays = []
        for _ in range(count):
            tx.send(struct.pack("=d", time.monotonic()))
            sent = struct.unpack("=d", rx.recv(64))[0]
            delays.append((time.monotonic() - sent) * 1000)
        return delays
    finally:
        rx.close()
        tx.close()


def _kernel_has_netem() -> bool:
    """Whether this kernel knows the netem qdisc: a throwaway one-way delay link tells."""
    link = NetemLink(NetemSpec(delay_ms=1.0), NetemSpec(), name=unique_name("pr"))
    try:
        link.up()
    except KernelBackendError as exc:
        if exc.errno == errno.ENOENT and "sch_netem" in str(exc):
            return False
        raise
    link.down()
    return True


@needs_root
def test_netem_missing_is_explained() -> None:
    if _kernel_has_netem():
        pytest.skip("this kernel has netem; test_netem_delay_is_real checks it instead")
    link = NetemLink(NetemSpec(delay_ms=30.0, rate_kbps=1000), name=unique_name("nd"))
    with pytest.raises(KernelBackendError) as info:
        link.up()
    assert info.value.errno == errno.ENOENT
    for needle in ("sch_netem", "modprobe sch_netem", "CONFIG_NET_SCH_NETEM",
                   "edgewire netsim run", "edgewire netsim relay"):
        assert needle in str(info.value)
    assert not {link.ns_a, link.ns_b} & namespaces()


@needs_root
def test_netem_delay_is_real() -> None:
    if not _kernel_has_netem():
        pytest.skip("this kernel has no sch_netem (ENOENT); test_netem_missing_is_explained "
                    "checks the error instead")
    with NetemLink(NetemSpec(delay_ms=30.0), NetemSpec(), name=unique_name("nd")) as link:
        delays = _udp_one_way_delays(link, 5)
    assert min(delays) >= 29.0, delays


def _run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root for this test")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env,
        cwd="/", check=False)


def test_not_root_is_explained() -> None:
    name = unique_name("np")
    code = ("from edgewire.netsim.kernel import NetemLink, NetemSpec, KernelBackendError\n"
            "try:\n"
            f"    NetemLink(NetemSpec(rate_kbps=1000), name={name!r}).up()\n"
            "except KernelBackendError as exc:\n"
            "    print(exc.errno, exc)\n")
    if IS_ROOT:
        proc = _run_as_nobody(code)
        if "ModuleNotFoundError" in proc.stderr or ("PermissionError" in proc.stderr and (
                "import" in proc.stderr)):
            pytest.skip(f"user nobody cannot import edgewire here: {proc.stderr[-200:]}")
        output = proc.stdout
    else:
        try:
            NetemLink(NetemSpec(rate_kbps=1000), name=name).up()
        except KernelBackendError as exc:
            output = f"{exc.errno} {exc}"
        else:  # pragma: no cover - unprivileged but allowed (capabilities)
            teardown(name)
            pytest.skip("this process may create namespaces without being root")
    assert output.startswith(f"{errno.EPERM} "), output
    for needle in ("root", "sudo", "edgewire netsim run", "edgewire netsim relay"):
        assert needle in output
    assert not {f"{name}-a", f"{name}-b"} & namespaces()


@needs_root
def test_cli_up_and_down(capsys: pytest.CaptureFixture[str]) -> None:
    from edgewire.cli.netsim_kernel import run_netem

    name = unique_name("cl")
    parser = netem_parser()
    try:
        assert run_netem(parser.parse_args(["netem", "up", "--name", name, "--rate-kbps",
                                            "3000", "--one-way"])) == 0
        out = capsys.readouterr().out
        assert f"ip netns exec {name}-a" in out
        assert "tbf rate 3000 kbit/s" in out
        assert f"netsim netem down --name {name}" in out
        assert {f"{name}-a", f"{name}-b"} <= namespaces()
    finally:
        assert run_netem(parser.parse_args(["netem", "down", "--name", name])) == 0
    assert "removed" in capsys.readouterr().out
    assert not {f"{name}-a", f"{name}-b"} & namespaces()
    assert run_netem(parser.parse_args(["netem", "down", "--name", name])) == 0
    assert "nothing to remove" in capsys.readouterr().out


HOLD_SCRIPT = """
import argparse, sys
from edgewire.cli.netsim_kernel import add_netem_parser, run_netem
parser = argparse.ArgumentParser()
add_netem_parser(parser.add_subparsers(dest="netsim", required=True))
sys.exit(run_netem(parser.parse_args(sys.argv[1:])))
"""


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_hold_tears_down_on_signal(sig: signal.Signals) -> None:
    name = unique_name("h" + str(int(sig)))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, "netem", "up", "--name", name, "--rate-kbps",
         "1000", "--hold"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "removes the link" in line:
                break
        assert {f"{name}-a", f"{name}-b"} <= namespaces(), lines
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        teardown(name)
    assert proc.returncode == 130, err
    assert "removed link" in out
    assert not {f"{name}-a", f"{name}-b"} & namespaces()


def test_missing_capabilities_are_refused_before_touching_the_kernel(tmp_path: Path) -> None:
    from edgewire.netsim.kernel import _check_privileges

    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000000000\n")
    with pytest.raises(KernelBackendError, match="root") as info:
        _check_privileges("creating network namespace x-a", status=status)
    assert info.value.errno == errno.EPERM
    status.write_text("CapEff:\t000001ffffffffff\n")
    _check_privileges("creating network namespace x-a", status=status)


@needs_root
def test_own_netlink_requests_reach_the_kernel() -> None:
    # the socket, request and ack path netem uses, exercised with pfifo (always built in):
    # success, then the kernel's EEXIST for a second root qdisc
    from edgewire.netsim.kernel import _add_qdisc

    pyroute2 = pytest.importorskip("pyroute2")
    with NetemLink(name=unique_name("nl")) as link:
        with pyroute2.IPRoute(netns=link.ns_a) as ipr:
            ifindex = ipr.link_lookup(ifname=link.if_a)[0]
            _add_qdisc(link.ns_a, link.if_a, ifindex, "pfifo", struct.pack("=I", 77))
            roots = [(q.get_attr("TCA_KIND"), q["handle"]) for q in ipr.get_qdiscs(ifindex)]
        assert ("pfifo", 0x10000) in roots
        with pytest.raises(KernelBackendError) as info:
            _add_qdisc(link.ns_a, link.if_a, ifindex, "pfifo", struct.pack("=I", 5))
        assert info.value.errno == errno.EEXIST


@needs_root
def test_tbf_goes_under_netem(monkeypatch: pytest.MonkeyPatch) -> None:
    # without netem in this kernel, a classful stand-in (tbf at 10 Gbit/s) takes netem's
    # place at the root: the rate limit must land under its class 1:1, the options must be
    # the encoder's
    import edgewire.netsim.kernel as kernel

    pyroute2 = pytest.importorskip("pyroute2")
    sent: list[tuple[str, str, bytes]] = []

    def stand_in(ns: str, ifname: str, index: int, kind: str, options: bytes,
                 **_: int) -> None:
        sent.append((ns, kind, options))
        with pyroute2.IPRoute(netns=ns) as ipr:
            ipr.tc("add", "tbf", index, 0x10000, rate=1_250_000_000, burst=1_250_000,
                   limit=10_000_000)

    monkeypatch.setattr(kernel, "_add_qdisc", stand_in)
    spec = NetemSpec(delay_ms=5, loss=GilbertLoss(p=0.01, r=0.5), rate_kbps=3000)
    with NetemLink(spec, NetemSpec(), name=unique_name("un")) as link:
        with pyroute2.IPRoute(netns=link.ns_a) as ipr:
            index = ipr.link_lookup(ifname=link.if_a)[0]
            tree = sorted((q["handle"], q["parent"]) for q in ipr.get_qdiscs(index))
        with pyroute2.IPRoute(netns=link.ns_b) as ipr:
            index_b = ipr.link_lookup(ifname=link.if_b)[0]
            kinds_b = {q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index_b)}
    assert sent == [(link.ns_a, "netem", encode_netem_options(spec))]
    assert tree == [(0x10000, 0xFFFFFFFF), (0x20000, 0x10001)]
    assert "tbf" not in kinds_b  # the reverse direction is unshaped


def test_seeds() -> None:
    spec = NetemSpec.from_link_config(LinkConfig(delay_ms=5, loss=BernoulliLoss(rate=0.1)),
                                      seed=41)
    assert spec.seed == 41
    assert decode_netem_options(encode_netem_options(spec)).seed == 41
    link = NetemLink(spec, name="ews")
    assert link.spec_ba.seed == 42  # same settings, different random numbers
    assert link.spec_ba.loss == spec.loss
    assert NetemLink(spec, NetemSpec(), name="ews").spec_ba.seed is None
    from edgewire.cli.netsim_kernel import spec_from_args

    args = netem_parser().parse_args(["netem", "up", "--loss", "1%", "--seed", "7"])
    assert spec_from_args(args).seed == 7


# ---------------------------------------------------------------------------------------------
# edgewire's congestion control against the kernel's own bottleneck queue


async def _bulk_through_tbf(client_sock: socket.socket, server_sock: socket.socket,
                            server_addr: str, cert: str, key: str, cc: str,
                            seconds: float) -> dict[str, float]:
    """The client sends 50 tokens/s beside a bulk embeddings transfer to the server for
    ``seconds``; what the server measured: token latency p95 (one clock for both sides)
    and the bulk payload rate."""
    import asyncio

    import numpy as np

    import edgewire
    from edgewire.transport import SessionConfig, TokenMessage

    config = SessionConfig(shared_clock=True)
    got: dict[str, edgewire.Channel] = {}
    bulk_bytes = 0

    async def handler(conn: edgewire.Connection) -> None:
        nonlocal bulk_bytes
        for _ in range(2):
            ch = await conn.accept()
            got[ch.kind] = ch

        async def read(ch: edgewire.Channel) -> None:
            nonlocal bulk_bytes
            async for msg in ch:
                if ch.kind == "embeddings":
                    bulk_bytes += msg.payload.nbytes

        await asyncio.gather(*(read(ch) for ch in got.values()), return_exceptions=True)

    server = await edgewire.serve("", 0, handler, certfile=cert, keyfile=key,
                                  congestion_control=cc, config=config, sock=server_sock)
    port = server_sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        async with edgewire.connect(f"edgewire://{server_addr}:{port}", cafile=cert,
                                    server_name="localhost", congestion_control=cc,
                                    config=config, sock=client_sock) as conn:
            tokens = await conn.channel("tokens")
            bulk = await conn.channel("embeddings")
            rows = np.ones((4, 768), dtype=np.float32)

            async def send_bulk() -> None:
                while True:
                    await bulk.send(rows)

            pump = asyncio.create_task(send_bulk())
            start = loop.time()
            i = 0
            while loop.time() - start < seconds:
                await tokens.send(TokenMessage(ids=(i,), text="x"))
                i += 1
                await asyncio.sleep(0.02)
            elapsed = loop.time() - start
            measured = bulk_bytes
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
    finally:
        server.close()
        await server.wait_closed()
    latency = got["tokens"].stats().latency.percentiles_ms((50, 95))
    return {"token_p50_ms": float(latency["p50"] or 0.0),
            "token_p95_ms": float(latency["p95"] or 0.0),
            "bulk_kbps": measured * 8 / elapsed / 1000.0,
            "tokens": float(got["tokens"].stats().delivered)}


@needs_root
def test_edgewire_keeps_a_kernel_tbf_queue_short_where_reno_fills_it(
        cert_pair: tuple[str, str]) -> None:
    """Client and server in two namespaces, one process, 2 Mbit/s tbf with a 100-packet
    queue towards the server: reno fills the kernel's queue, edgewire paces at its
    estimate and keeps it short, and both carry the link."""
    import asyncio

    netns = pytest.importorskip("pyroute2.netns")
    out: dict[str, dict[str, float]] = {}
    for cc in ("edgewire", "reno"):
        spec = NetemSpec(rate_kbps=2000.0, queue_packets=100)
        with NetemLink(spec, NetemSpec(), name=unique_name(f"k{cc[0]}")) as link:
            # sockets inside the namespaces, made before asyncio starts any thread
            srv = netns.create_socket(link.ns_b, family=socket.AF_INET,
                                      socket_type=socket.SOCK_DGRAM)
            cli = netns.create_socket(link.ns_a, family=socket.AF_INET,
                                      socket_type=socket.SOCK_DGRAM)
            srv.bind((link.addr_b, 0))
            cli.bind((link.addr_a, 0))
            out[cc] = asyncio.run(_bulk_through_tbf(cli, srv, link.addr_b, *cert_pair,
                                                    cc=cc, seconds=4.0))
        assert not {link.ns_a, link.ns_b} & namespaces()
    print(f"tbf 2000 kbit/s, 100 packets: {out}")  # the figures, with pytest -s
    ew, reno = out["edgewire"], out["reno"]
    assert ew["tokens"] > 150
    assert reno["tokens"] > 150
    # 100 full-size frames at 2 Mbit/s: about 0.6 s of queue when full; reno's sawtooth
    # keeps it a third to a half full (220-250 ms at p95 here)
    assert reno["token_p95_ms"] > 150
    assert ew["token_p95_ms"] < 100
    assert ew["token_p95_ms"] < reno["token_p95_ms"] / 3
    # both carry most of the link (payload only: headers and tokens take the rest)
    assert ew["bulk_kbps"] > 0.6 * 2000
    assert reno["bulk_kbps"] > 0.6 * 2000
