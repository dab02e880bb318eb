# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where is the machine now? Looking for it, round after round, until it answers or the wait is over.

After the reboot into the installed system a machine may come back at another address: NixOS
leases by DUID, and its machine-id is new, so a site DHCP server that leases by client-id gives it
a new lease. Each round looks at the address the machine was last seen at (``last_address``)
first, then for its MAC (the neighbour table, then an ARP sweep: :mod:`.address`). An address
counts as the machine's only when an SSH server answers there; the last address also only when
it is still the machine's (another machine may hold it now): with known host keys, when it shows
one of them; without, when the neighbour table names no other MAC for it. With ``address`` given, only that address is looked at.

:func:`look` judges one address and :func:`locate` runs the rounds; both take the edges (the
banner check, the neighbour table, the SSH probe, the discovery, the clock) as parameters, so
they are tested without a network. :func:`ssh_banner` is the one edge written here.

Private to the collection: the interface may change without notice.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._host_status.common import HostKeyMismatch, HostStatusError

#: Seconds the quick look at an address may take (TCP connection and SSH banner). A round must stay
#: short: an address nobody holds any more costs this much in every round.
QUICK_TIMEOUT = 2.0
#: Seconds between rounds.
ROUND_PAUSE = 1.0
#: Probe outcomes that mean "nothing answers there yet": keep looking.
DOWN_OUTCOMES = frozenset(("closed", "unreachable"))


@dataclass
class Look:
    """What one address gave: ``answered`` with the SSH probe, or why not (``note``)."""

    ip: str
    source: str
    answered: bool = False
    probe: dict[str, Any] | None = None
    note: str = ""


@dataclass
class Located:
    """The outcome of :func:`locate`: the address settled on (or the machine's address that did not answer
    SSH, or None), where it came from, the probe there, what each address gave in the last round, the time taken."""

    ip: str | None = None
    source: str | None = None
    probe: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    waited: float = 0.0
    rounds: int = 0


def ssh_banner(ip: str, port: int, timeout: float = QUICK_TIMEOUT) -> str:
    """``ssh``, ``closed``, ``unreachable`` or ``not_ssh``: whether an SSH server greets us at ip:port."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            greeting = conn.recv(256)
    except ConnectionRefusedError:
        return "closed"
    except OSError:  # timeouts, no route, a name that does not resolve
        return "unreachable"
    return "ssh" if greeting.startswith(b"SSH-") else "not_ssh"


def look(ip: str, source: str, mac: str, port: int, banner: Callable[[str, int], str],
         owner: Callable[[str], str | None], probe: Callable[[str], dict[str, Any]], pinned: bool = False) -> Look:
    """Judge one address. The last address (``source`` last_address) must also not be another machine's:
    a host key mismatch there means another machine holds it (elsewhere it is an error), and without
    known host keys (``pinned``) the neighbour table's MAC for it, read again after the connection
    refreshed it, must be ``mac`` when it names one. With known keys the key decides alone, so a segment
    behind proxy ARP (every neighbour entry the router's MAC) still finds the machine there."""
    checks_owner = source == "last_address" and not pinned
    if checks_owner:
        held = owner(ip)
        if held and held != mac:
            return Look(ip, source, note="%s is held by another machine (MAC %s)" % (ip, held))
    greeting = banner(ip, port)
    if greeting != "ssh":
        said = {"closed": "SSH port %d closed" % port, "unreachable": "no answer",
                "not_ssh": "port %d answers, but not with SSH" % port}[greeting]
        return Look(ip, source, note="%s: %s" % (ip, said))
    if checks_owner:
        held = owner(ip)
        if held and held != mac:
            return Look(ip, source, note="%s is held by another machine (MAC %s)" % (ip, held))
    try:
        found = probe(ip)
    except HostKeyMismatch:
        if source == "last_address":
            return Look(ip, source, note="%s shows a host key none of known_host_keys: another machine holds it" % ip)
        raise
    if found.get("outcome") in DOWN_OUTCOMES:
        return Look(ip, source, probe=found, note="%s: SSH %s" % (ip, found["outcome"]))
    return Look(ip, source, answered=True, probe=found)


def one_round(mac: str, port: int, address: str | None, last_address: str | None,
              discover: Callable[[list[str]], tuple[str | None, str | None]], look_at: Callable[[str, str], Look],
              warnings: list[str], silent: list[str] | None = None) -> tuple[Look | None, Look | None, list[str]]:
    """(the look that answered or None, the machine's address that did not answer SSH or None, notes).

    ``silent``: the addresses found for the MAC that did not answer in earlier rounds, kept up to date here. The
    neighbour table may go on calling them confirmed for up to 45 s, so discovery sweeps past them.
    """
    notes: list[str] = []
    silent = silent if silent is not None else []
    if address:
        seen = look_at(address, "address")
        return (seen, None, []) if seen.answered else (None, seen, [seen.note])
    if last_address:
        seen = look_at(last_address, "last_address")
        if seen.answered:
            return seen, None, []
        notes.append(seen.note)
    try:
        ip, source = discover(([last_address] if last_address else []) + [ip for ip in silent if ip != last_address])
    except HostStatusError as exc:
        if not last_address:
            raise
        # Discovery cannot run here (no root, no scapy, no subnet): the last address alone is watched.
        note = "%s cannot be looked for by its MAC: %s" % (mac, exc.msg)
        if note not in warnings:
            warnings.append(note)
        return None, None, notes + [note]
    if not ip:
        notes.append("%s: no address found for it (neighbour table, ARP sweep)" % mac)
        return None, None, notes
    if ip == last_address:
        notes.append("%s answers ARP at %s only" % (mac, ip))
        return None, None, notes
    seen = look_at(ip, source or "neighbour")
    if seen.answered:
        return seen, None, []
    if ip not in silent:
        silent.append(ip)
    notes.append("%s found at %s (%s), %s" % (mac, ip, source, seen.note.split(": ", 1)[-1]))
    return None, seen, notes


def locate(mac: str, port: int, wait: float, address: str | None, last_address: str | None,
           discover: Callable[[list[str]], tuple[str | None, str | None]], look_at: Callable[[str, str], Look],
           warnings: list[str] | None = None, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep, pause: float = ROUND_PAUSE) -> Located:
    """Rounds of :func:`one_round` until an address answers or ``wait`` seconds have passed (at least one
    round; a round begun before the end is finished)."""
    warnings = warnings if warnings is not None else []
    started = clock()
    rounds = 0
    silent: list[str] = []
    while True:
        rounds += 1
        answered, down, notes = one_round(mac, port, address, last_address, discover, look_at, warnings, silent)
        waited = clock() - started
        if answered:
            return Located(answered.ip, answered.source, answered.probe, [], round(waited, 1), rounds)
        if waited >= wait:
            if down:
                return Located(down.ip, down.source, down.probe, notes, round(waited, 1), rounds)
            return Located(None, None, None, notes, round(waited, 1), rounds)
        sleep(min(pause, max(0.0, wait - waited)))


def absent_reason(mac: str, located: Located, wait: float) -> str:
    """The reason given when the machine was not found: what the last round saw at each address."""
    seen = "; ".join(note for note in located.notes if note) or "nothing answered"
    if wait:
        return "%s not found within %g s (%d rounds): %s" % (mac, wait, located.rounds, seen)
    return "%s not found: %s" % (mac, seen)


def look_edges(mac: str, port: int, neighbours: Callable[[], list[Mapping[str, Any]]],
               owner_of: Callable[[list[Mapping[str, Any]], str], str | None],
               banner: Callable[..., str] = ssh_banner, quick_timeout: float = QUICK_TIMEOUT,
               probe: Callable[[str], dict[str, Any]] | None = None, pinned: bool = False) -> Callable[[str, str], Look]:
    """:func:`look` bound to the machine and its edges, as :func:`locate` calls it."""
    def look_at(ip: str, source: str) -> Look:
        return look(ip, source, mac, port, lambda where, on: banner(where, on, quick_timeout),
                    lambda where: owner_of(neighbours(), where), probe, pinned)
    return look_at
