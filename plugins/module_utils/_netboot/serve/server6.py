# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IPv6 side of the netboot server: DHCPv6 (547, 4011), TFTP over IPv6, router advertisements.

:class:`Ipv6Side` is started and closed by :class:`server.NetbootServer`
when the run has an IPv6 address; it shares the server's registry, TFTP
files and client address book. Decisions are policy6.decide6 (pure); this
file only owns sockets: the DHCPv6 socket joined to ff02::1:2 on the
serving interface, the 4011 socket EDK2 sends its boot-server request to,
a TFTP listener on the IPv6 address and, in ``addresses`` mode, a raw
ICMPv6 socket that answers router solicitations and advertises every
:data:`RA_INTERVAL` seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
from collections.abc import Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, dhcp6, events, ndp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import policy, policy6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import tftp

log = logging.getLogger(__name__)

MAX_DHCP6_DATAGRAM = 4096
DHCP_RECEIVE_BUFFER = 4 * 1024 * 1024
# Unsolicited router advertisements: a few quickly at start, then this often (RFC 4861 allows 4-1800 s).
RA_INTERVAL = 10.0
RA_INITIAL = (0.0, 1.0, 2.0)
ICMP6_FILTER = 1  # <netinet/icmp6.h>; Python's socket module has no name for it
SIOCGIFHWADDR = 0x8927  # <linux/sockios.h>
# How many client DUID -> MAC pairs to remember (EDK2's 4011 request comes from a global address).
MAX_KNOWN_DUIDS = 4096
# EDK2 sends its boot-server request (UDP 4011) and only then opens the socket the answer must
# reach; an answer that beats it is dropped and the firmware gives up after 3 s (PXE-E16). Seen
# in about one boot in three under TCG: the answer is sent again after these delays (seconds).
PROXY_REPLY_REPEATS = (0.3, 1.0)
# Ignore reasons that mean "this host of ours asked, and we cannot boot it as it is".
REFUSALS_WORTH_TELLING = frozenset((policy.IGNORE_NO_BOOT_FILE, policy.IGNORE_ARCH_MISMATCH, policy.IGNORE_UNSUPPORTED_ARCH))


class Ipv6Error(Exception):
    """The IPv6 side cannot start; the message says why and what to do."""


class Dhcp6Endpoint(asyncio.DatagramProtocol):
    """One DHCPv6 socket (547 or 4011): decode and hand over to the IPv6 side."""

    def __init__(self, side: Ipv6Side, port: int) -> None:
        self.side = side
        self.port = port
        self.transport = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) > MAX_DHCP6_DATAGRAM:
            return
        try:
            message = dhcp6.decode(data)
        except dhcp6.MalformedPacket:
            self.side.server.counters["dhcp_malformed"] += 1
            return
        self.side.on_request(self, message, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DHCPv6 socket on port %d: %s", self.port, exc)


def interface_mac(interface: str) -> str:
    """The interface's MAC address (for the server's DUID-LL and the RA's link-layer option).

    Asked of the kernel (SIOCGIFHWADDR) rather than read from /sys, which shows
    another network namespace's interfaces unless it was remounted.
    """
    request = struct.pack("16s16x", interface.encode()[:15])
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)
    except OSError as exc:
        raise Ipv6Error("cannot read the MAC address of interface %s: %s" % (interface, exc.strerror or exc)) from None
    return dhcp.format_mac(answer[18:24])


def _udp6_socket(host: str, port: int, interface: str, ifindex: int, group: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DHCP_RECEIVE_BUFFER)
        except OSError:
            pass
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((host, port))
        if group is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class RouterAdvertiser:
    """Sends router advertisements on one interface (``addresses`` mode only)."""

    def __init__(self, interface: str, ifindex: int, mac: str, prefix: str) -> None:
        self.interface = interface
        self.ifindex = ifindex
        self.packet = ndp.router_advertisement(mac, prefix)
        self.sock = None
        self.task = None
        self.sent = 0

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            # RFC 4861: hop limit 255 both ways, so a receiver knows the RA is from its own link.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            # Router solicitations go to all-routers; receive only those.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            socket.inet_pton(socket.AF_INET6, ndp.ALL_ROUTERS) + struct.pack("@I", self.ifindex))
            blocked = [0xFFFFFFFF] * 8
            blocked[ndp.ICMPV6_ROUTER_SOLICITATION >> 5] &= ~(1 << (ndp.ICMPV6_ROUTER_SOLICITATION & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("@8I", *blocked))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._on_readable)
        self.task = loop.create_task(self._periodic())

    def advertise(self) -> None:
        try:
            self.sock.sendto(self.packet, (ndp.ALL_NODES, 0, 0, self.ifindex))
            self.sent += 1
        except OSError as exc:
            log.warning("cannot send a router advertisement on %s: %s", self.interface, exc)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(1500)
        except OSError:
            return
        if ndp.is_router_solicitation(data):
            self.advertise()

    async def _periodic(self) -> None:
        previous = 0.0
        for at in RA_INITIAL:
            await asyncio.sleep(at - previous)
            previous = at
            self.advertise()
        while True:
            await asyncio.sleep(RA_INTERVAL)
            self.advertise()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


class Ipv6Side:
    """DHCPv6, TFTP over IPv6 and (in ``addresses`` mode) router advertisements for one server."""

    def __init__(self, server: Any, config6: policy6.ServerConfig6, interface: str, tftp_files: Mapping[str, bytes],
                 tftp_port: int = 69, dhcp_port: int = dhcp6.SERVER_PORT, proxy_port: int = dhcp6.PXE_PORT) -> None:
        self.server = server
        self.config = config6
        self.interface = interface
        self.tftp_files = tftp_files
        self.tftp_port = tftp_port
        self.dhcp_port = dhcp_port
        self.proxy_port = proxy_port
        self.transports = []
        self.tftp = None
        self.advertiser = None
        self.duid_macs = {}  # client DUID -> MAC, learnt from link-local (EUI-64) sources

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            ifindex = socket.if_nametoindex(self.interface)
        except OSError:
            raise Ipv6Error("interface %s does not exist" % self.interface) from None
        # 547 receives multicast; 4011 is asked at the address of the boot file URL, and must
        # answer from it (the host may hold other addresses of the prefix, e.g. by SLAAC).
        for host, port, group in (("::", self.dhcp_port, dhcp6.ALL_SERVERS), (self.config.server_ip, self.proxy_port, None)):
            try:
                sock = _udp6_socket(host, port, self.interface, ifindex, group)
            except OSError as exc:
                raise Ipv6Error(_bind_message("UDP", port, "DHCPv6", exc)) from None
            transport, dummy = await loop.create_datagram_endpoint(lambda port=port: Dhcp6Endpoint(self, port), sock=sock)
            self.transports.append(transport)
        self.tftp = tftp.TftpServer(self.tftp_files, on_event=self.server._on_tftp_event)
        try:
            await self.tftp.start(host=self.config.server_ip, port=self.tftp_port)
        except OSError as exc:
            raise Ipv6Error(_bind_message("UDP", self.tftp_port, "TFTP over IPv6", exc)) from None
        if self.config.mode == policy6.MODE_ADDRESSES:
            self.advertiser = RouterAdvertiser(self.interface, ifindex, interface_mac(self.interface), self.config.prefix)
            try:
                self.advertiser.open()
            except OSError as exc:
                raise Ipv6Error("cannot send router advertisements on %s: %s" % (self.interface, exc)) from None

    async def close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.transports = []
        if self.tftp is not None:
            await self.tftp.close()
            self.tftp = None
        if self.advertiser is not None:
            await self.advertiser.close()
            self.advertiser = None

    def host_view(self, mac: str) -> policy.HostView | None:
        registry = self.server.registry
        if mac is None or not registry.is_known(mac):
            return None
        return policy.HostView(mac=mac, arch=registry.arch(mac), finished=registry.is_finished(mac))

    def _snoop(self, message: dhcp6.Message, source: tuple, mac: str) -> None:
        """Remember the addresses a client uses (for TFTP and HTTP attribution), like DHCPv4's option 50."""
        remember = self.server._remember_client
        ip = source[0].split("%", 1)[0]
        if not ip.lower().startswith("fe80:"):
            remember(ip, mac)
        for ia in message.all(dhcp6.OPT_IA_NA):
            try:
                for address in dhcp6.parse_ia_na(ia)[3]:
                    remember(address, mac)
            except dhcp6.MalformedPacket:
                continue

    def _learn(self, duid: bytes | None, mac: str | None) -> None:
        if duid is None:
            return
        if len(self.duid_macs) >= MAX_KNOWN_DUIDS and duid not in self.duid_macs:
            self.duid_macs.pop(next(iter(self.duid_macs)))
        self.duid_macs[duid] = mac

    def _send(self, endpoint: Dhcp6Endpoint, wire: bytes, destination: tuple, mac: str | None) -> bool:
        if endpoint.transport is None or endpoint.transport.is_closing():
            return False
        try:
            endpoint.transport.sendto(wire, destination)
        except OSError as exc:
            self.server.counters["dhcp_send_errors"] += 1
            log.warning("cannot answer %s on DHCPv6 port %d: %s", mac, endpoint.port, exc)
            return False
        return True

    def _note_ignored(self, mac: str | None, decision: policy.Ignore) -> None:
        """Like the DHCPv4 side: strangers are counted, refused hosts of ours get the reason in their timeline."""
        if mac is None:
            return
        registry = self.server.registry
        if decision.reason in (policy.IGNORE_UNKNOWN_HOST, policy.IGNORE_FINISHED):
            registry.record(mac, events.DHCP_IGNORED, reason=decision.reason)
        elif registry.is_known(mac) and decision.reason in REFUSALS_WORTH_TELLING:
            registry.record(mac, events.DHCP_REFUSED, reason=decision.reason, detail=decision.detail, family="ipv6")

    def on_request(self, endpoint: Dhcp6Endpoint, message: dhcp6.Message, source: tuple) -> None:
        counters = self.server.counters
        mac, how = dhcp6.client_mac(message, source[0], self.duid_macs) if message.relay is None else (None, None)
        if mac is not None:
            self._snoop(message, source, mac)
            if how != dhcp6.MAC_LEARNT:
                self._learn(message.client_id, mac)
        decision = policy6.decide6(message, endpoint.port, source, self.host_view(mac), self.config, self.duid_macs)
        if isinstance(decision, policy.Ignore):
            counters["dhcp_ignored"] += 1
            self._note_ignored(mac, decision)
            return
        if decision.address is not None:
            self.server._remember_client(decision.address, decision.client.mac)
        wire = decision.encode()
        if not self._send(endpoint, wire, source, decision.client.mac):
            return
        if endpoint.port == self.proxy_port:
            loop = asyncio.get_running_loop()
            for delay in PROXY_REPLY_REPEATS:
                loop.call_later(delay, self._send, endpoint, wire, source, decision.client.mac)
        counters["dhcp_answered"] += 1
        if decision.event is not None:
            details = dict(port=endpoint.port, family="ipv6", arch=decision.client.arch,
                           firmware=decision.client.firmware, boot_file=decision.boot_file)
            if decision.address is not None:
                details["address"] = decision.address
            self.server.registry.record(decision.client.mac, decision.event, **details)


def _bind_message(protocol: str, port: int, role: str, exc: OSError) -> str:
    return "cannot bind %s/%d (%s) on IPv6: %s; another DHCPv6 or TFTP server on this machine? Stop it, or set dhcp6=off" % (
        protocol, port, role, exc.strerror or exc)
