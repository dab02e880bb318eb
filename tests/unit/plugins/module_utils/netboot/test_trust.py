# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Neighbour tables read and judged: real `ip -j neigh` and /proc/net/arp output (fixtures/neighbours)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot import neighbours, trust

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "neighbours")
HOST = "52:54:00:aa:00:01"
IMPOSTOR = "02:00:00:bb:00:02"


def table(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        text = handle.read()
    return neighbours.parse_ip_neigh(text) if name.endswith(".json") else neighbours.parse_proc_net_arp(text)


def judge(name, ip, mac=HOST, dev="br0"):
    return trust.verdict(ip, mac, neighbours.find(table(name), ip, dev))


# -- the tables ----------------------------------------------------------------

def test_ip_neigh_reads_both_families_and_every_state_it_showed():
    entries = table("ip-neigh-fresh.json")
    by_ip = {e.ip: e for e in entries}
    assert by_ip["10.99.0.10"] == neighbours.Entry("10.99.0.10", "br0", HOST, "DELAY")
    assert by_ip["fd99::10"] == neighbours.Entry("fd99::10", "br0", HOST, "DELAY")
    assert by_ip["10.99.0.77"].state == "PERMANENT" and by_ip["10.99.0.77"].usable
    assert by_ip["10.99.0.99"] == neighbours.Entry("10.99.0.99", "br0", None, "INCOMPLETE")
    assert not by_ip["fd99::99"].usable
    assert [e.state for e in table("ip-neigh-stale.json") if e.ip == "10.99.0.10"] == ["STALE"]


def test_proc_net_arp_drops_the_mac_of_an_entry_that_failed():
    # Flags 0x0: the kernel no longer sends to 52:54:00:aa:00:01, yet the line still prints it.
    failed = neighbours.find(table("proc-net-arp-failed.txt"), "10.99.0.10")
    assert failed == neighbours.Entry("10.99.0.10", "br0", None, "INCOMPLETE")
    assert judge("proc-net-arp-failed.txt", "10.99.0.10").reason == "unresolved"
    fresh = {e.ip: e for e in table("proc-net-arp-fresh.txt")}
    assert fresh["10.99.0.10"].mac == HOST and fresh["10.99.0.10"].state == "COMPLETE"
    assert fresh["10.99.0.77"].state == "PERMANENT"
    assert fresh["10.99.0.99"].mac is None


def test_both_readings_of_the_same_moment_agree_on_ipv4():
    for moment in ("fresh", "incomplete", "impostor", "clone", "stale"):
        from_ip = {e.ip: e.mac for e in table("ip-neigh-%s.json" % moment) if ":" not in e.ip}
        from_proc = {e.ip: e.mac for e in table("proc-net-arp-%s.txt" % moment)}
        assert from_ip == from_proc, moment


@pytest.mark.parametrize("text, words", [
    ("not json", "did not print JSON"),
    ('{"dst": "10.0.0.1"}', "not a list"),
])
def test_ip_neigh_that_is_not_its_json_is_a_clear_error(text, words):
    with pytest.raises(neighbours.NeighbourTableError, match=words):
        neighbours.parse_ip_neigh(text)


def test_proc_net_arp_that_is_not_the_table_is_a_clear_error():
    with pytest.raises(neighbours.NeighbourTableError, match="header"):
        neighbours.parse_proc_net_arp("10.0.0.1 0x1 0x2 aa:bb:cc:dd:ee:ff * eth0\n")
    header = "IP address       HW type     Flags       HW address            Mask     Device\n"
    with pytest.raises(neighbours.NeighbourTableError, match="line 2 has 3 fields"):
        neighbours.parse_proc_net_arp(header + "10.0.0.1 0x1 0x2\n")
    with pytest.raises(neighbours.NeighbourTableError, match="not hexadecimal"):
        neighbours.parse_proc_net_arp(header + "10.0.0.1 0x1 zz 52:54:00:aa:00:01 * eth0\n")


def test_find_is_per_interface_and_takes_any_spelling_of_the_address():
    entries = table("ip-neigh-fresh.json")
    assert neighbours.find(entries, "::ffff:10.99.0.10", "br0").mac == HOST
    assert neighbours.find(entries, "FD99:0::10", "br0").mac == HOST
    assert neighbours.find(entries, "10.99.0.10", "eth1") is None
    assert neighbours.find(entries, "10.99.0.200", "br0") is None
    assert neighbours.find(entries, "not an address") is None


# -- the verdicts ----------------------------------------------------------------

def test_the_host_itself_is_let_in_over_ipv4_and_ipv6():
    for name, ip in (("ip-neigh-fresh.json", "10.99.0.10"), ("ip-neigh-fresh.json", "fd99::10"),
                     ("proc-net-arp-fresh.txt", "10.99.0.10"), ("ip-neigh-stale.json", "10.99.0.10"),
                     ("ip-neigh-reachable.json", "fd99::10")):
        found = judge(name, ip)
        assert (found.outcome, found.seen_mac, found.allowed) == (trust.MATCH, HOST, True), (name, ip)


def test_another_mac_asking_for_the_host_is_an_impostor_even_from_the_hosts_address():
    # From its own address, naming the host's MAC in the path:
    assert judge("ip-neigh-fresh.json", "10.99.0.50") == trust.Verdict(trust.IMPOSTOR, "10.99.0.50", seen_mac=IMPOSTOR)
    assert judge("proc-net-arp-fresh.txt", "10.99.0.50").outcome == trust.IMPOSTOR
    assert judge("ip-neigh-fresh.json", "fd99::50").outcome == trust.IMPOSTOR
    # Having taken the host's own address (ARP answered with its own MAC):
    for name in ("ip-neigh-impostor.json", "proc-net-arp-impostor.txt"):
        found = judge(name, "10.99.0.10")
        assert (found.outcome, found.seen_mac, found.allowed) == (trust.IMPOSTOR, IMPOSTOR, False), name
    assert judge("ip-neigh-impostor.json", "fd99::10").seen_mac == IMPOSTOR


def test_a_clone_with_the_hosts_mac_is_the_host_as_far_as_the_segment_can_tell():
    # The documented limit (docs/security.md): MAC spoofing passes this check.
    assert judge("ip-neigh-clone.json", "10.99.0.50").outcome == trust.MATCH
    assert judge("proc-net-arp-clone.txt", "10.99.0.50").outcome == trust.MATCH


def test_no_evidence_is_unverified_never_a_match():
    assert judge("ip-neigh-fresh.json", "10.99.0.200") == trust.Verdict(trust.UNVERIFIED, "10.99.0.200", reason="no_entry")
    assert judge("ip-neigh-incomplete.json", "10.99.0.99").reason == "unresolved"
    assert judge("proc-net-arp-incomplete.txt", "10.99.0.99").reason == "unresolved"
    assert not judge("ip-neigh-fresh.json", "10.99.0.10", dev="eth1").allowed


def test_verdict_refuses_a_callers_mistake():
    entry = neighbours.find(table("ip-neigh-fresh.json"), "10.99.0.10")
    with pytest.raises(ValueError, match="not of the request's address"):
        trust.verdict("10.99.0.50", HOST, entry)
    with pytest.raises(ValueError, match="expected_mac"):
        trust.verdict("10.99.0.10", "nonsense", entry)
    with pytest.raises(ValueError, match="request_ip"):
        trust.verdict("nonsense", HOST, None)
