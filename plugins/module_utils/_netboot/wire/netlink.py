# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which MAC owns a peer's address, asked of the kernel per request over rtnetlink.

The server checks a boot or phone-home request on its event loop, so the
lookup is two netlink round trips on one socket (``RTM_GETROUTE`` for the
peer, then ``RTM_GETNEIGH`` for its address on the interface the kernel
routes it through): no subprocess, no table dump. Both are *gets*, which the
kernel answers to any user, so the lookup keeps working after the server has
dropped its privileges.

Written on the standard library (``socket.AF_NETLINK``, ``struct``) because
no package on the collection's allowed list speaks rtnetlink, and pyroute2,
the one that does, is not on it.

Split as the house likes it: :func:`route_request`, :func:`neighbour_request`,
:func:`reply`, :func:`parse_route` and :func:`parse_neighbour` are pure (bytes
in, values out; tested on replies captured from the real kernel), and
:class:`RouteNeighbours` is the one small class that does I/O. Anything the
kernel sends that does not parse is a :class:`NetlinkError`, never a
``struct.error`` or ``IndexError``. Single gets need Linux 5.0 (neighbours)
and 2.6 (routes). This file is private to the collection: its interface may
change.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry

__all__ = ("Route", "RouteNeighbours", "NetlinkError", "route_request", "neighbour_request", "reply",
           "parse_route", "parse_neighbour", "split")

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
_RECV_SIZE = 65536
DISCARD_PORT = 9


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


def _packed(ip):
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


def _address_text(family, packed):
    """The normalised text of a packed address, spelt as neighbours.normal_address spells it."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, packed)
    return str(ipaddress.IPv6Address(packed))


def _scope_index(scope):
    """An IPv6 zone (``eth0`` or ``3``) -> its interface index; ValueError when there is no such interface."""
    if scope.isdigit():
        return int(scope)
    try:
        return socket.if_nametoindex(scope)
    except OSError:
        raise ValueError("the zone %r of the address names no interface of this machine" % scope) from None


def _attribute(kind, data):
    length = _ATTR.size + len(data)
    return _ATTR.pack(length, kind) + data + b"\x00" * (-length % 4)


def _message(kind, seq, body):
    return _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST, seq & 0xFFFFFFFF, 0) + body


# ---------------------------------------------------------------- requests (pure)


def route_request(ip, seq, oif=None):
    """The ``RTM_GETROUTE`` request for ``ip`` (bytes as ``ip route get`` sends them).

    A host route lookup (``dst_len`` 32 or 128) with ``RTA_DST``, plus ``RTA_OIF``
    when ``oif`` is given (a link-local IPv6 address is only meaningful on one
    interface). Like iproute2, IPv4 sets ``RTM_F_LOOKUP_TABLE`` (the answer then
    names the table the route came from); IPv6 answers with it anyway.
    """
    family, packed, dummy_scope = _packed(ip)
    flags = RTM_F_LOOKUP_TABLE if family == socket.AF_INET else 0
    body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, flags) + _attribute(RTA_DST, packed)
    if oif is not None:
        body += _attribute(RTA_OIF, _U32.pack(oif))
    return _message(RTM_GETROUTE, seq, body)


def neighbour_request(ip, ifindex, seq):
    """The ``RTM_GETNEIGH`` single get of ``ip`` on interface ``ifindex`` (as ``ip neigh get IP dev IF`` sends it)."""
    family, packed, dummy_scope = _packed(ip)
    if not isinstance(ifindex, int) or isinstance(ifindex, bool) or ifindex <= 0:
        raise ValueError("ifindex %r is not an interface index (a positive integer)" % (ifindex,))
    # pad, state, flags and type stay 0: the kernel refuses a get that sets any of them.
    body = _NDMSG.pack(family, 0, 0, ifindex, 0, 0, 0) + _attribute(NDA_DST, packed)
    return _message(RTM_GETNEIGH, seq, body)


# ---------------------------------------------------------------- replies (pure)


def split(data, what="netlink"):
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


def attributes(data, what="netlink"):
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


def _error_text(message):
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


def reply(data, seq, what="netlink"):
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


def parse_route(message, what="RTM_GETROUTE"):
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


def _gateway(family, packed, what):
    if _ADDRESS_LENGTHS.get(family) != len(packed):
        raise NetlinkError(errno.EBADMSG, "%s: a gateway of %d bytes for address family %d" % (what, len(packed), family))
    return _address_text(family, packed)


def _state_name(state):
    for bit, name in NUD_NAMES:
        if state & bit:
            return name
    return "NONE"


def parse_neighbour(message, dev=None, what="RTM_GETNEIGH"):
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
        mac = normalize_mac(":".join("%02x" % octet for octet in lladdr))
    ip = _address_text(family, packed)
    if family == socket.AF_INET6 and packed.startswith(_MAPPED_PREFIX):
        ip = socket.inet_ntop(socket.AF_INET, packed[12:])
    return ifindex, Entry(ip=ip, dev=dev, mac=mac, state=name)


# ---------------------------------------------------------------- I/O


class RouteNeighbours:
    """One NETLINK_ROUTE socket; blocking, with a short timeout; usable without privileges.

    The kernel handles an rtnetlink request inside the ``send`` call, so the
    answer is queued before ``recv`` runs and the event loop blocks for
    microseconds, not for the timeout; the timeout only bounds a kernel that
    does not answer. Not thread-safe (one caller: the event loop).
    """

    def __init__(self, timeout=0.5):
        self.timeout = timeout
        self._names = {}
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            try:
                # The kernel's own words in errors ("Neighbour entry not found"); Linux 4.12+, optional.
                self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:
                pass
            self._sock.bind((0, 0))
            self._sock.settimeout(timeout)
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._sock.close()

    def _ask(self, request, seq, what):
        deadline = time.monotonic() + self.timeout
        try:
            self._sock.settimeout(self.timeout)
            self._sock.send(request)
            while True:
                data = self._sock.recv(_RECV_SIZE)
                message = reply(data, seq, what)
                if message is not None:
                    return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                self._sock.settimeout(remaining)
        except socket.timeout:
            raise NetlinkError(errno.ETIMEDOUT, "%s: no answer from the kernel within %g s" % (what, self.timeout)) from None
        except NetlinkError:
            raise
        except OSError as exc:
            raise NetlinkError(exc.errno, "%s: %s" % (what, exc.strerror or exc)) from None

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def route(self, ip):
        """The kernel's :class:`Route` to ``ip``, or None when it refuses one (no route, unreachable, prohibit).

        A blackhole route is refused with EINVAL, which is also the answer to a bad
        request, so it stays a NetlinkError (a TCP peer behind one could not connect).

        ``ip`` in any spelling; an IPv4-mapped IPv6 address is looked up as IPv4, and an
        IPv6 zone (``fe80::1%eth0``) asks for the route through that interface.
        ValueError when ``ip`` is not an address; NetlinkError on any other refusal.
        """
        family, packed, scope = _packed(ip)
        oif = _scope_index(scope) if scope else None
        seq = self._next_seq()
        what = "RTM_GETROUTE %s" % _address_text(family, packed)
        try:
            message = self._ask(route_request(_address_text(family, packed), seq, oif), seq, what)
        except NetlinkError as exc:
            if exc.errno in UNREACHABLE_ERRNOS:
                return None
            raise
        return parse_route(message, what)

    def neighbour(self, ip, ifindex):
        """The kernel's neighbour entry of ``ip`` on interface ``ifindex``, or None when it has none.

        An :class:`~.neighbours.Entry` with ``ip`` normalised (IPv4-mapped -> IPv4), ``dev``
        the interface's name, ``mac`` only when the kernel sends to it, ``state``
        the kernel's state name. ValueError on a bad address or index.
        """
        family, packed, dummy_scope = _packed(ip)
        text = _address_text(family, packed)
        seq = self._next_seq()
        what = "RTM_GETNEIGH %s on ifindex %s" % (text, ifindex)
        request = neighbour_request(text, ifindex, seq)
        try:
            message = self._ask(request, seq, what)
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        answered_index, entry = parse_neighbour(message, self.ifname(ifindex), what)
        if answered_index != ifindex or entry.ip != text:
            raise NetlinkError(errno.EBADMSG, "%s: the kernel answered with %s on ifindex %d"
                               % (what, entry.ip, answered_index))
        return entry

    def drain(self):
        """Nothing to do: every answer is asked for (NeighbourWatch keeps answers and applies notices here)."""

    def ifname(self, ifindex):
        """The name of interface ``ifindex``, or None when there is none (cached once found)."""
        name = self._names.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except (OSError, TypeError, ValueError, OverflowError):
                return None
            self._names[ifindex] = name
        return name

    @staticmethod
    def resolve(ip):
        """Make the kernel resolve ``ip`` (ARP or NDP) when it has no entry yet; never raises.

        One empty datagram to the discard port from an unprivileged UDP socket:
        a send on a connected UDP socket needs the peer's link-layer address,
        so the kernel asks for it. The caller waits a little and looks again.
        """
        try:
            family, packed, scope = _packed(ip)
            target = (_address_text(family, packed), DISCARD_PORT)
            if family == socket.AF_INET6:
                target += (0, _scope_index(scope) if scope else 0)
            with socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as udp:
                udp.setblocking(False)
                udp.connect(target)
                udp.send(b"")
        except (OSError, ValueError):
            pass
