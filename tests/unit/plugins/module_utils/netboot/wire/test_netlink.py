# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rtnetlink encode and decode on real bytes: what iproute2 sent and the kernel answered (fixtures/netlink)."""

from __future__ import annotations

import errno
import os
import random
import re
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import netlink
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "netlink")
ETH0 = 2  # the server namespace's eth0 in every fixture (README.md)
HOST = "52:54:00:aa:00:01"
IMPOSTOR = "02:00:00:bb:00:02"


class Capture:
    """One fixture: the `ip` command, its request and the kernel's reply."""

    def __init__(self, name):
        self.name = name
        sections = {}
        current = None
        with open(os.path.join(FIXTURES, name + ".hex"), encoding="ascii") as handle:
            for line in handle:
                if line.startswith("# ip ") and not line.startswith("# ip printed"):
                    self.command = line[2:].split("   (", 1)[0].split()
                elif line.rstrip().endswith(":") and not line.startswith("#"):
                    current = line.strip()[:-1]
                    sections[current] = bytearray()
                elif current and not line.startswith("#"):
                    sections[current] += bytes.fromhex(line)
        self.request = bytes(sections["request"])
        self.reply = bytes(sections["reply"])
        self.seq = struct.unpack_from("=I", self.request, 8)[0]

    @property
    def address(self):
        return self.command[3]


def names(prefix):
    return sorted(n[:-4] for n in os.listdir(FIXTURES) if n.startswith(prefix) and n.endswith(".hex"))


ROUTES = names("route-")
NEIGHBOURS = names("neigh-")


def test_every_state_and_route_the_readme_promises_is_there():
    assert len(ROUTES) == 14 and len(NEIGHBOURS) == 18
    for state in ("delay", "reachable", "stale", "incomplete", "failed", "probe", "permanent", "noarp", "enoent"):
        assert {"neigh-v4-" + state, "neigh-v6-" + state} <= set(NEIGHBOURS)


# -- requests: byte for byte what iproute2 sent -----------------------------------


@pytest.mark.parametrize("name", ROUTES)
def test_route_request_is_what_ip_route_get_sent(name):
    capture = Capture(name)
    assert capture.command[:3] == ["ip", "route", "get"]
    oif = ETH0 if capture.command[4:] == ["oif", "eth0"] else None
    assert netlink.route_request(capture.address, capture.seq, oif) == capture.request


@pytest.mark.parametrize("name", NEIGHBOURS)
def test_neighbour_request_is_what_ip_neigh_get_sent(name):
    capture = Capture(name)
    assert capture.command[:3] == ["ip", "neigh", "get"] and capture.command[4:] == ["dev", "eth0"]
    assert netlink.neighbour_request(capture.address, ETH0, capture.seq) == capture.request


def test_an_ipv4_mapped_address_is_asked_as_ipv4():
    onlink, delay = Capture("route-v4-onlink"), Capture("neigh-v4-delay")
    assert netlink.route_request("::ffff:10.90.0.10", onlink.seq) == onlink.request
    assert netlink.neighbour_request("::ffff:10.90.0.10", ETH0, delay.seq) == delay.request
    # A zone means nothing to IPv4, and nothing is added for it.
    assert netlink.route_request("10.90.0.10%eth0", onlink.seq) == onlink.request


def test_the_sequence_number_wraps_into_32_bits():
    request = netlink.route_request("10.90.0.10", 2 ** 32 + 5)
    assert struct.unpack_from("=I", request, 8)[0] == 5


@pytest.mark.parametrize("ip", ["", "10.90.0", "fd90::1::2", "example.org", None, "10.90.0.1/24"])
def test_a_request_for_something_that_is_not_an_address_is_a_value_error(ip):
    with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
        netlink.route_request(ip, 1)
    with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
        netlink.neighbour_request(ip, ETH0, 1)


@pytest.mark.parametrize("ifindex", [0, -1, None, "2", True, 2.0])
def test_a_neighbour_request_needs_an_interface_index(ifindex):
    with pytest.raises(ValueError, match="is not an interface index"):
        netlink.neighbour_request("10.90.0.10", ifindex, 1)


# -- replies ----------------------------------------------------------------------

ROUTE_ANSWERS = {
    "route-v4-loopback": netlink.Route("local", 1, None),
    "route-v4-local": netlink.Route("local", 1, None),
    "route-v4-onlink": netlink.Route("unicast", ETH0, None),
    "route-v4-gateway": netlink.Route("unicast", ETH0, "10.90.0.254"),
    "route-v4-broadcast": netlink.Route("broadcast", ETH0, None),
    "route-v4-via-ipv6": netlink.Route("unicast", ETH0, "fd90::254"),
    "route-v6-loopback": netlink.Route("local", 1, None),
    "route-v6-local": netlink.Route("local", 1, None),
    "route-v6-onlink": netlink.Route("unicast", ETH0, None),
    "route-v6-gateway": netlink.Route("unicast", ETH0, "fd90::254"),
    "route-v6-linklocal": netlink.Route("unicast", ETH0, None),
}
ROUTE_ERRORS = {
    "route-v4-unreachable": errno.ENETUNREACH,
    "route-v6-unreachable": errno.ENETUNREACH,
    "route-v4-prohibit": errno.EACCES,
}


@pytest.mark.parametrize("name", sorted(ROUTE_ANSWERS))
def test_route_replies(name):
    capture = Capture(name)
    message = netlink.reply(capture.reply, capture.seq)
    assert netlink.parse_route(message) == ROUTE_ANSWERS[name]


@pytest.mark.parametrize("name", sorted(ROUTE_ERRORS))
def test_route_errors_carry_the_kernels_errno_and_name_the_request(name):
    capture = Capture(name)
    with pytest.raises(netlink.NetlinkError) as raised:
        netlink.reply(capture.reply, capture.seq, "RTM_GETROUTE %s" % capture.address)
    assert raised.value.errno == ROUTE_ERRORS[name]
    assert raised.value.errno in netlink.UNREACHABLE_ERRNOS
    assert str(raised.value).startswith("[Errno %d] RTM_GETROUTE %s: the kernel answered %s ("
                                        % (ROUTE_ERRORS[name], capture.address, errno.errorcode[ROUTE_ERRORS[name]]))


NEIGHBOUR_ANSWERS = {
    "delay": ("10.90.0.10", HOST, "DELAY"),
    "reachable": ("10.90.0.50", IMPOSTOR, "REACHABLE"),
    "stale": ("10.90.0.50", IMPOSTOR, "STALE"),
    "incomplete": ("10.90.0.99", None, "INCOMPLETE"),
    "failed": ("10.90.0.99", None, "FAILED"),
    "probe": ("10.90.0.254", "router", "PROBE"),
    "permanent": ("10.90.0.77", "52:54:00:aa:00:77", "PERMANENT"),
    "noarp": ("10.90.0.78", None, "NOARP"),
}


@pytest.mark.parametrize("family", ["v4", "v6"])
@pytest.mark.parametrize("state", sorted(NEIGHBOUR_ANSWERS))
def test_neighbour_replies(state, family):
    capture = Capture("neigh-%s-%s" % (family, state))
    ip, mac, name = NEIGHBOUR_ANSWERS[state]
    if family == "v6":
        ip = "fd90::" + ip.rsplit(".", 1)[1]
    ifindex, entry = netlink.parse_neighbour(netlink.reply(capture.reply, capture.seq), "eth0")
    assert ifindex == ETH0
    if mac == "router":
        # The router's MAC is random per capture; the one ip printed is the one decoded.
        mac = re.search(r"lladdr (\S+)", open(os.path.join(FIXTURES, capture.name + ".hex"), encoding="ascii").read()).group(1)
    assert entry == Entry(ip=ip, dev="eth0", mac=mac, state=name)


def test_noarp_carries_a_link_layer_address_that_is_no_evidence():
    capture = Capture("neigh-v4-noarp")
    assert b"\x52\x54\x00\xaa\x00\x78" in capture.reply
    entry = netlink.parse_neighbour(netlink.reply(capture.reply, capture.seq))[1]
    assert entry.mac is None and not entry.usable
    assert trust.verdict("10.90.0.78", "52:54:00:aa:00:78", entry).reason == "unresolved"


def test_decoded_entries_feed_the_verdict():
    delay = Capture("neigh-v6-delay")
    entry = netlink.parse_neighbour(netlink.reply(delay.reply, delay.seq), "eth0")[1]
    assert trust.verdict("fd90::10", HOST, entry).outcome == trust.MATCH
    assert trust.verdict("fd90:0:0::10", IMPOSTOR, entry).outcome == trust.IMPOSTOR
    v4 = Capture("neigh-v4-delay")
    entry = netlink.parse_neighbour(netlink.reply(v4.reply, v4.seq), "eth0")[1]
    assert trust.verdict("::ffff:10.90.0.10", HOST, entry).outcome == trust.MATCH


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_no_entry_is_enoent_with_the_kernels_words(family):
    capture = Capture("neigh-%s-enoent" % family)
    with pytest.raises(netlink.NetlinkError) as raised:
        netlink.reply(capture.reply, capture.seq, "RTM_GETNEIGH %s on ifindex 2" % capture.address)
    assert raised.value.errno == errno.ENOENT
    assert str(raised.value) == ("[Errno 2] RTM_GETNEIGH %s on ifindex 2: the kernel answered ENOENT "
                                 "(No such file or directory): Neighbour entry not found" % capture.address)


def test_replies_to_another_request_are_skipped():
    stale, ours = Capture("neigh-v4-stale"), Capture("neigh-v4-delay")
    assert netlink.reply(ours.reply, ours.seq + 1) is None
    # Two messages in one datagram: a late answer to an earlier request, then ours.
    late = bytearray(stale.reply)
    struct.pack_into("=I", late, 8, ours.seq - 1)
    message = netlink.reply(bytes(late) + ours.reply, ours.seq)
    assert netlink.parse_neighbour(message)[1].ip == "10.90.0.10"
    # An error for an earlier request does not raise either.
    error = bytearray(Capture("neigh-v4-enoent").reply)
    struct.pack_into("=I", error, 8, ours.seq - 1)
    assert netlink.parse_neighbour(netlink.reply(bytes(error) + ours.reply, ours.seq))[1].state == "DELAY"


def _with_header(kind, seq, payload, flags=0):
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def test_an_acknowledgement_or_done_without_an_answer_is_an_error():
    with pytest.raises(netlink.NetlinkError, match="acknowledged the request without answering"):
        netlink.reply(_with_header(netlink.NLMSG_ERROR, 7, struct.pack("=i", 0) + bytes(16)), 7)
    with pytest.raises(netlink.NetlinkError, match="ended the answer without an entry"):
        netlink.reply(_with_header(netlink.NLMSG_DONE, 7, struct.pack("=i", 0)), 7)
    with pytest.raises(netlink.NetlinkError, match="with errno -5"):
        netlink.reply(_with_header(netlink.NLMSG_ERROR, 7, struct.pack("=i", 5)), 7)


def test_a_reply_of_the_wrong_kind_is_an_error_not_a_guess():
    route, neigh = Capture("route-v4-onlink"), Capture("neigh-v4-delay")
    with pytest.raises(netlink.NetlinkError, match="not a neighbour"):
        netlink.parse_neighbour(netlink.reply(route.reply, route.seq))
    with pytest.raises(netlink.NetlinkError, match="not a route"):
        netlink.parse_route(netlink.reply(neigh.reply, neigh.seq))


# -- garbage: NetlinkError and nothing else ---------------------------------------------


def _decode(data, seq):
    """What the class does with one datagram; None, a Route/Entry, or NetlinkError."""
    message = netlink.reply(data, seq)
    if message is None:
        return None
    if message.type == netlink.RTM_NEWROUTE:
        return netlink.parse_route(message)
    return netlink.parse_neighbour(message, "eth0")


@pytest.mark.parametrize("name", ROUTES + NEIGHBOURS)
def test_every_truncation_is_a_netlink_error(name):
    capture = Capture(name)
    for length in range(len(capture.reply)):
        with pytest.raises(netlink.NetlinkError):
            _decode(capture.reply[:length] if length else b"\x00", capture.seq)


def test_truncated_attributes_inside_a_whole_message_are_a_netlink_error():
    capture = Capture("neigh-v4-delay")
    # Shorten the message by 6 bytes and say so in its header: NDA_CACHEINFO now runs past the end.
    short = bytearray(capture.reply[:-6])
    struct.pack_into("=I", short, 0, len(short))
    with pytest.raises(netlink.NetlinkError, match="attribute at offset .* claims 20 bytes"):
        _decode(bytes(short), capture.seq)
    # NDA_DST cut to 3 bytes: an address of the wrong length.
    bad = bytearray(capture.reply)
    struct.pack_into("=H", bad, 16 + 12, 7)
    with pytest.raises(netlink.NetlinkError):
        _decode(bytes(bad), capture.seq)


@pytest.mark.parametrize("name", ROUTES + NEIGHBOURS)
def test_random_damage_decodes_or_is_a_netlink_error(name):
    capture = Capture(name)
    rng = random.Random(name)
    for dummy in range(300):
        data = bytearray(capture.reply)
        for dummy_flip in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(1, len(data) + 1)]
        if rng.random() < 0.2:
            data += bytes(rng.randrange(256) for dummy_extra in range(rng.randrange(1, 24)))
        try:
            result = _decode(bytes(data), capture.seq)
        except netlink.NetlinkError as exc:
            assert exc.errno and str(exc)
            continue
        assert result is None or isinstance(result, (netlink.Route, tuple))
