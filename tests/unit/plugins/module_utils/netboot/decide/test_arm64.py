# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""arm64 clients, from packets AAVMF and arm64 iPXE really sent (no sockets).

fixtures/aavmf-pxe.pcap and fixtures/aavmf-httpboot.pcap were captured on
the lab bridge while qemu-system-aarch64 (TCG, AAVMF 2022.11) booted through
this collection's server into the arm64 lab installer (see fixtures/arm64-ipv6.md):
firmware PXE (option 93 = 11), UEFI HTTP boot (93 = 19), then Debian 13's
iPXE for arm64 (93 = 11, vendor class a bare ``PXEClient``).
"""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client, policy

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
LAB = policy.ServerConfig("10.77.0.1", "http://10.77.0.1:8080")
MAC = "52:54:00:12:34:a1"
ARM = policy.HostView(MAC, "aarch64-linux")
X86 = policy.HostView(MAC, "x86_64-linux")


def conversation(name):
    """(source, destination, decoded DHCP packet) of every DHCPv4 frame of a capture."""
    scapy_all = pytest.importorskip("scapy.all")
    frames = []
    for frame in scapy_all.rdpcap(str(FIXTURES / name)):
        if scapy_all.UDP in frame and {frame[scapy_all.UDP].sport, frame[scapy_all.UDP].dport} & {67, 68, 4011}:
            udp = frame[scapy_all.UDP]
            frames.append(((frame[scapy_all.IP].src, udp.sport), (frame[scapy_all.IP].dst, udp.dport),
                           dhcp.decode(bytes(udp.payload))))
    return frames


def client_requests(name):
    """(source, port, request) of the netboot clients' requests, in capture order."""
    return [(src, dst[1], packet) for src, dst, packet in conversation(name)
            if packet.op == dhcp.BOOTREQUEST and boot_client.classify(packet) is not None]


def server_answer(name, request, port):
    """What the collection's server (10.77.0.1) answered to ``request`` in the capture, or None."""
    for src, dummy, packet in conversation(name):
        if packet.op == dhcp.BOOTREPLY and packet.xid == request.xid and src == ("10.77.0.1", port):
            return packet
    return None


def first(name, port, firmware, mtype):
    for src, dport, packet in client_requests(name):
        if dport == port and boot_client.classify(packet).firmware == firmware and packet.message_type == mtype:
            return src, packet
    raise AssertionError("no %s %s on port %d in %s" % (firmware, mtype, port, name))


def test_aavmf_firmware_pxe_discover_gets_the_arm64_binary_by_tftp_name():
    src, discover = first("aavmf-pxe.pcap", 67, "pxe", dhcp.DHCPDISCOVER)
    client = boot_client.classify(discover)
    assert (client.arch, client.arch_code, client.mac) == ("efi-arm64", 11, MAC)
    decision = policy.decide(discover, 67, src, ARM, LAB)
    assert isinstance(decision, policy.Reply)
    assert decision.boot_file == "ipxe-arm64.efi"
    packet = decision.packet
    assert packet.file == b"ipxe-arm64.efi" and packet.vendor_class == b"PXEClient"
    assert dhcp.OPT_VENDOR_SPECIFIC not in packet.options  # UEFI: no option 43, it asks again on 4011
    assert packet.client_guid == discover.client_guid


def test_aavmf_4011_request_is_acked_back_to_its_port():
    src, request = first("aavmf-pxe.pcap", 4011, "pxe", dhcp.DHCPREQUEST)
    decision = policy.decide(request, 4011, src, ARM, LAB)
    assert isinstance(decision, policy.Reply)
    assert decision.event == events.BOOT_FILE_ACKED
    assert decision.destination.address == src
    assert decision.packet.message_type == dhcp.DHCPACK and decision.packet.file == b"ipxe-arm64.efi"


def test_aavmf_http_boot_gets_the_arm64_binary_url():
    src, discover = first("aavmf-httpboot.pcap", 67, "httpboot", dhcp.DHCPDISCOVER)
    client = boot_client.classify(discover)
    assert (client.arch, client.arch_code) == ("efi-arm64", 19)
    decision = policy.decide(discover, 67, src, ARM, LAB)
    assert decision.boot_file == "http://10.77.0.1:8080/ipxe/ipxe-arm64.efi"
    assert decision.packet.vendor_class == b"HTTPClient"


@pytest.mark.parametrize("name", ["aavmf-pxe.pcap", "aavmf-httpboot.pcap"])
def test_arm64_ipxe_gets_its_script(name):
    src, discover = first(name, 67, "ipxe", dhcp.DHCPDISCOVER)
    client = boot_client.classify(discover)
    assert client.arch == "efi-arm64"
    decision = policy.decide(discover, 67, src, ARM, LAB)
    assert decision.boot_file == LAB.script_url(MAC)
    assert decision.event == events.SCRIPT_OFFERED


@pytest.mark.parametrize("name", ["aavmf-pxe.pcap", "aavmf-httpboot.pcap"])
def test_arm64_client_of_an_x86_64_host_is_refused(name):
    for src, port, request in client_requests(name):
        decision = policy.decide(request, port, src, X86, LAB)
        if port == 67 and request.message_type != dhcp.DHCPDISCOVER:
            continue
        assert isinstance(decision, policy.Ignore)
        assert decision.reason == policy.IGNORE_ARCH_MISMATCH, decision


def test_without_the_arm64_binary_an_arm64_firmware_gets_nothing():
    x86_only = policy.ServerConfig("10.77.0.1", "http://10.77.0.1:8080", binaries=("ipxe.efi", "undionly.kpxe"))
    src, discover = first("aavmf-pxe.pcap", 67, "pxe", dhcp.DHCPDISCOVER)
    decision = policy.decide(discover, 67, src, ARM, x86_only)
    assert isinstance(decision, policy.Ignore) and decision.reason == policy.IGNORE_NO_BOOT_FILE
    # iPXE itself needs no binary: it still gets its script.
    src, discover = first("aavmf-pxe.pcap", 67, "ipxe", dhcp.DHCPDISCOVER)
    assert policy.decide(discover, 67, src, ARM, x86_only).boot_file == LAB.script_url(MAC)


@pytest.mark.parametrize("name", ["aavmf-pxe.pcap", "aavmf-httpboot.pcap"])
def test_replay_agrees_with_what_aavmf_accepted(name):
    """The answers in the capture booted the machine; today's policy must give the same ones."""
    compared = 0
    for src, port, request in client_requests(name):
        ours = policy.decide(request, port, src, ARM, LAB)
        if port == 67 and request.message_type == dhcp.DHCPREQUEST:
            assert ours.reason == policy.IGNORE_MESSAGE_TYPE  # it selects the site server's offer
            continue
        theirs = server_answer(name, request, port)
        assert isinstance(ours, policy.Reply) and theirs is not None
        for field in ("op", "xid", "chaddr", "yiaddr", "siaddr", "file"):
            assert getattr(ours.packet, field) == getattr(theirs, field), field
        for code in (53, 54, 60, 67, 97):
            assert ours.packet.options.get(code) == theirs.options.get(code), code
        compared += 1
    assert compared >= 2
