# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The IPv6 side's glue between sockets and policy6, with a fake transport (no sockets).

Replays the captured OVMF exchange of fixtures/dhcp6/ovmf-pxe-proxy.pcap:
the MAC learnt from the link-local Solicit ties the later 4011 request
(global source, DUID-UUID) to its host; the 4011 answer is sent again,
because EDK2 may drop one that arrives before it listens; the addresses a
client uses are remembered for TFTP and HTTP attribution.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import policy6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import server6
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "dhcp6"
MAC = "52:54:00:12:34:61"


class FakeTransport:
    def __init__(self):
        self.sent = []

    def sendto(self, data, address):
        self.sent.append((data, address))

    @staticmethod
    def is_closing():
        return False


class FakeServer:
    def __init__(self, hosts):
        self.registry = Registry(hosts)
        self.counters = {"dhcp_malformed": 0, "dhcp_ignored": 0, "dhcp_answered": 0, "dhcp_send_errors": 0}
        self.client_macs = {}

    def _remember_client(self, ip, mac):
        self.client_macs[ip] = mac

    def _on_tftp_event(self, event):
        raise AssertionError("no TFTP here")


def captured_requests():
    scapy_all = pytest.importorskip("scapy.all")
    out = []
    for frame in scapy_all.rdpcap(str(FIXTURES / "ovmf-pxe-proxy.pcap")):
        if scapy_all.UDP in frame and frame[scapy_all.UDP].dport in (547, 4011):
            message = dhcp6.decode(bytes(frame[scapy_all.UDP].payload))
            if message.msg_type not in (dhcp6.ADVERTISE, dhcp6.REPLY):
                out.append(((frame[scapy_all.IPv6].src, frame[scapy_all.UDP].sport), frame[scapy_all.UDP].dport, message))
    return out


def side_for(hosts):
    server = FakeServer(hosts)
    config = policy6.ServerConfig6("fd77::1", 8080, dhcp6.duid_ll("02:00:00:00:00:fe"))
    side = server6.Ipv6Side(server, config, "br0", {})
    endpoints = {}
    for port in (547, 4011):
        endpoints[port] = server6.Dhcp6Endpoint(side, port)
        endpoints[port].connection_made(FakeTransport())
    return server, side, endpoints


def test_the_boot_server_request_is_answered_and_answered_again(monkeypatch):
    monkeypatch.setattr(server6, "PROXY_REPLY_REPEATS", (0.01, 0.02))
    server, side, endpoints = side_for([Host("v6", MAC)])

    async def replay():
        for source, port, message in captured_requests():
            if message.vendor_classes and not message.user_classes and message.msg_type in (dhcp6.SOLICIT, dhcp6.REQUEST):
                side.on_request(endpoints[port], message, source)
        await asyncio.sleep(0.1)

    asyncio.run(replay())
    advertises = endpoints[547].transport.sent
    answers = endpoints[4011].transport.sent
    assert len(advertises) == 1 and dhcp6.decode(advertises[0][0]).msg_type == dhcp6.ADVERTISE
    assert len(answers) == 3 and len({data for data, dummy in answers}) == 1
    assert dhcp6.decode(answers[0][0]).boot_file_url == "tftp://[fd77::1]/ipxe.efi"
    events = [event["event"] for event in server.registry.snapshot()["hosts"][0]["events"]]
    assert events == ["offered", "boot_file_acked"]
    assert server.counters["dhcp_answered"] == 2
    # The DUID was learnt from the link-local Solicit; the 4011 source is remembered for TFTP.
    source_4011 = next(source for source, port, dummy in captured_requests() if port == 4011)
    assert server.client_macs[source_4011[0]] == MAC
    assert MAC in side.duid_macs.values()


def test_strangers_are_counted_not_answered():
    server, side, endpoints = side_for([Host("other", "52:54:00:12:34:99")])

    async def replay():
        for source, port, message in captured_requests():
            side.on_request(endpoints[port], message, source)

    asyncio.run(replay())
    assert endpoints[547].transport.sent == [] and endpoints[4011].transport.sent == []
    assert server.counters["dhcp_answered"] == 0 and server.counters["dhcp_ignored"] > 0
    assert MAC in server.registry.snapshot()["ignored"]["macs"]


def test_malformed_datagrams_are_counted_and_dropped():
    server, dummy, endpoints = side_for([Host("v6", MAC)])
    endpoints[547].datagram_received(b"\x01\x00", ("fe80::1", 546, 0, 2))
    endpoints[547].datagram_received(b"\x01" * 5000, ("fe80::1", 546, 0, 2))
    assert server.counters["dhcp_malformed"] == 1
