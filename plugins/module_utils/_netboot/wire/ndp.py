# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Router advertisements for the DHCPv6 ``addresses`` mode (pure: bytes in, bytes out).

On an isolated segment nobody else tells the machines to use DHCPv6, and
both UEFI firmware and iPXE only start DHCPv6 when a router advertisement
says so: iPXE does stateful DHCPv6 on the M flag, stateless on the O flag,
and nothing at all without either. So in ``addresses`` mode the server
advertises itself (RFC 4861 section 4.2) with:

* M and O set (addresses and boot options come from DHCPv6);
* router lifetime 0: it is not a default router, so no host sends it
  traffic for other networks;
* one prefix information option for the serving prefix, on-link (L) and
  autonomous (A): installers that do not run DHCPv6 (the NixOS installer's
  kernel, busybox) still get an address by SLAAC;
* the source link-layer address option.

The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket, so it is
left 0 here. This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ("router_advertisement", "is_router_solicitation", "ICMPV6_ROUTER_SOLICITATION", "ICMPV6_ROUTER_ADVERTISEMENT")

ICMPV6_ROUTER_SOLICITATION = 133
ICMPV6_ROUTER_ADVERTISEMENT = 134

FLAG_MANAGED = 0x80
FLAG_OTHER = 0x40
PREFIX_ON_LINK = 0x80
PREFIX_AUTONOMOUS = 0x40

OPT_SOURCE_LINK_LAYER = 1
OPT_PREFIX_INFORMATION = 3

ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"


def router_advertisement(mac: str, prefix: str, *, valid_lifetime: int = 7200, preferred_lifetime: int = 3600,
                         hop_limit: int = 64, autonomous: bool = True) -> bytes:
    """An RA (ICMPv6 type 134, checksum 0) advertising ``prefix`` with the M and O flags and router lifetime 0."""
    network = ipaddress.IPv6Network(prefix, strict=False)
    head = struct.pack("!BBHBBHII", ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, hop_limit, FLAG_MANAGED | FLAG_OTHER, 0, 0, 0)
    lladdr = struct.pack("!BB", OPT_SOURCE_LINK_LAYER, 1) + bytes.fromhex(mac.replace(":", ""))
    flags = PREFIX_ON_LINK | (PREFIX_AUTONOMOUS if autonomous else 0)
    prefix_option = struct.pack("!BBBBIII", OPT_PREFIX_INFORMATION, 4, network.prefixlen, flags,
                                valid_lifetime, preferred_lifetime, 0) + network.network_address.packed
    return head + lladdr + prefix_option


def is_router_solicitation(data: bytes) -> bool:
    """Whether an ICMPv6 message (as a raw socket hands it over) is a router solicitation."""
    return len(data) >= 8 and data[0] == ICMPV6_ROUTER_SOLICITATION and data[1] == 0
