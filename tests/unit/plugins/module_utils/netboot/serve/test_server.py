# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the server's wiring that needs no socket: HTTP boot binaries tied to a MAC."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions

MAC = "52:54:00:12:34:01"
MAC_BYTES = bytes.fromhex(MAC.replace(":", ""))
CLIENT_IP = "10.77.0.173"


def served(peer=CLIENT_IP, name="ipxe_file_served"):
    return {"event": name, "file": "ipxe.efi", "peer": peer, "status": 200}


def test_ipxe_file_served_maps_to_the_mac_of_that_address():
    assert server.http_ipxe_record(served(), {CLIENT_IP: MAC}) == (
        MAC, "ipxe_served", {"file": "ipxe.efi", "client": CLIENT_IP, "via": "http", "status": 200})


def test_ipxe_file_aborted_is_ipxe_failed():
    mac, name, details = server.http_ipxe_record(served(name="ipxe_file_aborted"), {CLIENT_IP: MAC})
    assert (mac, name, details["via"]) == (MAC, "ipxe_failed", "http")


@pytest.mark.parametrize("event", [
    served(peer="10.77.0.99"),                                  # no DHCP seen from that address
    {"event": "script_served", "peer": CLIENT_IP},              # the app records those itself
    {"event": "phone_home_rejected", "peer": CLIENT_IP},
    {"event": "stop_requested"},
])
def test_other_events_and_unknown_addresses_record_nothing(event):
    assert server.http_ipxe_record(event, {CLIENT_IP: MAC}) is None


class FakeEndpoint:
    port = dhcp.SERVER_PORT
    transport = None  # a REQUEST on port 67 is never answered: nothing may be sent


def http_boot_request():
    """OVMF's HTTP boot DHCPREQUEST (broadcast to port 67) taking CLIENT_IP from the site server."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s4s", 1, 1, 6, 0, 0x1234, 0, 0x8000,
                       bytes(4), bytes(4), bytes(4), bytes(4), MAC_BYTES, b"", b"", dhcp.MAGIC_COOKIE)
    options = [(53, bytes((dhcp.DHCPREQUEST,))), (50, socket.inet_aton(CLIENT_IP)), (54, socket.inet_aton("10.77.0.2")),
               (93, b"\x00\x10"), (60, b"HTTPClient:Arch:00016:UNDI:003000")]
    return dhcp.decode(head + b"".join(bytes((code, len(value))) + value for code, value in options) + b"\xff")


def test_http_boot_fetch_becomes_ipxe_served_of_the_host():
    netboot = server.NetbootServer(ServerOptions(
        hosts=(Host("vm1", MAC),), server_ip="10.77.0.1", artifacts={}))
    seen = []
    netboot.on_progress = seen.append
    netboot.on_dhcp_request(FakeEndpoint(), http_boot_request(), ("0.0.0.0", 68))
    assert netboot.client_macs[CLIENT_IP] == MAC
    netboot._on_http_event(served())  # pylint: disable=protected-access
    netboot._on_http_event({"event": "script_served", "peer": CLIENT_IP})  # pylint: disable=protected-access
    assert [event["event"] for event in seen] == ["ipxe_served"]
    assert seen[0]["via"] == "http" and seen[0]["file"] == "ipxe.efi"
    assert netboot.registry.snapshot()["hosts"][0]["state"] == "ipxe_served"


def arm64_discover():
    """An arm64 UEFI firmware's DISCOVER (option 93 = 11) from MAC."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s4s", 1, 1, 6, 0, 0x4321, 0, 0x8000,
                       bytes(4), bytes(4), bytes(4), bytes(4), MAC_BYTES, b"", b"", dhcp.MAGIC_COOKIE)
    options = [(53, bytes((dhcp.DHCPDISCOVER,))), (93, b"\x00\x0b"), (60, b"PXEClient:Arch:00011:UNDI:003000")]
    return dhcp.decode(head + b"".join(bytes((code, len(value))) + value for code, value in options) + b"\xff")


class SilentEndpoint:
    port = dhcp.SERVER_PORT
    transport = None  # a refused request is never answered: sending would fail


def test_a_host_we_cannot_boot_gets_a_reason_on_its_timeline():
    netboot = server.NetbootServer(ServerOptions(
        hosts=(Host("arm1", MAC, arch="aarch64-linux"),), server_ip="10.77.0.1", artifacts={},
        ipxe_files={"ipxe.efi": "/nonexistent"}))
    netboot.on_dhcp_request(SilentEndpoint(), arm64_discover(), ("0.0.0.0", 68))
    host = netboot.registry.snapshot()["hosts"][0]
    assert host["state"] == "known"
    assert [(event["event"], event["reason"]) for event in host["events"]] == [("dhcp_refused", "no-boot-file")]


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tftp_listens_on_the_serving_address_beside_another_tftp_server():
    # libvirt's dnsmasq holds UDP 69 on its bridge's address; a listener on every address could not start.
    tftp_port = free_port()
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", tftp_port))
    netboot = server.NetbootServer(ServerOptions(
        hosts=(Host("vm1", MAC),), server_ip="127.0.0.1", artifacts={}, dhcp_port=free_port(),
        proxy_port=free_port(), tftp_port=tftp_port, http_port=free_port(socket.SOCK_STREAM)))

    async def scenario():
        await netboot.start()
        try:
            return netboot._tftp.address  # pylint: disable=protected-access
        finally:
            await netboot.close()
    try:
        assert asyncio.run(scenario()) == ("127.0.0.1", tftp_port)
    finally:
        other.close()
