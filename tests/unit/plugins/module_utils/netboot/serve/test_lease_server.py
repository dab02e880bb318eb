# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The addresses mode's wiring in the server (serve/lease_server.py, NetbootServer.on_dhcp_request).

What is sent is caught by a transport that keeps the datagrams (the sockets themselves are
exercised by the netboot_addresses integration target); the requests are captured ones.
"""

from __future__ import annotations

import pathlib

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire import dhcp, events
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import leases
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.lease_plan import WantedLease, plan_addresses
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve import server
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.lease_server import AddressMode
from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.options import ServerOptions

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
MAC = "52:54:00:12:34:01"


class KeptDatagrams:
    def __init__(self):
        self.sent = []

    def sendto(self, data, address):
        self.sent.append((dhcp.decode(data), address))


class Endpoint:
    def __init__(self, port):
        self.port = port
        self.transport = KeptDatagrams()


def requests(name):
    scapy_all = pytest.importorskip("scapy.all")
    out = []
    for frame in scapy_all.rdpcap(str(FIXTURES / name)):
        if scapy_all.UDP in frame and frame[scapy_all.UDP].dport in (67, 4011):
            packet = dhcp.decode(bytes(frame[scapy_all.UDP].payload))
            out.append((packet, (frame[scapy_all.IP].src, frame[scapy_all.UDP].sport), frame[scapy_all.UDP].dport))
    return out


def netboot_server(server_ip, network, host_ip):
    plan = plan_addresses([WantedLease("vm1", MAC, host_ip)], network, (server_ip,))
    mode = AddressMode(leases.LeaseConfig(server_ip, network, (server_ip,)), plan)
    return server.NetbootServer(ServerOptions(hosts=(Host("vm1", MAC),),
                                              server_ip=server_ip, artifacts={}, dhcp_mode="addresses", addresses=mode))


def test_the_installers_client_gets_the_hosts_address_and_it_is_on_the_timeline():
    netboot = netboot_server("10.99.0.1", "10.99.0.0/24", "10.99.0.50")
    endpoint = Endpoint(dhcp.SERVER_PORT)
    for packet, source, dummy in requests("leases/udhcpc.pcap")[:2]:  # DISCOVER, REQUEST
        netboot.on_dhcp_request(endpoint, packet, source)
    assert [(p.message_type, p.yiaddr, to) for p, to in endpoint.transport.sent] == [
        (dhcp.DHCPOFFER, "10.99.0.50", ("255.255.255.255", 68)), (dhcp.DHCPACK, "10.99.0.50", ("255.255.255.255", 68))]
    events = netboot.registry.snapshot()["hosts"][0]["events"]
    assert [(e["event"], e["address"]) for e in events] == [(leases.OFFER, "10.99.0.50"), (leases.BIND, "10.99.0.50")]
    assert netboot.leases.snapshot()[0]["state"] == leases.BIND
    assert netboot.counters["dhcp_answered"] == 2


def test_firmware_boots_from_the_same_answer_and_port_4011_stays_the_proxys():
    netboot = netboot_server("10.77.0.1", "10.77.0.0/24", "10.77.0.173")
    exchange = requests("ovmf-pxe.pcap")
    discover, source, port = exchange[0]
    endpoint = Endpoint(port)
    netboot.on_dhcp_request(endpoint, discover, source)
    offer, to = endpoint.transport.sent[0]
    assert (offer.yiaddr, offer.file, to) == ("10.77.0.173", b"ipxe.efi", ("255.255.255.255", 68))
    states = [(e["event"], e.get("boot_file")) for e in netboot.registry.snapshot()["hosts"][0]["events"]]
    assert states == [(leases.OFFER, None), (events.OFFERED, "ipxe.efi")]
    request_4011, source, port = exchange[2]
    assert port == dhcp.PXE_PORT
    binl = Endpoint(port)
    netboot.on_dhcp_request(binl, request_4011, source)
    ack, to = binl.transport.sent[0]
    assert (ack.message_type, ack.yiaddr, ack.file, to) == (dhcp.DHCPACK, "0.0.0.0", b"ipxe.efi", source)


def test_a_stranger_gets_nothing_and_is_counted():
    netboot = netboot_server("10.99.0.1", "10.99.0.0/24", "10.99.0.50")
    packet, source, dummy = requests("leases/udhcpc.pcap")[0]
    stranger = dhcp.decode(dhcp.encode(packet).replace(bytes.fromhex("525400123401"), bytes.fromhex("525400999999"), 1))
    endpoint = Endpoint(dhcp.SERVER_PORT)
    netboot.on_dhcp_request(endpoint, stranger, source)
    assert endpoint.transport.sent == []
    assert netboot.registry.snapshot()["ignored"]["macs"]["52:54:00:99:99:99"]["events"] == {"dhcp_ignored": 1}


def test_systemd_networkd_keeps_its_address_through_renewal_release_and_a_new_duid():
    """The captured networkd conversation: the installer's DORA, renewal and RELEASE, then the
    installed system's DORA with another DUID client identifier: one lease, keyed by the MAC."""
    netboot = netboot_server("10.99.0.1", "10.99.0.0/24", "10.99.0.50")
    endpoint = Endpoint(dhcp.SERVER_PORT)
    conversation = requests("leases/systemd-networkd.pcap")
    assert len({packet.options[61] for packet, dummy, dummy in conversation}) == 2
    for packet, source, dummy in conversation:
        netboot.on_dhcp_request(endpoint, packet, source)
    assert [(p.message_type, p.yiaddr, to) for p, to in endpoint.transport.sent] == [
        (dhcp.DHCPOFFER, "10.99.0.50", ("255.255.255.255", 68)), (dhcp.DHCPACK, "10.99.0.50", ("255.255.255.255", 68)),
        (dhcp.DHCPACK, "10.99.0.50", ("10.99.0.50", 68)),
        (dhcp.DHCPOFFER, "10.99.0.50", ("255.255.255.255", 68)), (dhcp.DHCPACK, "10.99.0.50", ("255.255.255.255", 68))]
    events = netboot.registry.snapshot()["hosts"][0]["events"]
    assert [(e["event"], e["address"], e["detail"]) for e in events] == [
        (leases.OFFER, "10.99.0.50", ""), (leases.BIND, "10.99.0.50", "SELECTING"), (leases.BIND, "10.99.0.50", "RENEWING"),
        (leases.RELEASE, "10.99.0.50", ""),
        (leases.OFFER, "10.99.0.50", ""), (leases.BIND, "10.99.0.50", "SELECTING"), (leases.RELEASE, "10.99.0.50", "")]
    assert netboot.leases.snapshot()[0]["state"] == leases.RELEASE
    assert netboot.counters["dhcp_answered"] == 5
