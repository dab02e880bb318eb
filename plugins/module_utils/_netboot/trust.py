# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is this request from the machine it names? Decisions on the segment's own evidence (pure).

A request for a host's script, kernel, initrd or phone-home names the host by
MAC (in the path, or through the token). On the served segment the kernel
knows which MAC owns the request's source address: it had to, to answer the
TCP handshake. :func:`verdict` compares that with the host's MAC;
:func:`peer_scope` says whether the address is on the segment at all (a
relayed or routed client's neighbour is its router, which proves nothing
about it). Reading the table is the serving edge's part (:mod:`.neighbours`
parses it); nothing here opens a socket or a file.

What this cannot tell: a machine that sends with the host's own MAC (its
NIC's address changed, or a forged source) is the host as far as the segment
can say. docs/security.md draws that line. Not wired into the server yet:
docs/design/trust.md says where it goes.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ansible_collections.nixie.metal.plugins.module_utils._hosts import normalize_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.neighbours import normal_address

MATCH = "match"
IMPOSTOR = "impostor"
UNVERIFIED = "unverified"

ON_SEGMENT = "on_segment"
ROUTED = "routed"
LOOPBACK = "loopback"


@dataclass(frozen=True)
class Verdict:
    """``outcome``: MATCH (let in), IMPOSTOR (another MAC owns the address) or UNVERIFIED (no evidence).

    ``seen_mac``: the MAC the table holds for the address (IMPOSTOR, MATCH), else None.
    ``reason``: why there is no evidence (UNVERIFIED), else None: ``no_entry``
    (the table has no entry of the address on the serving interface) or
    ``unresolved`` (an entry without a MAC the kernel sends to: INCOMPLETE, FAILED...).
    """

    outcome: str
    request_ip: str
    seen_mac: str | None = None
    reason: str | None = None

    @property
    def allowed(self):
        return self.outcome == MATCH


def verdict(request_ip, expected_mac, neighbour_entry):
    """The :class:`Verdict` on a request from ``request_ip`` for the host with ``expected_mac``.

    ``neighbour_entry``: the :class:`~.neighbours.Entry` of ``request_ip`` on the
    serving interface (:func:`.neighbours.find`), or None when there is none.
    Only a usable entry is evidence; an entry whose address differs from
    ``request_ip`` is a caller's mistake and raises ValueError, as does a
    ``expected_mac`` that is not a MAC.
    """
    expected = normalize_mac(expected_mac)
    if expected is None:
        raise ValueError("expected_mac %r is not a MAC address" % (expected_mac,))
    ip = normal_address(request_ip)
    if ip is None:
        raise ValueError("request_ip %r is not an IP address" % (request_ip,))
    if neighbour_entry is None:
        return Verdict(UNVERIFIED, ip, reason="no_entry")
    if neighbour_entry.ip != ip:
        raise ValueError("the neighbour entry is of %s, not of the request's address %s" % (neighbour_entry.ip, ip))
    if not neighbour_entry.usable:
        return Verdict(UNVERIFIED, ip, reason="unresolved")
    if neighbour_entry.mac == expected:
        return Verdict(MATCH, ip, seen_mac=neighbour_entry.mac)
    return Verdict(IMPOSTOR, ip, seen_mac=neighbour_entry.mac)


def peer_scope(request_ip, segment_networks):
    """ON_SEGMENT, ROUTED or LOOPBACK: where ``request_ip`` is, given the serving interface's networks.

    ``segment_networks``: the prefixes of the serving interface's addresses
    (``10.0.0.1/24``, ``fd77::1/64``; link-local IPv6 is on every segment). Only an
    ON_SEGMENT address has a neighbour entry that says who sent the request.
    """
    ip = normal_address(request_ip)
    if ip is None:
        raise ValueError("request_ip %r is not an IP address" % (request_ip,))
    address = ipaddress.ip_address(ip)
    if address.is_loopback:
        return LOOPBACK
    if address.version == 6 and address.is_link_local:
        return ON_SEGMENT
    for network in segment_networks:
        if address in ipaddress.ip_interface(network).network:
            return ON_SEGMENT
    return ROUTED
