# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the proxyDHCP answer policy (pure functions, no sockets)."""

from __future__ import annotations

import pathlib
import socket
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import boot_client, policy

SERVER = "10.0.0.1"
HTTP = "http://10.0.0.1:8080"
MAC = "52:54:00:12:34:01"
MAC_BYTES = bytes.fromhex(MAC.replace(":", ""))
GUID = b"\x00" + bytes(range(0x10, 0x20))
CONFIG = policy.ServerConfig(SERVER, HTTP)
X86 = policy.HostView(MAC, "x86_64-linux")
ARM = policy.HostView(MAC, "aarch64-linux")
BCAST = ("0.0.0.0", 68)
FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"


def request(options, *, op=1, mtype=dhcp.DHCPDISCOVER, xid=0x0BADCAFE, flags=0, ciaddr="0.0.0.0", giaddr="0.0.0.0",
            chaddr=MAC_BYTES, htype=1, hlen=6):
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s4s", op, htype, hlen, 0, xid, 0, flags,
                       socket.inet_aton(ciaddr), bytes(4), bytes(4), socket.inet_aton(giaddr),
                       chaddr, b"", b"", dhcp.MAGIC_COOKIE)
    opts = ([(53, bytes((mtype,)))] if mtype is not None else []) + list(options)
    return dhcp.decode(head + b"".join(bytes((c, len(v))) + v for c, v in opts) + b"\xff")


def firmware(arch, *, guid=GUID, vendor=None, **kw):
    vendor = vendor or b"PXEClient:Arch:%05d:UNDI:003000" % arch
    options = [(93, struct.pack("!H", arch)), (94, b"\x01\x03\x00"), (60, vendor)]
    if guid is not None:
        options.append((97, guid))
    return request(options, **kw)


def ipxe(arch, *, features=(0x13, 0x15), **kw):
    options = [(93, struct.pack("!H", arch)), (60, b"PXEClient:Arch:%05d:UNDI:002001" % arch), (77, b"iPXE"), (97, GUID)]
    if features is not None:
        options.append((175, dhcp.encode_suboptions([(f, b"\x01") for f in features])))
    return request(options, **kw)


def http_client(arch, **kw):
    return request([(93, struct.pack("!H", arch)), (60, b"HTTPClient:Arch:%05d:UNDI:003000" % arch), (97, GUID)], **kw)


def reply_of(decision):
    assert isinstance(decision, policy.Reply), decision
    wire = decision.encode()
    back = dhcp.decode(wire)
    assert back == decision.packet
    return back


def assert_proxy_basics(packet, mtype, vendor=b"PXEClient"):
    assert packet.op == dhcp.BOOTREPLY
    assert packet.message_type == mtype
    assert packet.yiaddr == "0.0.0.0"
    assert packet.siaddr == SERVER
    assert packet.server_id == SERVER
    assert packet.vendor_class == vendor
    assert packet.chaddr == MAC_BYTES
    assert packet.xid == 0x0BADCAFE


# -- port 67: DHCPDISCOVER -> DHCPOFFER -------------------------------------------------

def test_ovmf_discover_gets_binl_style_offer():
    decision = policy.decide(firmware(7), 67, BCAST, X86, CONFIG)
    packet = reply_of(decision)
    assert_proxy_basics(packet, dhcp.DHCPOFFER)
    assert packet.client_guid == GUID
    assert dhcp.OPT_VENDOR_SPECIFIC not in packet.options  # UEFI: no option 43, it asks on 4011
    assert packet.file == b"ipxe.efi"
    assert packet.sname == SERVER.encode()
    assert decision.event == events.OFFERED
    assert decision.boot_file == "ipxe.efi"
    assert decision.destination == policy.Destination("255.255.255.255", 68, True)
    assert decision.client.arch == "efi-x86_64"


@pytest.mark.parametrize("arch", [7, 9])
def test_efi_x86_64_codes_both_served(arch):
    assert policy.decide(firmware(arch), 67, BCAST, X86, CONFIG).boot_file == "ipxe.efi"


def test_snponly_when_configured():
    config = policy.ServerConfig(SERVER, HTTP, efi_x86_64_binary="snponly.efi")
    assert policy.decide(firmware(7), 67, BCAST, X86, config).boot_file == "snponly.efi"


def test_efi_x86_64_falls_back_to_the_other_binary():
    config = policy.ServerConfig(SERVER, HTTP, binaries={"snponly.efi"})
    assert policy.decide(firmware(7), 67, BCAST, X86, config).boot_file == "snponly.efi"
    config = policy.ServerConfig(SERVER, HTTP, binaries={"ipxe.efi"}, efi_x86_64_binary="snponly.efi")
    assert policy.decide(firmware(7), 67, BCAST, X86, config).boot_file == "ipxe.efi"


def test_bios_discover_gets_option_43_and_undionly():
    decision = policy.decide(firmware(0), 67, BCAST, X86, CONFIG)
    packet = reply_of(decision)
    assert_proxy_basics(packet, dhcp.DHCPOFFER)
    # PXE discovery control (6) = 8: boot the file named here; then END.
    assert packet.options[dhcp.OPT_VENDOR_SPECIFIC] == b"\x06\x01\x08\xff"
    assert packet.pxe_options == {6: b"\x08"}
    assert packet.file == b"undionly.kpxe"
    assert decision.event == events.OFFERED


def test_arm64_discover():
    decision = policy.decide(firmware(11), 67, BCAST, ARM, CONFIG)
    packet = reply_of(decision)
    assert packet.file == b"ipxe-arm64.efi"
    assert dhcp.OPT_VENDOR_SPECIFIC not in packet.options


@pytest.mark.parametrize("arch, host, expected", [(0, X86, b"\x06\x01\x08\xff"), (7, X86, None), (11, ARM, None)])
def test_ipxe_gets_script_url(arch, host, expected):
    decision = policy.decide(ipxe(arch), 67, BCAST, host, CONFIG)
    packet = reply_of(decision)
    assert_proxy_basics(packet, dhcp.DHCPOFFER)
    assert packet.file == b"http://10.0.0.1:8080/boot/52:54:00:12:34:01/script.ipxe"
    assert decision.boot_file == "http://10.0.0.1:8080/boot/52:54:00:12:34:01/script.ipxe"
    assert packet.options.get(dhcp.OPT_VENDOR_SPECIFIC) == expected
    assert decision.event == events.SCRIPT_OFFERED


def test_ipxe_without_option_175_is_assumed_to_speak_http():
    assert policy.decide(ipxe(7, features=None), 67, BCAST, X86, CONFIG).event == events.SCRIPT_OFFERED


def test_ipxe_without_http_gets_our_ipxe_binary():
    decision = policy.decide(ipxe(0, features=(0x15, 0x21)), 67, BCAST, X86, CONFIG)
    assert decision.boot_file == "undionly.kpxe"
    assert decision.event == events.OFFERED


def test_ipxe_of_unknown_arch_still_gets_the_script():
    decision = policy.decide(request([(77, b"iPXE")]), 67, BCAST, X86, CONFIG)
    assert decision.boot_file.endswith("/script.ipxe")


@pytest.mark.parametrize("arch, host, name", [(16, X86, "ipxe.efi"), (19, ARM, "ipxe-arm64.efi")])
def test_uefi_http_boot_gets_http_url_and_httpclient(arch, host, name):
    decision = policy.decide(http_client(arch), 67, BCAST, host, CONFIG)
    packet = reply_of(decision)
    assert_proxy_basics(packet, dhcp.DHCPOFFER, vendor=b"HTTPClient")
    assert packet.file == ("http://10.0.0.1:8080/ipxe/%s" % name).encode()
    assert dhcp.OPT_VENDOR_SPECIFIC not in packet.options
    assert decision.event == events.OFFERED


def test_http_boot_with_snponly():
    config = policy.ServerConfig(SERVER, HTTP, efi_x86_64_binary="snponly.efi")
    assert policy.decide(http_client(16), 67, BCAST, X86, config).boot_file == "http://10.0.0.1:8080/ipxe/snponly.efi"


# -- option 97 -------------------------------------------------------------------------

def test_missing_guid_is_not_invented():
    packet = reply_of(policy.decide(firmware(7, guid=None), 67, BCAST, X86, CONFIG))
    assert dhcp.OPT_CLIENT_GUID not in packet.options


@pytest.mark.parametrize("guid", [b"", GUID, b"\x00\x01\x02"])
def test_guid_echoed_as_received(guid):
    packet = reply_of(policy.decide(firmware(7, guid=guid), 67, BCAST, X86, CONFIG))
    assert packet.options[dhcp.OPT_CLIENT_GUID] == guid


def test_offers_are_repeated_inside_the_discovery_window_acks_are_not():
    # iPXE moves on with the site's offer about 3 s after its first DISCOVER (its second goes at 1 s):
    # every copy of an answer to either DISCOVER must arrive before that.
    for request in (firmware(7), ipxe(7), firmware(0)):
        repeats = policy.decide(request, 67, BCAST, X86, CONFIG).repeats
        assert repeats == policy.OFFER_REPEATS and 0 < min(repeats) and 1 + max(repeats) < 3
    ack = policy.decide(firmware(7, mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.50"), 4011, ("10.0.0.50", 4011), X86, CONFIG)
    assert ack.repeats == ()  # the client retransmits its request, each one is answered


# -- port 4011: DHCPREQUEST / DHCPINFORM -> DHCPACK -------------------------------------------

def test_ovmf_4011_request_gets_boot_file_ack():
    req = firmware(7, mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.50")
    decision = policy.decide(req, 4011, ("10.0.0.50", 4011), X86, CONFIG)
    packet = reply_of(decision)
    assert_proxy_basics(packet, dhcp.DHCPACK)
    assert packet.ciaddr == "10.0.0.50"
    assert packet.file == b"ipxe.efi"
    assert packet.client_guid == GUID
    assert dhcp.OPT_VENDOR_SPECIFIC not in packet.options
    assert decision.event == events.BOOT_FILE_ACKED
    assert decision.destination == policy.Destination("10.0.0.50", 4011, False)


def test_ipxe_4011_request_from_port_68_gets_script_ack():
    req = ipxe(7, mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.51")
    decision = policy.decide(req, 4011, ("10.0.0.51", 68), X86, CONFIG)
    packet = reply_of(decision)
    assert packet.message_type == dhcp.DHCPACK
    assert packet.file.endswith(b"/boot/52:54:00:12:34:01/script.ipxe")
    assert decision.event == events.SCRIPT_ACKED
    assert decision.destination.address == ("10.0.0.51", 68)


def test_4011_inform_gets_ack():
    req = firmware(7, mtype=dhcp.DHCPINFORM, ciaddr="10.0.0.50")
    decision = policy.decide(req, 4011, ("10.0.0.50", 4011), X86, CONFIG)
    assert reply_of(decision).message_type == dhcp.DHCPACK


@pytest.mark.parametrize("server_id", [SERVER, "10.0.0.2"])
def test_4011_request_answered_whatever_option_54_says(server_id):
    req = request([(93, b"\x00\x07"), (60, b"PXEClient"), (54, socket.inet_aton(server_id))],
                  mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.50")
    assert isinstance(policy.decide(req, 4011, ("10.0.0.50", 4011), X86, CONFIG), policy.Reply)


def test_bios_boot_server_request_echoes_boot_item():
    req = request([(93, b"\x00\x00"), (60, b"PXEClient:Arch:00000:UNDI:002001"), (97, GUID),
                   (43, b"\x47\x04\x80\x00\x00\x00\xff")], mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.52")
    decision = policy.decide(req, 4011, ("10.0.0.52", 4011), X86, CONFIG)
    packet = reply_of(decision)
    assert packet.pxe_options == {6: b"\x08", 71: b"\x80\x00\x00\x00"}
    assert packet.file == b"undionly.kpxe"


def test_uefi_boot_server_request_gets_boot_item_only():
    req = request([(93, b"\x00\x07"), (60, b"PXEClient:Arch:00007:UNDI:003016"),
                   (43, b"\x47\x04\x80\x00\x00\x00\xff")], mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.52")
    packet = reply_of(policy.decide(req, 4011, ("10.0.0.52", 4011), X86, CONFIG))
    assert packet.pxe_options == {71: b"\x80\x00\x00\x00"}
    assert packet.file == b"ipxe.efi"


def test_boot_item_not_echoed_in_offers():
    req = request([(93, b"\x00\x00"), (60, b"PXEClient"), (43, b"\x47\x04\x80\x00\x00\x00\xff")])
    assert reply_of(policy.decide(req, 67, BCAST, X86, CONFIG)).pxe_options == {6: b"\x08"}


def test_4011_source_unusable_falls_back_to_ciaddr_then_broadcast():
    req = firmware(7, mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.50")
    assert policy.decide(req, 4011, ("0.0.0.0", 4011), X86, CONFIG).destination == policy.Destination("10.0.0.50", 4011)
    req = firmware(7, mtype=dhcp.DHCPREQUEST)
    assert policy.decide(req, 4011, ("0.0.0.0", 68), X86, CONFIG).destination == policy.Destination("255.255.255.255", 68, True)


# -- destination on port 67 ----------------------------------------------------------------

@pytest.mark.parametrize("kw, expected", [
    ({}, policy.Destination("255.255.255.255", 68, True)),
    ({"flags": 0x8000}, policy.Destination("255.255.255.255", 68, True)),
    ({"ciaddr": "10.0.0.77"}, policy.Destination("10.0.0.77", 68)),
    ({"giaddr": "10.5.0.1", "flags": 0x8000}, policy.Destination("10.5.0.1", 67)),
    ({"giaddr": "10.5.0.1", "ciaddr": "10.0.0.77"}, policy.Destination("10.5.0.1", 67)),
])
def test_port_67_destination(kw, expected):
    decision = policy.decide(firmware(7, **kw), 67, BCAST, X86, CONFIG)
    assert decision.destination == expected
    packet = reply_of(decision)
    assert packet.flags == kw.get("flags", 0)
    assert packet.giaddr == kw.get("giaddr", "0.0.0.0")
    assert packet.ciaddr == "0.0.0.0"  # never in an OFFER


# -- ignored ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mtype", [dhcp.DHCPREQUEST, dhcp.DHCPINFORM, dhcp.DHCPRELEASE, dhcp.DHCPDECLINE, None])
def test_port_67_answers_discover_only(mtype):
    decision = policy.decide(firmware(7, mtype=mtype), 67, BCAST, X86, CONFIG)
    assert decision.reason == policy.IGNORE_MESSAGE_TYPE


@pytest.mark.parametrize("mtype", [dhcp.DHCPDISCOVER, dhcp.DHCPRELEASE, dhcp.DHCPDECLINE, None])
def test_port_4011_answers_request_and_inform_only(mtype):
    decision = policy.decide(firmware(7, mtype=mtype), 4011, ("10.0.0.50", 4011), X86, CONFIG)
    assert decision.reason == policy.IGNORE_MESSAGE_TYPE


@pytest.mark.parametrize("port", [67, 4011])
def test_replies_from_other_servers_ignored(port):
    decision = policy.decide(firmware(7, op=2, mtype=dhcp.DHCPOFFER), port, ("10.0.0.9", 67), X86, CONFIG)
    assert decision.reason == policy.IGNORE_NOT_REQUEST


def test_other_port_ignored():
    assert policy.decide(firmware(7), 68, BCAST, X86, CONFIG).reason == policy.IGNORE_PORT


def test_not_a_netboot_client():
    decision = policy.decide(request([(60, b"MSFT 5.0")]), 67, BCAST, X86, CONFIG)
    assert decision.reason == policy.IGNORE_NOT_NETBOOT


def test_unknown_mac_ignored():
    assert policy.decide(firmware(7), 67, BCAST, None, CONFIG).reason == policy.IGNORE_UNKNOWN_HOST
    other = policy.HostView("52:54:00:99:99:99")
    assert policy.decide(firmware(7), 67, BCAST, other, CONFIG).reason == policy.IGNORE_UNKNOWN_HOST


def test_host_mac_compared_case_insensitively():
    host = policy.HostView(MAC.upper())
    assert isinstance(policy.decide(firmware(7), 67, BCAST, host, CONFIG), policy.Reply)


@pytest.mark.parametrize("port, req", [
    (67, firmware(7)),
    (67, ipxe(7)),
    (4011, firmware(7, mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.50")),
])
def test_finished_host_ignored(port, req):
    host = policy.HostView(MAC, "x86_64-linux", finished=True)
    assert policy.decide(req, port, ("10.0.0.50", 4011), host, CONFIG).reason == policy.IGNORE_FINISHED


@pytest.mark.parametrize("req, host", [
    (firmware(11), X86),
    (firmware(0), ARM),
    (firmware(7), ARM),
    (ipxe(11), X86),
    (http_client(19), X86),
    (http_client(16), ARM),
])
def test_arch_mismatch_ignored(req, host):
    assert policy.decide(req, 67, BCAST, host, CONFIG).reason == policy.IGNORE_ARCH_MISMATCH


@pytest.mark.parametrize("req", [
    firmware(6), firmware(10), firmware(2), http_client(15), ipxe(6),
    request([(60, b"PXEClient")]),                                        # firmware that gave no arch
    request([(60, b"PXEClient"), (77, b"iPXE"), (175, b"\x15\x01\x01\xff")]),  # iPXE, no arch, no HTTP
])
def test_unsupported_arch_ignored(req):
    assert policy.decide(req, 67, BCAST, X86, CONFIG).reason == policy.IGNORE_UNSUPPORTED_ARCH


@pytest.mark.parametrize("req, host, binaries", [
    (firmware(0), X86, {"ipxe.efi", "snponly.efi", "ipxe-arm64.efi"}),
    (firmware(7), X86, {"undionly.kpxe", "ipxe-arm64.efi"}),
    (firmware(11), ARM, {"undionly.kpxe", "ipxe.efi"}),
    (http_client(19), ARM, set()),
])
def test_missing_binary_ignored(req, host, binaries):
    config = policy.ServerConfig(SERVER, HTTP, binaries=binaries)
    assert policy.decide(req, 67, BCAST, host, config).reason == policy.IGNORE_NO_BOOT_FILE


def test_script_needs_no_binary():
    config = policy.ServerConfig(SERVER, HTTP, binaries=())
    assert policy.decide(ipxe(7), 67, BCAST, X86, config).event == events.SCRIPT_OFFERED


# -- configuration and purity ----------------------------------------------------------------------

def test_server_config_normalises_and_validates():
    config = policy.ServerConfig(SERVER, HTTP + "/", binaries=["ipxe.efi"])
    assert config.http_base == HTTP
    assert config.binaries == frozenset({"ipxe.efi"})
    assert config.script_url(MAC) == "http://10.0.0.1:8080/boot/52:54:00:12:34:01/script.ipxe"
    assert config.binary_url("ipxe.efi") == "http://10.0.0.1:8080/ipxe/ipxe.efi"
    for bad in (("10.0.0", HTTP), ("::1", HTTP), (SERVER, "ftp://x"), (SERVER, "10.0.0.1:8080")):
        with pytest.raises(ValueError):
            policy.ServerConfig(*bad)
    with pytest.raises(ValueError):
        policy.ServerConfig(SERVER, HTTP, efi_x86_64_binary="ipxe-arm64.efi")


def test_long_boot_file_goes_to_option_67():
    config = policy.ServerConfig(SERVER, "http://10.0.0.1:8080/" + "p" * 100)
    decision = policy.decide(ipxe(7), 67, BCAST, X86, config)
    packet = reply_of(decision)
    assert packet.file == b""
    assert packet.options[dhcp.OPT_BOOTFILE] == decision.boot_file.encode()
    assert packet.boot_file_name == decision.boot_file


def test_decide_is_pure():
    req = firmware(7)
    first = policy.decide(req, 67, BCAST, X86, CONFIG)
    second = policy.decide(req, 67, BCAST, X86, CONFIG)
    assert first == second
    assert first.encode() == second.encode()
    assert req == firmware(7)


# -- scapy sees our replies as firmware would ---------------------------------------------------

@pytest.mark.parametrize("req, host, port, src", [
    (firmware(7), X86, 67, BCAST),
    (firmware(0), X86, 67, BCAST),
    (firmware(0, guid=b""), X86, 67, BCAST),
    (ipxe(7), X86, 67, BCAST),
    (http_client(19), ARM, 67, BCAST),
    (firmware(7, mtype=dhcp.DHCPREQUEST, ciaddr="10.0.0.50"), X86, 4011, ("10.0.0.50", 4011)),
])
def test_scapy_parses_replies(req, host, port, src):
    scapy_dhcp = pytest.importorskip("scapy.layers.dhcp")
    decision = policy.decide(req, port, src, host, CONFIG)
    pkt = scapy_dhcp.BOOTP(decision.encode())
    opts = {o[0]: o[1] for o in pkt[scapy_dhcp.DHCP].options if isinstance(o, tuple) and len(o) == 2}
    assert pkt.op == 2 and pkt.xid == req.xid
    assert pkt.yiaddr == "0.0.0.0" and pkt.siaddr == SERVER
    assert pkt.chaddr[:6] == MAC_BYTES
    assert pkt.file.rstrip(b"\0").decode() == decision.boot_file
    assert opts["message-type"] == (2 if port == 67 else 5)
    assert opts["server_id"] == SERVER
    assert opts["vendor_class_id"] == decision.client.vendor_class.encode()
    if req.client_guid is not None:
        assert opts["pxe_client_machine_identifier"] == req.client_guid
    if decision.client.arch == "bios":
        assert opts["vendor_specific"].startswith(b"\x06\x01\x08")


# -- real captures --------------------------------------------------------------------------------

def _pcap_files():
    return sorted(FIXTURES.glob("*.pcap")) + sorted(FIXTURES.glob("*.pcapng"))


@pytest.mark.parametrize("path", _pcap_files() or [pytest.param(None, marks=pytest.mark.skip(reason="no captures yet"))],
                         ids=lambda p: p.name if p else "none")
def test_captured_requests_get_a_decision(path):
    scapy_all = pytest.importorskip("scapy.all")
    seen = 0
    for frame in scapy_all.rdpcap(str(path)):
        if scapy_all.UDP not in frame or frame[scapy_all.UDP].dport not in (67, 4011):
            continue
        udp = frame[scapy_all.UDP]
        req = dhcp.decode(bytes(udp.payload))
        client = boot_client.classify(req)
        if client is None:
            continue
        system = policy.SYSTEM_FOR_ARCH.get(client.arch, "x86_64-linux")
        host = policy.HostView(client.mac, system)
        decision = policy.decide(req, udp.dport, (frame[scapy_all.IP].src, udp.sport), host, CONFIG)
        if udp.dport == 67 and req.message_type == dhcp.DHCPDISCOVER:
            assert isinstance(decision, policy.Reply), decision
        if isinstance(decision, policy.Reply):
            seen += 1
            back = dhcp.decode(decision.encode())
            assert back.client_guid == req.client_guid
            if client.firmware == "ipxe":
                assert decision.boot_file.endswith("/script.ipxe")
    assert seen, "no netboot request answered in %s" % path.name


# -- replay of the captures against what dnsmasq's proxy answered there -------------------------
#
# In the captures, dnsmasq in proxy mode ran on 10.77.0.1 and every boot
# reached the installer, so its answers are a reference that real firmware
# accepted. Our answers to the same requests must agree with it on what the
# client checks (addresses, options 53/54/60/97, destination); they differ on
# purpose in the boot file (our script URL, our option 43 for BIOS).

LAB_CONFIG = policy.ServerConfig("10.77.0.1", "http://10.77.0.1:8080")
LAB_HOST = policy.HostView(MAC, "x86_64-linux")
LAB_SCRIPT = "http://10.77.0.1:8080/boot/52:54:00:12:34:01/script.ipxe"


def _conversation(name):
    path = FIXTURES / name
    if not path.exists():
        pytest.skip("capture %s not present" % name)
    scapy_all = pytest.importorskip("scapy.all")
    frames = []
    for frame in scapy_all.rdpcap(str(path)):
        if scapy_all.UDP in frame and {frame[scapy_all.UDP].sport, frame[scapy_all.UDP].dport} & {67, 68, 4011}:
            udp = frame[scapy_all.UDP]
            frames.append(((frame[scapy_all.IP].src, udp.sport), (frame[scapy_all.IP].dst, udp.dport),
                           dhcp.decode(bytes(udp.payload))))
    return frames


def _exchanges(frames):
    """(source, port, request, dnsmasq proxy reply or None, reply destination) per client request."""
    out = []
    for index, (src, dst, packet) in enumerate(frames):
        if packet.op != dhcp.BOOTREQUEST:
            continue
        answer = next(((a_dst, a) for a_src, a_dst, a in frames[index + 1:]
                       if a.op == dhcp.BOOTREPLY and a.xid == packet.xid and a_src == ("10.77.0.1", dst[1])), None)
        out.append((src, dst[1], packet, answer[1] if answer else None, answer[0] if answer else None))
    return out


def _assert_like_dnsmasq(ours, theirs):
    for field in ("op", "xid", "chaddr", "yiaddr", "siaddr"):
        assert getattr(ours.packet, field) == getattr(theirs, field), field
    for code in (53, 54, 60, 97):
        assert ours.packet.options.get(code) == theirs.options.get(code), code


@pytest.mark.parametrize("name", ["ovmf-pxe.pcap", "ovmf-ipxe.pcap", "ovmf-httpboot.pcap", "seabios-ipxe.pcap"])
def test_replay_requests_agree_with_dnsmasq(name):
    answered = 0
    for src, port, req, theirs, their_dst in _exchanges(_conversation(name)):
        ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
        client = boot_client.classify(req)
        if client is None:                                            # the installer's udhcpc
            expected = policy.IGNORE_NOT_NETBOOT if req.message_type == dhcp.DHCPDISCOVER else policy.IGNORE_MESSAGE_TYPE
            assert ours.reason == expected
            continue
        if port == 67 and req.message_type == dhcp.DHCPREQUEST:
            assert ours.reason == policy.IGNORE_MESSAGE_TYPE         # addressed to the site server
            continue
        assert isinstance(ours, policy.Reply), (name, req.message_type_name, port, ours)
        answered += 1
        assert dhcp.decode(ours.encode()) == ours.packet
        if client.firmware == "ipxe":
            assert ours.boot_file == LAB_SCRIPT
        if theirs is not None and client.firmware != "httpboot":
            assert ours.destination.address == their_dst
            for code in (53, 54, 60, 97):
                assert ours.packet.options.get(code) == theirs.options.get(code), code
    assert answered


def test_replay_ovmf_firmware_pxe():
    exchanges = _exchanges(_conversation("ovmf-pxe.pcap"))
    discover, request_4011 = exchanges[0], exchanges[2]
    src, port, req, theirs, dummy = discover
    ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
    assert (ours.client.arch, ours.client.firmware) == ("efi-x86_64", "pxe")
    assert len(ours.client.guid) == 17
    _assert_like_dnsmasq(ours, theirs)
    assert dhcp.OPT_VENDOR_SPECIFIC not in ours.packet.options
    assert dhcp.OPT_VENDOR_SPECIFIC not in theirs.options
    assert ours.destination == policy.Destination("255.255.255.255", 68, True)
    assert ours.event == events.OFFERED

    src, port, req, theirs, their_dst = request_4011
    assert (src, port) == (("10.77.0.173", 4011), 4011)
    ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
    _assert_like_dnsmasq(ours, theirs)
    assert ours.packet.ciaddr == theirs.ciaddr == "10.77.0.173"
    assert ours.packet.file == theirs.file == b"ipxe.efi"
    assert ours.destination.address == their_dst == ("10.77.0.173", 4011)
    assert ours.event == events.BOOT_FILE_ACKED


@pytest.mark.parametrize("name", ["ovmf-pxe.pcap", "ovmf-ipxe.pcap", "ovmf-httpboot.pcap"])
def test_replay_uefi_ipxe_gets_script(name):
    for src, port, req, theirs, their_dst in _exchanges(_conversation(name)):
        if b"iPXE" not in (req.user_class or b"") or (port == 67 and req.message_type != dhcp.DHCPDISCOVER):
            continue
        ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
        assert ours.client.firmware == "ipxe" and ours.client.arch == "efi-x86_64"
        assert boot_client.IPXE_FEATURE_HTTP in ours.client.ipxe_features
        assert ours.packet.file == LAB_SCRIPT.encode()
        _assert_like_dnsmasq(ours, theirs)
        assert ours.destination.address == their_dst
        assert ours.event == (events.SCRIPT_OFFERED if port == 67 else events.SCRIPT_ACKED)


def test_replay_seabios_ipxe():
    exchanges = _exchanges(_conversation("seabios-ipxe.pcap"))
    src, port, req, theirs, dummy = exchanges[0]
    ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
    assert (ours.client.arch, ours.client.firmware) == ("bios", "ipxe")
    assert ours.packet.pxe_options == {6: b"\x08"}        # boot the file named here: no menu, no 4011 round
    assert ours.packet.file == LAB_SCRIPT.encode()
    # The boot server request iPXE sent after dnsmasq's PXE menu: xid 0,
    # option 60 just "PXEClient", option 43 sub-option 71 = type 0x8001.
    src, port, req, theirs, their_dst = next(e for e in exchanges if e[1] == 4011)
    assert req.xid == 0 and req.vendor_class == b"PXEClient"
    ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
    assert ours.packet.pxe_options[dhcp.PXE_BOOT_ITEM] == theirs.pxe_options[dhcp.PXE_BOOT_ITEM] == b"\x80\x01\x00\x00"
    assert ours.destination.address == their_dst == ("10.77.0.173", 68)
    assert ours.packet.file == LAB_SCRIPT.encode()


def test_replay_ovmf_http_boot_matches_the_answer_it_accepted():
    src, port, req, dummy_answer, dummy_dst = _exchanges(_conversation("ovmf-httpboot.pcap"))[0]
    accepted = next(p for dummy_src, dummy_dst, p in _conversation("ovmf-httpboot.pcap")
                    if p.op == dhcp.BOOTREPLY and p.xid == req.xid and p.message_type == dhcp.DHCPOFFER)
    ours = policy.decide(req, port, src, LAB_HOST, LAB_CONFIG)
    assert (ours.client.arch, ours.client.firmware) == ("efi-x86_64", "httpboot")
    assert ours.packet.vendor_class == accepted.vendor_class == b"HTTPClient"
    assert ours.packet.boot_file_name == accepted.boot_file_name == "http://10.77.0.1:8080/ipxe/ipxe.efi"
    assert ours.packet.yiaddr == "0.0.0.0"                  # a proxy offer: EDK2 pairs it with the site's
    assert ours.destination == policy.Destination("255.255.255.255", 68, True)
