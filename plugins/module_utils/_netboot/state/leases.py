# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The leases held in the addresses mode: which inventory MAC has which IPv4 address, in what state.

Every MAC starts with the address the plan gave it (``decide/lease_plan.py``):
its hosts.json ``ip`` or one from the module's ranges. The book changes it
only when a client declines it (another machine answers ARP for it): the
address is set aside for the rest of the run and the MAC gets the next spare
address, if the ranges left one. Times come from the caller's clock, so the
book is pure state.

This file is private to the collection: its interface may change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import leases

__all__ = ("Lease", "LeaseBook")

# How long an offer holds its address for the client that got it (seconds): long enough for
# firmware that waits out its offer collection (EDK2: 4 s) and asks again.
OFFER_HOLD = 60


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """``state`` is the last change of ``decide.leases`` (OFFER, BIND, RELEASE...); ``until``
    the clock's time the lease (or offer) runs out, None when nothing is held."""

    mac: str
    address: str | None
    state: str | None = None
    until: float | None = None


class LeaseBook:
    """The addresses of the run's MACs. ``reservations`` maps a canonical MAC to its address;
    ``spare`` lists the range addresses no host was given, in the order they are handed out."""

    def __init__(self, reservations: Mapping[str, str], spare: Iterable[str] = ()) -> None:
        self._leases = {mac: Lease(mac, address) for mac, address in reservations.items()}
        self._spare = list(spare)
        self._declined: set[str] = set()

    def host(self, mac: str) -> leases.LeaseHost | None:
        """What ``decide.leases.answer`` needs about ``mac``; None when it is not the run's."""
        lease = self._leases.get(mac)
        return None if lease is None else leases.LeaseHost(mac, lease.address)

    def lease(self, mac: str) -> Lease | None:
        return self._leases.get(mac)

    def apply(self, mac: str, answer: leases.LeaseAnswer, now: float, lease_time: int) -> Lease:
        """Records what ``answer`` did for ``mac`` at ``now``; returns the lease after it."""
        lease = self._leases[mac]
        change = answer.change
        if change == leases.OFFER:
            lease = dataclasses.replace(lease, state=change, until=now + OFFER_HOLD)
        elif change == leases.BIND:
            lease = dataclasses.replace(lease, state=change, until=now + lease_time)
        elif change in (leases.RELEASE, leases.NAK):
            lease = dataclasses.replace(lease, state=change, until=None)
        elif change == leases.DECLINE:
            self._declined.add(answer.address)
            lease = Lease(mac, self._next_spare(), change, None)
        # INFORM changes nothing a lease holds.
        self._leases[mac] = lease
        return lease

    def _next_spare(self) -> str | None:
        while self._spare:
            address = self._spare.pop(0)
            if address not in self._declined:
                return address
        return None

    @property
    def declined(self) -> frozenset[str]:
        return frozenset(self._declined)

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """The leases as JSON-ready rows (for the API and the run's report)."""
        return [
            {"mac": lease.mac, "address": lease.address, "state": lease.state,
             "seconds_left": None if lease.until is None else max(0, round(lease.until - now))}
            for lease in self._leases.values()
        ]
