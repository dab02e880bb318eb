# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of Wake-on-LAN (plugins/module_utils/_wol.py); sockets are fakes here."""

from __future__ import annotations

import errno
import socket

import pytest
import yaml

from ansible_collections.nixie.metal.plugins.module_utils import _wol

MAC = "52:54:00:12:34:01"
MAC_BYTES = bytes.fromhex("525400123401")


def expected_packet(mac_bytes, tail=b""):
    """Built independently of the library: 6 x 0xff, the MAC 16 times, then the password."""
    return b"\xff" * 6 + mac_bytes * 16 + tail


def params(**overrides):
    values = dict(mac=[MAC], broadcast="255.255.255.255", port=9, interface=None, source_address=None,
                  repeat=3, interval=0.1, password=None)
    values.update(overrides)
    return values


class FakeSocket:
    def __init__(self, family, kind, fail_on=None, fail_after=None):
        self.family, self.kind = family, kind
        self.options, self.bound, self.sent, self.closed = [], None, [], False
        self.fail_on, self.fail_after = fail_on or {}, fail_after

    def setsockopt(self, level, option, value):
        if option in self.fail_on:
            raise self.fail_on[option]
        self.options.append((level, option, value))

    def bind(self, address):
        if "bind" in self.fail_on:
            raise self.fail_on["bind"]
        self.bound = address

    def sendto(self, data, address):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        self.sent.append((data, address))

    def close(self):
        self.closed = True


class Factory:
    def __init__(self, **kwargs):
        self.kwargs, self.sockets = kwargs, []

    def __call__(self, family, kind):
        sock = FakeSocket(family, kind, **self.kwargs)
        self.sockets.append(sock)
        return sock


def prepared(**overrides):
    return _wol.prepare(_wol.plan(params(**overrides)), if_nametoindex=lambda name: 7)


# -- packets ---------------------------------------------------------------------

def test_magic_packet_is_ff_then_sixteen_macs():
    packet = _wol.magic_packet(MAC)
    assert packet == expected_packet(MAC_BYTES)
    assert len(packet) == _wol.MAGIC_PACKET_SIZE == 102


@pytest.mark.parametrize("password, tail", [
    ("aa:bb:cc:dd:ee:ff", bytes.fromhex("aabbccddeeff")),
    ("AA-BB-CC-DD-EE-FF", bytes.fromhex("aabbccddeeff")),
    ("aabb.ccdd.eeff", bytes.fromhex("aabbccddeeff")),
    ("192.168.1.254", bytes([192, 168, 1, 254])),
    ("0.0.0.0", b"\x00" * 4),
])
def test_secureon_password_follows_the_sixteen_macs(password, tail):
    packet = _wol.magic_packet(MAC, _wol.parse_password(password))
    assert packet == expected_packet(MAC_BYTES, tail)
    assert len(packet) == 102 + len(tail)


def test_six_byte_password_matches_the_library_own_secureon_form():
    library = _wol.wakeonlan.create_magic_packet("52:54:00:12:34:01/aa:bb:cc:dd:ee:ff")
    assert _wol.magic_packet(MAC, _wol.parse_password("aa:bb:cc:dd:ee:ff")) == library


@pytest.mark.parametrize("password", ["secret", "11:22:33:44:55", "1.2.3", "256.1.1.1", "11:22:33:44:55:66:77", "1.2.3.4.5"])
def test_bad_password_is_refused_without_repeating_it(password):
    with pytest.raises(_wol.WolError) as caught:
        _wol.parse_password(password)
    assert password not in str(caught.value)
    assert "SecureOn" in str(caught.value)


@pytest.mark.parametrize("password", [None, ""])
def test_no_password_adds_nothing(password):
    assert _wol.parse_password(password) == b""


def test_password_of_odd_length_is_refused():
    with pytest.raises(_wol.WolError, match="4 or 6 bytes"):
        _wol.magic_packet(MAC, b"\x01\x02\x03")


# -- arguments ---------------------------------------------------------------------

def test_macs_in_every_spelling_are_normalised_and_deduplicated_in_order():
    macs = _wol.parse_macs(["52-54-00-12-34-02", "5254.0012.3401", "525400123402", "52:54:00:12:34:01", " 52:54:00:12:34:03 "])
    assert macs == ["52:54:00:12:34:02", "52:54:00:12:34:01", "52:54:00:12:34:03"]


@pytest.mark.parametrize("bad", ["52:54:00:12:34", "zz:54:00:12:34:01", "", "52:54:00:12:34:01/aa:bb:cc:dd:ee:ff", None])
def test_bad_mac_fails_naming_the_entry(bad):
    with pytest.raises(_wol.WolError) as caught:
        _wol.parse_macs([MAC, bad])
    assert str(caught.value).startswith("mac[1] %r is not a MAC address" % bad)


@pytest.mark.parametrize("unquoted", ["52:54:00:12:34:01", "10:00:00:00:00:00", "99:59:59:59:59:59", "12:34:56:00:01:02"])
def test_mac_that_yaml_read_as_base_60_is_recovered_with_a_warning(unquoted):
    number = yaml.safe_load("mac: %s" % unquoted)["mac"]
    assert isinstance(number, int)
    warnings = []
    assert _wol.parse_macs([str(number)], warnings) == [unquoted]
    assert len(warnings) == 1 and "quote MAC addresses" in warnings[0]


@pytest.mark.parametrize("digits", ["7775999999", "77760000000", "123456789", "525400123401"])
def test_other_numbers_are_not_taken_for_base_60_macs(digits):
    assert _wol.from_sexagesimal(digits) is None


def test_password_that_yaml_read_as_base_60_is_recovered_without_showing_it():
    number = yaml.safe_load("password: 10:20:30:40:50:59")["password"]
    warnings = []
    assert _wol.parse_password(str(number), warnings) == bytes.fromhex("102030405059")
    assert len(warnings) == 1 and str(number) not in warnings[0] and "10:20" not in warnings[0]


def test_empty_mac_list_plans_nothing():
    the_plan = _wol.plan(params(mac=[]))
    assert the_plan.macs == [] and _wol.describe(the_plan) == []


def test_defaults():
    the_plan = prepared()
    assert (the_plan.address, the_plan.port, the_plan.repeat, the_plan.interval) == ("255.255.255.255", 9, 3, 0.1)
    assert the_plan.family == socket.AF_INET and the_plan.sockaddr == ("255.255.255.255", 9)
    assert the_plan.interface is None and the_plan.ifindex is None


@pytest.mark.parametrize("overrides, message", [
    (dict(port=0), "port 0 is not a UDP port"),
    (dict(port=65536), "port 65536 is not a UDP port"),
    (dict(repeat=0), "repeat must be at least 1"),
    (dict(interval=-1.0), "interval must be 0 or more seconds"),
    (dict(broadcast="999.1.1.1"), "neither an IP address nor a host name"),
    (dict(broadcast="ff02::1"), "ff02::1 is link-local: set interface"),
    (dict(broadcast="fe80::1"), "fe80::1 is link-local: set interface"),
    (dict(broadcast="ff02::1%eth0", interface="eth1"), "names interface eth0 but interface is eth1"),
    (dict(source_address="not-an-ip"), "source_address 'not-an-ip' is not an IP address"),
    (dict(source_address="2001:db8::1"), "are not of the same IP version"),
])
def test_bad_arguments_are_explained(overrides, message):
    with pytest.raises(_wol.WolError, match=message):
        _wol.plan(params(**overrides))


def test_ipv6_all_nodes_with_interface_is_scoped_to_it():
    the_plan = prepared(broadcast="ff02::1", interface="eth0")
    assert the_plan.family == socket.AF_INET6 and the_plan.scoped
    assert the_plan.sockaddr == ("ff02::1", 9, 0, 7)


def test_ipv6_scope_in_the_address_selects_the_interface():
    the_plan = prepared(broadcast="ff02::1%eth0", interface=None)
    assert the_plan.interface == "eth0" and the_plan.sockaddr == ("ff02::1", 9, 0, 7)


def test_ipv6_global_destination_needs_no_scope():
    the_plan = prepared(broadcast="2001:db8::ff")
    assert the_plan.sockaddr == ("2001:db8::ff", 9, 0, 0) and not the_plan.scoped


def test_missing_interface_is_named_before_anything_is_sent():
    def missing(name):
        raise OSError(errno.ENODEV, "No such device")
    with pytest.raises(_wol.WolError, match="interface 'nope0' does not exist"):
        _wol.prepare(_wol.plan(params(interface="nope0")), if_nametoindex=missing)


def test_host_name_is_resolved_in_the_source_address_family():
    calls = []

    def getaddrinfo(host, port, family, kind):
        calls.append((host, port, family))
        return [(socket.AF_INET, kind, 17, "", ("192.0.2.255", port))]
    the_plan = _wol.prepare(_wol.plan(params(broadcast="wol.example.org", source_address="192.0.2.1")), getaddrinfo=getaddrinfo)
    assert calls == [("wol.example.org", 9, socket.AF_INET)]
    assert the_plan.address == "192.0.2.255" and the_plan.sockaddr == ("192.0.2.255", 9)
    assert _wol.describe(the_plan)[0]["destination"] == "192.0.2.255"


def test_unresolvable_host_name_is_explained():
    def getaddrinfo(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(_wol.WolError, match="cannot resolve broadcast 'nowhere.invalid'"):
        _wol.prepare(_wol.plan(params(broadcast="nowhere.invalid")), getaddrinfo=getaddrinfo)


# -- result shape ----------------------------------------------------------------------

def test_result_has_one_entry_per_mac_and_never_the_password():
    the_plan = prepared(mac=["52:54:00:12:34:01", "52:54:00:12:34:02"], password="aa:bb:cc:dd:ee:ff", interface="eth0")
    described = _wol.describe(the_plan)
    assert described == [
        dict(mac="52:54:00:12:34:01", destination="255.255.255.255", port=9, interface="eth0", count=3, bytes=108),
        dict(mac="52:54:00:12:34:02", destination="255.255.255.255", port=9, interface="eth0", count=3, bytes=108),
    ]
    assert "aa:bb" not in repr(described) and "aabb" not in repr(described)


# -- sending (fake sockets) -----------------------------------------------------------

def test_send_repeats_rounds_with_interval_and_pins_the_interface():
    factory, sleeps = Factory(), []
    the_plan = prepared(mac=["52:54:00:12:34:01", "52:54:00:12:34:02"], interface="eth0", repeat=3, interval=0.25)
    sent = _wol.send(the_plan, socket_factory=factory, sleep=sleeps.append)
    sock = factory.sockets[0]
    assert (sock.family, sock.kind) == (socket.AF_INET, socket.SOCK_DGRAM)
    assert (socket.SOL_SOCKET, socket.SO_BROADCAST, 1) in sock.options
    assert (socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0") in sock.options
    macs = [data[6:12] for data, dummy in sock.sent]
    assert macs == [bytes.fromhex("525400123401"), bytes.fromhex("525400123402")] * 3
    assert {address for dummy, address in sock.sent} == {("255.255.255.255", 9)}
    assert sleeps == [0.25, 0.25]
    assert sock.closed
    assert [entry["count"] for entry in sent] == [3, 3]


def test_send_binds_the_source_address():
    factory = Factory()
    _wol.send(prepared(source_address="192.0.2.1", repeat=1), socket_factory=factory, sleep=lambda s: None)
    assert factory.sockets[0].bound == ("192.0.2.1", 0)


def test_send_ipv6_sets_the_multicast_interface():
    factory = Factory()
    _wol.send(prepared(broadcast="ff02::1", interface="eth0", repeat=1), socket_factory=factory, sleep=lambda s: None)
    sock = factory.sockets[0]
    assert sock.family == socket.AF_INET6
    assert (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, 7) in sock.options
    assert all(option != socket.SO_BROADCAST for dummy, option, dummy2 in sock.options)
    assert sock.sent[0][1] == ("ff02::1", 9, 0, 7)


def test_nothing_to_send_opens_no_socket():
    factory = Factory()
    assert _wol.send(prepared(mac=[]), socket_factory=factory) == []
    assert factory.sockets == []


@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENODEV, "No such device"), "interface 'eth0' does not exist"),
    (PermissionError(errno.EPERM, "Operation not permitted"), "needs root or CAP_NET_RAW"),
])
def test_bind_to_device_errors_are_explained(error, message):
    factory = Factory(fail_on={socket.SO_BINDTODEVICE: error})
    with pytest.raises(_wol.WolError, match=message):
        _wol.send(prepared(interface="eth0"), socket_factory=factory)
    assert factory.sockets[0].closed and factory.sockets[0].sent == []


def test_foreign_source_address_is_explained():
    factory = Factory(fail_on={"bind": OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")})
    with pytest.raises(_wol.WolError, match="source_address 192.0.2.1 is not an address of this machine"):
        _wol.send(prepared(source_address="192.0.2.1"), socket_factory=factory)


def test_unreachable_network_reports_what_was_already_sent():
    factory = Factory(fail_after=3)
    the_plan = prepared(mac=["52:54:00:12:34:01", "52:54:00:12:34:02"], repeat=3, broadcast="203.0.113.255")
    with pytest.raises(_wol.WolError, match="network unreachable: this machine has no route to 203.0.113.255") as caught:
        _wol.send(the_plan, socket_factory=factory, sleep=lambda s: None)
    assert [entry["count"] for entry in caught.value.sent] == [2, 1]
    assert factory.sockets[0].closed


def test_firewall_refusal_is_explained():
    the_plan = prepared()
    message = _wol.explain_os_error(PermissionError(errno.EPERM, "Operation not permitted"), "send", the_plan)
    assert "refused" in message and "firewall" in message
