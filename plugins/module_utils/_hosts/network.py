# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's static network (hosts.json ``network``): the :class:`HostNetwork` record and its checks.

The installer of a host with a ``network`` comes up with that address (and
VLAN) from its kernel command line, with no DHCP at all. The checks that the
schema cannot make (an address with its prefix, a gateway on that subnet, an
``ip`` that agrees) live here, each told as a sentence naming the file, host
and field. This file is private to the collection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts.mac import is_canonical_mac, nic_mac_problem, normalize_mac

VLAN_IDS = (1, 4094)


@dataclass(frozen=True)
class HostNetwork:
    """A checked static network: ``address`` (IPv4 with prefix, ``192.0.2.10/24``), ``gateway`` (None: the
    segment has no router), ``nameservers``, ``vlan`` (None: untagged) and ``interface`` (the MAC of the NIC
    to configure, canonical spelling).

    The constructor refuses what :func:`network_from_entry` would have refused (ValueError): a record is
    made only from checked text.
    """

    address: str
    interface: str
    gateway: str | None = None
    nameservers: tuple[str, ...] = ()
    vlan: int | None = None

    def __post_init__(self) -> None:
        problems = ["%s %s" % pair for pair in _value_problems(self.address, self.gateway, self.nameservers, self.vlan)]
        if not is_canonical_mac(self.interface):
            problems.append("interface %r is not a MAC in the one spelling (lower-case, colon-separated)" % (self.interface,))
        if problems:
            raise ValueError("not a checked static network: %s" % "; ".join(problems))
        object.__setattr__(self, "address", str(ipaddress.IPv4Interface(self.address)))
        object.__setattr__(self, "nameservers", tuple(self.nameservers))

    @property
    def ip(self) -> str:
        """The address without its prefix."""
        return str(ipaddress.IPv4Interface(self.address).ip)

    @property
    def netmask(self) -> str:
        """The prefix as a dotted netmask (what ``ip=`` on a kernel command line takes)."""
        return str(ipaddress.IPv4Interface(self.address).netmask)

    def to_dict(self) -> dict[str, Any]:
        """The record as hosts.json spells it (:meth:`from_dict` reads it back)."""
        data: dict[str, Any] = {"address": self.address, "interface": self.interface}
        if self.gateway is not None:
            data["gateway"] = self.gateway
        if self.nameservers:
            data["nameservers"] = list(self.nameservers)
        if self.vlan is not None:
            data["vlan"] = self.vlan
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostNetwork:
        """The HostNetwork :meth:`to_dict` wrote (ValueError when it is not one)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("address"), str):
            raise ValueError("not a static network record (a mapping with address and interface): %r" % (data,))
        return cls(address=data["address"], interface=data.get("interface"), gateway=data.get("gateway"),
                   nameservers=tuple(data.get("nameservers") or ()), vlan=data.get("vlan"))


def _value_problems(address: object, gateway: object, nameservers: Sequence[object], vlan: object) -> list[str]:
    """What is wrong with the values of a network, without where they came from (the caller says that)."""
    problems = []
    subnet = None
    if not isinstance(address, str) or "/" not in address:
        problems.append(("address", "%r has no prefix length; write the address with its prefix, such as 192.0.2.10/24"
                         % (address,)))
    else:
        try:
            interface = ipaddress.IPv4Interface(address)
        except ValueError:
            problems.append(("address", "%r is not an IPv4 address with a prefix length, such as 192.0.2.10/24 (a static "
                             "network is IPv4 only: the kernel's ip= argument has no IPv6 form)" % (address,)))
        else:
            subnet = interface.network
            if subnet.prefixlen < 31 and interface.ip in (subnet.network_address, subnet.broadcast_address):
                problems.append(("address", "%s is the %s address of %s, not a host's; pick another address" % (
                    interface.ip, "network" if interface.ip == subnet.network_address else "broadcast", subnet)))
    if gateway is not None:
        try:
            router = ipaddress.IPv4Address(gateway)
        except ValueError:
            problems.append(("gateway", "%r is not an IPv4 address" % (gateway,)))
        else:
            if subnet is not None and router not in subnet:
                problems.append(("gateway", "%s is outside %s, the subnet of the address; a gateway must be reachable "
                                 "on the link: fix the gateway or the address's prefix" % (router, subnet)))
            elif subnet is not None and router == ipaddress.IPv4Interface(address).ip:
                problems.append(("gateway", "%s is the host's own address; name the segment's router" % router))
    for index, server in enumerate(nameservers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            problems.append(("nameservers[%d]" % index, "%r is not an IP address (the installer never resolves a "
                             "name to find its name server)" % (server,)))
    if vlan is not None and (isinstance(vlan, bool) or not isinstance(vlan, int) or not VLAN_IDS[0] <= vlan <= VLAN_IDS[1]):
        problems.append(("vlan", "%r is not a VLAN ID (a whole number from 1 to 4094); leave vlan out for an untagged "
                         "link" % (vlan,)))
    return problems


def network_from_entry(entry: Mapping[str, Any], host_mac: str, ip: str | None, where: Any) -> tuple[HostNetwork | None, list[str]]:
    """The HostNetwork of a schema-valid hosts.json ``network`` entry, or None and every problem found.

    ``host_mac``: the host's canonical MAC (the NIC configured when ``interface`` is not given); ``ip``: the
    host's normalised ``ip`` (None when it has none), which must be the network's address when both are
    given. ``where(field)`` names the file, host and field of a problem.
    """
    problems = ["%s: %s" % (where("network." + field), sentence)
                for field, sentence in _value_problems(entry.get("address"), entry.get("gateway"),
                                                       entry.get("nameservers", ()), entry.get("vlan"))]
    interface = host_mac
    if "interface" in entry:
        interface = normalize_mac(entry["interface"])
        problem = nic_mac_problem(interface) if interface else "it is not a MAC address; write six hex octets such as bc:24:11:d0:28:34"
        if problem:
            problems.append("%s: %r cannot be used: %s" % (where("network.interface"), entry["interface"], problem))
    if problems:
        return None, problems
    network = HostNetwork(address=entry["address"], interface=interface, gateway=entry.get("gateway"),
                          nameservers=tuple(str(ipaddress.ip_address(s)) for s in entry.get("nameservers", ())),
                          vlan=entry.get("vlan"))
    if ip is not None and ip != network.ip:
        return None, ["%s: ip is %s but network.address is %s; they are the same machine's address, so make them agree "
                      "(or drop ip: the network's address is where the installer is)" % (where("network.address"), ip, network.address)]
    return network, []
