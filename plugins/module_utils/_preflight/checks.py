# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every check of the preflight in order, from the module's parameters to the rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils import _pxe_server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions
from ansible_collections.nixie.metal.plugins.module_utils._preflight import (
    firewall, ipxe, keys, ports, report, site_dhcp, tools)


def arches_of(hosts: Iterable[Mapping[str, Any]] | None) -> dict[str, list[str]]:
    """``{arch: [names]}`` of the machines (a list of dicts with name and arch, as pxe_server takes them)."""
    arches = {}
    for index, host in enumerate(hosts or []):
        arches.setdefault(host.get("arch") or "x86_64-linux", []).append(str(host.get("name") or "hosts[%d]" % index))
    return arches


def interface_row(links: list, params: Mapping[str, Any]) -> tuple[report.Row, str | None, str | None]:
    """``(row, interface, IPv4 address or None)``: the serving interface, chosen as pxe_server chooses it."""
    try:
        interface, address, ipv6 = _pxe_server.choose_addresses(links, params)
    except _pxe_server.ControlError as exc:
        return report.failed(report.INTERFACE, "%s (ports, firewall and site DHCP are checked once it is fixed)" % exc,
                             "set nixie_interface (and nixie_address) to the controller's interface on the machines' segment"), None, None
    parts = [address] if address else []
    if ipv6.get("server_ip6"):
        parts.append(ipv6["server_ip6"])
    return report.passed(report.INTERFACE, "%s %s" % (interface, ", ".join(parts))), interface, address


def run(params: Mapping[str, Any], links: list | None = None) -> list[report.Row]:
    """All rows for the module's ``params``; ``links`` (``ip -j addr`` output) is read when not given."""
    rows = []
    if params.get("check_nix", True):
        rows.append(tools.read_nix())
    rows.append(tools.read_nixos_anywhere(params.get("nixos_anywhere") or "nixos-anywhere", bool(params.get("build_on"))))
    rows.append(keys.read_ssh_client())
    rows.append(keys.read_key(params.get("ssh_key")))
    rows.append(ipxe.read_ipxe(arches_of(params.get("hosts")), params.get("ipxe_dir")))
    try:
        links = links if links is not None else _pxe_server.read_links()
    except _pxe_server.ControlError as exc:
        rows.append(report.failed(report.INTERFACE, str(exc), "install iproute2"))
        return rows
    row, interface, address = interface_row(links, params)
    rows.append(row)
    if interface is None:
        return rows
    http_port = params.get("http_port") or ServerOptions.http_port
    rows.append(ports.read_ports(interface, address, http_port))
    rows.append(firewall.read_firewall(interface, http_port))
    if address is None:
        rows.append(report.passed(report.SITE_DHCP, "not asked: %s has no IPv4 address (an IPv6-only run)" % interface))
    else:
        rows.append(site_dhcp.read_site_dhcp(interface, params.get("dhcp_wait") or site_dhcp.DEFAULT_WAIT,
                                             params.get("dhcp") or ServerOptions.dhcp_mode))
    return rows
