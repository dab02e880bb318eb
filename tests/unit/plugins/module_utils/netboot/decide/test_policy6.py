# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the DHCPv6 side answers, fed with the packets OVMF and iPXE sent in the lab (no sockets).

In both captures the machine booted to its installer's phone-home through
this server: ``ovmf-pxe-proxy.pcap`` beside the site's dnsmasq (router +
stateful DHCPv6), ``ovmf-pxe-addresses.pcap`` alone on the segment.
"""

from __future__ import annotations

import ipaddress
import pathlib
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp6, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client, policy, policy6

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "dhcp6"
MAC = "52:54:00:12:34:61"
SERVER = "fd77::1"
DUID = dhcp6.duid_ll("02:00:00:00:00:fe")
PROXY = policy6.ServerConfig6(SERVER, 8080, DUID)
ADDRESSES = policy6.ServerConfig6(SERVER, 8080, DUID, mode="addresses", prefix="fd77::/64")
HOST = policy.HostView(MAC, "x86_64-linux")
SCRIPT = "http://[fd77::1]:8080/boot/52:54:00:12:34:61/script.ipxe"


def conversation(name):
    """[(source sockaddr, destination port, message)] of the clients' DHCPv6 messages, in order."""
    scapy_all = pytest.importorskip("scapy.all")
    out = []
    for frame in scapy_all.rdpcap(str(FIXTURES / name)):
        if scapy_all.IPv6 in frame and scapy_all.UDP in frame:
            udp = frame[scapy_all.UDP]
            message = dhcp6.decode(bytes(udp.payload)) if udp.dport in (547, 4011) else None
            if message is not None and message.msg_type not in (dhcp6.ADVERTISE, dhcp6.REPLY):
                out.append(((frame[scapy_all.IPv6].src, udp.sport), udp.dport, message))
    return out


def pick(name, mtype, port=547, ipxe=False, netboot=True):
    for source, dport, message in conversation(name):
        if (message.msg_type == mtype and dport == port and bool(message.user_classes) == ipxe
                and bool(message.vendor_classes) == netboot):
            return source, message
    raise AssertionError("no such message in %s" % name)


def learnt(name):
    """The DUID -> MAC pairs the server learns from the link-local messages of a capture."""
    known = {}
    for source, dummy, message in conversation(name):
        mac, how = dhcp6.client_mac(message, source[0])
        if mac and how != "learnt":
            known[message.client_id] = mac
    return known


def as_reply(decision):
    assert isinstance(decision, policy6.Reply6), decision
    wire = decision.encode()
    assert dhcp6.encode(dhcp6.decode(wire)) == wire
    return dhcp6.decode(wire)


# -- proxy mode ------------------------------------------------------------------------------------

def test_proxy_answers_the_firmware_solicit_without_an_address():
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT)
    decision = policy6.decide6(solicit, 547, source, HOST, PROXY)
    answer = as_reply(decision)
    assert answer.msg_type == dhcp6.ADVERTISE and answer.xid == solicit.xid
    assert answer.client_id == solicit.client_id and answer.server_id == DUID
    assert answer.option(dhcp6.OPT_IA_NA) is None and answer.option(dhcp6.OPT_STATUS_CODE) is None
    assert answer.option(dhcp6.OPT_PREFERENCE) is None  # the site's address offer must still win the address
    assert answer.vendor_classes == [(343, [b"PXEClient"])]
    assert answer.boot_file_url == "tftp://[fd77::1]/ipxe.efi"
    assert decision.destination.address == source and decision.event == events.OFFERED


def test_proxy_acks_edk2s_boot_server_request_on_4011():
    source, request = pick("ovmf-pxe-proxy.pcap", dhcp6.REQUEST, port=4011)
    decision = policy6.decide6(request, 4011, source, HOST, PROXY, learnt("ovmf-pxe-proxy.pcap"))
    answer = as_reply(decision)
    assert answer.msg_type == dhcp6.REPLY and answer.xid == request.xid
    assert answer.boot_file_url == "tftp://[fd77::1]/ipxe.efi"
    assert decision.destination.address == source and source[1] == 4011
    assert decision.event == events.BOOT_FILE_ACKED
    # Without the MAC learnt from its Solicit the request cannot be tied to a host.
    assert policy6.decide6(request, 4011, source, HOST, PROXY).reason == policy6.IGNORE_NO_MAC


def test_proxy_leaves_the_site_servers_exchanges_alone():
    source, request = pick("ovmf-pxe-proxy.pcap", dhcp6.REQUEST)
    assert policy6.decide6(request, 547, source, HOST, PROXY).reason == policy6.IGNORE_OTHER_SERVER
    source, release = pick("ovmf-pxe-proxy.pcap", dhcp6.RELEASE, netboot=False)
    assert policy6.decide6(release, 547, source, HOST, PROXY).reason == policy6.IGNORE_OTHER_SERVER
    source, plain = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT, netboot=False)
    assert policy6.decide6(plain, 547, source, HOST, PROXY).reason == policy.IGNORE_NOT_NETBOOT


def test_proxy_cannot_help_ipxe_on_a_stateful_segment():
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT, ipxe=True)
    assert policy6.decide6(solicit, 547, source, HOST, PROXY).reason == policy6.IGNORE_NEEDS_ADDRESS


def test_proxy_answers_ipxe_information_request_with_the_script():
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT, ipxe=True)
    info = dhcp6.Message(dhcp6.INFORMATION_REQUEST, 0x1234,
                         tuple(o for o in solicit.options if o[0] not in (dhcp6.OPT_IA_NA,)))
    decision = policy6.decide6(info, 547, source, HOST, PROXY)
    answer = as_reply(decision)
    assert answer.msg_type == dhcp6.REPLY and answer.boot_file_url == SCRIPT
    assert decision.event == events.SCRIPT_OFFERED


def test_http_boot_gets_the_binary_url_and_httpclient():
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT)
    options = tuple((c, v) if c != dhcp6.OPT_VENDOR_CLASS else (c, dhcp6.vendor_class_option(343, b"HTTPClient:Arch:00016:UNDI:003000"))
                    for c, v in solicit.options if c != dhcp6.OPT_CLIENT_ARCH) + ((dhcp6.OPT_CLIENT_ARCH, b"\x00\x10"),)
    decision = policy6.decide6(dhcp6.Message(dhcp6.SOLICIT, 9, options), 547, source, HOST, PROXY)
    answer = as_reply(decision)
    assert answer.boot_file_url == "http://[fd77::1]:8080/ipxe/ipxe.efi"
    assert answer.vendor_classes == [(343, [b"HTTPClient"])]


@pytest.mark.parametrize("host, reason", [
    (None, policy.IGNORE_UNKNOWN_HOST),
    (policy.HostView("52:54:00:12:34:99"), policy.IGNORE_UNKNOWN_HOST),
    (policy.HostView(MAC, finished=True), policy.IGNORE_FINISHED),
    (policy.HostView(MAC, "aarch64-linux"), policy.IGNORE_ARCH_MISMATCH),
])
def test_only_unfinished_inventory_hosts_of_the_right_architecture_are_answered(host, reason):
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT)
    assert policy6.decide6(solicit, 547, source, host, PROXY).reason == reason


def test_no_binary_no_answer():
    config = policy6.ServerConfig6(SERVER, 8080, DUID, binaries=("undionly.kpxe",))
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT)
    assert policy6.decide6(solicit, 547, source, HOST, config).reason == policy.IGNORE_NO_BOOT_FILE


def test_relayed_and_stray_messages_are_ignored():
    source, solicit = pick("ovmf-pxe-proxy.pcap", dhcp6.SOLICIT)
    assert policy6.decide6(solicit, 4011, source, HOST, PROXY).reason == policy.IGNORE_MESSAGE_TYPE
    assert policy6.decide6(solicit, 1234, source, HOST, PROXY).reason == policy.IGNORE_PORT
    relay = dhcp6.Message(dhcp6.RELAY_FORW, 0, ((dhcp6.OPT_RELAY_MSG, dhcp6.encode(solicit)),), (0, "::", "fe80::1"))
    assert policy6.decide6(relay, 547, source, HOST, PROXY).reason == policy6.IGNORE_RELAYED
    anonymous = dhcp6.Message(dhcp6.SOLICIT, 1, tuple(o for o in solicit.options if o[0] != dhcp6.OPT_CLIENTID))
    assert policy6.decide6(anonymous, 547, source, HOST, PROXY).reason == policy.IGNORE_MESSAGE_TYPE
    assert policy6.decide6(solicit, 547, ("fd77::99", 546), HOST, PROXY).reason == policy6.IGNORE_NO_MAC


# -- addresses mode --------------------------------------------------------------------------------

ADDRESS = "fd77::5254:12:3461"


def test_addresses_mode_advertises_an_address_from_the_mac_with_top_preference():
    source, solicit = pick("ovmf-pxe-addresses.pcap", dhcp6.SOLICIT)
    decision = policy6.decide6(solicit, 547, source, HOST, ADDRESSES)
    answer = as_reply(decision)
    assert answer.msg_type == dhcp6.ADVERTISE and answer.option(dhcp6.OPT_PREFERENCE) == b"\xff"
    iaid, dummy, dummy2, addresses = dhcp6.parse_ia_na(answer.option(dhcp6.OPT_IA_NA))
    assert iaid == solicit.option(dhcp6.OPT_IA_NA)[:4] and addresses == [ADDRESS]
    assert decision.address == ADDRESS and answer.boot_file_url == "tftp://[fd77::1]/ipxe.efi"


def test_addresses_mode_request_renew_rebind_keep_the_same_address():
    source, request = pick("ovmf-pxe-addresses.pcap", dhcp6.REQUEST)
    config = policy6.ServerConfig6(SERVER, 8080, request.server_id, mode="addresses", prefix="fd77::/64")
    answer = as_reply(policy6.decide6(request, 547, source, HOST, config))
    assert answer.msg_type == dhcp6.REPLY and dhcp6.parse_ia_na(answer.option(dhcp6.OPT_IA_NA))[3] == [ADDRESS]
    for mtype in (dhcp6.RENEW, dhcp6.REBIND):
        options = tuple(o for o in request.options if mtype == dhcp6.RENEW or o[0] != dhcp6.OPT_SERVERID)
        decision = policy6.decide6(dhcp6.Message(mtype, 5, options), 547, source, HOST, config)
        assert decision.event == events.DHCP6_LEASE and decision.address == ADDRESS


def test_addresses_mode_answers_release_so_edk2_lets_ipxe_take_the_nic():
    source, release = pick("ovmf-pxe-addresses.pcap", dhcp6.RELEASE, netboot=False)
    config = policy6.ServerConfig6(SERVER, 8080, release.server_id, mode="addresses", prefix="fd77::/64")
    answer = as_reply(policy6.decide6(release, 547, source, HOST, config))
    assert answer.option(dhcp6.OPT_STATUS_CODE) == struct.pack("!H", dhcp6.STATUS_SUCCESS)
    # Even once the host is done: a Release is not an offer.
    assert isinstance(policy6.decide6(release, 547, source, policy.HostView(MAC, finished=True), config), policy6.Reply6)


def test_confirm_says_whether_the_address_is_on_link():
    source, solicit = pick("ovmf-pxe-addresses.pcap", dhcp6.SOLICIT)
    for address, status in ((ADDRESS, dhcp6.STATUS_SUCCESS), ("2001:db8::1", dhcp6.STATUS_NOT_ON_LINK)):
        ia = dhcp6.ia_na_option(b"\0\0\0\1", 0, 0, [(address, 0, 0)])
        confirm = dhcp6.Message(dhcp6.CONFIRM, 3, ((dhcp6.OPT_CLIENTID, solicit.client_id), (dhcp6.OPT_IA_NA, ia)))
        answer = as_reply(policy6.decide6(confirm, 547, source, HOST, ADDRESSES))
        assert answer.option(dhcp6.OPT_STATUS_CODE) == struct.pack("!H", status)


def test_addresses_mode_gives_ipxe_address_and_script_and_honours_rapid_commit():
    source, solicit = pick("ovmf-pxe-addresses.pcap", dhcp6.SOLICIT, ipxe=True)
    answer = as_reply(policy6.decide6(solicit, 547, source, HOST, ADDRESSES))
    assert answer.msg_type == dhcp6.ADVERTISE and answer.boot_file_url == SCRIPT
    assert dhcp6.parse_ia_na(answer.option(dhcp6.OPT_IA_NA))[3] == [ADDRESS]
    rapid = dhcp6.Message(dhcp6.SOLICIT, solicit.xid, solicit.options + ((dhcp6.OPT_RAPID_COMMIT, b""),))
    answer = as_reply(policy6.decide6(rapid, 547, source, HOST, ADDRESSES))
    assert answer.msg_type == dhcp6.REPLY and answer.option(dhcp6.OPT_RAPID_COMMIT) == b""


def test_replay_agrees_with_the_answers_that_booted_the_machine():
    """Our answers in the capture took OVMF and iPXE to the installer; today's must be the same bytes."""
    captured = {}
    scapy_all = pytest.importorskip("scapy.all")
    for frame in scapy_all.rdpcap(str(FIXTURES / "ovmf-pxe-addresses.pcap")):
        if scapy_all.UDP in frame and frame[scapy_all.UDP].sport in (547, 4011):
            answer = dhcp6.decode(bytes(frame[scapy_all.UDP].payload))
            captured[(answer.xid, answer.client_id, frame[scapy_all.UDP].sport, answer.msg_type)] = answer
    server_duid = next(iter(captured.values())).server_id
    config = policy6.ServerConfig6(SERVER, 8080, server_duid, mode="addresses", prefix="fd77::/64")
    known = learnt("ovmf-pxe-addresses.pcap")
    compared = 0
    for source, port, message in conversation("ovmf-pxe-addresses.pcap"):
        expected = dhcp6.ADVERTISE if message.msg_type == dhcp6.SOLICIT else dhcp6.REPLY
        theirs = captured.get((message.xid, message.client_id, port, expected))
        if theirs is None:
            continue
        ours = policy6.decide6(message, port, source, HOST, config, known)
        assert isinstance(ours, policy6.Reply6), (message.type_name, ours)
        assert sorted(ours.message.options) == sorted(theirs.options), message.type_name
        compared += 1
    assert compared >= 5


def test_assigned_address_and_config_checks():
    assert policy6.assigned_address("fd77::/64", MAC) == ADDRESS
    assert ipaddress.IPv6Address(policy6.assigned_address("2001:db8:1:2::/64", "ff:ff:ff:ff:ff:ff")) in ipaddress.IPv6Network("2001:db8:1:2::/64")
    with pytest.raises(ValueError, match="global or unique-local"):
        policy6.ServerConfig6("fe80::1", 8080, DUID)
    with pytest.raises(ValueError, match="needs the prefix"):
        policy6.ServerConfig6(SERVER, 8080, DUID, mode="addresses")
    with pytest.raises(ValueError, match="too small"):
        policy6.ServerConfig6(SERVER, 8080, DUID, mode="addresses", prefix="fd77::/96")
    with pytest.raises(ValueError, match="mode must be one of"):
        policy6.ServerConfig6(SERVER, 8080, DUID, mode="relay")


# -- arm64 over IPv6 (AAVMF, then Debian 13's iPXE for arm64) --------------------------------------

ARM_MAC = "52:54:00:12:34:b1"
ARM = policy.HostView(ARM_MAC, "aarch64-linux")


def test_aavmf_solicit_gets_the_arm64_binary_over_tftp():
    source, solicit = pick("aavmf-pxe-proxy.pcap", dhcp6.SOLICIT)
    assert solicit.client_arches == (11,)
    answer = as_reply(policy6.decide6(solicit, 547, source, ARM, PROXY))
    assert answer.boot_file_url == "tftp://[fd77::1]/ipxe-arm64.efi"
    assert policy6.decide6(solicit, 547, source, policy.HostView(ARM_MAC), PROXY).reason == policy.IGNORE_ARCH_MISMATCH
    source, request = pick("aavmf-pxe-proxy.pcap", dhcp6.REQUEST, port=4011)
    answer = as_reply(policy6.decide6(request, 4011, source, ARM, PROXY, learnt("aavmf-pxe-proxy.pcap")))
    assert answer.boot_file_url == "tftp://[fd77::1]/ipxe-arm64.efi"


def test_arm64_ipxe_is_left_to_the_stateful_site_or_told_its_script_when_it_asks_for_information():
    source, solicit = pick("aavmf-pxe-proxy.pcap", dhcp6.SOLICIT, ipxe=True)
    client = boot_client.classify6(solicit, source[0])
    assert (client.firmware, client.arch) == ("ipxe", "efi-arm64")
    assert policy6.decide6(solicit, 547, source, ARM, PROXY).reason == policy6.IGNORE_NEEDS_ADDRESS
    info = dhcp6.Message(dhcp6.INFORMATION_REQUEST, 7, tuple(o for o in solicit.options if o[0] != dhcp6.OPT_IA_NA))
    answer = as_reply(policy6.decide6(info, 547, source, ARM, PROXY))
    assert answer.boot_file_url == "http://[fd77::1]:8080/boot/52:54:00:12:34:b1/script.ipxe"
