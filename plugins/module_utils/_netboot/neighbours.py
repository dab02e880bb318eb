# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel's neighbour table as the server reads it: which MAC owns an address (pure).

Two texts are read, both without a new dependency: ``ip -j neigh show``
(iproute2, IPv4 and IPv6) and ``/proc/net/arp`` (IPv4 only, readable by any
user, so also after the server dropped its privileges). Each becomes a list
of :class:`Entry`; :func:`find` picks the one entry of an address on the
serving interface. What an entry proves is decided in :mod:`.trust`.

An entry is *usable* only when the kernel holds a link-layer address it
would send to right now. ``/proc/net/arp`` keeps printing the last MAC of an
entry that failed or is still being resolved (flags 0x0): that MAC proves
nothing and is dropped here, so no caller can compare against it by mistake.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac

# Neighbour states (rtnetlink(7), NUD_*) in which the entry's MAC is the one the kernel sends to.
VALID_STATES = frozenset(("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"))
# /proc/net/arp flags (linux/if_arp.h): the entry is complete, or permanent.
ATF_COM = 0x02
ATF_PERM = 0x04
# The ARP hardware type of Ethernet; other link types (InfiniBand, ...) have other addresses.
ARPHRD_ETHER = 0x1
_PROC_ARP_FIELDS = 6


class NeighbourTableError(ValueError):
    """The text is not a neighbour table in the expected format; the message names it."""


@dataclass(frozen=True)
class Entry:
    """One neighbour: ``ip`` (normalised text), ``dev``, ``mac`` (normalised, or None), ``state``.

    ``state`` is the kernel's state name (``REACHABLE``, ``STALE``, ``FAILED``...);
    ``/proc/net/arp`` has flags only, read as ``PERMANENT``, ``COMPLETE`` or ``INCOMPLETE``.
    """

    ip: str
    dev: str | None
    mac: str | None
    state: str

    @property
    def usable(self):
        """Whether the kernel would send to ``mac`` now (the only case where ``mac`` is evidence)."""
        return self.mac is not None and self.state in VALID_STATES | {"COMPLETE"}


# Remembered per text: the trust check asks for every checked request, and parsing is most of its cost.
@functools.lru_cache(maxsize=4096)
def normal_address(text):
    """The normalised text of an IPv4/IPv6 address (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        address = ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def parse_ip_neigh(text, source="ip -j neigh show"):
    """``ip -j neigh show`` output -> [:class:`Entry`]; NeighbourTableError when it is not that JSON.

    Entries without an address the kernel could send to (INCOMPLETE, FAILED) keep
    ``mac=None``; of several states (``["STALE", "PROXY"]``...) the first is kept.
    """
    try:
        rows = json.loads(text or "[]")
    except ValueError as exc:
        raise NeighbourTableError("%s did not print JSON (%s); is iproute2 older than 4.13, which added -j?"
                                  % (source, exc)) from None
    if not isinstance(rows, list):
        raise NeighbourTableError("%s printed %s, not a list of neighbours" % (source, type(rows).__name__))
    entries = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        ip = normal_address(row.get("dst"))
        if ip is None:
            continue
        states = row.get("state") or []
        if isinstance(states, str):
            states = [states]
        state = str(states[0]).upper() if states else "NONE"
        mac = normalize_mac(row.get("lladdr")) if row.get("lladdr") else None
        if state not in VALID_STATES:
            mac = None
        entries.append(Entry(ip=ip, dev=row.get("dev"), mac=mac, state=state))
    return entries


def parse_proc_net_arp(text, source="/proc/net/arp"):
    """``/proc/net/arp`` -> [:class:`Entry`] (IPv4 only); NeighbourTableError when the header is not there.

    Flags 0x0 (incomplete or failed) give ``mac=None`` whatever MAC the line still
    prints; hardware types other than Ethernet are skipped.
    """
    lines = (text or "").splitlines()
    if not lines or not lines[0].startswith("IP address"):
        raise NeighbourTableError("%s does not start with the header \"IP address  HW type  Flags ...\"" % source)
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != _PROC_ARP_FIELDS:
            raise NeighbourTableError("%s line %d has %d fields, not %d: %r"
                                      % (source, number, len(fields), _PROC_ARP_FIELDS, line[:120]))
        ip_text, hw_type, flags_text, mac_text, dummy_mask, dev = fields
        try:
            hw = int(hw_type, 16)
            flags = int(flags_text, 16)
        except ValueError:
            raise NeighbourTableError("%s line %d: HW type %r or flags %r is not hexadecimal"
                                      % (source, number, hw_type[:12], flags_text[:12])) from None
        ip = normal_address(ip_text)
        if ip is None or hw != ARPHRD_ETHER:
            continue
        if flags & ATF_PERM:
            state = "PERMANENT"
        elif flags & ATF_COM:
            state = "COMPLETE"
        else:
            state = "INCOMPLETE"
        mac = normalize_mac(mac_text) if state != "INCOMPLETE" else None
        entries.append(Entry(ip=ip, dev=dev, mac=mac, state=state))
    return entries


def find(entries, ip, dev=None):
    """The entry of ``ip`` on interface ``dev`` (any interface when None), or None.

    ``ip`` in any spelling (``::ffff:10.0.0.5`` is 10.0.0.5). A usable entry wins over
    an unusable one of the same address, should a table list both.
    """
    wanted = normal_address(ip)
    if wanted is None:
        return None
    found = None
    for entry in entries:
        if entry.ip != wanted or (dev is not None and entry.dev != dev):
            continue
        if entry.usable:
            return entry
        found = found or entry
    return found
