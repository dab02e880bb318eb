# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""BOOTP/DHCPv4 codec.

A deliberately small codec written with :mod:`struct`, laid out like the
specifications it follows:

* RFC 951 / RFC 2131 section 2: the fixed 236-byte BOOTP header;
* RFC 2131 section 3 / RFC 2132 section 9.3: the magic cookie and the
  options area, including option 52 (overload), which moves more options into
  the ``file`` and then the ``sname`` fields;
* RFC 3396: an option that appears more than once is one long option, its
  parts concatenated in the order options, file, sname;
* RFC 4578 and PXE 2.1: options 93 (client system architecture), 94 (network
  interface identifier), 97 (client machine GUID) and the PXE vendor
  sub-options carried in option 43;
* iPXE's own conventions: user class (option 77) ``iPXE`` and the
  encapsulated options 175, which list its compiled-in features.

It is hand-written rather than built on scapy because the server must answer
thousands of requests per second on a small machine; see docs/dhcp.md for the
measurement. Anything that is not a well-formed BOOTP/DHCP message raises
:class:`MalformedPacket` and nothing else, so the server can drop it with a
single ``except``. What kind of boot client sent a request is a decision,
:mod:`..decide.client`.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Iterable, Mapping

__all__ = (
    "MalformedPacket", "DhcpPacket",
    "decode", "encode", "make_reply", "parse_suboptions", "encode_suboptions", "format_mac",
)


class MalformedPacket(ValueError):
    """The bytes are not a well-formed BOOTP/DHCPv4 message (drop them)."""


# -- RFC 2131 section 2 ------------------------------------------------------

BOOTREQUEST = 1
BOOTREPLY = 2

HTYPE_ETHERNET = 1

FLAG_BROADCAST = 0x8000

SERVER_PORT = 67
CLIENT_PORT = 68
PXE_PORT = 4011  # PXE boot server (and proxyDHCP "BINL") requests

MAGIC_COOKIE = b"\x63\x82\x53\x63"

#       op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr sname file cookie
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
HEADER_LEN = _HEADER.size  # 240 = 236 bytes of BOOTP header + the cookie
_SNAME_AT = 44
_FILE_AT = 108

# RFC 1542 section 3.4: BOOTP relays and old clients may drop shorter messages.
MIN_MESSAGE_LEN = 300

# -- RFC 2132 option codes used here -----------------------------------------

OPT_PAD = 0
OPT_VENDOR_SPECIFIC = 43      # PXE vendor options (sub-options, RFC 2132 section 8.4)
OPT_REQUESTED_IP = 50
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_MAX_MESSAGE_SIZE = 57
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_TFTP_SERVER = 66
OPT_BOOTFILE = 67
OPT_USER_CLASS = 77           # RFC 3004 (iPXE sends the bare string "iPXE")
OPT_CLIENT_ARCH = 93          # RFC 4578 section 2.1
OPT_CLIENT_NDI = 94           # RFC 4578 section 2.2
OPT_CLIENT_GUID = 97          # RFC 4578 section 2.3
OPT_IPXE_ENCAP = 175          # iPXE encapsulated options
OPT_END = 255

OVERLOAD_FILE = 1
OVERLOAD_SNAME = 2

# -- RFC 2132 section 9.6: DHCP message types ---------------------------------

DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPDECLINE = 4
DHCPACK = 5
DHCPNAK = 6
DHCPRELEASE = 7
DHCPINFORM = 8

MESSAGE_TYPE_NAMES = {
    DHCPDISCOVER: "DHCPDISCOVER", DHCPOFFER: "DHCPOFFER", DHCPREQUEST: "DHCPREQUEST",
    DHCPDECLINE: "DHCPDECLINE", DHCPACK: "DHCPACK", DHCPNAK: "DHCPNAK",
    DHCPRELEASE: "DHCPRELEASE", DHCPINFORM: "DHCPINFORM",
}

# -- PXE 2.1 option 43 sub-options --------------------------------------------

PXE_DISCOVERY_CONTROL = 6     # bit 3 (value 8): boot the file name given, no discovery
PXE_BOOT_ITEM = 71            # boot server type + layer, in boot server requests/replies
PXE_DISCOVERY_USE_BOOTFILE = 8

_ntoa = socket.inet_ntoa
_aton = socket.inet_aton
_object_new = object.__new__


# Frozen dataclasses set each field in __init__ through object.__setattr__
# (about 2 us for DhcpPacket's 15 fields here). The hot paths below create
# instances with object.__new__ and hand them their attribute dict in one
# step: the same immutable objects, several times faster.
_set_dict = object.__setattr__
_ZERO = b"\0\0\0\0"
_ANY = "0.0.0.0"
_END = bytes((OPT_END,))
_CODE_LEN = struct.Struct("!BB").pack


@dataclasses.dataclass(frozen=True)
class DhcpPacket:
    """One BOOTP/DHCPv4 message, requests and replies alike (RFC 2131 Figure 1).

    Addresses are dotted-quad strings. ``chaddr`` holds ``hlen`` bytes.
    ``sname`` and ``file`` are the raw field contents up to the first NUL, and
    empty when option 52 made them carry options. ``options`` maps an option
    code to its (concatenated, RFC 3396) value; treat it as read-only.
    """

    op: int
    xid: int
    chaddr: bytes
    htype: int = HTYPE_ETHERNET
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    sname: bytes = b""
    file: bytes = b""
    options: dict = dataclasses.field(default_factory=dict, hash=False)

    # -- header accessors ----------------------------------------------------

    @property
    def broadcast(self) -> bool:
        """The client asked for broadcast replies (RFC 2131 section 4.1)."""
        return bool(self.flags & FLAG_BROADCAST)

    @property
    def mac(self) -> str | None:
        """``chaddr`` as lower-case ``aa:bb:cc:dd:ee:ff`` for Ethernet, else None."""
        if self.htype != HTYPE_ETHERNET or self.hlen != 6 or len(self.chaddr) != 6:
            return None
        return format_mac(self.chaddr)

    # -- option accessors (never raise; None when absent or ill-shaped) -------

    @property
    def message_type(self) -> int | None:
        """Option 53, or None for a plain BOOTP message."""
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value else None

    @property
    def message_type_name(self) -> str:
        mtype = self.message_type
        if mtype is None:
            return "BOOTP"
        return MESSAGE_TYPE_NAMES.get(mtype, "DHCP type %d" % mtype)

    @property
    def server_id(self) -> str | None:
        """Option 54 (server identifier)."""
        return self._ip_option(OPT_SERVER_ID)

    @property
    def requested_ip(self) -> str | None:
        """Option 50 (requested IP address)."""
        return self._ip_option(OPT_REQUESTED_IP)

    @property
    def max_message_size(self) -> int | None:
        """Option 57 (maximum DHCP message size the client accepts)."""
        value = self.options.get(OPT_MAX_MESSAGE_SIZE)
        if value is None or len(value) != 2:
            return None
        return (value[0] << 8) | value[1]

    @property
    def parameter_request_list(self) -> bytes:
        """Option 55 as bytes of option codes (empty when absent)."""
        return self.options.get(OPT_PARAMETER_LIST, b"")

    @property
    def vendor_class(self) -> bytes | None:
        """Option 60 (vendor class identifier), e.g. ``PXEClient:Arch:00007:UNDI:003000``."""
        return self.options.get(OPT_VENDOR_CLASS)

    @property
    def user_class(self) -> bytes | None:
        """Option 77 (user class), raw."""
        return self.options.get(OPT_USER_CLASS)

    @property
    def client_arches(self) -> tuple:
        """Option 93 as a tuple of 16-bit architecture types (empty when absent or ill-shaped)."""
        value = self.options.get(OPT_CLIENT_ARCH)
        if not value or len(value) % 2:
            return ()
        return struct.unpack("!%dH" % (len(value) // 2), value)

    @property
    def client_guid(self) -> bytes | None:
        """Option 97 exactly as received (may be empty); None when absent."""
        return self.options.get(OPT_CLIENT_GUID)

    @property
    def boot_file_name(self) -> str:
        """Option 67 if present, else the ``file`` field (latin-1 decoded)."""
        value = self.options.get(OPT_BOOTFILE)
        if value is None:
            value = self.file
        return value.split(b"\0", 1)[0].decode("latin-1")

    @property
    def pxe_options(self) -> dict | None:
        """Option 43 parsed as PXE sub-options; None when absent or ill-formed."""
        return self._suboptions(OPT_VENDOR_SPECIFIC)

    @property
    def ipxe_options(self) -> dict | None:
        """Option 175 parsed as iPXE encapsulated options; None when absent or ill-formed."""
        return self._suboptions(OPT_IPXE_ENCAP)

    def _ip_option(self, code: int) -> str | None:
        value = self.options.get(code)
        if value is None or len(value) != 4:
            return None
        return _ntoa(value)

    def _suboptions(self, code: int) -> dict | None:
        value = self.options.get(code)
        if value is None:
            return None
        try:
            return parse_suboptions(value)
        except MalformedPacket:
            return None


def format_mac(raw: bytes) -> str:
    """Lower-case, colon-separated form of a hardware address (as iPXE's ``${mac}`` prints it)."""
    return raw.hex(":")


def _parse_options(data: bytes, start: int, end: int, into: dict) -> None:
    """Read code/length/value triples from ``data[start:end]`` into ``into`` (RFC 2132 section 2)."""
    i = start
    while i < end:
        code = data[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return
        if i + 1 >= end:
            raise MalformedPacket("option %d has no length byte" % code)
        j = i + 2 + data[i + 1]
        if j > end:
            raise MalformedPacket("option %d runs past the end of its field" % code)
        value = data[i + 2:j]
        previous = into.get(code)
        into[code] = value if previous is None else previous + value  # RFC 3396
        i = j
    # A missing END option is tolerated: several ROMs omit it after padding.


def parse_suboptions(data: bytes) -> dict:
    """Parse encapsulated options (option 43, 175): ``{code: value}``; raises MalformedPacket."""
    out: dict = {}
    _parse_options(data, 0, len(data), out)
    return out


def encode_suboptions(items: Mapping[int, bytes] | Iterable[tuple[int, bytes]]) -> bytes:
    """Encode ``(code, value)`` pairs (or a dict) as encapsulated options ending with 255."""
    if isinstance(items, dict):
        items = items.items()
    parts: list = []
    for code, value in items:
        _put_option(parts, code, bytes(value))
    parts.append(_END)
    return b"".join(parts)


def decode(data: bytes) -> DhcpPacket:
    """Decode one BOOTP/DHCPv4 message (the UDP payload).

    Raises :class:`MalformedPacket` for anything that is not one: too short,
    no magic cookie, unknown ``op``, ``hlen`` over 16, an option running past
    its field, a bad option 52 or a message-type option that is not one byte.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedPacket("expected bytes, got %s" % type(data).__name__)
    data = bytes(data)
    size = len(data)
    if size < HEADER_LEN:
        raise MalformedPacket("%d bytes is shorter than a BOOTP header with magic cookie" % size)
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
     chaddr, sname, file, cookie) = _HEADER.unpack_from(data)
    if cookie != MAGIC_COOKIE:
        raise MalformedPacket("bad magic cookie %s" % cookie.hex())
    if op != BOOTREQUEST and op != BOOTREPLY:
        raise MalformedPacket("op %d is neither BOOTREQUEST nor BOOTREPLY" % op)
    if hlen > 16:
        raise MalformedPacket("hlen %d is larger than chaddr" % hlen)

    options: dict = {}
    _parse_options(data, HEADER_LEN, size, options)

    overload = options.get(OPT_OVERLOAD)
    if overload is not None:
        if len(overload) != 1 or not 1 <= overload[0] <= 3:
            raise MalformedPacket("bad option 52 (overload) %r" % overload)
        # RFC 2131 section 4.1: options, then file, then sname.
        if overload[0] & OVERLOAD_FILE:
            _parse_options(data, _FILE_AT, _FILE_AT + 128, options)
            file = b""
        if overload[0] & OVERLOAD_SNAME:
            _parse_options(data, _SNAME_AT, _SNAME_AT + 64, options)
            sname = b""

    mtype = options.get(OPT_MESSAGE_TYPE)
    if mtype is not None and len(mtype) != 1:
        raise MalformedPacket("option 53 (message type) must be one byte, got %d" % len(mtype))

    if sname:
        sname = sname.split(b"\0", 1)[0]
    if file:
        file = file.split(b"\0", 1)[0]
    packet = _object_new(DhcpPacket)
    _set_dict(packet, "__dict__", {
        "op": op, "xid": xid, "chaddr": chaddr[:hlen], "htype": htype, "hlen": hlen, "hops": hops,
        "secs": secs, "flags": flags,
        "ciaddr": _ANY if ciaddr == _ZERO else _ntoa(ciaddr),
        "yiaddr": _ANY if yiaddr == _ZERO else _ntoa(yiaddr),
        "siaddr": _ANY if siaddr == _ZERO else _ntoa(siaddr),
        "giaddr": _ANY if giaddr == _ZERO else _ntoa(giaddr),
        "sname": sname, "file": file, "options": options,
    })
    return packet


def _addr(dotted: str) -> bytes:
    return _ZERO if dotted == _ANY else _aton(dotted)


def _put_option(parts: list, code: int, value: bytes) -> None:
    if not 0 < code < 255:
        raise ValueError("option code %r cannot carry a value" % (code,))
    size = len(value)
    if size <= 255:
        parts.append(_CODE_LEN(code, size))
        parts.append(value)
        return
    for at in range(0, size, 255):  # RFC 3396: split long options
        chunk = value[at:at + 255]
        parts.append(_CODE_LEN(code, len(chunk)))
        parts.append(chunk)


def encode(packet: DhcpPacket) -> bytes:
    """Encode a message; option 53 goes first, then the others in mapping order.

    Raises ValueError (a programming error, not a wire problem) when a field
    does not fit: ``sname`` over 63 bytes, ``file`` over 127, ``chaddr`` over 16.
    """
    if len(packet.sname) > 63:
        raise ValueError("sname is longer than 63 bytes")
    if len(packet.file) > 127:
        raise ValueError("file is longer than 127 bytes; send it as option 67 instead")
    if len(packet.chaddr) > 16:
        raise ValueError("chaddr is longer than 16 bytes")
    parts = [_HEADER.pack(
        packet.op, packet.htype, packet.hlen, packet.hops, packet.xid & 0xFFFFFFFF,
        packet.secs, packet.flags,
        _addr(packet.ciaddr), _addr(packet.yiaddr), _addr(packet.siaddr), _addr(packet.giaddr),
        packet.chaddr, packet.sname, packet.file, MAGIC_COOKIE,
    )]
    options = packet.options
    mtype = options.get(OPT_MESSAGE_TYPE)
    if mtype is not None:
        _put_option(parts, OPT_MESSAGE_TYPE, mtype)
    for code, value in options.items():
        if code != OPT_MESSAGE_TYPE:
            _put_option(parts, code, value)
    parts.append(_END)
    out = b"".join(parts)
    if len(out) < MIN_MESSAGE_LEN:
        out += bytes(MIN_MESSAGE_LEN - len(out))
    return out


def make_reply(request: DhcpPacket, options: dict, *, ciaddr: str = "0.0.0.0", yiaddr: str = "0.0.0.0",
               siaddr: str = "0.0.0.0", sname: bytes = b"", file: bytes = b"") -> DhcpPacket:
    """A BOOTREPLY to ``request`` (RFC 2131 table 3): same xid, flags, giaddr and hardware address.

    ``options`` should hold option 53; :func:`encode` writes it first.
    """
    packet = _object_new(DhcpPacket)
    _set_dict(packet, "__dict__", {
        "op": BOOTREPLY, "xid": request.xid, "chaddr": request.chaddr, "htype": request.htype,
        "hlen": request.hlen, "hops": 0, "secs": 0, "flags": request.flags,
        "ciaddr": ciaddr, "yiaddr": yiaddr, "siaddr": siaddr, "giaddr": request.giaddr,
        "sname": sname, "file": file, "options": options,
    })
    return packet
