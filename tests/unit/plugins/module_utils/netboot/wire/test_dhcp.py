# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the BOOTP/DHCPv4 codec (no sockets); the classification is decide/test_boot_client.py."""

from __future__ import annotations

import pathlib
import socket

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client, policy
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.netboot.dhcp_samples import GUID, MAC, MAC_BYTES, OVMF_VENDOR, ovmf_discover, raw_request

try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test-only dependency
    given = None

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"


# -- decode: header and options -------------------------------------------------

def test_decode_header_fields():
    data = raw_request([(53, b"\x03")], xid=0x01020304, secs=9, flags=0x8000, ciaddr="10.0.0.5",
                       yiaddr="10.0.0.6", siaddr="10.0.0.7", giaddr="10.0.0.8",
                       sname=b"host\0junk", file=b"pxelinux.0")
    packet = dhcp.decode(data)
    assert packet.op == dhcp.BOOTREQUEST
    assert (packet.htype, packet.hlen, packet.hops) == (1, 6, 0)
    assert packet.xid == 0x01020304
    assert packet.secs == 9
    assert packet.flags == 0x8000 and packet.broadcast
    assert (packet.ciaddr, packet.yiaddr, packet.siaddr, packet.giaddr) == ("10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8")
    assert packet.chaddr == MAC_BYTES
    assert packet.mac == MAC
    assert packet.sname == b"host"
    assert packet.file == b"pxelinux.0"
    assert packet.boot_file_name == "pxelinux.0"
    assert packet.message_type == dhcp.DHCPREQUEST
    assert packet.message_type_name == "DHCPREQUEST"


def test_decode_ovmf_discover_options():
    packet = dhcp.decode(ovmf_discover())
    assert packet.message_type == dhcp.DHCPDISCOVER
    assert packet.max_message_size == 1472
    assert packet.client_arches == (7,)
    assert packet.vendor_class == OVMF_VENDOR
    assert packet.client_guid == GUID
    assert not packet.broadcast
    assert packet.server_id is None and packet.requested_ip is None


def test_decode_is_frozen():
    packet = dhcp.decode(ovmf_discover())
    with pytest.raises(AttributeError):
        packet.xid = 1


def test_decode_accepts_bytearray_and_memoryview():
    data = ovmf_discover()
    assert dhcp.decode(bytearray(data)) == dhcp.decode(data) == dhcp.decode(memoryview(data))


def test_decode_tolerates_missing_end_and_padding():
    data = raw_request([(53, b"\x01"), (60, b"PXEClient")], end=False)
    assert dhcp.decode(data).vendor_class == b"PXEClient"
    data = raw_request(raw_options=b"\x00\x00\x35\x01\x01\x00\xff\x00\x00garbage-after-end")
    assert dhcp.decode(data).options == {53: b"\x01"}


def test_decode_bootp_without_message_type():
    packet = dhcp.decode(raw_request([]))
    assert packet.message_type is None
    assert packet.message_type_name == "BOOTP"


def test_repeated_options_are_concatenated_rfc3396():
    data = raw_request([(53, b"\x01"), (60, b"PXEClient:"), (60, b"Arch:00000")])
    assert dhcp.decode(data).vendor_class == b"PXEClient:Arch:00000"


@pytest.mark.parametrize("overload, in_file, in_sname", [(1, True, False), (2, False, True), (3, True, True)])
def test_option_overload(overload, in_file, in_sname):
    file_area = bytes((67, 9)) + b"boot.file" + b"\xff"
    sname_area = bytes((66, 8)) + b"10.0.0.9" + b"\xff"
    data = raw_request([(53, b"\x05"), (52, bytes((overload,)))],
                       file=file_area if in_file else b"plain-file",
                       sname=sname_area if in_sname else b"plain-sname")
    packet = dhcp.decode(data)
    assert (67 in packet.options) is in_file
    assert (66 in packet.options) is in_sname
    assert packet.file == (b"" if in_file else b"plain-file")
    assert packet.sname == (b"" if in_sname else b"plain-sname")
    if in_file:
        assert packet.boot_file_name == "boot.file"


def test_overload_concatenation_order_options_file_sname():
    data = raw_request([(53, b"\x05"), (52, b"\x03"), (60, b"a")],
                       file=bytes((60, 1)) + b"b\xff", sname=bytes((60, 1)) + b"c\xff")
    assert dhcp.decode(data).vendor_class == b"abc"


# -- decode: malformed input ------------------------------------------------------

MALFORMED = {
    "empty": b"",
    "truncated header": ovmf_discover()[:100],
    "no cookie": ovmf_discover()[:236],
    "bad cookie": raw_request([(53, b"\x01")], cookie=b"\x63\x82\x53\x64"),
    "bootp cookie zero": raw_request([(53, b"\x01")], cookie=b"\0\0\0\0"),
    "op 0": raw_request([(53, b"\x01")], op=0),
    "op 3": raw_request([(53, b"\x01")], op=3),
    "hlen 17": raw_request([(53, b"\x01")], hlen=17),
    "hlen 255": raw_request([(53, b"\x01")], hlen=255),
    "option past end": raw_request(raw_options=b"\x35\x01\x01\x3c\x09PXE"),
    "length byte missing": raw_request(raw_options=b"\x35\x01\x01\x3c"),
    "overload value 0": raw_request([(53, b"\x01"), (52, b"\x00")]),
    "overload value 4": raw_request([(53, b"\x01"), (52, b"\x04")]),
    "overload two bytes": raw_request([(53, b"\x01"), (52, b"\x01\x01")]),
    "overload empty": raw_request([(53, b"\x01"), (52, b"")]),
    "overloaded file runs past": raw_request([(53, b"\x01"), (52, b"\x01")], file=b"\x43\xf0" + b"x" * 126),
    "overloaded sname runs past": raw_request([(53, b"\x01"), (52, b"\x02")], sname=b"\x42\x7f" + b"x" * 62),
    "message type empty": raw_request([(53, b"")]),
    "message type two bytes": raw_request([(53, b"\x01\x01")]),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_raises_malformed_packet(name):
    with pytest.raises(dhcp.MalformedPacket):
        dhcp.decode(MALFORMED[name])


def test_malformed_packet_is_a_value_error():
    assert issubclass(dhcp.MalformedPacket, ValueError)


@pytest.mark.parametrize("value", [None, "a string", 42, [1, 2]])
def test_decode_rejects_non_bytes(value):
    with pytest.raises(dhcp.MalformedPacket):
        dhcp.decode(value)


def test_hlen_16_is_accepted_and_not_a_mac():
    packet = dhcp.decode(raw_request([(53, b"\x01")], htype=32, hlen=16, chaddr=bytes(range(16))))
    assert packet.chaddr == bytes(range(16))
    assert packet.mac is None


def test_hlen_shorter_than_six_is_not_a_mac():
    packet = dhcp.decode(raw_request([(53, b"\x01")], hlen=4))
    assert packet.chaddr == MAC_BYTES[:4]
    assert packet.mac is None


# -- accessors never raise ------------------------------------------------------------

def test_accessors_on_ill_shaped_options():
    data = raw_request([(53, b"\x01"), (54, b"\x01\x02\x03"), (57, b"\x01"), (93, b"\x00\x07\x00"),
                        (43, b"\x06\x05\x08"), (175, b"\x13")])
    packet = dhcp.decode(data)
    assert packet.server_id is None
    assert packet.max_message_size is None
    assert packet.client_arches == ()
    assert packet.pxe_options is None
    assert packet.ipxe_options is None


def test_option_67_overrides_file_field():
    packet = dhcp.decode(raw_request([(53, b"\x05"), (67, b"from-option\0")], file=b"from-field"))
    assert packet.boot_file_name == "from-option"


def test_multiple_architectures_in_option_93():
    packet = dhcp.decode(raw_request([(53, b"\x01"), (93, b"\x00\x0b\x00\x07")]))
    assert packet.client_arches == (11, 7)


def test_suboption_helpers_round_trip():
    raw = dhcp.encode_suboptions([(6, b"\x08"), (71, b"\x00\x00\x00\x00")])
    assert raw == b"\x06\x01\x08\x47\x04\x00\x00\x00\x00\xff"
    assert dhcp.parse_suboptions(raw) == {6: b"\x08", 71: b"\x00\x00\x00\x00"}
    assert dhcp.encode_suboptions({6: b"\x08"}) == b"\x06\x01\x08\xff"
    with pytest.raises(dhcp.MalformedPacket):
        dhcp.parse_suboptions(b"\x06\x05\x08")


# -- encode -------------------------------------------------------------------------

def offer_for(request, **options):
    opts = {53: bytes((dhcp.DHCPOFFER,)), 54: socket.inet_aton("10.0.0.1"), 60: b"PXEClient"}
    opts.update(options)
    return dhcp.make_reply(request, opts, siaddr="10.0.0.1", sname=b"10.0.0.1", file=b"ipxe.efi")


def test_make_reply_copies_request_identity():
    request = dhcp.decode(ovmf_discover(flags=0x8000, giaddr="10.9.9.9"))
    reply = offer_for(request)
    assert reply.op == dhcp.BOOTREPLY
    assert reply.xid == request.xid
    assert reply.chaddr == request.chaddr
    assert reply.flags == 0x8000
    assert reply.giaddr == "10.9.9.9"
    assert (reply.hops, reply.secs, reply.yiaddr, reply.ciaddr) == (0, 0, "0.0.0.0", "0.0.0.0")
    assert reply == dhcp.DhcpPacket(
        op=2, xid=request.xid, chaddr=MAC_BYTES, flags=0x8000, siaddr="10.0.0.1", giaddr="10.9.9.9",
        sname=b"10.0.0.1", file=b"ipxe.efi", options=reply.options)


def test_encode_round_trip_and_layout():
    request = dhcp.decode(ovmf_discover())
    reply = offer_for(request)
    data = dhcp.encode(reply)
    assert len(data) == dhcp.MIN_MESSAGE_LEN  # padded as RFC 1542 asks
    assert data[240:243] == b"\x35\x01\x02"   # option 53 first
    back = dhcp.decode(data)
    assert back == reply


def test_encode_puts_message_type_first_whatever_the_order():
    request = dhcp.decode(ovmf_discover())
    reply = dhcp.make_reply(request, {60: b"PXEClient", 53: b"\x05"})
    assert dhcp.encode(reply)[240:243] == b"\x35\x01\x05"


def test_encode_splits_long_options_rfc3396():
    request = dhcp.decode(ovmf_discover())
    long_value = bytes(range(256)) * 2
    reply = dhcp.make_reply(request, {53: b"\x05", 224: long_value})
    data = dhcp.encode(reply)
    assert len(data) > dhcp.MIN_MESSAGE_LEN
    assert dhcp.decode(data).options[224] == long_value


def test_encode_empty_option_value():
    request = dhcp.decode(ovmf_discover())
    reply = dhcp.make_reply(request, {53: b"\x02", 97: b""})
    assert dhcp.decode(dhcp.encode(reply)).options[97] == b""


@pytest.mark.parametrize("field, value", [("sname", b"s" * 64), ("file", b"f" * 128), ("chaddr", b"c" * 17)])
def test_encode_rejects_oversized_fields(field, value):
    kwargs = {"op": 2, "xid": 1, "chaddr": MAC_BYTES, field: value}
    with pytest.raises(ValueError):
        dhcp.encode(dhcp.DhcpPacket(**kwargs))


@pytest.mark.parametrize("code", [0, 255, 256, -1])
def test_encode_rejects_reserved_option_codes(code):
    with pytest.raises(ValueError):
        dhcp.encode(dhcp.DhcpPacket(op=2, xid=1, chaddr=MAC_BYTES, options={code: b"x"}))


@pytest.fixture(scope="module")
def scapy_dhcp():
    return pytest.importorskip("scapy.layers.dhcp")


def scapy_options(pkt, scapy_dhcp):
    return {o[0]: o[1] if len(o) == 2 else o[1:] for o in pkt[scapy_dhcp.DHCP].options if isinstance(o, tuple)}


def test_scapy_built_discover_decodes(scapy_dhcp):
    BOOTP, DHCP = scapy_dhcp.BOOTP, scapy_dhcp.DHCP
    pkt = BOOTP(op=1, xid=0x11223344, flags=0x8000, secs=3, chaddr=MAC_BYTES + b"\0" * 10) / DHCP(options=[
        ("message-type", "discover"), ("max_dhcp_size", 1472),
        ("param_req_list", [1, 3, 6, 43, 60, 66, 67, 97]),
        (93, b"\x00\x07"),
        ("vendor_class_id", OVMF_VENDOR), (97, GUID), ("user_class", b"iPXE"), "end"])
    packet = dhcp.decode(bytes(pkt))
    assert packet.xid == 0x11223344 and packet.secs == 3 and packet.broadcast
    assert packet.mac == MAC
    assert packet.message_type == dhcp.DHCPDISCOVER
    assert packet.max_message_size == 1472
    assert packet.parameter_request_list == bytes([1, 3, 6, 43, 60, 66, 67, 97])
    assert packet.client_arches == (7,)
    assert packet.client_guid == GUID
    client = boot_client.classify(packet)
    assert (client.arch, client.firmware) == ("efi-x86_64", "ipxe")


def test_scapy_parses_our_reply(scapy_dhcp):
    BOOTP = scapy_dhcp.BOOTP
    request = dhcp.decode(ovmf_discover(flags=0x8000))
    reply = dhcp.make_reply(request, {
        53: b"\x05", 54: socket.inet_aton("10.0.0.1"), 60: b"PXEClient", 97: GUID,
        43: dhcp.encode_suboptions([(6, b"\x08")]),
    }, ciaddr="10.0.0.50", siaddr="10.0.0.1", sname=b"10.0.0.1", file=b"undionly.kpxe")
    pkt = BOOTP(dhcp.encode(reply))
    assert pkt.op == 2
    assert pkt.xid == request.xid
    assert pkt.flags == 0x8000
    assert pkt.ciaddr == "10.0.0.50" and pkt.yiaddr == "0.0.0.0" and pkt.siaddr == "10.0.0.1"
    assert pkt.chaddr[:6] == MAC_BYTES
    assert pkt.sname.rstrip(b"\0") == b"10.0.0.1"
    assert pkt.file.rstrip(b"\0") == b"undionly.kpxe"
    opts = scapy_options(pkt, scapy_dhcp)
    assert opts["message-type"] == 5
    assert opts["server_id"] == "10.0.0.1"
    assert opts["vendor_class_id"] == b"PXEClient"
    assert opts["pxe_client_machine_identifier"] == GUID
    assert opts["vendor_specific"] == b"\x06\x01\x08\xff"


def test_scapy_and_codec_agree_on_options_overload(scapy_dhcp):
    # scapy does not read options from file/sname; check that our decoder
    # keeps the header fields it does read identical.
    BOOTP = scapy_dhcp.BOOTP
    data = raw_request([(53, b"\x05"), (52, b"\x01")], file=bytes((67, 4)) + b"x.efi"[:4] + b"\xff")
    pkt = BOOTP(data)
    packet = dhcp.decode(data)
    assert packet.xid == pkt.xid and packet.mac == MAC
    assert packet.options[67] == b"x.ef"


# -- real captures (tests/unit/plugins/module_utils/netboot/fixtures/*.pcap) --------------

def _pcap_files():
    return sorted(FIXTURES.glob("*.pcap")) + sorted(FIXTURES.glob("*.pcapng"))


def _dhcp_payloads(path):
    scapy_all = pytest.importorskip("scapy.all")
    out = []
    for frame in scapy_all.rdpcap(str(path)):
        if scapy_all.UDP not in frame or scapy_all.IP not in frame:
            continue
        udp = frame[scapy_all.UDP]
        if {udp.sport, udp.dport} & {67, 68, 4011} and not {udp.sport, udp.dport} & {69}:
            out.append((frame[scapy_all.IP].src, udp.sport, udp.dport, bytes(udp.payload)))
    return out


@pytest.mark.parametrize("path", _pcap_files() or [pytest.param(None, marks=pytest.mark.skip(reason="no captures yet"))],
                         ids=lambda p: p.name if p else "none")
def test_captured_packets_decode(path):
    payloads = _dhcp_payloads(path)
    assert payloads, "no DHCP packets in %s" % path.name
    for src, sport, dport, payload in payloads:
        packet = dhcp.decode(payload)
        assert packet.mac is not None
        assert dhcp.decode(dhcp.encode(packet)).options == packet.options
        if packet.op == dhcp.BOOTREQUEST and (packet.vendor_class or b"").startswith((b"PXEClient", b"HTTPClient")):
            client = boot_client.classify(packet)
            assert client is not None and client.mac == packet.mac
            assert client.guid == packet.client_guid


# -- property tests: decode raises MalformedPacket or nothing -----------------------------

def _decode_or_malformed(data):
    try:
        packet = dhcp.decode(data)
    except dhcp.MalformedPacket:
        return None
    # Whatever decodes must also survive every accessor, classification and
    # the policy without raising.
    for name in ("mac", "broadcast", "message_type", "message_type_name", "server_id", "requested_ip",
                 "max_message_size", "parameter_request_list", "vendor_class", "user_class",
                 "client_arches", "client_guid", "boot_file_name", "pxe_options", "ipxe_options"):
        getattr(packet, name)
    client = boot_client.classify(packet)
    config = policy.ServerConfig("10.0.0.1", "http://10.0.0.1:8080")
    host = policy.HostView(client.mac if client else MAC)
    for port in (67, 4011):
        decision = policy.decide(packet, port, ("10.0.0.50", 68), host, config)
        if isinstance(decision, policy.Reply):
            dhcp.decode(decision.encode())
    return packet


VALID_SAMPLES = [
    ovmf_discover(),
    ovmf_discover(flags=0x8000, giaddr="10.1.1.1"),
    raw_request([(53, b"\x03"), (93, b"\x00\x00"), (60, b"PXEClient:Arch:00000:UNDI:002001"), (77, b"iPXE"),
                 (175, b"\x13\x01\x01\x15\x01\x01\xff"), (43, b"\x47\x04\x80\x00\x00\x00\xff"), (54, b"\x0a\x00\x00\x01")],
                ciaddr="10.0.0.50"),
    raw_request([(53, b"\x01"), (52, b"\x03"), (93, b"\x00\x10"), (60, b"HTTPClient:Arch:00016:UNDI:003000")],
                file=b"\x61\x02ab\xff", sname=b"\x62\x01c\xff"),
]


def _captured_requests():
    """Client requests from the real captures, if present (seeds for the mutation tests)."""
    out = []
    try:
        scapy_all = __import__("scapy.all", fromlist=["rdpcap"])
    except ImportError:  # pragma: no cover
        return out
    for path in _pcap_files():
        for frame in scapy_all.rdpcap(str(path)):
            if scapy_all.UDP in frame and frame[scapy_all.UDP].dport in (67, 4011):
                out.append(bytes(frame[scapy_all.UDP].payload))
    return out


VALID_SAMPLES += _captured_requests()

if given is not None:
    _settings = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

    @_settings
    @given(st.binary(max_size=700))
    def test_random_bytes_only_raise_malformed(data):
        _decode_or_malformed(data)

    @_settings
    @given(st.binary(min_size=dhcp.HEADER_LEN - 4, max_size=dhcp.HEADER_LEN - 4), st.binary(max_size=400))
    def test_random_body_with_cookie_only_raises_malformed(head, body):
        _decode_or_malformed(head + dhcp.MAGIC_COOKIE + body)

    @_settings
    @given(st.sampled_from(VALID_SAMPLES),
           st.lists(st.tuples(st.integers(0, 699), st.integers(0, 255)), max_size=8),
           st.integers(0, 700), st.binary(max_size=16))
    def test_mutated_valid_packets_only_raise_malformed(sample, flips, cut, tail):
        data = bytearray(sample)
        for at, value in flips:
            if at < len(data):
                data[at] = value
        _decode_or_malformed(bytes(data[:cut]) + tail)

    @_settings
    @given(st.sampled_from(VALID_SAMPLES), st.integers(240, 400), st.binary(min_size=1, max_size=12))
    def test_inserted_bytes_in_options_only_raise_malformed(sample, at, insert):
        _decode_or_malformed(sample[:at] + insert + sample[at:])


def test_valid_samples_decode():
    for sample in VALID_SAMPLES:
        assert _decode_or_malformed(sample) is not None
