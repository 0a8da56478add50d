"""Vectorised decoding of link, IP and UDP headers for a whole chunk at once.

Supported link types: Ethernet (1, with up to two VLAN tags), Linux cooked capture SLL
(113) and SLL2 (276), raw IP (101, 12, 228 IPv4, 229 IPv6) and BSD loopback (0, 108).
IPv6 extension headers in front of UDP are walked per packet (they are rare); everything
else is numpy gathers over the chunk's buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgewire.traces.capture import Chunk
from edgewire.traces.problems import Problems

__all__ = ["LINKTYPES", "UdpPackets", "decode_udp"]

#: link types this module decodes, with their names.
LINKTYPES = {0: "null", 1: "ethernet", 12: "raw", 101: "raw", 108: "loop", 113: "linux-sll",
             228: "ipv4", 229: "ipv6", 276: "linux-sll2"}
_VLAN = (0x8100, 0x88A8, 0x9100)
_V6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: walked to find UDP
_V6_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


@dataclass(slots=True)
class UdpPackets:
    """The UDP datagrams of one chunk (other packets are counted in ``noise``)."""

    record: np.ndarray
    """0-based record index in the file."""
    ts: np.ndarray
    """Capture time, seconds."""
    key: np.ndarray
    """36 bytes per packet: source address, destination address (IPv4 as v4-mapped IPv6),
    source port, destination port; dtype ``V36``."""
    sport: np.ndarray
    dport: np.ndarray
    poff: np.ndarray
    """Offset of the UDP payload in the chunk's buffer."""
    plen: np.ndarray
    """UDP payload length from the UDP header (what was sent)."""
    pcap: np.ndarray
    """UDP payload bytes actually captured (less than ``plen`` when cut at the snaplen)."""
    wirelen: np.ndarray
    """Length of the packet on the wire."""


def _u8(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out: np.ndarray = data[np.minimum(idx, len(data) - 1)].astype(np.int64)
    return out


def _be16(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    out: np.ndarray = (_u8(data, idx) << 8) | _u8(data, idx + 1)
    return out


def decode_udp(chunk: Chunk, problems: Problems, noise: dict[str, int]) -> UdpPackets:
    """Find the UDP datagrams of ``chunk``; count the rest in ``noise`` by reason and report
    malformed records to ``problems``."""
    data, off, end = chunk.data, chunk.off, chunk.off + chunk.caplen
    n = len(off)
    lt = chunk.linktype
    l3 = np.full(n, -1, dtype=np.int64)
    proto = np.zeros(n, dtype=np.int64)  # ethertype-like: 0x0800 IPv4, 0x86DD IPv6
    for value in np.unique(lt):
        sel = np.flatnonzero(lt == value)
        o = off[sel]
        if value == 1:
            et = _be16(data, o + 12)
            start = o + 14
            for _ in range(2):
                tagged = np.isin(et, _VLAN)
                et = np.where(tagged, _be16(data, start + 2), et)
                start = np.where(tagged, start + 4, start)
        elif value == 113:
            et, start = _be16(data, o + 14), o + 16
        elif value == 276:
            et, start = _be16(data, o), o + 20
        elif value in (101, 12, 228, 229):
            ver = _u8(data, o) >> 4
            et = np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, 0))
            start = o
        elif value in (0, 108):
            fam_le = _u8(data, o) | (_u8(data, o + 1) << 8)
            fam_be = (_u8(data, o + 2) << 8) | _u8(data, o + 3)
            fam = np.where(fam_le != 0, fam_le, fam_be)
            et = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (24, 28, 30)), 0x86DD, 0))
            start = o + 4
        else:
            problems.add("unknown_linktype", f"link type {value} is not supported",
                         sel + chunk.first_record)
            noise["unknown_linktype"] = noise.get("unknown_linktype", 0) + len(sel)
            continue
        l3[sel] = start
        proto[sel] = et
    known = l3 >= 0
    short_link = known & (l3 >= end)
    if short_link.any():
        problems.add("cut_before_ip", "packet cut before its IP header",
                     np.flatnonzero(short_link) + chunk.first_record)
    is4 = known & (proto == 0x0800) & (l3 + 20 <= end)
    is6 = known & (proto == 0x86DD) & (l3 + 40 <= end)
    other = known & ~short_link & ~is4 & ~is6
    if other.any():
        cut = other & np.isin(proto, (0x0800, 0x86DD))
        if cut.any():
            problems.add("cut_in_ip_header", "packet cut inside its IP header",
                         np.flatnonzero(cut) + chunk.first_record)
        noise["non_ip"] = noise.get("non_ip", 0) + int((other & ~cut).sum())
    ver = _u8(data, l3) >> 4
    bad_ver = (is4 & (ver != 4)) | (is6 & (ver != 6))
    if bad_ver.any():
        problems.add("bad_ip_version", "IP header with the wrong version",
                     np.flatnonzero(bad_ver) + chunk.first_record)
        is4 &= ~bad_ver
        is6 &= ~bad_ver
    ihl = (_u8(data, l3) & 15) * 4
    bad_ihl = is4 & (ihl < 20)
    if bad_ihl.any():
        problems.add("bad_ip_header", "IPv4 header length below 20 bytes",
                     np.flatnonzero(bad_ihl) + chunk.first_record)
        is4 &= ~bad_ihl
    l4 = np.where(is4, l3 + ihl, l3 + 40)
    nh = np.where(is4, _u8(data, l3 + 9), _u8(data, l3 + 6))
    frag = is4 & ((_be16(data, l3 + 6) & 0x1FFF) != 0)
    if frag.any():
        noise["ip_fragment"] = noise.get("ip_fragment", 0) + int(frag.sum())
        is4 &= ~frag
    ext = np.flatnonzero(is6 & np.isin(nh, (*_V6_EXT, 44)))
    for i in ext:  # rare: walk IPv6 extension headers one packet at a time
        nh[i], l4[i] = _walk_v6(data, int(l3[i]) + 40, int(nh[i]), int(end[i]))
    ip = is4 | is6
    udp = ip & (nh == 17)
    for name, mask in (("tcp", ip & (nh == 6)), ("icmp", ip & np.isin(nh, (1, 58))),
                       ("other_ip", ip & ~np.isin(nh, (17, 6, 1, 58)))):
        cnt = int(mask.sum())
        if cnt:
            noise[name] = noise.get(name, 0) + cnt
    cut_udp = udp & (l4 + 8 > end)
    if cut_udp.any():
        problems.add("cut_in_udp_header", "packet cut before the end of its UDP header",
                     np.flatnonzero(cut_udp) + chunk.first_record)
        udp &= ~cut_udp
    sel = np.flatnonzero(udp)
    l3s, l4s, v4 = l3[sel], l4[sel], is4[sel]
    key = np.empty((len(sel), 36), dtype=np.uint8)
    if len(sel):
        a4 = np.flatnonzero(v4)
        a6 = np.flatnonzero(~v4)
        if a4.size:
            key[a4, 0:12] = _V6_MAPPED
            key[a4, 16:28] = _V6_MAPPED
            key[a4, 12:16] = data[l3s[a4, None] + np.arange(12, 16)]
            key[a4, 28:32] = data[l3s[a4, None] + np.arange(16, 20)]
        if a6.size:
            key[a6, 0:32] = data[l3s[a6, None] + np.arange(8, 40)]
        key[:, 32:36] = data[l4s[:, None] + np.arange(4)]
    sport = _be16(data, l4s)
    dport = _be16(data, l4s + 2)
    ulen = _be16(data, l4s + 4)
    iplen = np.where(v4, _be16(data, l3s + 2) - (l4s - l3s), _be16(data, l3s + 4)
                     - (l4s - l3s - 40))
    # a zero UDP length is legal for IPv6 jumbograms; fall back to the IP length then
    plen = np.where(ulen >= 8, ulen - 8, np.maximum(iplen - 8, 0))
    poff = l4s + 8
    pcap = np.clip(np.minimum(end[sel] - poff, plen), 0, None)
    return UdpPackets(record=sel + chunk.first_record, ts=chunk.ts[sel],
                      key=key.view("V36").ravel(), sport=sport, dport=dport, poff=poff,
                      plen=plen, pcap=pcap, wirelen=chunk.wirelen[sel])


def _walk_v6(data: np.ndarray, pos: int, nh: int, end: int) -> tuple[int, int]:
    for _ in range(8):  # bounded: a loop of extension headers cannot hang the reader
        if nh == 44:  # fragment header: only the first fragment has the UDP header
            if pos + 8 > end:
                return -1, pos
            offset = (int(data[pos + 2]) << 8 | int(data[pos + 3])) >> 3
            if offset:
                return -1, pos
            nh, pos = int(data[pos]), pos + 8
        elif nh in _V6_EXT:
            if pos + 2 > end:
                return -1, pos
            nh, pos = int(data[pos]), pos + 8 + int(data[pos + 1]) * 8
        else:
            break
    return nh, pos
