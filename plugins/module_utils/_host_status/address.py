# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where is the machine? Its address from the kernel's neighbour table, or from an ARP sweep.

An IPv4 entry for the MAC that the kernel has just confirmed (REACHABLE, PERMANENT) is used as
is; otherwise an ARP sweep (scapy, imported only then) of the directly connected IPv4 subnets,
or of the given interface/subnet, asks every address who has it. A confirmed IPv6 neighbour is
used when no IPv4 address answers; a stale entry only when no sweep is possible (no scapy, no
root), with a warning. Parsing and choosing are pure; :func:`read_neighbours`,
:func:`read_addresses` and :func:`arp_sweep` are the edges, parameters of
:func:`discover_address` so it is tested without a network.

Private to the collection: the interface may change without notice.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils import _interfaces
from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._interfaces import addresses_of
from ansible_collections.nixie.metal.plugins.module_utils._host_status.common import HostStatusError, run

#: Seconds each subnet's ARP sweep waits for answers.
DEFAULT_ARP_TIMEOUT = 2.0
#: Largest subnet swept (addresses). Automatically chosen bigger subnets are skipped.
MAX_SWEEP = 4096
#: Neighbour states in which the kernel has the MAC/IP pair confirmed right now.
TRUSTED_NEIGHBOUR_STATES = frozenset(("REACHABLE", "PERMANENT", "NOARP"))
#: Neighbour states that mean "no such neighbour".
DEAD_NEIGHBOUR_STATES = frozenset(("FAILED", "INCOMPLETE", "NONE"))


def parse_neighbours(text: str) -> list[dict[str, Any]]:
    """``ip -j neigh show`` -> [{ip, dev, mac, states}] (mac lower-case or None)."""
    try:
        entries = json.loads(text or "[]")
    except ValueError as exc:
        raise HostStatusError("cannot read the output of 'ip -j neigh show': %s" % exc) from None
    result = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or "dst" not in entry:
            continue
        states = entry.get("state") or []
        if isinstance(states, str):
            states = [states]
        lladdr = entry.get("lladdr")
        result.append({
            "ip": str(entry["dst"]),
            "dev": entry.get("dev"),
            "mac": normalize_mac(lladdr) if lladdr else None,
            "states": [str(s).upper() for s in states],
        })
    return result


def _address_order(ip: str) -> tuple | None:
    """IPv4 first, then global IPv6; link-local IPv6 is never used (it needs a scope)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 6 and (addr.is_link_local or addr.is_multicast):
        return None
    return (addr.version, addr)


def neighbour_candidates(neighbours: Iterable[Mapping[str, Any]], mac: str,
                         interface: str | None = None) -> tuple[list[str], list[str]]:
    """Addresses the neighbour table holds for ``mac``: (trusted, stale), IPv4 first."""
    trusted, stale = [], []
    for entry in neighbours:
        if entry["mac"] != mac or (interface and entry["dev"] != interface):
            continue
        if _address_order(entry["ip"]) is None:
            continue
        states = set(entry["states"])
        if states & DEAD_NEIGHBOUR_STATES:
            continue
        (trusted if states & TRUSTED_NEIGHBOUR_STATES else stale).append(entry["ip"])

    def order(ips: Iterable[str]) -> list[str]:
        return sorted(dict.fromkeys(ips), key=_address_order)

    return order(trusted), order(stale)


def serving_ipv4(links: list) -> list[tuple[str, ipaddress.IPv4Interface]]:
    """``ip -j addr`` output (parsed) -> [(ifname, IPv4Interface)] of up, non-loopback interfaces."""
    return [(found.interface, found.ip) for found in addresses_of(links) if found.version == 4 and found.serves]


def sweep_targets(addresses: Sequence[tuple[str, ipaddress.IPv4Interface]], interface: str | None = None,
                  subnet: str | None = None, warnings: list[str] | None = None) -> list[tuple[str, ipaddress.IPv4Network]]:
    """Where to sweep: [(ifname, IPv4Network)], from the controller's addresses.

    ``subnet`` given: that subnet, on ``interface`` or else on the interface whose address
    lies in it. ``interface`` alone: its IPv4 subnets. Neither: every directly connected
    IPv4 subnet of at most :data:`MAX_SWEEP` addresses (bigger ones are skipped with a warning).
    """
    warnings = warnings if warnings is not None else []
    if subnet:
        try:
            network = ipaddress.ip_network(subnet, strict=False)
        except ValueError as exc:
            raise HostStatusError("subnet %r is not an IP network such as 192.168.1.0/24: %s" % (subnet, exc)) from None
        if network.version != 4:
            raise HostStatusError("subnet %s: an ARP sweep needs an IPv4 subnet; for IPv6 give the address" % network)
        if network.num_addresses > MAX_SWEEP:
            raise HostStatusError(
                "subnet %s has %d addresses; sweeping more than %d is too slow. Give a smaller subnet or the "
                "machine's address" % (network, network.num_addresses, MAX_SWEEP))
        if interface:
            return [(interface, network)]
        for ifname, iface in addresses:
            if iface.ip in network or network.subnet_of(iface.network):
                return [(ifname, network)]
        raise HostStatusError(
            "no interface of this machine has an address in %s; set interface to the NIC on that segment" % network)
    chosen = [(ifname, iface.network) for ifname, iface in addresses if not interface or ifname == interface]
    if interface and not chosen:
        raise HostStatusError(
            "interface %s has no IPv4 address to sweep from; give it one, set subnet, or give the machine's "
            "address" % interface)
    result = []
    for ifname, network in chosen:
        if network.num_addresses > MAX_SWEEP:
            warnings.append("not sweeping %s on %s: more than %d addresses; set subnet or address"
                            % (network, ifname, MAX_SWEEP))
            continue
        if (ifname, network) not in result:
            result.append((ifname, network))
    if not result:
        raise HostStatusError(
            "no directly connected IPv4 subnet to sweep for the machine's MAC; set interface/subnet, "
            "or give the machine's address")
    return result


def read_neighbours(interface: str | None = None, runner: Callable[..., tuple[int | None, str, str]] = run) -> list[dict[str, Any]]:
    """The kernel's neighbour table; [] when ``ip`` is missing or fails."""
    argv = ["ip", "-j", "neigh", "show"] + (["dev", interface] if interface else [])
    try:
        rc, out, dummy = runner(argv, timeout=10)
    except OSError:
        return []
    return parse_neighbours(out) if rc == 0 else []


def read_addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """The controller's IPv4 interfaces (the shared ``ip -j addr show`` reader)."""
    try:
        links = _interfaces.read_links()
    except _interfaces.InterfacesError as exc:
        raise HostStatusError("cannot find the subnets to sweep: %s; set subnet and interface, or give the machine's "
                              "address" % exc) from None
    return serving_ipv4(links)


def arp_sweep(targets: Iterable[tuple[str, ipaddress.IPv4Network]], mac: str, timeout: float = DEFAULT_ARP_TIMEOUT) -> list[str]:
    """Ask every address of each (ifname, network) who has it; return the IPv4 addresses ``mac`` answered from.

    scapy is imported here, not at module load: it costs 0.2-0.4 s and tens of MiB, and
    most runs (address given, or found in the neighbour table) do not need it.
    Needs CAP_NET_RAW (root). Stops listening as soon as ``mac`` answers.
    """
    try:
        # pylint: disable-next=import-outside-toplevel
        from scapy.layers.l2 import ARP, Ether
        # pylint: disable-next=import-outside-toplevel
        from scapy.sendrecv import srp
    except ImportError:
        raise HostStatusError(
            "the ARP sweep needs the Python library scapy on the controller (pip install scapy); "
            "or give the machine's address") from None

    def is_answer(packet: Any) -> bool:
        return ARP in packet and packet[ARP].op == 2 and str(packet[ARP].hwsrc).lower() == mac

    found = []
    for ifname, network in targets:
        request = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=str(network))
        try:
            try:
                answered, dummy = srp(request, iface=ifname, timeout=timeout, verbose=0, stop_filter=is_answer)
            except TypeError:  # scapy without stop_filter for srp
                answered, dummy = srp(request, iface=ifname, timeout=timeout, verbose=0)
        except PermissionError:
            raise HostStatusError(
                "the ARP sweep needs root (raw sockets): run the task with become: true, or give the machine's "
                "address") from None
        except OSError as exc:
            raise HostStatusError("ARP sweep of %s on %s failed: %s" % (network, ifname, exc)) from None
        for dummy_sent, received in answered:
            if is_answer(received) and received[ARP].psrc not in found:
                found.append(received[ARP].psrc)
        if found:
            break
    return found


def neighbour_owner(neighbours: Iterable[Mapping[str, Any]], ip: str) -> str | None:
    """The MAC the neighbour table holds for ``ip`` (lower-case), or None when it holds none that is alive."""
    for entry in neighbours:
        if entry["ip"] == ip and entry["mac"] and not set(entry["states"]) & DEAD_NEIGHBOUR_STATES:
            return entry["mac"]
    return None


def discover_address(mac: str, interface: str | None = None, subnet: str | None = None, arp_timeout: float = DEFAULT_ARP_TIMEOUT,
                     warnings: list[str] | None = None, neighbours: Callable[..., list[dict[str, Any]]] = read_neighbours,
                     addresses: Callable[[], list[tuple[str, ipaddress.IPv4Interface]]] = read_addresses,
                     sweep: Callable[..., list[str]] = arp_sweep, skip: Collection[str] = ()) -> tuple[str | None, str | None]:
    """(ip or None, source) with source one of neighbour, arp, stale_neighbour, None.

    ``skip``: addresses just found not to answer (the machine's address before a reboot). The neighbour
    table may call them confirmed for up to 45 s after the machine left them, so they never stand in
    for a sweep; a sweep that finds only them still returns them.
    """
    warnings = warnings if warnings is not None else []
    trusted, stale = neighbour_candidates(neighbours(interface), mac, interface)
    trusted = [ip for ip in trusted if ip not in skip]
    stale = [ip for ip in stale if ip not in skip]
    # IPv4 first: a confirmed IPv6 neighbour is used only when no IPv4 address answers.
    if trusted and ":" not in trusted[0]:
        return trusted[0], "neighbour"
    try:
        targets = sweep_targets(addresses(), interface=interface, subnet=subnet, warnings=warnings)
        found = sweep(targets, mac, arp_timeout)
    except HostStatusError as exc:
        if trusted:
            return trusted[0], "neighbour"
        if stale:
            warnings.append("%s; using %s from the neighbour table (not confirmed)" % (exc.msg, stale[0]))
            return stale[0], "stale_neighbour"
        raise
    if found:
        fresh = [ip for ip in found if ip not in skip]
        return (fresh or found)[0], "arp"
    if trusted:
        return trusted[0], "neighbour"
    return None, None
