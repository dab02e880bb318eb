# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Trim IPv6 boot captures into unit-test fixtures, and describe them.

:func:`trim` keeps what the DHCPv6 policy tests need from a bridge capture:
every DHCPv6 message (UDP 546/547, and 4011 over IPv6, where EDK2 asks the
boot server), router solicitations and advertisements, and the TFTP read
requests over IPv6; bulk data, neighbour discovery, HTTP and anything IPv4
are dropped. :func:`describe` lists what is left, one line per packet.

    python3 -m nixielab.fixtures6 trim SRC DST
    python3 -m nixielab.fixtures6 show PCAP
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, ICMPv6ND_RA, ICMPv6ND_RS
from scapy.utils import PcapWriter, rdpcap

DHCP6_PORTS = {546, 547, 4011}
DHCP6_TYPES = {1: "Solicit", 2: "Advertise", 3: "Request", 4: "Confirm", 5: "Renew", 6: "Rebind", 7: "Reply",
               8: "Release", 9: "Decline", 11: "Information-request", 12: "Relay-forward", 13: "Relay-reply"}


def _keep(pkt) -> bool:
    if IPv6 not in pkt:
        return False
    if ICMPv6ND_RA in pkt or ICMPv6ND_RS in pkt:
        return True
    if UDP not in pkt:
        return False
    udp = pkt[UDP]
    if {udp.sport, udp.dport} & DHCP6_PORTS:
        return True
    payload = bytes(udp.payload)
    return udp.dport == 69 and payload[:2] == b"\x00\x01"  # TFTP read request


def trim(src: str | Path, dst: str | Path) -> int:
    """Write the kept packets of ``src`` to ``dst`` (classic pcap); return how many."""
    kept = [pkt for pkt in rdpcap(str(src)) if _keep(pkt)]
    writer = PcapWriter(str(dst), linktype=1, sync=True)
    for pkt in kept:
        writer.write(pkt)
    writer.close()
    return len(kept)


def dhcp6_options(payload: bytes) -> list[tuple[int, bytes]]:
    """(code, value) options of a client/server DHCPv6 message, in wire order."""
    options, i = [], 4
    while i + 4 <= len(payload):
        code, length = struct.unpack_from("!HH", payload, i)
        options.append((code, payload[i + 4:i + 4 + length]))
        i += 4 + length
    return options


def describe(pcap: str | Path) -> list[str]:
    """One line per packet: time, addresses, and the DHCPv6 message with its options in hex."""
    lines = []
    packets = rdpcap(str(pcap))
    start = float(packets[0].time) if packets else 0.0
    for pkt in packets:
        when = "%7.3fs" % (float(pkt.time) - start)
        ip = pkt[IPv6]
        if ICMPv6ND_RA in pkt:
            ra = pkt[ICMPv6ND_RA]
            lines.append("%s %s -> %s RA M=%d O=%d lifetime=%d" % (when, ip.src, ip.dst, ra.M, ra.O, ra.routerlifetime))
            continue
        if ICMPv6ND_RS in pkt:
            lines.append("%s %s -> %s RS" % (when, ip.src, ip.dst))
            continue
        udp = pkt[UDP]
        payload = bytes(udp.payload)
        if udp.dport == 69:
            lines.append("%s [%s]:%d -> [%s]:69 TFTP RRQ %r" % (when, ip.src, udp.sport, ip.dst, payload[2:].split(b"\0")[0]))
            continue
        name = DHCP6_TYPES.get(payload[0], str(payload[0])) if payload else "?"
        opts = " ".join("%d=%s" % (code, value.hex()) for code, value in dhcp6_options(payload))
        lines.append("%s [%s]:%d -> [%s]:%d %s xid=%s %s" % (when, ip.src, udp.sport, ip.dst, udp.dport, name,
                                                             payload[1:4].hex(), opts))
    return lines


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "trim":
        print(trim(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "show":
        print("\n".join(describe(sys.argv[2])))
    else:
        sys.exit("usage: python3 -m nixielab.fixtures6 trim SRC DST | show PCAP")


if __name__ == "__main__":
    main()
