# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pxe_server's DHCPv4 mode (``dhcp``): the address-giving mode planned from the module's options.

``plan_address_mode`` turns the options and the serving interface's address
into the engine's ``AddressMode`` (segment settings and which host gets which
address) or refuses with every problem named; it binds nothing.
``other_address_servers`` looks for another DHCP server on the segment before
the run answers as one: two address servers on a segment fight over every
client.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils import _argspec
from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.lease_plan import (
    LeasePlanError, WantedLease, plan_addresses,
)
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.leases import LeaseConfig
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.lease_server import AddressMode
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._preflight import site_dhcp

MODES = _argspec.DHCP_MODES
ADDRESS_ONLY_OPTIONS = ("dhcp_ranges", "dhcp_routers", "dhcp_dns_servers")


class DhcpModeError(Exception):
    """The DHCPv4 options cannot be served as given; the message says what to change."""


def plan_address_mode(params: Mapping[str, Any], hosts: Sequence[Host], server_ip: str | None,
                      prefixlen: int | None) -> AddressMode | None:
    """The addresses mode's settings, None for ``proxy`` and ``off``.

    ``hosts``: the run's hosts; ``server_ip``/``prefixlen``:
    the serving IPv4 address and its prefix length on the interface, whose
    subnet is the one served.
    """
    mode = params.get("dhcp") or ServerOptions.dhcp_mode
    if mode not in MODES:
        raise DhcpModeError("dhcp must be proxy, addresses or off, got %r" % (mode,))
    if mode != "addresses":
        given = [name for name in ADDRESS_ONLY_OPTIONS if params.get(name)]
        if given:
            raise DhcpModeError("%s only apply to dhcp=addresses (dhcp is %s); drop them or set dhcp to addresses"
                                % (", ".join(given), mode))
        return None
    if server_ip is None or prefixlen is None:
        raise DhcpModeError("dhcp=addresses needs an IPv4 address on the serving interface (its subnet is the one "
                            "served); add one, or use dhcp6=addresses for an IPv6-only segment")
    network = ipaddress.IPv4Interface("%s/%d" % (server_ip, prefixlen)).network
    routers = tuple(params.get("dhcp_routers") or ())
    dns_servers = tuple(params.get("dhcp_dns_servers") or ())
    lease_time = params.get("dhcp_lease_time") or ServerOptions.dhcp_lease_time
    try:
        config = LeaseConfig(server_ip, str(network), routers, dns_servers, lease_time)
    except ValueError as exc:
        raise DhcpModeError("dhcp_routers, dhcp_dns_servers or dhcp_lease_time: %s" % exc) from None
    wanted = [WantedLease(host.name, host.mac, _ipv4_of(host), host.network.address.split("/")[0] if host.network else None)
              for host in hosts]
    try:
        plan = plan_addresses(wanted, str(network), (server_ip,) + routers, params.get("dhcp_ranges") or ())
    except LeasePlanError as exc:
        raise DhcpModeError("dhcp=addresses: %s" % exc) from None
    return AddressMode(config, plan)


def _ipv4_of(host: Host) -> str | None:
    """The host's hosts.json ``ip`` when it is IPv4 (an IPv6 ``ip`` is no DHCPv4 lease)."""
    if host.ip is None or ":" in host.ip:
        return None
    return host.ip


def other_address_servers(interface: str, wait: float = site_dhcp.DEFAULT_WAIT) -> list[str]:
    """Who else gives addresses on ``interface``: one DISCOVER of a made-up MAC, the answers heard
    within ``wait`` seconds (proxyDHCP servers, which give none, are not counted)."""
    try:
        answers = site_dhcp.exchange(interface, wait)
    except OSError as exc:
        raise DhcpModeError("could not look for another DHCP server on %s: %s; run as root (a raw frame needs "
                            "CAP_NET_RAW), or set dhcp_probe to false" % (interface, exc.strerror or exc)) from None
    return [answer.describe() for answer in answers if answer.gives_address]
