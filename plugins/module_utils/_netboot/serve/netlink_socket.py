# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rtnetlink socket that asks the kernel which MAC owns a peer's address.

Both requests are *gets*, which the kernel answers to any user, so the lookup
keeps working after the server has dropped its privileges. The messages are
built and read by :mod:`..wire.netlink`; this is the one small class that
does I/O.
"""

from __future__ import annotations

import errno
import socket
import time

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.netlink import (
    NETLINK_EXT_ACK, SOL_NETLINK, UNREACHABLE_ERRNOS, Message, NetlinkError, Route, address_text, neighbour_request, packed_address,
    parse_neighbour, parse_route, reply, route_request)
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry

_RECV_SIZE = 65536
DISCARD_PORT = 9


def _scope_index(scope: str) -> int:
    """An IPv6 zone (``eth0`` or ``3``) -> its interface index; ValueError when there is no such interface."""
    if scope.isdigit():
        return int(scope)
    try:
        return socket.if_nametoindex(scope)
    except OSError:
        raise ValueError("the zone %r of the address names no interface of this machine" % scope) from None


class RouteNeighbours:
    """One NETLINK_ROUTE socket; blocking, with a short timeout; usable without privileges.

    The kernel handles an rtnetlink request inside the ``send`` call, so the
    answer is queued before ``recv`` runs and the event loop blocks for
    microseconds, not for the timeout; the timeout only bounds a kernel that
    does not answer. Not thread-safe (one caller: the event loop).
    """

    def __init__(self, timeout: float = 0.5) -> None:
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

    def __enter__(self) -> RouteNeighbours:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _ask(self, request: bytes, seq: int, what: str) -> Message:
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

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def route(self, ip: object) -> Route | None:
        """The kernel's :class:`Route` to ``ip``, or None when it refuses one (no route, unreachable, prohibit).

        A blackhole route is refused with EINVAL, which is also the answer to a bad
        request, so it stays a NetlinkError (a TCP peer behind one could not connect).

        ``ip`` in any spelling; an IPv4-mapped IPv6 address is looked up as IPv4, and an
        IPv6 zone (``fe80::1%eth0``) asks for the route through that interface.
        ValueError when ``ip`` is not an address; NetlinkError on any other refusal.
        """
        family, packed, scope = packed_address(ip)
        oif = _scope_index(scope) if scope else None
        seq = self._next_seq()
        what = "RTM_GETROUTE %s" % address_text(family, packed)
        try:
            message = self._ask(route_request(address_text(family, packed), seq, oif), seq, what)
        except NetlinkError as exc:
            if exc.errno in UNREACHABLE_ERRNOS:
                return None
            raise
        return parse_route(message, what)

    def neighbour(self, ip: object, ifindex: int) -> Entry | None:
        """The kernel's neighbour entry of ``ip`` on interface ``ifindex``, or None when it has none.

        An :class:`~..wire.neighbours.Entry` with ``ip`` normalised (IPv4-mapped -> IPv4), ``dev``
        the interface's name, ``mac`` only when the kernel sends to it, ``state``
        the kernel's state name. ValueError on a bad address or index.
        """
        family, packed, dummy_scope = packed_address(ip)
        text = address_text(family, packed)
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

    def drain(self) -> None:
        """Nothing to do: every answer is asked for (NeighbourWatch keeps answers and applies notices here)."""

    def ifname(self, ifindex: int) -> str | None:
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
    def resolve(ip: object) -> None:
        """Make the kernel resolve ``ip`` (ARP or NDP) when it has no entry yet; never raises.

        One empty datagram to the discard port from an unprivileged UDP socket:
        a send on a connected UDP socket needs the peer's link-layer address,
        so the kernel asks for it. The caller waits a little and looks again.
        """
        try:
            family, packed, scope = packed_address(ip)
            target = (address_text(family, packed), DISCARD_PORT)
            if family == socket.AF_INET6:
                target += (0, _scope_index(scope) if scope else 0)
            with socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as udp:
                udp.setblocking(False)
                udp.connect(target)
                udp.send(b"")
        except (OSError, ValueError):
            pass
