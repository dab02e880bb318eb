# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rtnetlink messages for "which MAC owns a peer's address": requests built, replies read.

The server checks a boot or phone-home request on its event loop, so the
lookup is two netlink round trips on one socket (``RTM_GETROUTE`` for the
peer, then ``RTM_GETNEIGH`` for its address on the interface the kernel
routes it through): no subprocess, no table dump. This file is the wire side
of it: :func:`route_request`, :func:`neighbour_request`, :func:`reply`,
:func:`parse_route` and :func:`parse_neighbour` are pure (bytes in, values
out; tested on replies captured from the real kernel). The socket that
carries them is :class:`..serve.netlink_socket.RouteNeighbours`.

Written on the standard library (``socket.AF_NETLINK``, ``struct``) because
no package on the collection's allowed list speaks rtnetlink, and pyroute2,
the one that does, is not on it.

Anything the kernel sends that does not parse is a :class:`NetlinkError`,
never a ``struct.error`` or ``IndexError``. Single gets need Linux 5.0
(neighbours) and 2.6 (routes). This file is private to the collection: its
interface may change.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from ansible_collections.nixie.metal.plugins.module_utils._hosts import mac_from_octets
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry

__all__ = ("Route", "NetlinkError", "route_request", "neighbour_request", "reply",
           "parse_route", "parse_neighbour", "split", "packed_address", "address_text")

# linux/netlink.h
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
# linux/rtnetlink.h
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30
RTM_F_LOOKUP_TABLE = 0x1000
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_VIA = 18
# linux/neighbour.h
NDA_DST = 1
NDA_LLADDR = 2

# rtm_type values, by index (RTN_UNSPEC = 0 ... RTN_XRESOLVE = 11).
RTN_NAMES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
             "unreachable", "prohibit", "throw", "nat", "xresolve")
# ndm_state bits in the order iproute2 prints them, so a combined state reads as `ip neigh` shows it first.
NUD_NAMES = ((0x01, "INCOMPLETE"), (0x02, "REACHABLE"), (0x04, "STALE"), (0x08, "DELAY"), (0x10, "PROBE"),
             (0x20, "FAILED"), (0x40, "NOARP"), (0x80, "PERMANENT"))
# The states in which the kernel sends to the entry's link-layer address (NUD_VALID without NUD_NOARP,
# whose address is not learnt from the segment); the same set as neighbours.VALID_STATES.
MAC_STATES = frozenset(("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"))
# What RTM_GETROUTE answers when there is no way to the address: no route (IPv4 and IPv6),
# an `unreachable` route (IPv4), a `prohibit` route (both).
UNREACHABLE_ERRNOS = frozenset((errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES))

_HEADER = struct.Struct("=IHHII")   # nlmsghdr: len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BBHiHBB")  # family, pad1, pad2, ifindex, state, flags, type
_ATTR = struct.Struct("=HH")        # rtattr / nlattr: len, type
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_U16 = struct.Struct("=H")
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_ADDRESS_LENGTHS = {socket.AF_INET: 4, socket.AF_INET6: 16}


class NetlinkError(OSError):
    """The kernel refused a request, or answered something that is not its reply; the message names the request."""


@dataclass(frozen=True)
class Route:
    """The kernel's answer to ``RTM_GETROUTE`` for one destination.

    ``kind``: ``local`` (an address of this machine, loopback included),
    ``unicast``, or another ``RTN_*`` name in lower case (``broadcast``,
    ``multicast``...). ``ifindex``: the output interface. ``gateway``: the
    next hop's normalised address, None when the destination is on-link.
    """

    kind: str
    ifindex: int | None
    gateway: str | None


@dataclass(frozen=True)
class Message:
    """One netlink message: the header's fields and its payload (the bytes after the header)."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


# ---------------------------------------------------------------- addresses


def packed_address(ip: object) -> tuple[int, bytes, str | None]:
    """``ip`` -> (family, packed address, scope text or None); an IPv4-mapped IPv6 address is IPv4.

    ValueError, naming the text, when it is not an address.
    """
    text = str(ip)
    scope = None
    if "%" in text:
        text, scope = text.split("%", 1)
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, text)
        except OSError:
            continue
        if family == socket.AF_INET6 and packed.startswith(_MAPPED_PREFIX):
            return socket.AF_INET, packed[12:], None
        return family, packed, scope if family == socket.AF_INET6 else None
    raise ValueError("%r is not an IPv4 or IPv6 address" % (ip,))


def address_text(family: int, packed: bytes) -> str:
    """The normalised text of a packed address, spelt as neighbours.normal_address spells it."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, packed)
    return str(ipaddress.IPv6Address(packed))


def _attribute(kind: int, data: bytes) -> bytes:
    length = _ATTR.size + len(data)
    return _ATTR.pack(length, kind) + data + b"\x00" * (-length % 4)


def _message(kind: int, seq: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST, seq & 0xFFFFFFFF, 0) + body


# ---------------------------------------------------------------- requests (pure)


def route_request(ip: object, seq: int, oif: int | None = None) -> bytes:
    """The ``RTM_GETROUTE`` request for ``ip`` (bytes as ``ip route get`` sends them).

    A host route lookup (``dst_len`` 32 or 128) with ``RTA_DST``, plus ``RTA_OIF``
    when ``oif`` is given (a link-local IPv6 address is only meaningful on one
    interface). Like iproute2, IPv4 sets ``RTM_F_LOOKUP_TABLE`` (the answer then
    names the table the route came from); IPv6 answers with it anyway.
    """
    family, packed, dummy_scope = packed_address(ip)
    flags = RTM_F_LOOKUP_TABLE if family == socket.AF_INET else 0
    body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, flags) + _attribute(RTA_DST, packed)
    if oif is not None:
        body += _attribute(RTA_OIF, _U32.pack(oif))
    return _message(RTM_GETROUTE, seq, body)


def neighbour_request(ip: object, ifindex: int, seq: int) -> bytes:
    """The ``RTM_GETNEIGH`` single get of ``ip`` on interface ``ifindex`` (as ``ip neigh get IP dev IF`` sends it)."""
    family, packed, dummy_scope = packed_address(ip)
    if not isinstance(ifindex, int) or isinstance(ifindex, bool) or ifindex <= 0:
        raise ValueError("ifindex %r is not an interface index (a positive integer)" % (ifindex,))
    # pad, state, flags and type stay 0: the kernel refuses a get that sets any of them.
    body = _NDMSG.pack(family, 0, 0, ifindex, 0, 0, 0) + _attribute(NDA_DST, packed)
    return _message(RTM_GETNEIGH, seq, body)


# ---------------------------------------------------------------- replies (pure)


def split(data: bytes, what: str = "netlink") -> list[Message]:
    """One datagram -> [:class:`Message`]; NetlinkError when its lengths do not add up."""
    data = bytes(data)
    messages = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            raise NetlinkError(errno.EBADMSG, "%s: %d stray bytes after the last message at offset %d"
                               % (what, len(data) - offset, offset))
        length, kind, flags, seq, pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise NetlinkError(errno.EBADMSG, "%s: a message at offset %d claims %d bytes, %d are there"
                               % (what, offset, length, len(data) - offset))
        messages.append(Message(kind, flags, seq, pid, data[offset + _HEADER.size:offset + length]))
        offset += (length + 3) & ~3
    return messages


def attributes(data: bytes, what: str = "netlink") -> dict[int, bytes]:
    """The rtattr list of a payload -> {type: bytes} (the last of a repeated type wins); NetlinkError on garbage."""
    found = {}
    offset = 0
    while len(data) - offset >= _ATTR.size:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > len(data):
            raise NetlinkError(errno.EBADMSG, "%s: an attribute at offset %d claims %d bytes, %d are there"
                               % (what, offset, length, len(data) - offset))
        # The top bits are NLA_F_NESTED and NLA_F_NET_BYTEORDER, not part of the type.
        found[kind & 0x3FFF] = data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def _error_text(message: Message) -> str:
    """The kernel's own words in an NLMSG_ERROR with extended ack TLVs, or ''."""
    if not message.flags & NLM_F_ACK_TLVS or len(message.payload) < 4 + _HEADER.size:
        return ""
    if message.flags & NLM_F_CAPPED:
        tail = 4 + _HEADER.size
    else:
        tail = 4 + _HEADER.unpack_from(message.payload, 4)[0]
    try:
        text = attributes(message.payload[(tail + 3) & ~3:]).get(NLMSGERR_ATTR_MSG, b"")
    except NetlinkError:
        return ""
    return text.split(b"\x00", 1)[0].decode("utf-8", "replace")


def reply(data: bytes, seq: int, what: str = "netlink") -> Message | None:
    """The message answering request ``seq`` in one datagram, or None when none of them does.

    Messages for other sequence numbers (a late answer to an earlier request
    that timed out) are skipped. An ``NLMSG_ERROR`` for ``seq`` raises
    :class:`NetlinkError` with the kernel's errno and, when it sent them, its
    words; an acknowledgement (errno 0) or ``NLMSG_DONE`` without an answer is
    a NetlinkError too (a get always answers with data).
    """
    for message in split(data, what):
        if message.seq != seq or message.type in (NLMSG_NOOP, NLMSG_OVERRUN):
            continue
        if message.type == NLMSG_ERROR:
            if len(message.payload) < 4:
                raise NetlinkError(errno.EBADMSG, "%s: an error message of %d bytes" % (what, len(message.payload)))
            code = -_I32.unpack_from(message.payload)[0]
            if code == 0:
                raise NetlinkError(errno.EBADMSG, "%s: the kernel acknowledged the request without answering it" % what)
            if code < 0:
                raise NetlinkError(errno.EBADMSG, "%s: an error message with errno %d" % (what, code))
            words = _error_text(message)
            raise NetlinkError(code, "%s: the kernel answered %s (%s)%s"
                               % (what, errno.errorcode.get(code, str(code)), os.strerror(code),
                                  ": " + words if words else ""))
        if message.type == NLMSG_DONE:
            raise NetlinkError(errno.EBADMSG, "%s: the kernel ended the answer without an entry" % what)
        return message
    return None


def parse_route(message: Message, what: str = "RTM_GETROUTE") -> Route:
    """An ``RTM_NEWROUTE`` :class:`Message` -> :class:`Route`; NetlinkError when it is not one."""
    if message.type != RTM_NEWROUTE or len(message.payload) < _RTMSG.size:
        raise NetlinkError(errno.EBADMSG, "%s: the answer is message type %d of %d bytes, not a route"
                           % (what, message.type, len(message.payload)))
    family, dummy_dst_len, dummy_src_len, dummy_tos, dummy_table, dummy_protocol, dummy_scope, kind, dummy_flags = \
        _RTMSG.unpack_from(message.payload)
    attrs = attributes(message.payload[_RTMSG.size:], what)
    ifindex = None
    if RTA_OIF in attrs:
        if len(attrs[RTA_OIF]) != 4:
            raise NetlinkError(errno.EBADMSG, "%s: RTA_OIF of %d bytes" % (what, len(attrs[RTA_OIF])))
        ifindex = _U32.unpack(attrs[RTA_OIF])[0]
    gateway = None
    if RTA_GATEWAY in attrs:
        gateway = _gateway(family, attrs[RTA_GATEWAY], what)
    elif RTA_VIA in attrs and len(attrs[RTA_VIA]) >= 2:
        # RFC 5549: an IPv4 route through an IPv6 next hop (struct rtvia: family, address).
        gateway = _gateway(_U16.unpack_from(attrs[RTA_VIA])[0], attrs[RTA_VIA][2:], what)
    name = RTN_NAMES[kind] if kind < len(RTN_NAMES) else "type%d" % kind
    return Route(kind=name, ifindex=ifindex, gateway=gateway)


def _gateway(family: int, packed: bytes, what: str) -> str:
    if _ADDRESS_LENGTHS.get(family) != len(packed):
        raise NetlinkError(errno.EBADMSG, "%s: a gateway of %d bytes for address family %d" % (what, len(packed), family))
    return address_text(family, packed)


def _state_name(state: int) -> str:
    for bit, name in NUD_NAMES:
        if state & bit:
            return name
    return "NONE"


def parse_neighbour(message: Message, dev: str | None = None, what: str = "RTM_GETNEIGH") -> tuple[int, Entry]:
    """An ``RTM_NEWNEIGH`` :class:`Message` -> (ifindex, :class:`~.neighbours.Entry` with ``dev``).

    ``mac`` is set only in a state where the kernel sends to it (REACHABLE,
    STALE, DELAY, PROBE, PERMANENT); NOARP entries carry no evidence, and an
    address that is not a MAC (another link type) is None too.
    """
    if message.type != RTM_NEWNEIGH or len(message.payload) < _NDMSG.size:
        raise NetlinkError(errno.EBADMSG, "%s: the answer is message type %d of %d bytes, not a neighbour"
                           % (what, message.type, len(message.payload)))
    family, dummy_pad1, dummy_pad2, ifindex, state, dummy_flags, dummy_type = _NDMSG.unpack_from(message.payload)
    attrs = attributes(message.payload[_NDMSG.size:], what)
    packed = attrs.get(NDA_DST)
    if packed is None or _ADDRESS_LENGTHS.get(family) != len(packed):
        raise NetlinkError(errno.EBADMSG, "%s: the neighbour has no address of family %d" % (what, family))
    name = _state_name(state)
    mac = None
    lladdr = attrs.get(NDA_LLADDR)
    if lladdr and name in MAC_STATES:
        mac = mac_from_octets(lladdr)
    ip = address_text(family, packed)
    if family == socket.AF_INET6 and packed.startswith(_MAPPED_PREFIX):
        ip = socket.inet_ntop(socket.AF_INET, packed[12:])
    return ifindex, Entry(ip=ip, dev=dev, mac=mac, state=name)
