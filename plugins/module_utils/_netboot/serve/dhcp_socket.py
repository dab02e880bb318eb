# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxyDHCP sockets (IPv4, ports 67 and 4011): bound, read in batches, handed to the server.

Each datagram is decoded by :mod:`..wire.dhcp` and handed to
:meth:`.server.NetbootServer.on_dhcp_request`, which asks
:mod:`..decide.policy` what to answer. DHCPv6 is :mod:`.server6`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Protocol

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp

log = logging.getLogger(__name__)


class DhcpServer(Protocol):
    """What an endpoint needs of the server that answers (serve/server.py): its counters and its answer."""

    counters: dict[str, int]

    def on_dhcp_request(self, endpoint: DhcpEndpoint, request: dhcp.DhcpPacket, source: tuple) -> None:
        """Answer ``request``, received from ``source`` on ``endpoint``."""


# A DHCP datagram is at most a few hundred bytes; anything bigger than this is not one.
MAX_DHCP_DATAGRAM = 4096
# The DHCP sockets' receive buffer: a rack powering on at once sends thousands of DISCOVERs.
# A bounded queue in the kernel (about 3,000 requests), taken even above net.core.rmem_max when
# the server may (CAP_NET_ADMIN, which binding port 67 as root brings).
DHCP_RECEIVE_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# Datagrams handled per wake-up of a DHCP socket: a burst is drained without one trip through
# the event loop per request, and TFTP and HTTP still get the loop back between batches.
DHCP_READ_BATCH = 64


class DhcpEndpoint(asyncio.DatagramProtocol):
    """One proxyDHCP socket (port 67 or 4011): decode, ask the policy, send what it says."""

    def __init__(self, server: DhcpServer, port: int) -> None:
        self.server = server
        self.port = port
        self.transport = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) > MAX_DHCP_DATAGRAM:
            return
        try:
            request = dhcp.decode(data)
        except dhcp.MalformedPacket:
            self.server.counters["dhcp_malformed"] += 1
            return
        self.server.on_dhcp_request(self, request, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies; nothing to do but not crash.
        log.debug("DHCP socket on port %d: %s", self.port, exc)


class BatchedDatagramTransport:
    """A datagram socket that hands its protocol up to ``batch`` datagrams per wake-up.

    asyncio's own datagram transport reads one datagram per trip through the
    event loop, which under a burst costs more than answering the request
    (see docs/performance.md). Sending is one ``sendto``: a full send buffer
    raises (BlockingIOError), and the caller counts a lost answer that the
    client's retransmission recovers, instead of queueing without bound.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.DatagramProtocol,
                 batch: int = DHCP_READ_BATCH) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._batch = batch
        loop.add_reader(sock.fileno(), self._read_ready)
        protocol.connection_made(self)

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        received = self._protocol.datagram_received
        for dummy in range(self._batch):
            try:
                data, address = recvfrom(MAX_DHCP_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            received(data, address)

    def sendto(self, data: bytes, address: tuple) -> None:
        if self._sock is not None:  # else closed: a repeated offer that fell due after the stop
            self._sock.sendto(data, address)

    def close(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None


def set_receive_buffer(sock: socket.socket, size: int) -> None:
    """SO_RCVBUFFORCE when allowed (root), else SO_RCVBUF (capped by net.core.rmem_max)."""
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:
            continue


def open_socket(bind_ip: str, port: int, interface: str | None = None) -> socket.socket:
    """A non-blocking UDP socket bound to ``(bind_ip, port)`` for proxyDHCP; OSError (the socket closed) when it cannot be."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        set_receive_buffer(sock, DHCP_RECEIVE_BUFFER)
        if interface:
            # Bound to the serving interface: broadcasts leave through it, and a
            # DHCP server on another interface of this machine is not disturbed.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((bind_ip, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
