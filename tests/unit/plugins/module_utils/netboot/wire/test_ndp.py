# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The router advertisement of the DHCPv6 addresses mode, read back with scapy (no sockets)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import ndp


def test_router_advertisement_says_use_dhcpv6_and_is_no_default_router():
    inet6 = pytest.importorskip("scapy.layers.inet6")
    packet = ndp.router_advertisement("02:00:00:00:00:fe", "fd77::1/64")
    ra = inet6.ICMPv6ND_RA(packet)
    assert (ra.type, ra.M, ra.O, ra.routerlifetime, ra.chlim) == (134, 1, 1, 0, 64)
    lladdr = ra[inet6.ICMPv6NDOptSrcLLAddr]
    assert lladdr.lladdr == "02:00:00:00:00:fe"
    prefix = ra[inet6.ICMPv6NDOptPrefixInfo]
    assert (prefix.prefix, prefix.prefixlen, prefix.L, prefix.A) == ("fd77::", 64, 1, 1)
    assert (prefix.validlifetime, prefix.preferredlifetime) == (7200, 3600)


def test_router_solicitations_are_recognised():
    assert ndp.is_router_solicitation(bytes((133, 0, 0, 0, 0, 0, 0, 0)))
    assert not ndp.is_router_solicitation(bytes((134, 0, 0, 0, 0, 0, 0, 0)))
    assert not ndp.is_router_solicitation(b"\x85")
