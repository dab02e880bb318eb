# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verdict on real neighbour tables: `ip -j neigh` and /proc/net/arp captured in a lab (fixtures/neighbours).

The server reads entries over netlink (test_netlink.py); these captures of the
same moments, read here by small test readers, give the verdict every case an
attacker on the segment can make: another MAC, the host's address taken over,
a clone of the host's MAC, no evidence at all.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import neighbours
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "neighbours")
HOST = "52:54:00:aa:00:01"
IMPOSTOR = "02:00:00:bb:00:02"


def table(name):
    """The entries of a captured table (the fixtures' README says how each was taken)."""
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        text = handle.read()
    return read_ip_neigh(text) if name.endswith(".json") else read_proc_net_arp(text)


def read_ip_neigh(text):
    """``ip -j neigh show`` -> [Entry]; no MAC unless the kernel sends to it in that state."""
    entries = []
    for row in json.loads(text):
        state = str((row.get("state") or ["NONE"])[0]).upper()
        mac = row.get("lladdr") if state in neighbours.VALID_STATES else None
        entries.append(neighbours.Entry(neighbours.normal_address(row["dst"]), row.get("dev"), mac, state))
    return entries


def read_proc_net_arp(text):
    """``/proc/net/arp`` -> [Entry]: flags 0x4 permanent, 0x2 complete (read as REACHABLE), else no MAC.

    A failed or unresolved line still prints the last MAC: it must not count.
    """
    entries = []
    for line in text.splitlines()[1:]:
        ip, dummy_hw, flags, mac, dummy_mask, dev = line.split()
        flags = int(flags, 16)
        state = "PERMANENT" if flags & 0x4 else "REACHABLE" if flags & 0x2 else "INCOMPLETE"
        entries.append(neighbours.Entry(ip, dev, mac if state != "INCOMPLETE" else None, state))
    return entries


def find(entries, ip, dev=None):
    """The entry of ``ip`` (any spelling) on ``dev`` (any when None), a usable one first; or None."""
    wanted = neighbours.normal_address(ip)
    found = [e for e in entries if e.ip == wanted and (dev is None or e.dev == dev)]
    return next((e for e in found if e.usable), found[0] if found else None)


def judge(name, ip, mac=HOST, dev="br0"):
    return trust.verdict(ip, mac, find(table(name), ip, dev))


# -- the verdicts ----------------------------------------------------------------

def test_the_host_itself_is_let_in_over_ipv4_and_ipv6():
    for name, ip in (("ip-neigh-fresh.json", "10.99.0.10"), ("ip-neigh-fresh.json", "fd99::10"),
                     ("proc-net-arp-fresh.txt", "10.99.0.10"), ("ip-neigh-stale.json", "10.99.0.10"),
                     ("ip-neigh-reachable.json", "fd99::10")):
        found = judge(name, ip)
        assert (found.outcome, found.seen_mac) == (trust.MATCH, HOST), (name, ip)


def test_another_mac_asking_for_the_host_is_an_impostor_even_from_the_hosts_address():
    # From its own address, naming the host's MAC in the path:
    assert judge("ip-neigh-fresh.json", "10.99.0.50") == trust.Verdict(trust.IMPOSTOR, "10.99.0.50", seen_mac=IMPOSTOR)
    assert judge("proc-net-arp-fresh.txt", "10.99.0.50").outcome == trust.IMPOSTOR
    assert judge("ip-neigh-fresh.json", "fd99::50").outcome == trust.IMPOSTOR
    # Having taken the host's own address (ARP answered with its own MAC):
    for name in ("ip-neigh-impostor.json", "proc-net-arp-impostor.txt"):
        found = judge(name, "10.99.0.10")
        assert (found.outcome, found.seen_mac) == (trust.IMPOSTOR, IMPOSTOR), name
    assert judge("ip-neigh-impostor.json", "fd99::10").seen_mac == IMPOSTOR


def test_a_clone_with_the_hosts_mac_is_the_host_as_far_as_the_segment_can_tell():
    # The documented limit (docs/security.md): MAC spoofing passes this check.
    assert judge("ip-neigh-clone.json", "10.99.0.50").outcome == trust.MATCH
    assert judge("proc-net-arp-clone.txt", "10.99.0.50").outcome == trust.MATCH


def test_no_evidence_is_unverified_never_a_match():
    assert judge("ip-neigh-fresh.json", "10.99.0.200") == trust.Verdict(trust.UNVERIFIED, "10.99.0.200", reason="no_entry")
    assert judge("ip-neigh-incomplete.json", "10.99.0.99").reason == "unresolved"
    assert judge("proc-net-arp-incomplete.txt", "10.99.0.99").reason == "unresolved"
    assert judge("ip-neigh-fresh.json", "10.99.0.10", dev="eth1").outcome != trust.MATCH


def test_verdict_refuses_a_callers_mistake():
    entry = find(table("ip-neigh-fresh.json"), "10.99.0.10")
    with pytest.raises(ValueError, match="not of the request's address"):
        trust.verdict("10.99.0.50", HOST, entry)
    with pytest.raises(ValueError, match="expected_mac"):
        trust.verdict("10.99.0.10", "nonsense", entry)
    with pytest.raises(ValueError, match="request_ip"):
        trust.verdict("nonsense", HOST, None)
