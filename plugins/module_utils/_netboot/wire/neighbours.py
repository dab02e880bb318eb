# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One entry of the kernel's neighbour table, and addresses in one spelling (pure).

:mod:`.netlink` and :mod:`..serve.neighbour_watch` read entries from the kernel; what
an entry proves is decided in :mod:`..decide.trust`. An entry is *usable* only when
the kernel holds a link-layer address it would send to right now: only then
is its MAC evidence of who is at the address.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

# Neighbour states (rtnetlink(7), NUD_*) in which the entry's MAC is the one the kernel sends to.
VALID_STATES = frozenset(("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"))


@dataclass(frozen=True)
class Entry:
    """One neighbour: ``ip`` (normalised text), ``dev``, ``mac`` (normalised, or None), ``state``.

    ``state`` is the kernel's state name (``REACHABLE``, ``STALE``, ``FAILED``...).
    """

    ip: str
    dev: str | None
    mac: str | None
    state: str

    @property
    def usable(self) -> bool:
        """Whether the kernel would send to ``mac`` now (the only case where ``mac`` is evidence)."""
        return self.mac is not None and self.state in VALID_STATES


# Remembered per text: the trust check asks for every checked request, and parsing is most of its cost.
@functools.lru_cache(maxsize=4096)
def normal_address(text: object) -> str | None:
    """The normalised text of an IPv4/IPv6 address (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        address = ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)
