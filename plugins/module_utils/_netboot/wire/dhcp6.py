# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DHCPv6 codec, and the MAC a client is known by.

A small :mod:`struct` codec laid out like the specifications it follows:

* RFC 8415 section 8: client/server messages (type, 24-bit transaction id,
  options) and section 9: relay messages (hop count, link and peer
  addresses, options), which are decoded so they can be recognised and left
  alone; section 21: options as 16-bit code, 16-bit length, value; section 11:
  DUIDs (LLT, EN, LL, UUID);
* RFC 5970: boot file URL (59), boot file parameters (60), client system
  architecture (61, the same numbers as DHCPv4 option 93) and network
  interface identifier (62);
* RFC 8415 section 21.15/21.16: user class (15, iPXE sends ``iPXE``) and
  vendor class (16: enterprise number, then length-prefixed strings; UEFI
  firmware sends enterprise 343 and ``PXEClient:Arch:...`` or
  ``HTTPClient:Arch:...``).

DHCPv6 has no ``chaddr``: the MAC a host is known by comes from the
client's link-local source address when it is a modified EUI-64 (what UEFI
firmware and iPXE use), else from a DUID-LL or DUID-LLT (:func:`client_mac`).
What kind of boot client sent a message is a decision, :mod:`..decide.client`.

Anything that is not a well-formed DHCPv6 message raises
:class:`MalformedPacket` and nothing else.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Iterable, Mapping

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp

__all__ = (
    "MalformedPacket", "Message",
    "decode", "encode", "client_mac", "mac_from_eui64", "mac_from_duid", "duid_ll",
    "vendor_class_option", "parse_vendor_class", "ia_na_option", "parse_ia_na",
)


class MalformedPacket(ValueError):
    """The bytes are not a well-formed DHCPv6 message (drop them)."""


CLIENT_PORT = 546
SERVER_PORT = 547
PXE_PORT = 4011  # EDK2 asks the boot server named by a proxy's boot file URL here
ALL_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers

# -- RFC 8415 section 7.3: message types ---------------------------------------

SOLICIT = 1
ADVERTISE = 2
REQUEST = 3
CONFIRM = 4
RENEW = 5
REBIND = 6
REPLY = 7
RELEASE = 8
DECLINE = 9
RECONFIGURE = 10
INFORMATION_REQUEST = 11
RELAY_FORW = 12
RELAY_REPL = 13

MESSAGE_TYPE_NAMES = {
    SOLICIT: "Solicit", ADVERTISE: "Advertise", REQUEST: "Request", CONFIRM: "Confirm", RENEW: "Renew",
    REBIND: "Rebind", REPLY: "Reply", RELEASE: "Release", DECLINE: "Decline", RECONFIGURE: "Reconfigure",
    INFORMATION_REQUEST: "Information-request", RELAY_FORW: "Relay-forward", RELAY_REPL: "Relay-reply",
}

# -- option codes (RFC 8415 section 21, RFC 5970) -------------------------------

OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_IA_NA = 3
OPT_IAADDR = 5
OPT_ORO = 6
OPT_PREFERENCE = 7
OPT_ELAPSED_TIME = 8
OPT_RELAY_MSG = 9
OPT_STATUS_CODE = 13
OPT_RAPID_COMMIT = 14
OPT_USER_CLASS = 15
OPT_VENDOR_CLASS = 16
OPT_DNS_SERVERS = 23
OPT_BOOTFILE_URL = 59
OPT_BOOTFILE_PARAM = 60
OPT_CLIENT_ARCH = 61
OPT_NII = 62
OPT_CLIENT_LINKLAYER_ADDR = 79

STATUS_SUCCESS = 0
STATUS_NO_ADDRS_AVAIL = 2
STATUS_NOT_ON_LINK = 4

DUID_LLT = 1
DUID_EN = 2
DUID_LL = 3
DUID_UUID = 4
HWTYPE_ETHERNET = 1

#: Enterprise number UEFI firmware puts in its vendor class (Intel's, from the PXE specification).
ENTERPRISE_PXE = 343

_HEADER = struct.Struct("!I")           # type (8 bits) + transaction id (24 bits)
_RELAY_HEADER = struct.Struct("!BB16s16s")
_OPTION = struct.Struct("!HH")
_MAX_RELAY_DEPTH = 8


@dataclasses.dataclass(frozen=True)
class Message:
    """One decoded DHCPv6 message.

    ``options`` keeps every option in wire order as ``(code, value)`` pairs
    (DHCPv6 allows repeats, e.g. one IA_NA per interface). For relay messages
    ``xid`` is 0 and ``relay`` holds ``(hop_count, link_address, peer_address)``.
    """

    msg_type: int
    xid: int
    options: tuple = ()
    relay: tuple | None = None

    @property
    def type_name(self) -> str:
        return MESSAGE_TYPE_NAMES.get(self.msg_type, "DHCPv6 type %d" % self.msg_type)

    def option(self, code: int) -> bytes | None:
        """The first option with ``code``, or None."""
        for each, value in self.options:
            if each == code:
                return value
        return None

    def all(self, code: int) -> list:
        return [value for each, value in self.options if each == code]

    @property
    def client_id(self) -> bytes | None:
        return self.option(OPT_CLIENTID)

    @property
    def server_id(self) -> bytes | None:
        return self.option(OPT_SERVERID)

    @property
    def requested_options(self) -> tuple:
        value = self.option(OPT_ORO) or b""
        return struct.unpack("!%dH" % (len(value) // 2), value[:len(value) // 2 * 2])

    @property
    def client_arches(self) -> tuple:
        value = self.option(OPT_CLIENT_ARCH)
        if not value or len(value) % 2:
            return ()
        return struct.unpack("!%dH" % (len(value) // 2), value)

    @property
    def user_classes(self) -> list:
        """Every user class string (option 15 holds length-prefixed strings)."""
        out = []
        for value in self.all(OPT_USER_CLASS):
            try:
                out.extend(_length_prefixed(value, 0))
            except MalformedPacket:
                continue
        return out

    @property
    def vendor_classes(self) -> list:
        """``(enterprise number, [strings])`` per option 16."""
        out = []
        for value in self.all(OPT_VENDOR_CLASS):
            try:
                out.append(parse_vendor_class(value))
            except MalformedPacket:
                continue
        return out

    @property
    def boot_file_url(self) -> str | None:
        value = self.option(OPT_BOOTFILE_URL)
        return value.decode("latin-1") if value is not None else None


def _options(data: bytes, start: int) -> tuple:
    out = []
    i = start
    end = len(data)
    while i < end:
        if i + 4 > end:
            raise MalformedPacket("truncated option header at byte %d" % i)
        code, length = _OPTION.unpack_from(data, i)
        j = i + 4 + length
        if j > end:
            raise MalformedPacket("option %d runs past the end of the message" % code)
        out.append((code, data[i + 4:j]))
        i = j
    return tuple(out)


def _length_prefixed(value: bytes, start: int) -> list:
    """Strings each preceded by a 16-bit length (user class, vendor class data)."""
    out = []
    i = start
    while i < len(value):
        if i + 2 > len(value):
            raise MalformedPacket("truncated class string length")
        (length,) = struct.unpack_from("!H", value, i)
        if i + 2 + length > len(value):
            raise MalformedPacket("class string runs past its option")
        out.append(value[i + 2:i + 2 + length])
        i += 2 + length
    return out


def decode(data: bytes, _depth: int = 0) -> Message:
    """Decode one DHCPv6 message (the UDP payload); raises :class:`MalformedPacket`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedPacket("expected bytes, got %s" % type(data).__name__)
    data = bytes(data)
    if len(data) < 4:
        raise MalformedPacket("%d bytes is shorter than a DHCPv6 header" % len(data))
    msg_type = data[0]
    if msg_type == 0 or msg_type > 37:
        raise MalformedPacket("message type %d is not a DHCPv6 message" % msg_type)
    if msg_type in (RELAY_FORW, RELAY_REPL):
        if len(data) < _RELAY_HEADER.size:
            raise MalformedPacket("%d bytes is shorter than a relay message header" % len(data))
        dummy, hops, link, peer = _RELAY_HEADER.unpack_from(data)
        relay = (hops, str(ipaddress.IPv6Address(link)), str(ipaddress.IPv6Address(peer)))
        return Message(msg_type, 0, _options(data, _RELAY_HEADER.size), relay)
    (word,) = _HEADER.unpack_from(data)
    return Message(msg_type, word & 0xFFFFFF, _options(data, 4))


def encode(message: Message) -> bytes:
    """Encode a client/server message (relay messages are never sent by this server)."""
    if message.relay is not None:
        raise ValueError("relay messages are not encoded here")
    parts = [_HEADER.pack((message.msg_type << 24) | (message.xid & 0xFFFFFF))]
    for code, value in message.options:
        value = bytes(value)
        if len(value) > 0xFFFF:
            raise ValueError("option %d is longer than 65535 bytes" % code)
        parts.append(_OPTION.pack(code, len(value)))
        parts.append(value)
    return b"".join(parts)


# -- DUIDs, vendor class, IA_NA -----------------------------------------------------------

def duid_ll(mac: str) -> bytes:
    """DUID-LL (RFC 8415 section 11.4) of an Ethernet address: the server's stable identifier."""
    return struct.pack("!HH", DUID_LL, HWTYPE_ETHERNET) + bytes.fromhex(mac.replace(":", ""))


def mac_from_duid(duid: bytes | None) -> str | None:
    """The Ethernet address inside a DUID-LLT or DUID-LL, else None."""
    if not duid or len(duid) < 4:
        return None
    kind, hwtype = struct.unpack_from("!HH", duid)
    if hwtype != HWTYPE_ETHERNET:
        return None
    if kind == DUID_LL and len(duid) == 10:
        return dhcp.format_mac(duid[4:])
    if kind == DUID_LLT and len(duid) == 14:
        return dhcp.format_mac(duid[8:])
    return None


def mac_from_eui64(address: str | None) -> str | None:
    """The MAC a modified-EUI-64 interface identifier was made from (RFC 4291 appendix A), else None."""
    if not address:
        return None
    try:
        packed = ipaddress.IPv6Address(address.split("%", 1)[0]).packed
    except ValueError:
        return None
    iid = packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    return dhcp.format_mac(bytes((iid[0] ^ 0x02,)) + iid[1:3] + iid[5:])


def vendor_class_option(enterprise: int, *strings: bytes) -> bytes:
    """Option 16's value: enterprise number, then each string with a 16-bit length."""
    return struct.pack("!I", enterprise) + b"".join(struct.pack("!H", len(s)) + s for s in strings)


def parse_vendor_class(value: bytes) -> tuple:
    if len(value) < 4:
        raise MalformedPacket("vendor class shorter than its enterprise number")
    (enterprise,) = struct.unpack_from("!I", value)
    return enterprise, _length_prefixed(value, 4)


def ia_na_option(iaid: bytes, t1: int, t2: int, addresses: Iterable[tuple[str, int, int]] = (), status: int | None = None) -> bytes:
    """IA_NA (RFC 8415 section 21.4) holding IAADDR options ``(address, preferred, valid)``."""
    inner = []
    for address, preferred, valid in addresses:
        body = ipaddress.IPv6Address(address).packed + struct.pack("!II", preferred, valid)
        inner.append(_OPTION.pack(OPT_IAADDR, len(body)) + body)
    if status is not None:
        body = struct.pack("!H", status)
        inner.append(_OPTION.pack(OPT_STATUS_CODE, len(body)) + body)
    return bytes(iaid) + struct.pack("!II", t1, t2) + b"".join(inner)


def parse_ia_na(value: bytes) -> tuple:
    """``(iaid bytes, t1, t2, [addresses])`` of an IA_NA option value."""
    if len(value) < 12:
        raise MalformedPacket("IA_NA shorter than 12 bytes")
    t1, t2 = struct.unpack_from("!II", value, 4)
    addresses = []
    for code, body in _options(value, 12):
        if code == OPT_IAADDR and len(body) >= 24:
            addresses.append(str(ipaddress.IPv6Address(body[:16])))
    return value[:4], t1, t2, addresses


# -- the client's MAC ----------------------------------------------------------------------

# How client_mac found the MAC.
MAC_FROM_EUI64 = "eui64"
MAC_FROM_DUID = "duid"
MAC_LEARNT = "learnt"


def client_mac(message: Message, source_ip: str | None, known_macs: Mapping[bytes, str] | None = None) -> tuple:
    """``(mac, how)`` of the client, or ``(None, None)``.

    In order: the modified EUI-64 of a link-local source address; the MAC in
    a DUID-LL/LLT; ``known_macs`` (client DUID -> MAC learnt from earlier
    messages of the same client): EDK2 sends its boot-server request to 4011
    from its new global address, with a DUID-UUID.
    """
    mac = mac_from_eui64(source_ip) if source_ip and source_ip.lower().startswith("fe80:") else None
    if mac is not None:
        return mac, MAC_FROM_EUI64
    mac = mac_from_duid(message.client_id)
    if mac is not None:
        return mac, MAC_FROM_DUID
    if known_macs and message.client_id is not None:
        mac = known_macs.get(message.client_id)
        if mac is not None:
            return mac, MAC_LEARNT
    return None, None
