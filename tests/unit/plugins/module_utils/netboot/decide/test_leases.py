# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the addresses mode's answers (decide/leases.py): pure, no sockets.

The Linux clients' conversations are replayed from real captures against dnsmasq
(fixtures/leases/, made by tests/lab/capture_dhcp_clients.py); the firmware's from the
captures of fixtures/. Packets built here by hand are labelled as such.
"""

from __future__ import annotations

import pathlib
import socket
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import leases, policy
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.leases import LeaseBook

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
MAC = "52:54:00:12:34:01"
MAC_BYTES = bytes.fromhex(MAC.replace(":", ""))
# The capture's dnsmasq: --dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0,1h, router and DNS 10.99.0.1.
CAPTURE_CONFIG = leases.LeaseConfig("10.99.0.1", "10.99.0.0/24", ("10.99.0.1",), ("10.99.0.1",), 3600)
SPARES = ["10.99.0.%d" % n for n in range(100, 200)]
# The options a client configures itself from: dnsmasq's values are the reference. T1 and T2
# (58, 59) are not among them: dnsmasq takes a random few percent off T1 in an ACK.
LEASE_OPTIONS = (53, 54, 51, 1, 3, 6, 28)


def conversation(path):
    scapy_all = pytest.importorskip("scapy.all")
    frames = []
    for frame in scapy_all.rdpcap(str(path)):
        if scapy_all.UDP in frame and {frame[scapy_all.UDP].sport, frame[scapy_all.UDP].dport} & {67, 68}:
            frames.append((frame[scapy_all.IP].dst, dhcp.decode(bytes(frame[scapy_all.UDP].payload))))
    return frames


def exchanges(path):
    """(request, dnsmasq's answer or None, its destination address) for each client request."""
    frames = conversation(path)
    out = []
    for index, (dummy, packet) in enumerate(frames):
        if packet.op != dhcp.BOOTREQUEST:
            continue
        reply = None
        if index + 1 < len(frames) and frames[index + 1][1].op == dhcp.BOOTREPLY and frames[index + 1][1].xid == packet.xid:
            reply = frames[index + 1]
        out.append((packet, reply[1] if reply else None, reply[0] if reply else None))
    return out


def built(mtype, *, ciaddr="0.0.0.0", giaddr="0.0.0.0", requested=None, server=None, chaddr=MAC_BYTES, extra=()):
    """A request built by hand (not captured), for the cases no client in the lab sends."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s4s", 1, 1, 6, 0, 0x1234, 0, 0, socket.inet_aton(ciaddr), bytes(4),
                       bytes(4), socket.inet_aton(giaddr), chaddr, b"", b"", dhcp.MAGIC_COOKIE)
    options = [(53, bytes((mtype,)))] + list(extra)
    if requested:
        options.append((50, socket.inet_aton(requested)))
    if server:
        options.append((54, socket.inet_aton(server)))
    return dhcp.decode(head + b"".join(bytes((c, len(v))) + v for c, v in options) + b"\xff")


# -- the Linux clients, replayed against what dnsmasq answered them -------------------------------

@pytest.mark.parametrize("name", ["udhcpc.pcap", "dhcpcd.pcap"])
def test_linux_clients_get_what_dnsmasq_gave_them(name):
    book = LeaseBook({MAC: "10.99.0.50"}, SPARES)
    kinds = []
    for now, (request, theirs, their_destination) in enumerate(exchanges(FIXTURES / "leases" / name)):
        if theirs is not None and theirs.message_type == dhcp.DHCPNAK and book.lease(MAC).address == "10.99.0.50":
            # Here the capture restarted dnsmasq with the host moved to 10.99.0.60: the client's
            # remembered lease (INIT-REBOOT of .50) must be refused.
            book = LeaseBook({MAC: "10.99.0.60"}, SPARES)
        ours = leases.answer(request, book.host(MAC), CAPTURE_CONFIG)
        assert isinstance(ours, leases.LeaseAnswer), (request.message_type_name, ours)
        kinds.append(ours.change)
        if theirs is None:
            assert ours.packet is None and ours.change in (leases.RELEASE, leases.DECLINE)
        else:
            assert ours.packet.message_type == theirs.message_type
            assert ours.packet.xid == theirs.xid and ours.packet.chaddr == theirs.chaddr
            if book.declined:
                # After the DECLINE both offer a range address, each its own choice; the client
                # then asks for dnsmasq's, so the replay ends here.
                assert ours.change == leases.OFFER and ours.packet.yiaddr == "10.99.0.100"
                assert theirs.yiaddr not in book.declined
                break
            else:
                assert ours.packet.yiaddr == theirs.yiaddr
                codes = LEASE_OPTIONS if ours.change != leases.NAK else (53, 54)
                for code in codes:
                    assert ours.packet.options.get(code) == theirs.options.get(code), (request.message_type_name, code)
            assert dhcp.decode(ours.encode()) == ours.packet
            if ours.change in (leases.OFFER, leases.BIND):
                assert ours.packet.options[58] == (1800).to_bytes(4, "big") and ours.packet.options[59] == (3150).to_bytes(4, "big")
                assert 1500 < int.from_bytes(theirs.options[58], "big") <= 1800
            if ours.destination.broadcast:
                assert ours.destination.address == ("255.255.255.255", 68)
            else:
                assert ours.destination.address == (their_destination, 68)
        book.apply(MAC, ours, float(now), CAPTURE_CONFIG.lease_time)
    if name == "udhcpc.pcap":
        assert kinds == [leases.OFFER, leases.BIND, leases.BIND, leases.RELEASE, leases.OFFER, leases.BIND]
    else:
        assert kinds.count(leases.NAK) == 1 and kinds.count(leases.DECLINE) == 1 and kinds.count(leases.RELEASE) == 1


def test_the_renewal_is_recognised_and_answered_to_the_leased_address():
    renew = exchanges(FIXTURES / "leases" / "udhcpc.pcap")[2][0]
    assert renew.ciaddr == "10.99.0.50" and renew.server_id is None and renew.requested_ip is None
    ours = leases.answer(renew, leases.LeaseHost(MAC, "10.99.0.50"), CAPTURE_CONFIG)
    assert ours.change == leases.BIND and ours.detail == "RENEWING"
    assert ours.destination == policy.Destination("10.99.0.50", 68)
    assert ours.packet.ciaddr == "10.99.0.50"


def test_the_lease_is_the_macs_whatever_client_id_it_sends():
    discover = exchanges(FIXTURES / "leases" / "udhcpc.pcap")[0][0]
    assert discover.options[61] == bytes.fromhex("0152540012340a")  # not the MAC: a client-id of its own
    assert leases.answer(discover, leases.LeaseHost(MAC, "10.99.0.50"), CAPTURE_CONFIG).address == "10.99.0.50"


def test_a_stranger_gets_nothing():
    discover = exchanges(FIXTURES / "leases" / "dhcpcd.pcap")[0][0]
    assert leases.answer(discover, None, CAPTURE_CONFIG).reason == policy.IGNORE_UNKNOWN_HOST
    other = leases.LeaseHost("52:54:00:99:99:99", "10.99.0.50")
    assert leases.answer(discover, other, CAPTURE_CONFIG).reason == policy.IGNORE_UNKNOWN_HOST


# -- systemd-networkd, NixOS's own client: a DUID client identifier that changes with the install ----

NETWORKD = FIXTURES / "leases" / "systemd-networkd.pcap"
# Its capture's dnsmasq gave the MAC a 2-minute lease (dhcp-host=...,2m) with T1 5 s, so that
# networkd renews within seconds; T1 and T2 are left out of the comparison as above.
NETWORKD_CONFIG = leases.LeaseConfig("10.99.0.1", "10.99.0.0/24", ("10.99.0.1",), ("10.99.0.1",), 120)


def test_systemd_networkd_gets_what_dnsmasq_gave_it():
    book = LeaseBook({MAC: "10.99.0.50"}, SPARES)
    steps = []
    for now, (request, theirs, their_destination) in enumerate(exchanges(NETWORKD)):
        ours = leases.answer(request, book.host(MAC), NETWORKD_CONFIG)
        assert isinstance(ours, leases.LeaseAnswer), (request.message_type_name, ours)
        steps.append((ours.change, ours.detail))
        if theirs is None:
            # systemd 252's RELEASE has no server identifier (RFC 2131 table 5 wants one): dnsmasq drops
            # it without a word, we take it by ciaddr, the MAC's address (still no answer either way).
            assert ours.packet is None and ours.change == leases.RELEASE
            assert request.ciaddr == "10.99.0.50" and request.server_id is None
        else:
            assert (ours.packet.message_type, ours.packet.xid, ours.packet.chaddr, ours.packet.yiaddr) == \
                (theirs.message_type, theirs.xid, theirs.chaddr, theirs.yiaddr)
            for code in LEASE_OPTIONS:
                assert ours.packet.options.get(code) == theirs.options.get(code), (request.message_type_name, code)
            if ours.destination.broadcast:
                # networkd asks for no broadcast (RequestBroadcast=no), so dnsmasq unicast to yiaddr
                # by writing the ARP table; a broadcast reaches the same client (the integration target shows it).
                assert not request.broadcast and their_destination == "10.99.0.50"
                assert ours.destination.address == ("255.255.255.255", 68)
            else:
                assert ours.destination.address == (their_destination, 68)
        book.apply(MAC, ours, float(now), NETWORKD_CONFIG.lease_time)
    # The installer: DORA, the renewal at T1, RELEASE when stopped; the installed system: DORA, RELEASE.
    assert steps == [(leases.OFFER, ""), (leases.BIND, "SELECTING"), (leases.BIND, "RENEWING"), (leases.RELEASE, ""),
                     (leases.OFFER, ""), (leases.BIND, "SELECTING"), (leases.RELEASE, "")]
    assert book.lease(MAC).state == leases.RELEASE


def test_systemd_networkd_asks_by_duid_and_is_still_known_by_its_mac():
    """The installed system asks with another client identifier (its machine id, so its DUID,
    changed); the lease is keyed by chaddr, so it gets the installer's address back."""
    installer, installed = [request for request, dummy, dummy in exchanges(NETWORKD) if request.message_type == dhcp.DHCPDISCOVER]
    for discover in (installer, installed):
        client_id = discover.options[61]
        # RFC 4361: type 255, a 4-byte IAID, then the DUID: DUID-EN (2) with systemd's enterprise number 43793.
        assert client_id[0] == 0xFF and client_id[5:7] == b"\x00\x02" and client_id[7:11] == (43793).to_bytes(4, "big")
        assert MAC_BYTES not in client_id and discover.mac == MAC
    assert installer.options[61][:5] == installed.options[61][:5] and installer.options[61] != installed.options[61]
    book = LeaseBook({MAC: "10.99.0.50"}, SPARES)
    for discover in (installer, installed):
        assert leases.answer(discover, book.host(discover.mac), NETWORKD_CONFIG).address == "10.99.0.50"
    assert leases.answer(installed, None, NETWORKD_CONFIG).reason == policy.IGNORE_UNKNOWN_HOST


# -- the firmware, in the same answer as its address -------------------------------------------------

def firmware_requests(name):
    return [exchange[0] for exchange in exchanges(FIXTURES / name) if exchange[0].op == dhcp.BOOTREQUEST]


@pytest.mark.parametrize("name,boot_file,event", [
    ("ovmf-pxe.pcap", b"ipxe.efi", events.OFFERED),
    ("seabios-ipxe.pcap", b"http://10.77.0.1:8080/boot/%s/script.ipxe" % MAC.encode(), events.SCRIPT_OFFERED),
])
def test_firmware_gets_its_address_and_its_boot_file_in_one_offer(name, boot_file, event):
    config = leases.LeaseConfig("10.77.0.1", "10.77.0.0/24", ("10.77.0.1",))
    boot_config = policy.ServerConfig("10.77.0.1", "http://10.77.0.1:8080")
    host = policy.HostView(MAC, "x86_64-linux")
    discover = firmware_requests(name)[0]
    boot = policy.boot_fields(discover, host, boot_config)
    assert isinstance(boot, policy.BootFields) and boot.event == event
    ours = leases.answer(discover, leases.LeaseHost(MAC, "10.77.0.50"), config, boot)
    packet = ours.packet
    assert packet.message_type == dhcp.DHCPOFFER and packet.yiaddr == "10.77.0.50"
    assert packet.siaddr == "10.77.0.1" and packet.file == boot_file
    assert packet.options[60] == b"PXEClient" and packet.options[51] == (3600).to_bytes(4, "big")
    assert packet.client_guid == discover.client_guid
    # The proxy's answer to the same DISCOVER names the same file with the same options.
    proxy = policy.decide(discover, 67, ("0.0.0.0", 68), host, boot_config)
    for code in (60, 97, 43):
        assert packet.options.get(code) == proxy.packet.options.get(code), code


def test_ipxe_gets_its_script_with_its_address():
    ipxe = next(r for r in firmware_requests("ovmf-ipxe.pcap") if r.user_class == b"iPXE" and r.message_type == dhcp.DHCPREQUEST)
    boot_config = policy.ServerConfig("10.77.0.1", "http://10.77.0.1:8080")
    boot = policy.boot_fields(ipxe, policy.HostView(MAC), boot_config)
    assert boot.event == events.SCRIPT_ACKED
    config = leases.LeaseConfig("10.77.0.1", "10.77.0.0/24")
    # iPXE selects the site server's offer in the capture (option 54 10.77.0.2): here that is us.
    selecting = built(dhcp.DHCPREQUEST, requested="10.77.0.50", server="10.77.0.1", extra=[(77, b"iPXE")])
    ours = leases.answer(selecting, leases.LeaseHost(MAC, "10.77.0.50"), config, boot)
    assert ours.change == leases.BIND and ours.packet.boot_file_name == "http://10.77.0.1:8080/boot/%s/script.ipxe" % MAC
    assert leases.answer(ipxe, leases.LeaseHost(MAC, "10.77.0.50"), config, boot).reason == leases.IGNORE_OTHER_SERVER


def test_a_finished_host_gets_its_address_without_a_boot_file():
    discover = firmware_requests("ovmf-pxe.pcap")[0]
    boot = policy.boot_fields(discover, policy.HostView(MAC, finished=True), policy.ServerConfig("10.77.0.1", "http://10.77.0.1:8080"))
    assert boot.reason == policy.IGNORE_FINISHED
    ours = leases.answer(discover, leases.LeaseHost(MAC, "10.77.0.50"), leases.LeaseConfig("10.77.0.1", "10.77.0.0/24"))
    assert ours.packet.yiaddr == "10.77.0.50" and ours.packet.file == b"" and 60 not in ours.packet.options


# -- RFC 2131 section 4.3, case by case (requests built by hand) -----------------------------------

HOST = leases.LeaseHost(MAC, "10.99.0.50")


def test_selecting_another_server_is_left_alone():
    request = built(dhcp.DHCPREQUEST, requested="10.99.0.50", server="10.99.0.2")
    assert leases.answer(request, HOST, CAPTURE_CONFIG).reason == leases.IGNORE_OTHER_SERVER


def test_selecting_us_for_another_address_is_refused():
    ours = leases.answer(built(dhcp.DHCPREQUEST, requested="10.99.0.51", server="10.99.0.1"), HOST, CAPTURE_CONFIG)
    assert ours.change == leases.NAK and ours.destination.broadcast
    assert ours.packet.yiaddr == "0.0.0.0" and b"10.99.0.50 is" in ours.packet.options[56]


def test_init_reboot_on_another_network_is_refused_saying_so():
    ours = leases.answer(built(dhcp.DHCPREQUEST, requested="192.168.1.7"), HOST, CAPTURE_CONFIG)
    assert ours.change == leases.NAK and ours.detail == "INIT-REBOOT: 192.168.1.7 is not on this network (10.99.0.0/24)"


def test_renewing_a_foreign_address_is_refused():
    ours = leases.answer(built(dhcp.DHCPREQUEST, ciaddr="10.99.0.77"), HOST, CAPTURE_CONFIG)
    assert ours.change == leases.NAK and ours.address == "10.99.0.77"


def test_a_request_with_nothing_to_go_by_is_ignored():
    assert leases.answer(built(dhcp.DHCPREQUEST), HOST, CAPTURE_CONFIG).reason == leases.IGNORE_MALFORMED_REQUEST


def test_inform_gets_the_segment_without_an_address_or_a_lease():
    ours = leases.answer(built(dhcp.DHCPINFORM, ciaddr="10.99.0.50"), HOST, CAPTURE_CONFIG)
    assert ours.change == leases.INFORM and ours.destination == policy.Destination("10.99.0.50", 68)
    assert ours.packet.yiaddr == "0.0.0.0" and 51 not in ours.packet.options
    assert ours.packet.options[3] == socket.inet_aton("10.99.0.1") and ours.packet.options[1] == socket.inet_aton("255.255.255.0")
    assert leases.answer(built(dhcp.DHCPINFORM), HOST, CAPTURE_CONFIG).reason == leases.IGNORE_MALFORMED_REQUEST


def test_decline_and_release_only_of_what_the_host_holds_from_us():
    assert leases.answer(built(dhcp.DHCPDECLINE, requested="10.99.0.51", server="10.99.0.1"), HOST, CAPTURE_CONFIG).reason == leases.IGNORE_NOT_HELD
    assert leases.answer(built(dhcp.DHCPDECLINE, requested="10.99.0.50", server="10.99.0.2"), HOST, CAPTURE_CONFIG).reason == leases.IGNORE_OTHER_SERVER
    assert leases.answer(built(dhcp.DHCPRELEASE, ciaddr="10.99.0.51", server="10.99.0.1"), HOST, CAPTURE_CONFIG).reason == leases.IGNORE_NOT_HELD
    assert leases.answer(built(dhcp.DHCPRELEASE, ciaddr="10.99.0.50", server="10.99.0.1"), HOST, CAPTURE_CONFIG).change == leases.RELEASE


def test_relayed_requests_and_a_host_without_an_address_get_nothing():
    assert leases.answer(built(dhcp.DHCPDISCOVER, giaddr="10.1.0.1"), HOST, CAPTURE_CONFIG).reason == leases.IGNORE_RELAYED
    assert leases.answer(built(dhcp.DHCPDISCOVER), leases.LeaseHost(MAC, None), CAPTURE_CONFIG).reason == leases.IGNORE_NO_ADDRESS
    refused = leases.answer(built(dhcp.DHCPREQUEST, requested="10.99.0.50"), leases.LeaseHost(MAC, None), CAPTURE_CONFIG)
    assert refused.change == leases.NAK and "no other address is left" in refused.detail


def test_replies_from_other_servers_and_other_message_types_are_ignored():
    offer = exchanges(FIXTURES / "leases" / "udhcpc.pcap")
    reply = conversation(FIXTURES / "leases" / "udhcpc.pcap")[1][1]
    assert reply.op == dhcp.BOOTREPLY and offer
    assert leases.answer(reply, HOST, CAPTURE_CONFIG).reason == policy.IGNORE_NOT_REQUEST
    assert leases.answer(built(dhcp.DHCPOFFER), HOST, CAPTURE_CONFIG).reason == policy.IGNORE_MESSAGE_TYPE


@pytest.mark.parametrize("kwargs,words", [
    ({"server_ip": "10.1.0.1"}, "outside the served subnet"),
    ({"routers": ("10.1.0.1",)}, "router 10.1.0.1 is outside"),
    ({"lease_time": 10}, "not between 60 s"),
])
def test_a_config_that_cannot_serve_is_refused(kwargs, words):
    settings = {"server_ip": "10.99.0.1", "network": "10.99.0.0/24"}
    settings.update(kwargs)
    with pytest.raises(ValueError, match=words):
        leases.LeaseConfig(**settings)
