# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The neighbour table kept from the kernel's notices: what is kept, what a notice changes, when all is forgotten.

Notices are the kernel's own replies of fixtures/netlink (an rtnetlink notice has
the same layout as the answer to a get). The real kernel's notices reach the
real server in the netboot_trust integration target (a clone's MAC change and
its restore are seen on the next request).
"""

from __future__ import annotations

import os
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import neighbour_watch
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import netlink
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.binding import SegmentCheck
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "netlink")
IMPOSTOR = "02:00:00:bb:00:02"


def reply_of(name):
    """The kernel's reply in a fixture, as bytes."""
    data, section = bytearray(), None
    with open(os.path.join(FIXTURES, name + ".hex"), encoding="ascii") as handle:
        for line in handle:
            if line.rstrip().endswith(":") and not line.startswith("#"):
                section = line.strip()[:-1]
            elif section == "reply" and not line.startswith("#"):
                data += bytes.fromhex(line)
    return bytes(data)


def as_notice(data, kind=None):
    """A reply turned into a multicast notice: sequence and port 0, and another message type when given."""
    length, old_kind, flags, dummy_seq, dummy_pid = struct.unpack_from("=IHHII", data)
    return struct.pack("=IHHII", length, kind or old_kind, flags, 0, 0) + data[16:]


class Kernel:
    """Stands for the per-request lookup: counts how often it is asked."""

    def __init__(self, mac="52:54:00:aa:00:01"):
        self.mac = mac
        self.asked = []

    def route(self, ip):
        self.asked.append(("route", ip))
        return netlink.Route("unicast", 2, None)

    def neighbour(self, ip, ifindex):
        self.asked.append(("neighbour", ip))
        return Entry(ip=ip, dev="eth0", mac=self.mac, state="REACHABLE")

    def ifname(self, ifindex):
        return "eth0"

    def close(self):
        pass


@pytest.fixture
def watch():
    made = neighbour_watch.NeighbourWatch(lookup=Kernel())
    yield made
    made.close()


def test_notices_read_the_kernels_own_bytes():
    [(kind, key, (state, lladdr))] = neighbour_watch.notices(as_notice(reply_of("neigh-v4-reachable")))
    assert (kind, key) == ("neighbour", (2, "10.90.0.50"))
    assert (lladdr.hex(":"), neighbour_watch.state_name(state)) == (IMPOSTOR, "REACHABLE")
    [(kind, key, (state, lladdr))] = neighbour_watch.notices(as_notice(reply_of("neigh-v6-failed")))
    assert kind == "neighbour" and neighbour_watch.state_name(state) == "FAILED"
    [(kind, key, change)] = neighbour_watch.notices(as_notice(reply_of("neigh-v4-reachable"), neighbour_watch.RTM_DELNEIGH))
    assert (key, change) == ((2, "10.90.0.50"), None)
    assert neighbour_watch.notices(as_notice(reply_of("route-v4-onlink"))) == [("routes", None, None)]


def reordered(data):
    """A notice whose attributes come in reverse order (the address last), as no kernel sends but the format allows."""
    head, offset, attrs = data[:28], 28, []
    while offset < len(data):
        length = struct.unpack_from("=H", data, offset)[0]
        step = (length + 3) & ~3
        attrs.append(data[offset:offset + step])
        offset += step
    body = head + b"".join(reversed(attrs))
    return struct.pack("=I", len(body)) + body[4:]


def test_a_notice_is_read_the_same_whatever_the_order_of_its_attributes():
    notice = as_notice(reply_of("neigh-v4-reachable"))
    assert reordered(notice) != notice
    assert neighbour_watch.notices(reordered(notice)) == neighbour_watch.notices(notice)


def test_only_wanted_neighbours_are_read_but_every_removal_is():
    notice = as_notice(reply_of("neigh-v4-reachable"))
    assert neighbour_watch.notices(notice, wanted={(2, "10.90.0.99"): None}) == []
    assert neighbour_watch.notices(reordered(notice), wanted=set()) == []
    [(dummy_kind, key, change)] = neighbour_watch.notices(notice, wanted={(2, "10.90.0.50")})
    assert key == (2, "10.90.0.50") and change[1].hex(":") == IMPOSTOR
    removed = as_notice(reply_of("neigh-v4-reachable"), neighbour_watch.RTM_DELNEIGH)
    assert neighbour_watch.notices(removed, wanted=set()) == [("neighbour", (2, "10.90.0.50"), None)]


def test_a_neighbour_notice_without_its_address_is_an_error():
    notice = bytearray(as_notice(reply_of("neigh-v4-reachable")))
    struct.pack_into("=H", notice, 30, 0x7F)   # the first attribute (NDA_DST) becomes an unknown type
    with pytest.raises(netlink.NetlinkError):
        neighbour_watch.notices(bytes(notice))


def test_a_bridges_forwarding_notice_is_not_a_neighbour():
    data = bytearray(as_notice(reply_of("neigh-v4-reachable")))
    data[16] = 7  # AF_BRIDGE: an FDB entry, which has no IP address
    assert neighbour_watch.notices(bytes(data)) == []


def test_a_notice_that_does_not_parse_is_an_error():
    with pytest.raises(netlink.NetlinkError):
        neighbour_watch.notices(as_notice(reply_of("neigh-v4-reachable"))[:30])


def test_an_entry_is_asked_once_then_kept(watch):
    first = watch.neighbour("10.90.0.50", 2)
    assert watch.neighbour("::ffff:10.90.0.50", 2) == first
    assert watch._lookup.asked == [("neighbour", "10.90.0.50")]
    watch.route("10.90.0.50")
    watch.route("10.90.0.50")
    assert watch._lookup.asked.count(("route", "10.90.0.50")) == 1


def test_a_notice_changes_a_kept_entry_at_once(watch):
    assert watch.neighbour("10.90.0.50", 2).mac == "52:54:00:aa:00:01"
    watch.apply(as_notice(reply_of("neigh-v4-reachable")))   # the kernel now holds the impostor's MAC there
    assert watch.neighbour("10.90.0.50", 2) == Entry("10.90.0.50", "eth0", IMPOSTOR, "REACHABLE")
    assert watch.neighbour("10.90.0.99", 2).mac == "52:54:00:aa:00:01"
    watch.apply(as_notice(reply_of("neigh-v4-failed")))     # 10.90.0.99's entry failed: no MAC is evidence any more
    assert watch.neighbour("10.90.0.99", 2).mac is None
    assert len(watch._lookup.asked) == 2


def test_a_removed_entry_is_asked_again_and_strangers_are_not_kept(watch):
    watch.neighbour("10.90.0.50", 2)
    watch.apply(as_notice(reply_of("neigh-v4-reachable"), neighbour_watch.RTM_DELNEIGH))
    watch.neighbour("10.90.0.50", 2)
    assert watch._lookup.asked.count(("neighbour", "10.90.0.50")) == 2
    watch.apply(as_notice(reply_of("neigh-v6-reachable")))   # never asked about: not kept
    assert all(key[1] != "fd90::50" for key in watch._neighbours)


def test_a_route_notice_forgets_every_route_and_garbage_forgets_everything(watch):
    watch.route("10.90.0.50")
    watch.neighbour("10.90.0.50", 2)
    watch.apply(as_notice(reply_of("route-v4-gateway")))
    watch.route("10.90.0.50")
    assert watch._lookup.asked.count(("route", "10.90.0.50")) == 2
    watch.apply(b"\x01\x02\x03")
    assert watch.resyncs == 1
    watch.neighbour("10.90.0.50", 2)
    assert watch._lookup.asked.count(("neighbour", "10.90.0.50")) == 2


def test_drain_reads_the_kernels_queue_without_blocking(watch):
    watch.drain()  # nothing queued for this fresh socket, or notices of this machine: returns at once
    assert watch.resyncs == 0


def test_a_judgement_holds_only_while_the_kernels_evidence_does(watch):
    check = SegmentCheck(lookup=watch)
    first = check.check("10.90.0.50", "52:54:00:aa:00:01")
    assert first.verdict.outcome == trust.MATCH
    assert check.check("10.90.0.50", "52:54:00:aa:00:01") is first          # nothing changed: judged once
    assert check.check("10.90.0.50", IMPOSTOR).verdict.outcome == trust.IMPOSTOR   # another host: judged apart
    watch.apply(as_notice(reply_of("neigh-v4-reachable")))   # the kernel now holds the impostor's MAC there
    after = check.check("10.90.0.50", "52:54:00:aa:00:01")
    assert (after.verdict.outcome, after.seen_mac) == (trust.IMPOSTOR, IMPOSTOR)
    watch.apply(as_notice(reply_of("route-v4-gateway")))     # routes forgotten: asked and judged again
    assert check.check("10.90.0.50", "52:54:00:aa:00:01") is not after
    assert watch._lookup.asked.count(("route", "10.90.0.50")) == 2
