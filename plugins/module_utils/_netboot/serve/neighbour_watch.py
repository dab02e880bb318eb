# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's neighbours and routes as the server last heard of them, kept current by the kernel's own notices.

Asking the kernel per request (:class:`~.netlink_socket.RouteNeighbours`, two round
trips, about 45 µs with the Python around them) is most of what the trust
check costs when a rack phones home at once (docs/performance.md). The kernel
also *tells* every change of its neighbour table and its routes to whoever
listens on rtnetlink's multicast groups (allowed without privileges), and it
queues that notice before it processes the next frame. So a request whose
bytes have been read was preceded in our socket's queue by the notice of every
neighbour change that came before it: reading that queue dry, then looking in
a dictionary, gives the same answer as asking, at a fraction of the cost.

What is kept: a neighbour entry once asked for (then changed or removed only by
notices), and the route to a peer (all routes are forgotten on any route or
address notice). A peer never asked about is asked about. If the queue
overflowed (``ENOBUFS``: notices were lost), everything kept is forgotten and
asked again. No answer is ever kept past a notice that changes it, so an
attacker who rewrites an entry is seen on the next request, as when asking.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
from collections.abc import Container
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import netlink
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import netlink_socket
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry, normal_address

# rtnetlink multicast groups (linux/rtnetlink.h RTMGRP_*): neighbours, IPv4/IPv6 addresses and routes.
RTMGRP_NEIGH = 0x4
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
RTM_DELNEIGH = 29
NEIGHBOUR_NOTICES = frozenset((netlink.RTM_NEWNEIGH, RTM_DELNEIGH))
# Notices that can change which route (and so which interface and gateway) reaches a peer.
ROUTE_NOTICES = frozenset((netlink.RTM_NEWROUTE, 25, 20, 21))  # RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWADDR, RTM_DELADDR
RECEIVE_BUFFER = 4 * 1024 * 1024
_NLMSGHDR = struct.Struct("=IH")  # the netlink header's length and type
_NLMSGHDR_LEN = 16
# The netlink header, the ndmsg (family, ifindex, state) and the first attribute's length and type.
_NDMSG_HEAD = struct.Struct("=16xBxxxiHxxHH")
_FAMILIES = {socket.AF_INET: 4, socket.AF_INET6: 16}
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
# NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT: the kernel sends to the entry's address (netlink.MAC_STATES).
_MAC_STATE_BITS = 0x02 | 0x04 | 0x08 | 0x10 | 0x80
MAX_KEPT = 65536


def notices(data: bytes, wanted: Container[tuple[int, str]] | None = None) -> list[tuple[str, Any, Any]]:
    """One datagram of notices -> [("neighbour", (ifindex, ip), (state, lladdr) or None) | ("routes", None, None)] (pure).

    A neighbour added or changed gives its NUD state bits and its link-layer
    address's bytes (or None); one removed gives None; anything that can change
    a route gives ``("routes", ...)``. ``wanted``: the neighbour keys whose
    changes matter (None: all). A rack's connections make thousands of notices
    about entries nobody asked for, so those are read no further than their
    address: the kernel puts ``NDA_DST`` first (neigh_fill_info), and only a
    notice that does not is read attribute by attribute. Removals are always
    given. Messages that are neither are skipped, and so are neighbours of
    other families (a bridge's forwarding entries come as neighbour notices
    too); a datagram that does not parse raises NetlinkError.
    """
    found = []
    size = len(data)
    offset = 0
    while offset < size:
        if size - offset < _NLMSGHDR.size:
            raise netlink.NetlinkError(errno.EBADMSG, "rtnetlink notice: %d stray bytes at offset %d" % (size - offset, offset))
        length, kind = _NLMSGHDR.unpack_from(data, offset)
        end = offset + length
        if length < _NLMSGHDR_LEN or end > size:
            raise netlink.NetlinkError(errno.EBADMSG, "rtnetlink notice: a message at offset %d claims %d bytes, %d are there"
                                       % (offset, length, size - offset))
        if kind in NEIGHBOUR_NOTICES:
            change = _neighbour_notice(data, offset, end, kind, wanted)
            if change is not None:
                found.append(change)
        elif kind in ROUTE_NOTICES:
            found.append(("routes", None, None))
        offset += (length + 3) & ~3
    return found


def _neighbour_notice(data: bytes, offset: int, end: int, kind: int,
                      wanted: Container[tuple[int, str]] | None) -> tuple[str, Any, Any] | None:
    """The ("neighbour", key, change) of the RTM_NEWNEIGH/RTM_DELNEIGH at ``offset``, or None when it does not matter."""
    if end - offset < _NDMSG_HEAD.size:
        return None
    family, ifindex, state, first_length, first_type = _NDMSG_HEAD.unpack_from(data, offset)
    width = _FAMILIES.get(family)
    if width is None:
        return None
    if first_type & 0x3FFF == netlink.NDA_DST and first_length == 4 + width and offset + _NDMSG_HEAD.size + width <= end:
        start = offset + _NDMSG_HEAD.size
        packed = data[start:start + width]
        attrs = None
    else:
        attrs = netlink.attributes(data[offset + _NDMSG_HEAD.size - 4:end], "rtnetlink notice")
        packed = attrs.get(netlink.NDA_DST)
        if packed is None or len(packed) != width:
            raise netlink.NetlinkError(errno.EBADMSG, "rtnetlink notice: a neighbour without an address")
    if family == socket.AF_INET6 and packed.startswith(_MAPPED_PREFIX):
        family, packed = socket.AF_INET, packed[12:]
    key = (ifindex, socket.inet_ntop(family, packed))
    if kind == RTM_DELNEIGH:
        return ("neighbour", key, None)
    if wanted is not None and key not in wanted:
        return None
    if attrs is None:
        attrs = netlink.attributes(data[offset + _NDMSG_HEAD.size - 4:end], "rtnetlink notice")
    return ("neighbour", key, (state, attrs.get(netlink.NDA_LLADDR)))


def state_name(state: int) -> str:
    """The name of the first NUD state bit set (netlink.NUD_NAMES), or NONE."""
    return next((name for bit, name in netlink.NUD_NAMES if state & bit), "NONE")


class NeighbourWatch:
    """:class:`~.netlink_socket.RouteNeighbours`' interface (route, neighbour, ifname, resolve, close), answered from notices.

    ``lookup``: the RouteNeighbours asked on a miss (made here when None).
    ``resyncs`` counts the times notices were lost and everything kept was forgotten.
    """

    def __init__(self, lookup: netlink_socket.RouteNeighbours | None = None, receive_buffer: int = RECEIVE_BUFFER) -> None:
        self._lookup = lookup or netlink_socket.RouteNeighbours()
        self._neighbours = {}
        self._routes = {}
        self.resyncs = 0
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                                   socket.NETLINK_ROUTE)
        try:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            except OSError:
                pass
            self._sock.bind((0, GROUPS))
            # Asking whether anything is queued costs a third of a receive that finds nothing (which raises).
            self._queued = select.poll()
            self._queued.register(self._sock.fileno(), select.POLLIN)
        except BaseException:
            self._sock.close()
            self._lookup.close()
            raise

    def _forget(self) -> None:
        self._neighbours.clear()
        self._routes.clear()

    def drain(self) -> None:
        """Apply every notice queued so far (the kernel queued them before the request now being judged).

        Once per checked request, before :meth:`route` and :meth:`neighbour`.
        """
        while self._queued.poll(0):   # lost notices show as POLLERR, and the receive then raises ENOBUFS
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise netlink.NetlinkError(exc.errno, "rtnetlink notices: %s" % (exc.strerror or exc)) from None
                self.resyncs += 1   # notices were lost: nothing kept can be trusted
                self._forget()
                continue
            self.apply(data)

    def apply(self, data: bytes) -> None:
        """Apply one datagram of notices; one that does not parse makes everything kept be forgotten."""
        try:
            found = notices(data, self._neighbours)
        except netlink.NetlinkError:
            self.resyncs += 1
            self._forget()
            return
        for kind, key, change in found:
            if kind == "routes":
                self._routes.clear()
            elif change is None:
                self._neighbours.pop(key, None)
            elif key in self._neighbours:
                # Only entries already asked for are kept: a flood of strangers grows nothing here. An entry whose
                # MAC and usability did not change (REACHABLE -> STALE -> DELAY ...) is left as it is.
                state, lladdr = change
                mac = lladdr.hex(":") if state & _MAC_STATE_BITS and lladdr and len(lladdr) == 6 else None
                kept = self._neighbours[key]
                if kept.mac != mac:
                    self._neighbours[key] = Entry(ip=key[1], dev=kept.dev, mac=mac, state=state_name(state))

    def route(self, ip: object) -> netlink.Route | None:
        """The route to ``ip`` as last asked, unless a notice since said routes changed. Call :meth:`drain` first."""
        key = str(ip)
        if key not in self._routes:
            if len(self._routes) >= MAX_KEPT:
                self._routes.clear()
            self._routes[key] = self._lookup.route(ip)
        return self._routes[key]

    def neighbour(self, ip: object, ifindex: int) -> Entry | None:
        """The entry of ``ip`` on ``ifindex`` as the notices left it, else asked. Call :meth:`drain` first."""
        key = (ifindex, normal_address(ip))
        entry = self._neighbours.get(key)
        if entry is None:
            entry = self._lookup.neighbour(ip, ifindex)
            if entry is not None:
                if len(self._neighbours) >= MAX_KEPT:
                    self._neighbours.clear()
                self._neighbours[key] = entry
        return entry

    def ifname(self, ifindex: int) -> str | None:
        return self._lookup.ifname(ifindex)

    @staticmethod
    def resolve(ip: object) -> None:
        netlink_socket.RouteNeighbours.resolve(ip)

    def close(self) -> None:
        self._sock.close()
        self._lookup.close()
