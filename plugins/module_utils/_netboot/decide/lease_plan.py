# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which address each host gets in the addresses mode, decided before anything is bound.

A host's address is its hosts.json ``ip``; a host without one gets the next
free address of the module's ranges, in the inventory's order, so a re-run
with the same inventory gives the same addresses. What is left of the ranges
is kept as spares for hosts whose address turns out to be taken (DECLINE).
Every problem is found at once and named by host and field.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Iterable, Sequence

__all__ = ("WantedLease", "AddressPlan", "LeasePlanError", "parse_range", "plan_addresses")

# A range larger than this is cut: the spares are a list, and no segment boots more machines.
_MAX_SPARES = 65536


class LeasePlanError(ValueError):
    """The addresses cannot be planned; ``problems`` lists each reason, one sentence each."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclasses.dataclass(frozen=True, slots=True)
class WantedLease:
    """A host as the plan sees it: name, canonical MAC, hosts.json ``ip`` (None: from a range) and the address of its
    hosts.json ``network`` (None: none), which its installer takes by itself and no other host may lease."""

    name: str
    mac: str
    ip: str | None = None
    static: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AddressPlan:
    """``reservations`` maps each MAC to its address; ``spare`` the unused range addresses."""

    reservations: dict[str, str]
    spare: tuple[str, ...]


def parse_range(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """``10.0.0.100-10.0.0.150`` (or one address) as its first and last address; ValueError if not."""
    first, dummy, last = str(text).partition("-")
    low = ipaddress.IPv4Address(first.strip())
    high = ipaddress.IPv4Address(last.strip()) if last else low
    if high < low:
        raise ValueError("%s: the first address is above the last" % text)
    return low, high


def plan_addresses(hosts: Sequence[WantedLease], network: str, reserved: Iterable[str] = (),
                   ranges: Sequence[str] = ()) -> AddressPlan:
    """Gives every host its address on ``network`` (the served subnet, ``10.0.0.0/24``).

    ``reserved`` are addresses no host may get (the server's own, the routers');
    ``ranges`` the module's ranges (``first-last``). Raises LeasePlanError
    naming every host and field at fault.
    """
    subnet = ipaddress.IPv4Network(network, strict=False)
    taken = {ipaddress.IPv4Address(a): "the server or a router" for a in reserved}
    edges = {subnet.network_address, subnet.broadcast_address} if subnet.prefixlen < 31 else set()
    problems: list[str] = []
    spans = _check_ranges(ranges, subnet, problems)
    reservations: dict[str, str] = {}
    owner: dict[ipaddress.IPv4Address, str] = {}
    statics = {ipaddress.IPv4Address(host.static): host.name for host in hosts if host.static}
    for host in hosts:
        if host.ip is None:
            continue
        address = _host_address(host, subnet, problems)
        if address is None:
            continue
        if address in taken:
            problems.append("host %s: ip %s is %s's address; give the host another one" % (host.name, address, taken[address]))
        elif statics.get(address, host.name) != host.name:
            problems.append("host %s: ip %s is the static network address of host %s; give the host another one"
                            % (host.name, address, statics[address]))
        elif address in owner:
            problems.append("hosts %s and %s: both have ip %s; each host needs its own" % (owner[address], host.name, address))
        else:
            owner[address] = host.name
            reservations[host.mac] = str(address)
    free = (a for dummy, low, high in spans for a in _addresses(low, high)
            if a not in owner and a not in taken and a not in statics and a not in edges)
    waiting = [host for host in hosts if host.ip is None]
    for host in waiting:
        address = next(free, None)
        if address is None:
            break
        reservations[host.mac] = str(address)
    unplaced = [host.name for host in waiting if host.mac not in reservations]
    if unplaced and not spans:
        problems.append("hosts %s: no ip in hosts.json and no dhcp_ranges to take one from; give each host an ip, or "
                        "set the pxe_server option dhcp_ranges" % ", ".join(unplaced))
    elif unplaced:
        problems.append("hosts %s: dhcp_ranges has no address left for them (%d hosts need one); widen the ranges"
                        % (", ".join(unplaced), len(unplaced)))
    if problems:
        raise LeasePlanError(problems)
    spare = tuple(str(a) for a in itertools.islice(free, _MAX_SPARES))
    return AddressPlan(reservations, spare)


def _host_address(host: WantedLease, subnet: ipaddress.IPv4Network, problems: list[str]) -> ipaddress.IPv4Address | None:
    try:
        address = ipaddress.IPv4Address(host.ip)
    except ValueError:
        problems.append("host %s: ip %r is not an IPv4 address" % (host.name, host.ip))
        return None
    if address not in subnet:
        problems.append("host %s: ip %s is outside the served subnet %s; use an address of that subnet, or serve the "
                        "interface the host is on" % (host.name, address, subnet))
        return None
    if subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        problems.append("host %s: ip %s is the subnet's %s address" % (
            host.name, address, "network" if address == subnet.network_address else "broadcast"))
        return None
    return address


def _check_ranges(ranges: Sequence[str], subnet: ipaddress.IPv4Network,
                  problems: list[str]) -> list[tuple[int, ipaddress.IPv4Address, ipaddress.IPv4Address]]:
    """The ranges that are well formed and inside the subnet, with their index in ``ranges``."""
    spans: list[tuple[int, ipaddress.IPv4Address, ipaddress.IPv4Address]] = []
    for index, text in enumerate(ranges):
        try:
            low, high = parse_range(text)
        except ValueError as exc:
            problems.append("dhcp_ranges[%d]: %s; write first-last, such as 10.0.0.100-10.0.0.199" % (index, exc))
            continue
        if low not in subnet or high not in subnet:
            problems.append("dhcp_ranges[%d]: %s is not inside the served subnet %s" % (index, text, subnet))
            continue
        for other_index, other_low, other_high in spans:
            if low <= other_high and other_low <= high:
                problems.append("dhcp_ranges[%d] and dhcp_ranges[%d] overlap (%s and %s-%s); make them disjoint"
                                % (other_index, index, text, other_low, other_high))
        spans.append((index, low, high))
    return spans


def _addresses(low: ipaddress.IPv4Address, high: ipaddress.IPv4Address) -> Iterable[ipaddress.IPv4Address]:
    address = low
    while address <= high:
        yield address
        address += 1
