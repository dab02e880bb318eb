# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one spelling of a MAC address, and the functions that make it where text or bytes come in.

A MAC enters the collection as text (hosts.json, a module's option, an HTTP
path, the agent's report, ``ip neigh``) or as octets (a DHCP chaddr, a
netlink attribute). It is turned into the canonical form (lower-case,
colon-separated) there, once; past that boundary every part of the engine
takes it as it is. This file is private to the collection.
"""

from __future__ import annotations

import re

# The spellings of a MAC address found in the wild: colon- or dash-separated
# octets, Cisco's dotted groups of four, and twelve bare hex digits.
_MAC_SPELLINGS = (
    re.compile(r"^([0-9A-Fa-f]{2})([:-])([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})$"),
    re.compile(r"^([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})$"),
    re.compile(r"^([0-9A-Fa-f]{12})$"),
)
MAC_PATTERN = "|".join(p.pattern for p in _MAC_SPELLINGS)
# The form normalize_mac returns, which most callers already pass (agents, DHCP, routes).
_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def normalize_mac(text: object) -> str | None:
    """Return ``text`` as a lower-case colon-separated MAC, or None if it is not one."""
    if not isinstance(text, str):
        return None
    if _CANONICAL_MAC.fullmatch(text):
        return text
    for spelling in _MAC_SPELLINGS:
        match = spelling.fullmatch(text)
        if match:
            digits = "".join(g for g in match.groups() if g not in (":", "-")).lower()
            return ":".join(digits[i:i + 2] for i in range(0, 12, 2))
    return None


def is_canonical_mac(value: object) -> bool:
    """Whether ``value`` is already a MAC in the one spelling (a check, not a conversion)."""
    return isinstance(value, str) and _CANONICAL_MAC.fullmatch(value) is not None


def mac_from_octets(octets: bytes) -> str | None:
    """Six octets as the canonical MAC; None for another length (InfiniBand, a tunnel's empty address)."""
    if len(octets) != 6:
        return None
    return ":".join("%02x" % octet for octet in octets)


def nic_mac_problem(mac: str) -> str | None:
    """Why a well-formed MAC cannot belong to a machine's NIC, or None."""
    first_octet = int(mac[:2], 16)
    if mac == "00:00:00:00:00:00":
        return "the all-zero address is not a NIC's address"
    if first_octet & 1:
        return "a multicast or broadcast address is not a NIC's address"
    return None
