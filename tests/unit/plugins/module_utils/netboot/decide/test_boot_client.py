# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What kind of boot client sent a request (decide/boot_client.py), on requests built by hand and captured from OVMF and iPXE (no sockets)."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, dhcp6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.dhcp_samples import (
    GUID, MAC, MAC6, OVMF_VENDOR, client_messages, ovmf_discover, raw_request)


# -- DHCPv4 ------------------------------------------------------------------

@pytest.mark.parametrize("code, arch, firmware", [
    (0, "bios", "pxe"),
    (6, "efi-ia32", "pxe"),
    (7, "efi-x86_64", "pxe"),
    (9, "efi-x86_64", "pxe"),
    (10, "efi-arm32", "pxe"),
    (11, "efi-arm64", "pxe"),
    (15, "efi-ia32", "httpboot"),
    (16, "efi-x86_64", "httpboot"),
    (18, "efi-arm32", "httpboot"),
    (19, "efi-arm64", "httpboot"),
    (1, "unknown", "pxe"),
    (2, "unknown", "pxe"),
    (41, "unknown", "pxe"),
    (0xFFFF, "unknown", "pxe"),
])
def test_classify_architectures(code, arch, firmware):
    vendor = b"PXEClient:Arch:%05d:UNDI:003000" % code
    client = boot_client.classify(dhcp.decode(raw_request([(53, b"\x01"), (93, struct.pack("!H", code)), (60, vendor)])))
    assert client.arch == arch
    assert client.arch_code == code
    assert client.firmware == firmware
    assert client.mac == MAC


def test_classify_ovmf():
    client = boot_client.classify(dhcp.decode(ovmf_discover()))
    assert client == boot_client.BootClient(mac=MAC, arch="efi-x86_64", arch_code=7, firmware="pxe", guid=GUID)
    assert client.vendor_class == "PXEClient"
    assert client.ipxe_can_http


def test_classify_arch_from_vendor_class_when_93_missing_or_bad():
    client = boot_client.classify(dhcp.decode(raw_request([(53, b"\x01"), (60, b"PXEClient:Arch:00011:UNDI:003016")])))
    assert (client.arch, client.arch_code) == ("efi-arm64", 11)
    client = boot_client.classify(dhcp.decode(raw_request([(53, b"\x01"), (93, b"\x00"), (60, b"PXEClient:Arch:00000:UNDI:002001")])))
    assert (client.arch, client.arch_code) == ("bios", 0)


def test_classify_arch_unknown_without_any_hint():
    client = boot_client.classify(dhcp.decode(raw_request([(53, b"\x01"), (60, b"PXEClient")])))
    assert (client.arch, client.arch_code) == ("unknown", None)
    client = boot_client.classify(dhcp.decode(raw_request([(53, b"\x01"), (60, b"PXEClient:Arch:xyz")])))
    assert client.arch_code is None


@pytest.mark.parametrize("user_class", [b"iPXE", b"\x04iPXE", b"\x03foo\x04iPXE"])
def test_classify_ipxe_user_class(user_class):
    data = raw_request([(53, b"\x01"), (93, b"\x00\x00"), (60, b"PXEClient:Arch:00000:UNDI:002001"), (77, user_class)])
    client = boot_client.classify(dhcp.decode(data))
    assert client.firmware == "ipxe"
    assert client.arch == "bios"
    assert client.vendor_class == "PXEClient"


def test_classify_ipxe_without_vendor_class():
    client = boot_client.classify(dhcp.decode(raw_request([(53, b"\x01"), (77, b"iPXE")])))
    assert client.firmware == "ipxe"
    assert client.arch == "unknown"


def test_classify_ipxe_features_from_option_175():
    encap = dhcp.encode_suboptions([(0xB1, b"\x01\x00\x03\x00"), (0x13, b"\x01"), (0x15, b"\x01"), (0xEB, b"\x01\x00\x00")])
    data = raw_request([(53, b"\x01"), (93, b"\x00\x07"), (60, OVMF_VENDOR), (77, b"iPXE"), (175, encap)])
    client = boot_client.classify(dhcp.decode(data))
    assert client.ipxe_features == frozenset({0x13, 0x15})
    assert client.ipxe_can_http


def test_classify_ipxe_without_http_feature():
    encap = dhcp.encode_suboptions([(0x15, b"\x01"), (0x21, b"\x01")])
    data = raw_request([(53, b"\x01"), (93, b"\x00\x00"), (60, b"PXEClient"), (77, b"iPXE"), (175, encap)])
    client = boot_client.classify(dhcp.decode(data))
    assert not client.ipxe_can_http


def test_classify_malformed_175_means_no_features():
    data = raw_request([(53, b"\x01"), (60, b"PXEClient"), (77, b"iPXE"), (175, b"\x13\x05\x01")])
    client = boot_client.classify(dhcp.decode(data))
    assert client.ipxe_features == frozenset()
    assert client.ipxe_can_http


def test_classify_http_client():
    data = raw_request([(53, b"\x01"), (93, b"\x00\x10"), (60, b"HTTPClient:Arch:00016:UNDI:003000")])
    client = boot_client.classify(dhcp.decode(data))
    assert (client.arch, client.firmware, client.vendor_class) == ("efi-x86_64", "httpboot", "HTTPClient")


@pytest.mark.parametrize("guid", [None, b"", GUID, b"\x01\x02\x03"])
def test_classify_guid_kept_as_received(guid):
    options = [(53, b"\x01"), (60, OVMF_VENDOR)]
    if guid is not None:
        options.append((97, guid))
    assert boot_client.classify(dhcp.decode(raw_request(options))).guid == guid


def test_classify_boot_item_from_option_43():
    data = raw_request([(53, b"\x03"), (93, b"\x00\x00"), (60, b"PXEClient:Arch:00000:UNDI:002001"),
                        (43, b"\x47\x04\x80\x00\x00\x00\xff")])
    assert boot_client.classify(dhcp.decode(data)).boot_item == b"\x80\x00\x00\x00"
    data = raw_request([(53, b"\x03"), (60, b"PXEClient"), (43, b"\x47\x09\x00")])
    assert boot_client.classify(dhcp.decode(data)).boot_item is None


@pytest.mark.parametrize("options, kw", [
    ([(53, b"\x01")], {}),                                                # plain DHCP client
    ([(53, b"\x01"), (60, b"MSFT 5.0")], {}),                             # Windows
    ([(53, b"\x01"), (60, b"udhcp 1.36.1")], {}),                         # busybox (the installer)
    ([(53, b"\x01"), (93, b"\x00\x07")], {}),                             # arch alone is not enough
    ([(53, b"\x02"), (60, b"PXEClient")], {"op": 2}),                    # a reply (another proxy)
    ([(53, b"\x01"), (60, b"PXEClient")], {"htype": 32, "hlen": 0}),     # no Ethernet address
])
def test_classify_not_netboot(options, kw):
    assert boot_client.classify(dhcp.decode(raw_request(options, **kw))) is None


# -- cross-checks with scapy ----------------------------------------------------------


# -- DHCPv6 ------------------------------------------------------------------------------

def test_ovmf_pxe_solicit_is_a_uefi_x86_64_pxe_client():
    solicits = [(src, m) for src, port, m in client_messages("ovmf-pxe-proxy.pcap")
                if m.msg_type == dhcp6.SOLICIT and m.vendor_classes and not m.user_classes]
    src, solicit = solicits[0]
    client = boot_client.classify6(solicit, src)
    assert (client.mac, client.mac_source, client.arch, client.arch_code, client.firmware, client.enterprise) == (
        MAC6, "eui64", "efi-x86_64", 7, "pxe", dhcp6.ENTERPRISE_PXE)
    assert solicit.vendor_classes == [(343, [b"PXEClient:Arch:00007:UNDI:003000"])]
    assert set(solicit.requested_options) >= {dhcp6.OPT_BOOTFILE_URL, dhcp6.OPT_VENDOR_CLASS}
    assert struct.unpack("!H", solicit.client_id[:2])[0] == dhcp6.DUID_UUID  # no MAC in the DUID


def test_the_firmware_ip_stack_own_solicit_is_not_a_netboot_client():
    plain = [(src, m) for src, port, m in client_messages("ovmf-pxe-proxy.pcap")
             if m.msg_type == dhcp6.SOLICIT and not m.vendor_classes]
    assert plain
    assert all(boot_client.classify6(m, src) is None for src, m in plain)


def test_ipxe_solicit_says_ipxe_and_its_architecture():
    src, dummy, solicit = next(x for x in client_messages("ovmf-pxe-proxy.pcap") if x[2].user_classes)
    assert solicit.user_classes == [b"iPXE"]
    client = boot_client.classify6(solicit, src)
    assert (client.firmware, client.arch, client.mac) == ("ipxe", "efi-x86_64", MAC6)


def test_the_4011_request_needs_the_mac_learnt_from_the_solicit():
    src, port, request = next(x for x in client_messages("ovmf-pxe-proxy.pcap") if x[1] == 4011)
    assert not src.startswith("fe80:") and request.msg_type == dhcp6.REQUEST
    assert boot_client.classify6(request, src) is None
    client = boot_client.classify6(request, src, {request.client_id: MAC6})
    assert (client.mac, client.mac_source, client.firmware) == (MAC6, "learnt", "pxe")
