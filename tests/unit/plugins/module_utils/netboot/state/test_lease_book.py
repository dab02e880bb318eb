# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the lease book of the addresses mode (state/leases.py)."""

from __future__ import annotations

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import leases
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.leases import OFFER_HOLD, LeaseBook

MAC = "52:54:00:12:34:01"
OTHER = "52:54:00:12:34:02"


def change(kind, address):
    return leases.LeaseAnswer(kind, address)


def test_each_mac_starts_with_its_planned_address_and_strangers_have_none():
    book = LeaseBook({MAC: "10.0.0.10", OTHER: "10.0.0.11"})
    assert book.host(MAC) == leases.LeaseHost(MAC, "10.0.0.10")
    assert book.host("52:54:00:99:99:99") is None
    assert book.lease(OTHER).state is None


def test_offer_holds_for_a_while_and_a_bind_for_the_lease_time():
    book = LeaseBook({MAC: "10.0.0.10"})
    assert book.apply(MAC, change(leases.OFFER, "10.0.0.10"), 100.0, 3600).until == 100.0 + OFFER_HOLD
    bound = book.apply(MAC, change(leases.BIND, "10.0.0.10"), 101.0, 3600)
    assert (bound.state, bound.until, bound.address) == (leases.BIND, 3701.0, "10.0.0.10")
    assert book.snapshot(701.0) == [{"mac": MAC, "address": "10.0.0.10", "state": leases.BIND, "seconds_left": 3000}]
    released = book.apply(MAC, change(leases.RELEASE, "10.0.0.10"), 102.0, 3600)
    assert (released.state, released.until, released.address) == (leases.RELEASE, None, "10.0.0.10")


def test_inform_changes_nothing():
    book = LeaseBook({MAC: "10.0.0.10"})
    bound = book.apply(MAC, change(leases.BIND, "10.0.0.10"), 1.0, 60)
    assert book.apply(MAC, change(leases.INFORM, "10.0.0.10"), 2.0, 60) == bound


def test_a_declined_address_is_set_aside_and_the_mac_moves_to_a_spare():
    book = LeaseBook({MAC: "10.0.0.10", OTHER: "10.0.0.100"}, ["10.0.0.101", "10.0.0.102"])
    moved = book.apply(MAC, change(leases.DECLINE, "10.0.0.10"), 5.0, 3600)
    assert moved.address == "10.0.0.101" and book.declined == {"10.0.0.10"}
    assert book.host(MAC).address == "10.0.0.101"
    assert book.apply(MAC, change(leases.DECLINE, "10.0.0.101"), 6.0, 3600).address == "10.0.0.102"
    gone = book.apply(MAC, change(leases.DECLINE, "10.0.0.102"), 7.0, 3600)
    assert gone.address is None and book.host(MAC) == leases.LeaseHost(MAC, None)
    assert book.host(OTHER).address == "10.0.0.100"
