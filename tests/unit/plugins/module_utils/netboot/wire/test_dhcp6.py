# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DHCPv6 codec, on packets OVMF and iPXE really sent (no sockets).

fixtures/dhcp6/*.pcap: OVMF (EDK2 2022.11) PXE over IPv6 and the iPXE it
loaded, on an IPv6-only lab segment (see fixtures/arm64-ipv6.md).
"""

from __future__ import annotations

import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.dhcp_samples import MAC6 as MAC, frames

CAPTURES = ("ovmf-pxe-proxy.pcap", "ovmf-pxe-addresses.pcap")


@pytest.mark.parametrize("name", CAPTURES)
def test_every_captured_message_round_trips(name):
    seen = 0
    for dummy, dummy2, dummy3, payload in frames(name):
        message = dhcp6.decode(payload)
        assert dhcp6.encode(message) == payload
        seen += 1
    assert seen >= 8


@pytest.mark.parametrize("address, mac", [
    ("fe80::5054:ff:fe12:3461", MAC),
    ("fe80::5054:ff:fe12:3461%br0", MAC),
    ("fd77::5054:ff:fe12:3461", MAC),
    ("fe80::1", None),
    ("fe80::a0ed:4ff:fe22:899f", "a2:ed:04:22:89:9f"),
    ("not-an-address", None),
    (None, None),
])
def test_mac_from_eui64(address, mac):
    assert dhcp6.mac_from_eui64(address) == mac


def test_mac_from_duid():
    assert dhcp6.mac_from_duid(dhcp6.duid_ll(MAC)) == MAC
    llt = struct.pack("!HHI", dhcp6.DUID_LLT, 1, 12345) + bytes.fromhex("525400123461")
    assert dhcp6.mac_from_duid(llt) == MAC
    assert dhcp6.mac_from_duid(struct.pack("!H", dhcp6.DUID_UUID) + bytes(16)) is None
    assert dhcp6.mac_from_duid(struct.pack("!HH", dhcp6.DUID_LL, 6) + bytes(6)) is None  # not Ethernet
    assert dhcp6.mac_from_duid(None) is None


def test_a_link_local_eui64_source_wins_over_a_duid():
    message = dhcp6.Message(dhcp6.SOLICIT, 1, ((dhcp6.OPT_CLIENTID, dhcp6.duid_ll("02:00:00:00:00:01")),))
    assert dhcp6.client_mac(message, "fe80::5054:ff:fe12:3461") == (MAC, "eui64")
    assert dhcp6.client_mac(message, "fe80::1") == ("02:00:00:00:00:01", "duid")


def test_vendor_class_and_ia_na_build_and_parse():
    value = dhcp6.vendor_class_option(343, b"PXEClient")
    assert value == bytes.fromhex("00000157") + b"\x00\x09PXEClient"
    assert dhcp6.parse_vendor_class(value) == (343, [b"PXEClient"])
    ia = dhcp6.ia_na_option(b"\x01\x02\x03\x04", 1800, 2880, [("fd77::1", 3600, 7200)])
    assert dhcp6.parse_ia_na(ia) == (b"\x01\x02\x03\x04", 1800, 2880, ["fd77::1"])


def test_relay_messages_are_decoded_but_never_classified():
    inner = dhcp6.encode(dhcp6.Message(dhcp6.SOLICIT, 7, ()))
    relay = bytes((dhcp6.RELAY_FORW, 0)) + bytes(16) + bytes(15) + b"\x01" + struct.pack("!HH", 9, len(inner)) + inner
    message = dhcp6.decode(relay)
    assert message.relay == (0, "::", "::1") and message.option(dhcp6.OPT_RELAY_MSG) == inner
    assert boot_client.classify6(message, "fe80::5054:ff:fe12:3461") is None
    with pytest.raises(ValueError):
        dhcp6.encode(message)


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00", "shorter than a DHCPv6 header"),
    (b"\x00\x00\x00\x01", "message type 0"),
    (b"\x01\x00\x00\x01\x00\x01\x00\x05abc", "runs past the end"),
    (b"\x01\x00\x00\x01\x00", "truncated option header"),
    (b"\x0c\x00" + bytes(10), "shorter than a relay message header"),
    ("text", "expected bytes"),
])
def test_malformed_packets_raise_one_exception(data, message):
    with pytest.raises(dhcp6.MalformedPacket, match=message):
        dhcp6.decode(data)


def test_ill_formed_class_options_are_skipped_not_fatal():
    message = dhcp6.Message(dhcp6.SOLICIT, 1, ((dhcp6.OPT_USER_CLASS, b"\x00\x09iPXE"), (dhcp6.OPT_VENDOR_CLASS, b"\x00")))
    assert message.user_classes == [] and message.vendor_classes == []
