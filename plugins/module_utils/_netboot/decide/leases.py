# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the address-giving DHCPv4 server answers (``dhcp: addresses``), as pure functions.

The server is then the DHCP server of the inventory's MACs, and of nothing
else, for all of their DHCP: the firmware, iPXE, the installer's own OS and
the installed system, as long as the run lasts. Every MAC has one address at
a time, given by the lease book (``state/leases.py``): its hosts.json ``ip``
or one from the module's ranges. A lease is keyed by the MAC (``chaddr``),
never by the client identifier (option 61): an installed NixOS asks with a
new DUID-based identifier and must still get its address back.

RFC 2131 section 4.3, server side:

* DHCPDISCOVER -> DHCPOFFER of the MAC's address (a requested address,
  option 50, is only a hint and is not honoured when it differs);
* DHCPREQUEST, told apart by its fields (section 4.3.2):
  - SELECTING (server identifier present): ours -> DHCPACK if it asks for
    the MAC's address, else DHCPNAK; another server's -> silence (the client
    chose that server);
  - INIT-REBOOT (requested address, no ciaddr): the MAC's address -> ACK,
    anything else (another address, another network) -> NAK;
  - RENEWING/REBINDING (ciaddr, no requested address): the MAC's address ->
    ACK unicast to it, anything else -> NAK;
* DHCPDECLINE (the client found the address in use) and DHCPRELEASE -> no
  answer; the book records them;
* DHCPINFORM -> DHCPACK with the segment's options and no address or lease
  time, unicast to ciaddr.

Offers and ACKs to a client without an address go to the broadcast address
(section 4.1 allows it: unicasting to yiaddr needs an ARP entry a UDP socket
cannot make), NAKs always. Relayed requests (giaddr set) are not served: the
addresses mode serves the segment it is attached to. A network-boot client
gets its boot file in the same answer (``policy.BootFields``, made by
``policy.boot_fields``), so firmware needs no second server.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import policy

__all__ = (
    "LeaseConfig", "LeaseHost", "LeaseAnswer", "answer",
    "OFFER", "BIND", "NAK", "RELEASE", "DECLINE", "INFORM",
)

# What an answer does to the lease book, by the event it is recorded as.
OFFER = events.LEASE_OFFERED
BIND = events.LEASE_ACKED
NAK = events.LEASE_REFUSED
RELEASE = events.LEASE_RELEASED
DECLINE = events.LEASE_DECLINED
INFORM = events.LEASE_INFORMED

# Reasons to stay silent, beside policy's IGNORE_NOT_REQUEST / IGNORE_UNKNOWN_HOST / IGNORE_MESSAGE_TYPE.
IGNORE_RELAYED = "relayed"
IGNORE_NO_MAC = "no-mac"
IGNORE_OTHER_SERVER = "other-server"
IGNORE_NO_ADDRESS = "no-address"
IGNORE_MALFORMED_REQUEST = "malformed-request"
IGNORE_NOT_HELD = "not-held"

_ANY = "0.0.0.0"
_BROADCAST = policy.Destination("255.255.255.255", dhcp.CLIENT_PORT, True)
_OPT_SUBNET_MASK = 1
_OPT_ROUTERS = 3
_OPT_DNS_SERVERS = 6
_OPT_BROADCAST_ADDRESS = 28
_OPT_LEASE_TIME = 51
_OPT_MESSAGE = 56
_OPT_RENEWAL_TIME = 58
_OPT_REBINDING_TIME = 59


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseConfig:
    """The segment the server gives addresses on.

    ``network`` is the served subnet (``10.0.0.0/24``), which holds
    ``server_ip`` and every router. ``lease_time`` is in seconds; clients
    renew at half of it (T1) and rebind at seven eighths (T2), RFC 2131's
    defaults, sent explicitly because some ROMs do not compute them.
    """

    server_ip: str
    network: str
    routers: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()
    lease_time: int = 3600

    def __post_init__(self) -> None:
        network = ipaddress.IPv4Network(self.network, strict=False)
        server = ipaddress.IPv4Address(self.server_ip)
        if server not in network:
            raise ValueError("the server address %s is outside the served subnet %s" % (server, network))
        for router in self.routers:
            if ipaddress.IPv4Address(router) not in network:
                raise ValueError("router %s is outside the served subnet %s" % (router, network))
        for name in self.dns_servers:
            ipaddress.IPv4Address(name)
        if not 60 <= self.lease_time <= 0xFFFFFFFE:
            raise ValueError("lease time %r is not between 60 s and 2^32-2 s" % (self.lease_time,))
        object.__setattr__(self, "network", str(network))
        object.__setattr__(self, "server_ip", str(server))

    def segment_options(self) -> dict[int, bytes]:
        """Mask, broadcast address, routers and DNS servers: what every ACK and OFFER carries."""
        network = ipaddress.IPv4Network(self.network)
        options = {
            _OPT_SUBNET_MASK: network.netmask.packed,
            _OPT_BROADCAST_ADDRESS: network.broadcast_address.packed,
        }
        if self.routers:
            options[_OPT_ROUTERS] = b"".join(socket.inet_aton(r) for r in self.routers)
        if self.dns_servers:
            options[_OPT_DNS_SERVERS] = b"".join(socket.inet_aton(d) for d in self.dns_servers)
        return options

    def lease_options(self) -> dict[int, bytes]:
        """Lease time, T1 and T2 (RFC 2131 section 4.4.5)."""
        return {
            _OPT_LEASE_TIME: self.lease_time.to_bytes(4, "big"),
            _OPT_RENEWAL_TIME: (self.lease_time // 2).to_bytes(4, "big"),
            _OPT_REBINDING_TIME: (self.lease_time * 7 // 8).to_bytes(4, "big"),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseHost:
    """What the decision needs about an inventory host: its MAC (canonical) and the address
    the lease book gives it now (None when its address was declined and no spare is left)."""

    mac: str
    address: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseAnswer:
    """``change`` is what the lease book records (OFFER, BIND, NAK, RELEASE, DECLINE, INFORM),
    for ``address``; ``packet`` (None for RELEASE and DECLINE) goes to ``destination``."""

    change: str
    address: str | None
    packet: dhcp.DhcpPacket | None = None
    destination: policy.Destination | None = None
    boot: policy.BootFields | None = None
    detail: str = ""

    def encode(self) -> bytes:
        return dhcp.encode(self.packet)


def answer(request: dhcp.DhcpPacket, host: LeaseHost | None, config: LeaseConfig,
           boot: policy.BootFields | None = None) -> policy.Ignore | LeaseAnswer:
    """The answer to ``request`` (decoded, received on port 67).

    ``host`` is the inventory host with ``request.mac`` (None when the MAC is
    not in the inventory); ``boot`` the boot part for a network-boot client
    that is still to boot (None for anything else: the installer's OS, the
    installed system, a finished host's firmware).
    """
    if request.op != dhcp.BOOTREQUEST:
        return policy.Ignore(policy.IGNORE_NOT_REQUEST, "BOOTREPLY from another server")
    if request.giaddr != _ANY:
        return policy.Ignore(IGNORE_RELAYED, "relayed by %s; the addresses mode serves its own segment only" % request.giaddr)
    mac = request.mac
    if mac is None:
        return policy.Ignore(IGNORE_NO_MAC, "hardware type %d, length %d is not Ethernet" % (request.htype, request.hlen))
    if host is None or host.mac != mac:
        return policy.Ignore(policy.IGNORE_UNKNOWN_HOST, "%s is not in the inventory" % mac)
    mtype = request.message_type
    if mtype == dhcp.DHCPDISCOVER:
        return _discover(request, host, config, boot)
    if mtype == dhcp.DHCPREQUEST:
        return _request(request, host, config, boot)
    if mtype == dhcp.DHCPDECLINE:
        return _decline(request, host, config)
    if mtype == dhcp.DHCPRELEASE:
        return _release(request, host, config)
    if mtype == dhcp.DHCPINFORM:
        return _inform(request, config, boot)
    return policy.Ignore(policy.IGNORE_MESSAGE_TYPE, "%s on port 67" % request.message_type_name)


def _discover(request: dhcp.DhcpPacket, host: LeaseHost, config: LeaseConfig,
              boot: policy.BootFields | None) -> policy.Ignore | LeaseAnswer:
    if host.address is None:
        return policy.Ignore(IGNORE_NO_ADDRESS, "%s has no address left to give (its address was declined)" % host.mac)
    packet = _lease_reply(request, dhcp.DHCPOFFER, host.address, config, boot)
    return LeaseAnswer(OFFER, host.address, packet, _destination(request), boot)


def _request(request: dhcp.DhcpPacket, host: LeaseHost, config: LeaseConfig,
             boot: policy.BootFields | None) -> policy.Ignore | LeaseAnswer:
    server_id, requested, ciaddr = request.server_id, request.requested_ip, request.ciaddr
    if server_id is not None:
        if server_id != config.server_ip:
            return policy.Ignore(IGNORE_OTHER_SERVER, "%s chose the server %s" % (host.mac, server_id))
        wanted = requested if requested is not None else ciaddr
        state = "SELECTING"
    elif requested is not None and ciaddr == _ANY:
        wanted, state = requested, "INIT-REBOOT"
    elif requested is None and ciaddr != _ANY:
        wanted, state = ciaddr, "RENEWING"
    else:
        return policy.Ignore(IGNORE_MALFORMED_REQUEST, "REQUEST with neither a server identifier, a requested address nor ciaddr")
    if host.address is None or wanted != host.address:
        why = _refusal(wanted, host.address, config)
        return LeaseAnswer(NAK, wanted, _nak(request, config, why), _BROADCAST, detail="%s: %s" % (state, why))
    packet = _lease_reply(request, dhcp.DHCPACK, host.address, config, boot)
    return LeaseAnswer(BIND, host.address, packet, _destination(request), boot, detail=state)


def _refusal(wanted: str, address: str | None, config: LeaseConfig) -> str:
    if ipaddress.IPv4Address(wanted) not in ipaddress.IPv4Network(config.network):
        return "%s is not on this network (%s)" % (wanted, config.network)
    if address is None:
        return "%s was declined and no other address is left" % wanted
    return "%s is not this client's address (%s is)" % (wanted, address)


def _decline(request: dhcp.DhcpPacket, host: LeaseHost, config: LeaseConfig) -> policy.Ignore | LeaseAnswer:
    if request.server_id != config.server_ip:
        return policy.Ignore(IGNORE_OTHER_SERVER, "DECLINE for the server %s" % request.server_id)
    declined = request.requested_ip
    if declined is None or declined != host.address:
        return policy.Ignore(IGNORE_NOT_HELD, "DECLINE of %s, which %s does not hold" % (declined, host.mac))
    return LeaseAnswer(DECLINE, declined, detail="another machine answers ARP for %s" % declined)


def _release(request: dhcp.DhcpPacket, host: LeaseHost, config: LeaseConfig) -> policy.Ignore | LeaseAnswer:
    if request.server_id is not None and request.server_id != config.server_ip:
        return policy.Ignore(IGNORE_OTHER_SERVER, "RELEASE for the server %s" % request.server_id)
    if request.ciaddr != host.address:
        return policy.Ignore(IGNORE_NOT_HELD, "RELEASE of %s, which %s does not hold" % (request.ciaddr, host.mac))
    return LeaseAnswer(RELEASE, request.ciaddr)


def _inform(request: dhcp.DhcpPacket, config: LeaseConfig, boot: policy.BootFields | None) -> policy.Ignore | LeaseAnswer:
    if request.ciaddr == _ANY:
        return policy.Ignore(IGNORE_MALFORMED_REQUEST, "INFORM without ciaddr")
    options = {dhcp.OPT_MESSAGE_TYPE: bytes((dhcp.DHCPACK,)), dhcp.OPT_SERVER_ID: socket.inet_aton(config.server_ip)}
    options.update(config.segment_options())
    siaddr, sname, file = _ANY, b"", b""
    if boot is not None:
        options.update(boot.options)
        siaddr, sname, file = boot.siaddr, boot.sname, boot.file
    # RFC 2131 section 4.3.5: no yiaddr and no lease time in the answer to an INFORM.
    packet = dhcp.make_reply(request, options, ciaddr=request.ciaddr, siaddr=siaddr, sname=sname, file=file)
    return LeaseAnswer(INFORM, request.ciaddr, packet, policy.Destination(request.ciaddr, dhcp.CLIENT_PORT), boot)


def _lease_reply(request: dhcp.DhcpPacket, reply_type: int, address: str, config: LeaseConfig,
                 boot: policy.BootFields | None) -> dhcp.DhcpPacket:
    options = {dhcp.OPT_MESSAGE_TYPE: bytes((reply_type,)), dhcp.OPT_SERVER_ID: socket.inet_aton(config.server_ip)}
    options.update(config.lease_options())
    options.update(config.segment_options())
    siaddr, sname, file = _ANY, b"", b""
    if boot is not None:
        options.update(boot.options)
        siaddr, sname, file = boot.siaddr, boot.sname, boot.file
    # RFC 2131 table 3: ciaddr 0 in an OFFER, the client's own (if any) in an ACK.
    ciaddr = request.ciaddr if reply_type == dhcp.DHCPACK else _ANY
    return dhcp.make_reply(request, options, ciaddr=ciaddr, yiaddr=address, siaddr=siaddr, sname=sname, file=file)


def _nak(request: dhcp.DhcpPacket, config: LeaseConfig, why: str) -> dhcp.DhcpPacket:
    options = {
        dhcp.OPT_MESSAGE_TYPE: bytes((dhcp.DHCPNAK,)),
        dhcp.OPT_SERVER_ID: socket.inet_aton(config.server_ip),
        _OPT_MESSAGE: why.encode("ascii", "replace")[:255],
    }
    return dhcp.make_reply(request, options)


def _destination(request: dhcp.DhcpPacket) -> policy.Destination:
    if request.ciaddr != _ANY:
        return policy.Destination(request.ciaddr, dhcp.CLIENT_PORT)
    return _BROADCAST
