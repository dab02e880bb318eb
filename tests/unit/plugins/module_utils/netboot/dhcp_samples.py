# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DHCP requests built by hand or read from captures, shared by the codec's tests (wire/) and the classification's (decide/)."""

from __future__ import annotations

import pathlib
import socket
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp6

MAC = "52:54:00:12:34:01"
MAC_BYTES = bytes.fromhex(MAC.replace(":", ""))
GUID = b"\x00" + bytes(range(0x10, 0x20))
OVMF_VENDOR = b"PXEClient:Arch:00007:UNDI:003000"


def raw_request(options=(), *, op=1, htype=1, hlen=6, chaddr=MAC_BYTES, xid=0xDEADBEEF, secs=4, flags=0,
                ciaddr="0.0.0.0", yiaddr="0.0.0.0", siaddr="0.0.0.0", giaddr="0.0.0.0",
                sname=b"", file=b"", cookie=b"\x63\x82\x53\x63", end=True, raw_options=None):
    """Build wire bytes by hand, independently of the module under test."""
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s4s", op, htype, hlen, 0, xid, secs, flags,
        socket.inet_aton(ciaddr), socket.inet_aton(yiaddr), socket.inet_aton(siaddr), socket.inet_aton(giaddr),
        chaddr, sname, file, cookie,
    )
    if raw_options is not None:
        return head + raw_options
    body = b"".join(bytes((code, len(value))) + value for code, value in options)
    return head + body + (b"\xff" if end else b"")


def ovmf_discover(**kw):
    options = [(53, b"\x01"), (57, b"\x05\xc0"), (93, b"\x00\x07"), (94, b"\x01\x03\x00"),
               (60, OVMF_VENDOR), (97, GUID)]
    return raw_request(options, **kw)


DHCP6_FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "dhcp6"
MAC6 = "52:54:00:12:34:61"


def frames(name):
    """(source address, source port, destination port, UDP payload) of every DHCPv6 datagram of a capture."""
    scapy_all = pytest.importorskip("scapy.all")
    out = []
    for frame in scapy_all.rdpcap(str(DHCP6_FIXTURES / name)):
        if scapy_all.IPv6 in frame and scapy_all.UDP in frame:
            udp = frame[scapy_all.UDP]
            if {udp.sport, udp.dport} & {546, 547, 4011}:
                out.append((frame[scapy_all.IPv6].src, udp.sport, udp.dport, bytes(udp.payload)))
    return out


def client_messages(name):
    return [(src, dport, dhcp6.decode(payload)) for src, dummy, dport, payload in frames(name) if dport in (547, 4011)]
