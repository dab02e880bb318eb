# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a machine on the segment does in the trust lab, run inside its namespace.

    python peer.py connect DST PORT [SRC]   a TCP connection (from SRC), held until the server closes it
    python peer.py garp IFACE IP            a gratuitous ARP claiming IP with IFACE's MAC (scapy)
    python peer.py una IFACE IP             an unsolicited neighbour advertisement claiming IP (scapy)
    python peer.py pxe-discover IFACE       a firmware's PXE DHCPDISCOVER with IFACE's MAC: a new boot (scapy)
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def endpoint(text, port):
    """A socket address for ``text``, with the interface of a zone (``fe80::1%eth0``)."""
    if "%" in text:
        address, zone = text.split("%", 1)
        return (address, port, 0, socket.if_nametoindex(zone))
    return (text, port)


def connect(destination, port, source=None):
    family = socket.AF_INET6 if ":" in destination else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        if source:
            sock.bind(endpoint(source, 0))
        sock.connect(endpoint(destination, int(port)))
        # Held open until the server has looked at it and closed it, as iPXE waits for its answer.
        while sock.recv(4096):
            pass


def link_mac(iface):
    return Path("/sys/class/net/%s/address" % iface).read_text(encoding="ascii").strip()


def gratuitous_arp(iface, address):
    from scapy.layers.l2 import ARP, Ether  # pylint: disable=import-outside-toplevel
    from scapy.sendrecv import sendp  # pylint: disable=import-outside-toplevel
    mac = link_mac(iface)
    frame = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
             / ARP(op=1, hwsrc=mac, psrc=address, hwdst="00:00:00:00:00:00", pdst=address))
    sendp(frame, iface=iface, verbose=False)


def unsolicited_na(iface, address):
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6  # pylint: disable=import-outside-toplevel
    from scapy.layers.l2 import Ether  # pylint: disable=import-outside-toplevel
    from scapy.sendrecv import sendp  # pylint: disable=import-outside-toplevel
    mac = link_mac(iface)
    # Override set, solicited clear: how a node announces a new link-layer address (RFC 4861 7.2.6).
    frame = (Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=address, dst="ff02::1", hlim=255)
             / ICMPv6ND_NA(tgt=address, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))
    sendp(frame, iface=iface, verbose=False)


def pxe_discover(iface):
    from scapy.layers.dhcp import BOOTP, DHCP  # pylint: disable=import-outside-toplevel
    from scapy.layers.inet import IP, UDP  # pylint: disable=import-outside-toplevel
    from scapy.layers.l2 import Ether  # pylint: disable=import-outside-toplevel
    from scapy.sendrecv import sendp  # pylint: disable=import-outside-toplevel
    mac = link_mac(iface)
    raw = bytes.fromhex(mac.replace(":", ""))
    # As OVMF's PXE sends it: architecture 7 (EFI x64), UNDI 3.0, a GUID.
    options = [("message-type", "discover"), (93, b"\x00\x07"), (94, b"\x01\x03\x00"),
               ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000"), (97, b"\x00" + raw + bytes(10)), "end"]
    frame = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
             / BOOTP(op=1, xid=0x7a7a0001, flags=0x8000, chaddr=raw) / DHCP(options=options))
    sendp(frame, iface=iface, verbose=False)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    {"connect": connect, "garp": gratuitous_arp, "una": unsolicited_na, "pxe-discover": pxe_discover}[command](*args)


if __name__ == "__main__":
    main()
