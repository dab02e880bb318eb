# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is this request from the machine it names? Decisions on the segment's own evidence (pure).

A request for a host's script, kernel, initrd or phone-home names the host by
MAC (in the path, or through the token). On the served segment the kernel
knows which MAC owns the request's source address: it had to, to answer the
TCP handshake. :func:`verdict` compares that with the host's MAC;
:func:`peer_scope` says whether the address is on the segment at all (a
relayed or routed client's neighbour is its router, which proves nothing
about it). Reading the table is the serving edge's part (:mod:`..serve.binding`);
nothing here opens a socket or a file. :func:`admit` then decides, with the
host's claim of its token for this boot.

What this cannot tell: a machine that sends with the host's own MAC (its
NIC's address changed, or a forged source) is the host as far as the segment
can say. docs/security.md draws that line; docs/design/trust.md says where each
piece sits.
This file is private to the collection: its interface may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._hosts import is_canonical_mac
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry, normal_address
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.netlink import Route

MATCH = "match"
IMPOSTOR = "impostor"
UNVERIFIED = "unverified"

CLAIMED = "claimed"

ON_SEGMENT = "on_segment"
ROUTED = "routed"
LOCAL = "local"


@dataclass(frozen=True)
class Verdict:
    """``outcome``: MATCH (let in), IMPOSTOR (another MAC owns the address) or UNVERIFIED (no evidence).

    ``seen_mac``: the MAC the table holds for the address (IMPOSTOR, MATCH), else None.
    ``reason``: why there is no evidence (UNVERIFIED), else None: ``no_entry``
    (the table has no entry of the address on the serving interface) or
    ``unresolved`` (an entry without a MAC the kernel sends to: INCOMPLETE, FAILED...), or ``no_address``
    (the peer has no IP address at all, see :mod:`..serve.binding`).
    """

    outcome: str
    request_ip: str
    seen_mac: str | None = None
    reason: str | None = None


def verdict(request_ip: object, expected_mac: str, neighbour_entry: Entry | None) -> Verdict:
    """The :class:`Verdict` on a request from ``request_ip`` for the host with ``expected_mac``.

    ``neighbour_entry``: the :class:`~..wire.neighbours.Entry` of ``request_ip`` on the
    serving interface (from :mod:`..serve.neighbour_watch`), or None when there is none.
    Only a usable entry is evidence; an entry whose address differs from
    ``request_ip`` is a caller's mistake and raises ValueError, as does a
    ``expected_mac`` that is not a MAC.
    """
    if not is_canonical_mac(expected_mac):
        raise ValueError("expected_mac %r is not a MAC address in the one spelling (lower-case, colon-separated)" % (expected_mac,))
    ip = normal_address(request_ip)
    if ip is None:
        raise ValueError("request_ip %r is not an IP address" % (request_ip,))
    if neighbour_entry is None:
        return Verdict(UNVERIFIED, ip, reason="no_entry")
    if neighbour_entry.ip != ip:
        raise ValueError("the neighbour entry is of %s, not of the request's address %s" % (neighbour_entry.ip, ip))
    if not neighbour_entry.usable:
        return Verdict(UNVERIFIED, ip, reason="unresolved")
    if neighbour_entry.mac == expected_mac:
        return Verdict(MATCH, ip, seen_mac=neighbour_entry.mac)
    return Verdict(IMPOSTOR, ip, seen_mac=neighbour_entry.mac)


def scope_of(route: Route | None) -> str:
    """LOCAL, ROUTED or ON_SEGMENT: where a peer is, from the kernel's route to it (a :class:`..wire.netlink.Route`).

    A peer whose address is this machine's own (loopback included) is the
    controller itself. A peer reached through a gateway is relayed or routed: its
    neighbour entry would be the router's, which proves nothing about it. Only an
    on-link peer has a neighbour entry that says who sent the request; no route
    at all is treated as on-link, so the check looks and finds no evidence.
    """
    if route is None:
        return ON_SEGMENT
    if route.kind == "local":
        return LOCAL
    if route.gateway:
        return ROUTED
    return ON_SEGMENT


@dataclass(frozen=True)
class Binding:
    """What the segment says about one request: the peer, where it is, and the verdict on it.

    ``scope``: LOCAL, ROUTED or ON_SEGMENT. ``verdict``: the :class:`Verdict` of an
    ON_SEGMENT peer, None otherwise (nothing was checked). ``interface``: the
    interface the kernel reaches the peer through, when known. ``method``: ``arp``
    (IPv4) or ``ndp`` (IPv6) when the neighbour table was read, else ``none``.
    """

    peer: str
    scope: str
    verdict: Verdict | None = None
    interface: str | None = None

    @property
    def method(self) -> str:
        if self.verdict is None:
            return "none"
        return "ndp" if ":" in self.peer else "arp"

    @property
    def checked(self) -> bool:
        return self.verdict is not None

    @property
    def seen_mac(self) -> str | None:
        return self.verdict.seen_mac if self.verdict is not None else None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the API and wait_for_agent report."""
        return {"checked": self.checked, "method": self.method, "scope": self.scope, "mac_seen": self.seen_mac,
                "interface": self.interface}


def needs_resolving(binding: Binding) -> bool:
    """Whether ``binding`` is an on-segment peer the kernel has no usable entry for (yet)."""
    return binding.verdict is not None and binding.verdict.outcome == UNVERIFIED


UNCHECKED = "unchecked"
"""Reason a routed peer was let in without evidence (:func:`admit`)."""


@dataclass(frozen=True)
class Admission:
    """:func:`admit`'s answer. ``allowed``; ``claims`` (a script fetch that takes the token for this boot);
    ``reason`` of a refusal (``impostor``, ``unverified``, ``claimed``) or of an unchecked admission (``unchecked``).
    """

    allowed: bool
    claims: bool = False
    reason: str | None = None


def admit(route_name: str, binding: Binding, claim: Mapping[str, Any] | None, epoch: int) -> Admission:
    """Whether a request for a host's ``route_name`` (script, kernel, initrd, phone_home) is let in.

    ``binding``: the request's :class:`Binding` (its verdict already made against the
    host's MAC). ``claim``: the host's current claim, a mapping with ``ip`` and
    ``epoch``, or None. ``epoch``: the host's current boot (see the registry).

    The controller itself (LOCAL) is let in and claims nothing. An on-segment
    peer must be the host's MAC; a routed peer cannot be checked and is let in
    unchecked. Then, for the script only, the token is handed out once per boot:
    the first admitted fetch of a boot claims it, the same address gets it again,
    another address in the same boot is refused as ``claimed`` (a clone of the
    host's MAC at another address, or a routed stranger).
    """
    if binding.scope == LOCAL:
        return _LET_IN
    unchecked = False
    if binding.scope == ON_SEGMENT:
        if binding.verdict is None or binding.verdict.outcome == UNVERIFIED:
            return _REFUSED[UNVERIFIED]
        if binding.verdict.outcome != MATCH:
            return _REFUSED[IMPOSTOR]
    else:
        unchecked = True
    if route_name != "script":
        return _LET_IN_UNCHECKED if unchecked else _LET_IN
    if claim is not None and claim["epoch"] == epoch:
        if claim["ip"] != binding.peer:
            return _REFUSED[CLAIMED]
        return _LET_IN_UNCHECKED if unchecked else _LET_IN
    return _CLAIMS_UNCHECKED if unchecked else _CLAIMS


# admit's answers: a handful of values, made once (the check runs for every request of a rack).
_LET_IN = Admission(True)
_LET_IN_UNCHECKED = Admission(True, reason=UNCHECKED)
_CLAIMS = Admission(True, claims=True)
_CLAIMS_UNCHECKED = Admission(True, claims=True, reason=UNCHECKED)
_REFUSED = {reason: Admission(False, reason=reason) for reason in (UNVERIFIED, IMPOSTOR, CLAIMED)}


_REFUSAL_WORDS = {
    IMPOSTOR: "another machine asked for its boot",
    CLAIMED: "its boot was already claimed from another address",
    UNVERIFIED: "the server could not tell which MAC asked",
}


def refusal_warnings(host: Mapping[str, Any]) -> list[str]:
    """One line per refused peer of a host snapshot (``name``, ``impostors``, ``impostors_dropped``), for a run's output.

    Empty when nothing was refused: the line a recap prints only when someone
    other than the machine asked for its script, kernel, initrd or phone-home.
    """
    lines = []
    for row in host.get("impostors") or []:
        lines.append("%s: refused %d request%s (%s) from %s%s: %s; see docs/security.md" % (
            host.get("name"), row["count"], "" if row["count"] == 1 else "s", ", ".join(row["routes"]), row["address"],
            " (MAC %s)" % row["mac"] if row.get("mac") else "", _REFUSAL_WORDS.get(row["reason"], row["reason"])))
    if host.get("impostors_dropped"):
        lines.append("%s: %d more refusals from other peers were counted but not kept"
                     % (host.get("name"), host["impostors_dropped"]))
    return lines


def refusal_text(name: str, mac: str, binding: Binding, reason: str, claimed_by: str | None = None) -> str:
    """Why a request of ``binding``'s peer for host ``name`` (``mac``) was refused, and what to do."""
    if reason == IMPOSTOR:
        return ("refused: %s is MAC %s on this segment, not host %s's MAC %s; only the machine itself is served "
                "(docs/security.md)" % (binding.peer, binding.seen_mac, name, mac))
    if reason == CLAIMED:
        return ("refused: host %s's boot was already claimed from %s, not %s; reboot the machine to start a new "
                "boot (docs/security.md)" % (name, claimed_by or "another address", binding.peer))
    return ("refused: this server cannot tell which MAC %s is (no neighbour entry on %s); it serves host %s "
            "only to its MAC %s (docs/security.md)" % (binding.peer, binding.interface or "the serving interface",
                                                       name, mac))
