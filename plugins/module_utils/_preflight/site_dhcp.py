# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The site's DHCP server, seen as a machine's firmware sees it: one DHCPDISCOVER, and who answers.

The DISCOVER looks like a UEFI PXE client's (option 60 ``PXEClient:Arch:00007...``, 93, 94, 97),
because many sites give boot options only to PXE clients. It carries a made-up, locally
administered MAC (no real machine's), goes out as a raw broadcast frame on the serving
interface (no UDP port 68 is bound, so a DHCP client on this machine is not disturbed), and is
never followed by a REQUEST: no lease is taken, nothing needs releasing.

A proxy offer only works when the site's server gives the address and no boot options: UEFI
firmware that gets a boot file (option 67 or the ``file`` field), a TFTP server (66, ``sname``),
PXE vendor options (43) or a ``PXEClient`` vendor class (60) from the address server boots from
that and ignores the proxy.
"""

from __future__ import annotations

import dataclasses
import os
import select
import socket
import struct
import time
from collections.abc import Sequence

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

ETH_P_IP = 0x0800
BROADCAST_MAC = b"\xff" * 6
DEFAULT_WAIT = 4.0  # dnsmasq pings an address for up to 3 s before it offers it
PXE_VENDOR = b"PXEClient:Arch:00007:UNDI:003000"
REQUESTED = bytes((1, 3, 6, 43, 54, 60, 66, 67, 97))


def made_up_mac(random_bytes: bytes) -> bytes:
    """A locally administered unicast MAC from 6 random bytes: no real NIC has it."""
    return bytes(((random_bytes[0] & 0xFC) | 0x02,)) + bytes(random_bytes[1:6])


def discover(mac: bytes, xid: int, guid: bytes) -> bytes:
    """The DHCPDISCOVER payload a UEFI x86-64 PXE client sends (broadcast flag set: answers come broadcast)."""
    options = {
        dhcp.OPT_MESSAGE_TYPE: bytes((dhcp.DHCPDISCOVER,)),
        dhcp.OPT_PARAMETER_LIST: REQUESTED,
        dhcp.OPT_MAX_MESSAGE_SIZE: struct.pack("!H", 1472),
        dhcp.OPT_CLIENT_ARCH: struct.pack("!H", 7),
        dhcp.OPT_CLIENT_NDI: b"\x01\x03\x00",
        dhcp.OPT_VENDOR_CLASS: PXE_VENDOR,
        dhcp.OPT_CLIENT_GUID: b"\x00" + guid,
    }
    return dhcp.encode(dhcp.DhcpPacket(op=dhcp.BOOTREQUEST, xid=xid, chaddr=mac, flags=dhcp.FLAG_BROADCAST, options=options))


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(source_mac: bytes, payload: bytes) -> bytes:
    """Ethernet + IPv4 (0.0.0.0 -> 255.255.255.255) + UDP (68 -> 67) around ``payload``."""
    udp = struct.pack("!HHHH", dhcp.CLIENT_PORT, dhcp.SERVER_PORT, 8 + len(payload), 0) + payload  # checksum 0: none (RFC 768)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         b"\0\0\0\0", b"\xff\xff\xff\xff")
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return BROADCAST_MAC + source_mac + struct.pack("!H", ETH_P_IP) + header + udp


@dataclasses.dataclass(frozen=True)
class Answer:
    """One server's answer: who (``source``, option 54 ``server_id``), what address, which boot options."""

    source: str
    server_id: str | None
    offered: str
    boot: tuple  # ((what, value), ...), empty when the answer carries no boot options

    @property
    def gives_address(self) -> bool:
        return self.offered != "0.0.0.0"

    def describe(self) -> str:
        who = self.server_id or self.source
        if self.source != who:
            who += " (from %s)" % self.source
        what = "offered %s" % self.offered if self.gives_address else "offered no address (a proxyDHCP server)"
        return "%s %s" % (who, what)


def boot_options(packet: dhcp.DhcpPacket) -> tuple[tuple[str, str], ...]:
    """What in a reply would make firmware boot from it: ``((label, value), ...)``."""
    found = []
    vendor = packet.options.get(dhcp.OPT_VENDOR_CLASS)
    if vendor is not None and vendor.startswith((b"PXEClient", b"HTTPClient")):
        found.append(("60", vendor.decode("latin-1")))
    for code in (dhcp.OPT_TFTP_SERVER, dhcp.OPT_BOOTFILE):
        if code in packet.options:
            found.append((str(code), packet.options[code].split(b"\0", 1)[0].decode("latin-1")))
    if dhcp.OPT_VENDOR_SPECIFIC in packet.options:
        found.append(("43", packet.options[dhcp.OPT_VENDOR_SPECIFIC].hex()))
    if packet.file:
        found.append(("file", packet.file.decode("latin-1")))
    if packet.sname:
        found.append(("sname", packet.sname.decode("latin-1")))
    return tuple(found)


def parse_answer(data: bytes, xid: int, mac: bytes) -> Answer | None:
    """An Answer from one received Ethernet frame, or None when it is not a reply to our DISCOVER."""
    if len(data) < 14 + 20 + 8 or data[12:14] != struct.pack("!H", ETH_P_IP):
        return None
    ip = data[14:]
    header_length = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP or len(ip) < header_length + 8:
        return None
    source_port, destination_port = struct.unpack("!HH", ip[header_length:header_length + 4])
    if source_port not in (dhcp.SERVER_PORT, dhcp.PXE_PORT) or destination_port != dhcp.CLIENT_PORT:
        return None
    try:
        packet = dhcp.decode(ip[header_length + 8:])
    except dhcp.MalformedPacket:
        return None
    if packet.op != dhcp.BOOTREPLY or packet.xid != xid or packet.chaddr[:6] != mac:
        return None
    if packet.message_type not in (dhcp.DHCPOFFER, dhcp.DHCPACK):
        return None
    return Answer(socket.inet_ntoa(ip[12:16]), packet.server_id, packet.yiaddr, boot_options(packet))


def site_dhcp_row(answers: Sequence[Answer], interface: str, waited: float, mode: str = "proxy") -> report.Row:
    """The verdict on the answers to one DISCOVER sent on ``interface``, collected for ``waited`` seconds, for
    pxe_server's DHCPv4 ``mode`` (proxy: a site server must give addresses without boot options; addresses: no
    other server may give addresses; off: the site's server is the machines' only DHCP, whatever it says)."""
    with_boot = [answer for answer in answers if answer.boot]
    addressing = [answer for answer in answers if answer.gives_address]
    heard = "; ".join(answer.describe() for answer in answers)
    if mode == "addresses":
        return _addresses_mode_row(addressing, interface, waited, heard)
    if mode == "off":
        return report.passed(report.SITE_DHCP, "dhcp=off: the netboot server answers no DHCPv4; heard on %s: %s"
                             % (interface, heard or "nothing within %.0f s" % waited))
    if with_boot:
        detail = "; ".join("%s with boot options %s" % (answer.describe(), ", ".join("%s %r" % pair for pair in answer.boot))
                           for answer in with_boot)
        return report.failed(report.SITE_DHCP, detail, (
            "UEFI firmware boots from those options and ignores the netboot server's proxy offer: remove them "
            "for these machines on %s (dnsmasq: dhcp-boot, pxe-service; ISC dhcpd: filename, next-server; "
            "Windows/routers: options 66 and 67), or stop the other PXE server on this segment"
            % ", ".join(sorted({answer.server_id or answer.source for answer in with_boot}))))
    if not addressing:
        return report.failed(report.SITE_DHCP, "no DHCP server offered an address on %s within %.0f s%s"
                             % (interface, waited, " (heard: %s)" % heard if heard else ""), (
                                 "the netboot server is a proxy: it gives no addresses, the site's DHCP server must. "
                                 "Check that %s is on the machines' segment (VLAN, cable) and that a DHCP server "
                                 "serves it; on an isolated segment run one (e.g. dnsmasq with a dhcp-range and no "
                                 "boot options)" % interface))
    return report.passed(report.SITE_DHCP, "%s; no boot options" % heard)


def _addresses_mode_row(addressing: Sequence[Answer], interface: str, waited: float, heard: str) -> report.Row:
    if addressing:
        return report.failed(report.SITE_DHCP, "dhcp=addresses, but another DHCP server gives addresses on %s: %s"
                             % (interface, "; ".join(answer.describe() for answer in addressing)), (
                                 "two address servers on one segment fight over every client: use dhcp=proxy beside "
                                 "it, or stop it (pxe_server refuses to start otherwise, unless dhcp_probe is false)"))
    return report.passed(report.SITE_DHCP, "dhcp=addresses: no other DHCP server gives addresses on %s within %.0f s%s"
                         % (interface, waited, " (heard: %s)" % heard if heard else ""))


def bound_mac(sock: socket.socket) -> bytes:
    """The MAC of the interface a bound AF_PACKET socket is on (from the kernel, not /sys, which shows
    the network namespace it was mounted in, not necessarily ours)."""
    return sock.getsockname()[4]


def exchange(interface: str, wait: float = DEFAULT_WAIT) -> list[Answer]:
    """Send one DISCOVER on ``interface`` and return the Answers heard within ``wait`` seconds."""
    mac = made_up_mac(os.urandom(6))
    xid = struct.unpack("!I", os.urandom(4))[0]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        sock.bind((interface, 0))
        sock.setblocking(False)
        # The frame comes from this interface's own MAC (switch port security sees a known sender);
        # only chaddr, which the DHCP server answers for, is made up.
        sock.send(frame(bound_mac(sock), discover(mac, xid, os.urandom(16))))
        answers = []
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, dummy, dummy2 = select.select([sock], [], [], remaining)
            if not readable:
                continue
            while True:
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    break
                answer = parse_answer(data, xid, mac)
                if answer is not None and answer not in answers:
                    answers.append(answer)
        return answers
    finally:
        sock.close()


def read_site_dhcp(interface: str, wait: float = DEFAULT_WAIT, mode: str = "proxy") -> report.Row:
    try:
        answers = exchange(interface, wait)
    except OSError as exc:
        return report.failed(report.SITE_DHCP, "could not send a DISCOVER on %s: %s" % (interface, exc.strerror or exc),
                             "run as root (sending a raw frame needs CAP_NET_RAW), as the run itself does")
    return site_dhcp_row(answers, interface, wait, mode)
