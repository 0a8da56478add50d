"""pcap files of what entered and what left a simulated link.

Each packet is written as IPv4/UDP between the link's two addresses, stamped with its
virtual time (seconds from the start of the run), so tshark and Wireshark read the capture
like one from a real interface. The file is written with scapy's pcap writer; the IPv4 and
UDP headers are packed here directly, because building a scapy packet object per datagram
would cost more than the whole simulated session.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from types import TracebackType

from edgewire.errors import LocalProtocolError

__all__ = ["K_LINKTYPE_RAW", "PcapTap", "ipv4_udp"]

#: pcap link type of raw IP packets (no link-layer header).
K_LINKTYPE_RAW = 101
_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")
_UDP_HEADER = struct.Struct("!HHHH")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes, *,
             ident: int = 0) -> bytes:
    """An IPv4 packet holding one UDP datagram (UDP checksum left 0, which IPv4 allows)."""
    if len(payload) > 65_507:
        raise LocalProtocolError(f"UDP payload of {len(payload)} bytes does not fit IPv4")
    src_ip = ipaddress.IPv4Address(src[0]).packed
    dst_ip = ipaddress.IPv4Address(dst[0]).packed
    udp_len = 8 + len(payload)
    total = 20 + udp_len
    header = _IP_HEADER.pack(0x45, 0, total, ident & 0xFFFF, 0x4000, 64, 17, 0, src_ip, dst_ip)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + _UDP_HEADER.pack(src[1], dst[1], udp_len, 0) + payload


class PcapTap:
    """A link tap writing every packet it sees to ``path`` as IPv4/UDP ``src`` -> ``dst``."""

    def __init__(self, path: str | Path, src: tuple[str, int], dst: tuple[str, int]) -> None:
        from scapy.utils import RawPcapWriter  # optional dependency: the `traces` extra

        self.path = Path(path)
        """The pcap file."""
        self.src = src
        self.dst = dst
        self.packets = 0
        """Packets written."""
        try:
            self._writer = RawPcapWriter(str(self.path), linktype=K_LINKTYPE_RAW, sync=False)
            # the header up front: a link that carried nothing still gives a valid file
            self._writer.write_header(None)
        except OSError as exc:
            raise LocalProtocolError(f"cannot write {self.path}: {exc.strerror}") from None

    def __call__(self, now: float, data: bytes) -> None:
        """Write one packet seen at virtual time ``now``."""
        self.packets += 1
        packet = ipv4_udp(self.src, self.dst, data, ident=self.packets)
        sec = int(now)
        usec = round((now - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._writer.write_packet(packet, sec=sec, usec=usec)

    def close(self) -> None:
        """Flush and close the file."""
        self._writer.close()

    def __enter__(self) -> PcapTap:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
