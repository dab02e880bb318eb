# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's static network as kernel command-line arguments (pure, no I/O).

The spelling is the one dracut and systemd-network-generator (NixOS's
systemd initrd) read, and that people who have set up a diskless boot know::

    ifname=nixie0:52:54:00:12:34:01
    vlan=nixie0.20:nixie0
    ip=192.0.2.10::192.0.2.1:255.255.255.0:node1:nixie0.20:none
    nameserver=192.0.2.53

``ifname=`` names the NIC by its MAC, so the other arguments need not guess
what the installer's kernel will call it; ``nixie-agent`` reads the same
arguments and applies them where no initrd did. Every value is re-checked
here, and an argument holds only letters, digits, ``.``, ``:``, ``=`` and
``-`` (:func:`.ipxe.render_script` checks them again), so nothing a hosts file
holds can reach the iPXE script as anything but plain text.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostNetwork, is_canonical_mac

# The name the NIC gets: short, so that "<name>.<vlan>" stays within the kernel's 15 characters, and
# outside the kernel's own eth<N> namespace (dracut refuses to rename onto a name the kernel may hand out).
# nix/module.nix keeps every DHCP client off "nixie*": the prefix is shared with it.
INTERFACE_NAME = "nixie0"
# Arguments the static network sets; an operator's own would contradict it.
NETWORK_PREFIXES = ("ip=", "ifname=", "vlan=", "nameserver=")
# A host name as the ip= argument carries it: one DNS label.
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Every character the arguments above can hold: none that iPXE or a shell would read as syntax.
_ARGUMENT = re.compile(r"^[a-z]+=[A-Za-z0-9.:-]*$")


def link_name(network: HostNetwork) -> str:
    """The interface that carries the address: the NIC itself, or its VLAN sub-interface."""
    if network.vlan is None:
        return INTERFACE_NAME
    return "%s.%d" % (INTERFACE_NAME, network.vlan)


def network_arguments(network: HostNetwork, host_name: str | None = None) -> list[str]:
    """The kernel arguments that bring ``network`` up with no DHCP, in the order an initrd applies them.

    ``host_name`` goes into ``ip=`` when it is a plain DNS label (a flake attribute with ``_`` is not,
    and is left out). Raises ValueError for a value that is not what a checked HostNetwork holds.
    """
    if not isinstance(network, HostNetwork):
        raise ValueError("a static network must be a HostNetwork record; got %r" % (network,))
    address = ipaddress.IPv4Interface(network.address)
    if not is_canonical_mac(network.interface):
        raise ValueError("interface %r is not a MAC in the one spelling" % (network.interface,))
    gateway = str(ipaddress.IPv4Address(network.gateway)) if network.gateway is not None else ""
    if network.vlan is not None and not (isinstance(network.vlan, int) and 1 <= network.vlan <= 4094):
        raise ValueError("vlan %r is not a VLAN ID (1-4094)" % (network.vlan,))
    hostname = host_name if isinstance(host_name, str) and _HOSTNAME.match(host_name) else ""
    link = link_name(network)
    arguments = ["ifname=%s:%s" % (INTERFACE_NAME, network.interface)]
    if network.vlan is not None:
        arguments.append("vlan=%s:%s" % (link, INTERFACE_NAME))
    arguments.append("ip=%s::%s:%s:%s:%s:none" % (address.ip, gateway, address.netmask, hostname, link))
    arguments += ["nameserver=%s" % ipaddress.ip_address(server) for server in network.nameservers]
    for argument in arguments:
        if not _ARGUMENT.match(argument):
            raise ValueError("static network argument %r holds a character iPXE could read as syntax" % argument)
    return arguments


def conflicting_arguments(tokens: Sequence[str]) -> list[str]:
    """The operator's kernel arguments that a static network sets itself (ip=, ifname=, vlan=, nameserver=)."""
    return [token for token in tokens if token.startswith(NETWORK_PREFIXES)]
